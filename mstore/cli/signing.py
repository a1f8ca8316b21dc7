"""Commands that sign and verify versions: keygen, sign, verify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .shared import JsonOpt, app, emit_json, note, open_repo


@app.command(short_help="Write an EC key pair (NAME.pem private, NAME.pub.pem public).")
def keygen(
    output: Annotated[str, typer.Option("-o", "--output", metavar="NAME", help="Write NAME.pem and NAME.pub.pem.")],
    p384: Annotated[bool, typer.Option("--p384", help="A P-384 key (default P-256).")] = False,
) -> None:
    """Write an EC key pair: NAME.pem (private, mode 0600) and NAME.pub.pem. Refuses to overwrite."""
    from ..ops.signing import keygen as _keygen

    priv, pub = _keygen(Path(output), curve="P-384" if p384 else "P-256")
    note(f"wrote {priv} (private; keep it secret) and {pub} (public)")


@app.command(short_help="Sign a version with an EC private key (reads no weight bytes).")
def sign(
    ref: Annotated[str, typer.Argument(help="Version to sign.")],
    key: Annotated[str, typer.Option("--key", metavar="PRIVATE.pem", help="EC private key (P-256 or P-384).")],
    digest: Annotated[
        str,
        typer.Option(
            "--digest",
            metavar="blake3|sha256",
            help="Digest the bundle lists: blake3 (from the manifest, no bytes read) or sha256 (reads every "
            "file once; what model_signing's CLI `verify key` expects).",
        ),
    ] = "blake3",
) -> None:
    """Sign a version: an OpenSSF model-signing bundle (a Sigstore bundle holding a DSSE envelope of an
    in-toto statement of every file's digest), verifiable by `mstore verify` and by `model_signing`."""
    version_id, path = open_repo().sign(ref, key, digest=digest)
    note(f"signed {version_id} ({path.name})")


@app.command(short_help="Check that a version is signed by one of the given keys.")
def verify(
    ref: Annotated[str, typer.Argument(help="Version to verify.")],
    key: Annotated[
        Optional[list[str]], typer.Option("--key", metavar="PUBLIC.pem", help="Public key to accept (repeatable).")
    ] = None,
    promotion: Annotated[
        bool,
        typer.Option(
            "--promotion",
            help="REF is a tag: also require that its newest history record moved it here, signed by one of "
            "the keys (refuses a tag rolled back or moved by someone without the key).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Exit 0 when a stored signature by one of the keys matches the version's files and metadata."""
    result = open_repo().verify(ref, key or [], promotion=promotion)
    if as_json:
        emit_json({"version": result.version, "verified": True, "keyid": result.keyid})
    else:
        note(f"verified {result.version}: signed by key {result.keyid[:16]}")
