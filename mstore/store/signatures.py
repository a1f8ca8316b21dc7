"""Where signature bundles live (`signatures/<version-id>/<key-fingerprint>.json`): list, read, keep, drop.

Bundles are opaque here: this module never verifies one (ops/signing.py does, at use, against keys the
caller trusts). What it guarantees is the boundary: names are validated before they become paths, every
read is bounded, and a bundle received from elsewhere (a remote, an archive) is kept only when it is
well-formed JSON of the expected shape and a local one is replaced by it only when the caller verified
the received one against trusted keys (and the local one does not verify). Nothing is listed, read or
written through a symbolic link at signatures/ or signatures/<version-id>.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import suppress
from pathlib import Path

from ..errors import IntegrityError, UnsafeStoreFile
from . import fsutil
from .ids import is_version_id

SIGNATURES = "signatures"
MAX_BUNDLE_BYTES = 8 << 20  # as ops/signing.py: no bundle mstore writes is larger
MAX_BUNDLES_PER_VERSION = 64  # one per key; a remote offering more is not believed beyond this
_KEYID = re.compile(r"[0-9a-f]{64}")


def is_keyid(name: object) -> bool:
    return isinstance(name, str) and _KEYID.fullmatch(name) is not None


def well_formed(data: bytes) -> str | None:
    """None when `data` looks like a signature bundle (a DSSE envelope, bare or in a Sigstore bundle's
    `dsseEnvelope`); else why not. Shape only: whether it verifies is decided at use."""
    if len(data) > MAX_BUNDLE_BYTES:
        return f"{len(data)} bytes, more than the {MAX_BUNDLE_BYTES} a bundle can have"
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return "not JSON"
    if isinstance(doc, dict) and isinstance(doc.get("dsseEnvelope"), dict):
        doc = doc["dsseEnvelope"]
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("payloadType", "payload")):
        return "not a DSSE envelope"
    sigs = doc.get("signatures")
    signed = (
        isinstance(sigs, list) and sigs and all(isinstance(s, dict) and isinstance(s.get("sig"), str) for s in sigs)
    )
    if not signed:
        return "a DSSE envelope without signatures"
    return None


def directory(root: Path, version_id: str) -> Path:
    if not is_version_id(version_id):
        raise IntegrityError(f"{version_id!r} is not a version ID")
    return root / SIGNATURES / version_id


def real_directory(root: Path, version_id: str) -> bool:
    """True if the version's bundle directory exists; UnsafeLayout if it (or signatures/) is a link or not a
    directory: nothing is read, listed or written through one."""
    where = directory(root, version_id)
    return fsutil.check_real_dir(root / SIGNATURES, SIGNATURES) and fsutil.check_real_dir(
        where, f"{SIGNATURES}/{version_id}"
    )


def keyids(root: Path, version_id: str) -> list[str]:
    """The key fingerprints with a bundle stored for this version, sorted."""
    if not real_directory(root, version_id):
        return []
    try:
        names = os.listdir(directory(root, version_id))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(n[: -len(".json")] for n in names if n.endswith(".json") and is_keyid(n[: -len(".json")]))


def read(root: Path, version_id: str, keyid: str) -> bytes:
    """One bundle's bytes (bounded; a link or special file is refused: UnsafeStoreFile / OSError)."""
    if not is_keyid(keyid):
        raise IntegrityError(f"{keyid!r} is not a key fingerprint")
    real_directory(root, version_id)
    return fsutil.read_regular(directory(root, version_id) / f"{keyid}.json", MAX_BUNDLE_BYTES)


def bundles(root: Path, version_id: str) -> list[tuple[str, bytes]]:
    """(keyid, bytes) of every bundle of the version; an unreadable one (oversized, a link) as b"", which
    no verifier accepts, so that it is reported as malformed rather than absent."""
    out = []
    for keyid in keyids(root, version_id)[:MAX_BUNDLES_PER_VERSION]:
        try:
            out.append((keyid, read(root, version_id, keyid)))
        except (OSError, UnsafeStoreFile, IntegrityError):
            out.append((keyid, b""))
    return out


def keep(root: Path, version_id: str, keyid: str, data: bytes, *, replace: bool = False) -> bool:
    """Store a received bundle if it is well-formed and none is stored for (version, key), or with `replace`
    (the caller verified it, and that the one stored does not verify) whatever is stored; True if written."""
    if not is_keyid(keyid) or well_formed(data) is not None:
        return False
    where = directory(root, version_id)
    if real_directory(root, version_id) and os.path.lexists(where / f"{keyid}.json"):
        if not replace:
            return False  # a local bundle is never replaced by a received one unless verified
        with suppress(OSError, UnsafeStoreFile):
            if fsutil.read_regular(where / f"{keyid}.json", MAX_BUNDLE_BYTES) == data:
                return False
    where.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write(where / f"{keyid}.json", data)
    return True


def drop(root: Path, version_id: str) -> None:
    """Delete every bundle of a version (it was removed); safe to repeat."""
    where = directory(root, version_id)
    if not fsutil.check_real_dir(where, f"{SIGNATURES}/{version_id}"):
        return
    for name in os.listdir(where):
        fsutil.remove_file(where / name)
    with suppress(OSError):
        where.rmdir()


def version_dirs(root: Path) -> list[str]:
    """Every name under signatures/ (version IDs, or whatever else is there: fsck reports it)."""
    try:
        return sorted(os.listdir(root / SIGNATURES))
    except (FileNotFoundError, NotADirectoryError):
        return []
