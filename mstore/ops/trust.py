"""Trusted keys: a consumer that configured some refuses every version no one of them signed.

Trust roots are local configuration only: `MSTORE_TRUSTED_KEYS` (a PEM public key, or a directory of
`*.pem`), `trusted_keys=` on `model_path`, `--trusted-keys` on `path`, `checkout` and `pull`. Nothing a
remote, an archive or a cache holds can add a key: bundles from there are only checked against these.
Without any trust setting nothing is checked and nothing changes (docs/guarantees.md, "Signed versions").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

from ..errors import EXIT_PROBLEM, BadInput, MStoreError
from ..store import signatures as stored
from ..store.layout import Store
from ..store.manifest import Manifest

if TYPE_CHECKING:  # cryptography loads only when a trust setting asks for it
    from cryptography.hazmat.primitives.asymmetric import ec

    from .signing import NotVerified

TRUSTED_KEYS_ENV = "MSTORE_TRUSTED_KEYS"
KeySpec = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]], None]
Keys = list["ec.EllipticCurvePublicKey"]


class Untrusted(MStoreError):
    """A version that no trusted key signed was refused (the message names it and says why)."""

    exit_code = EXIT_PROBLEM


def trusted_keys(spec: KeySpec = None) -> Keys | None:
    """The trusted public keys from `spec` (a path or a list of paths: PEM files or directories of
    `*.pem`), else from MSTORE_TRUSTED_KEYS; None when neither is set (nothing is checked then). The
    variable set to an empty string counts as unset; an empty path in `spec` is refused (BadInput)."""
    from .signing import load_public_key

    where = "trusted_keys="
    if spec is None:
        env = os.environ.get(TRUSTED_KEYS_ENV, "").strip()
        if not env:
            return None
        spec, where = env, TRUSTED_KEYS_ENV
    paths = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not paths:
        raise BadInput(f"{where} names no key (give a PEM public key, or a directory of *.pem)")
    keys: Keys = []
    for item in paths:
        if not os.fspath(item).strip():  # Path("") is "." : every *.pem of the working directory
            raise BadInput(f"{where}: an empty path names no key (give a PEM public key, or a directory of *.pem)")
        path = Path(item)
        if path.is_dir():
            pems = sorted(p for p in path.iterdir() if p.suffix == ".pem" and not p.name.startswith("."))
            if not pems:
                raise BadInput(f"{where}: {path} holds no *.pem public key")
            keys += [load_public_key(p) for p in pems]
        elif path.exists():
            keys.append(load_public_key(path))
        else:
            raise BadInput(f"{where}: {path} does not exist (a PEM public key, or a directory of *.pem)")
    return keys


def _reason(exc: NotVerified) -> str:
    kind = getattr(exc, "kind", "")
    detail = getattr(exc, "detail", str(exc))
    if kind == "unsigned":
        return "unsigned (no signature is stored for it)"
    if kind == "other-key":
        return "signed by other keys only (none of the trusted keys)"
    if kind == "differs":
        return f"a trusted key's signature does not match it ({detail})"
    return f"its signature is malformed ({detail})"


def check(version_id: str, manifest: Manifest, meta_raw: bytes, bundles: list[tuple[str, bytes]], keys: Keys) -> str:
    """The keyid of a trusted key whose bundle signs exactly this version (its manifest and metadata.json's
    bytes, each verified by the caller: a store's, a remote's or the cache's); else Untrusted (one line)."""
    from .signing import NotVerified, verify_bundles

    try:
        return verify_bundles(version_id, manifest, meta_raw, bundles, keys)
    except NotVerified as exc:
        raise Untrusted(f"refused {version_id}: not signed by a trusted key: {_reason(exc)}") from None


def check_stored(store: Store, version_id: str, keys: Keys | None, manifest: Manifest | None = None) -> None:
    """Refuse a version of `store` that no trusted key signed; nothing when `keys` is None (no trust set).
    `manifest`: the version's, if the caller has read (and so verified) it already."""
    if keys is not None:
        manifest = store.version_manifest(version_id) if manifest is None else manifest
        meta_raw = store.versions.raw_metadata(version_id)
        check(version_id, manifest, meta_raw, stored.bundles(store.root, version_id), keys)
