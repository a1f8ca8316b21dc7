"""Commands that make and change versions: init, save, checkout, tag, rm."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..content.ingest import source_size
from ..errors import BadInput, MStoreError
from ..humanize import format_duration
from ..ops.gc import DEFAULT_GRACE_SECONDS
from ..repository import Repository
from ..store.layout import CONFIG
from ..store.manifest import KIND_FILE
from ..store.refs import check_tag_name
from ..store.versions import saved_name
from .render import save_summary, unsafe_warnings
from .shared import (
    AllowUnsafeOpt,
    JsonOpt,
    TrustedKeysOpt,
    app,
    byte_progress,
    emit_json,
    fail,
    gc_when,
    note,
    open_repo,
    state,
)


@app.command(short_help="Create an empty store.")
def init(as_json: JsonOpt = False) -> None:
    """Create an empty store (saving a model also creates one)."""
    existed = (Path(state.store) / CONFIG).is_file()
    repo = Repository.init(state.store)
    if as_json:
        emit_json({"store": str(repo.root.resolve()), "existed": existed})
    elif existed:
        typer.echo(f"Store already in {repo.root.resolve()}; nothing changed")
    else:
        typer.echo(f"Initialized mstore store in {repo.root.resolve()}")


def _parse_number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise BadInput(f"metric value {text!r} is not a number") from None


def _split_pair(text: str, option: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise BadInput(f"{option} expects NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _load_metadata_file(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"metadata file {str(path)!r} does not exist") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"metadata file {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadInput(f"metadata file {str(path)!r} must hold a JSON object")
    return doc


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _pairs(items: list[str], option: str) -> list[tuple[str, str]]:
    """NAME=VALUE pairs; a name given twice is refused (which of `-M x=0.9 -M x=0.8` did you mean?)."""
    pairs = [_split_pair(item, option) for item in items]
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise BadInput(f"{option} {name} is given more than once; give each name once")
        seen.add(name)
    return pairs


def _into(meta: dict[str, Any], field: str, option: str) -> dict[str, Any]:
    recorded = meta.setdefault(field, {})
    if not isinstance(recorded, dict):
        raise BadInput(f"metadata field {field!r} must be an object to add {option} values")
    return recorded


def _metadata_from_options(
    metadata_file: Path | None,
    training_file: str | None,
    fields: list[str],
    metrics: list[str],
    params: list[str] | None = None,
    higher: list[str] | None = None,
    lower: list[str] | None = None,
) -> dict[str, Any]:
    """The version's metadata from save's options: the file first, then --training-file, --set, --metric,
    --param and the declared metric directions."""
    meta: dict[str, Any] = _load_metadata_file(metadata_file) if metadata_file else {}
    if training_file is not None:
        meta["training_file"] = training_file
    for key, raw in _pairs(fields, "--set"):
        meta[key] = _json_or_text(raw)
    for name, raw in _pairs(metrics, "--metric"):
        _into(meta, "metrics", "--metric")[name] = _parse_number(raw)
    for name, raw in _pairs(params or [], "--param"):
        _into(meta, "params", "--param")[name] = _json_or_text(raw)
    both = sorted(set(higher or []) & set(lower or []))
    if both:
        raise BadInput(f"{both[0]!r} cannot be both --higher-is-better and --lower-is-better")
    for names, direction in ((higher or [], "higher"), (lower or [], "lower")):
        for name in names:
            _into(meta, "metric_directions", f"--{direction}-is-better")[name] = direction
    return meta


@app.command(short_help="Save a model file or directory as a new version.")
def save(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Model file or directory to save.", show_default=False)],
    metric: Annotated[
        Optional[list[str]],
        typer.Option("--metric", "-M", metavar="NAME=VALUE", help="A metric as NAME=VALUE (repeatable)."),
    ] = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="A metadata field as KEY=VALUE; VALUE is parsed as JSON if it can be (repeatable).",
        ),
    ] = None,
    metadata_file: Annotated[
        Optional[Path], typer.Option(metavar="FILE", help="JSON file with metadata fields.")
    ] = None,
    training_file: Annotated[
        Optional[str], typer.Option(metavar="FILE", help="Training data file, recorded as training_file.")
    ] = None,
    message: Annotated[
        Optional[str], typer.Option("--message", "-m", metavar="TEXT", help="A note about this version.")
    ] = None,
    tag: Annotated[Optional[str], typer.Option("--tag", "-t", metavar="NAME", help="Also tag the new version.")] = None,
    parent: Annotated[
        Optional[str],
        typer.Option(metavar="REF", help="Version this model was trained from (deltas); default: the newest."),
    ] = None,
    refuse_unsafe: Annotated[
        bool,
        typer.Option(
            "--refuse-unsafe",
            help="Refuse a model whose pickles import anything outside the known-safe set (or cannot be read).",
        ),
    ] = False,
    param: Annotated[
        Optional[list[str]],
        typer.Option(
            "--param",
            "-P",
            metavar="NAME=VALUE",
            help="A training parameter as NAME=VALUE, stored under params; VALUE is parsed as JSON if it can be "
            "(repeatable).",
        ),
    ] = None,
    higher_is_better: Annotated[
        Optional[list[str]],
        typer.Option(
            "--higher-is-better",
            metavar="METRIC",
            help="Declare that a higher METRIC is better (nested metrics under it too; repeatable).",
        ),
    ] = None,
    lower_is_better: Annotated[
        Optional[list[str]],
        typer.Option(
            "--lower-is-better",
            metavar="METRIC",
            help="Declare that a lower METRIC is better (nested metrics under it too; repeatable).",
        ),
    ] = None,
    allow: Annotated[
        Optional[list[str]],
        typer.Option(
            "--allow",
            metavar="MODULE.NAME",
            help="Add a class of your own to the pickle allowlist for this save (module:qualname also; repeatable).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Save a model file or directory as a new version. Pickle / joblib files are read (never loaded) for
    the globals they import; unsafe ones are warned about, and recorded. With --quiet, prints only the new ID."""
    meta = _metadata_from_options(
        metadata_file, training_file, set_ or [], metric or [], param, higher_is_better, lower_is_better
    )
    if tag is not None:
        check_tag_name(tag)  # before anything is written
    repo = Repository.init(state.store)
    skipped = repo.store_inside(path)
    if skipped is not None:
        note(f"note: leaving out {os.path.relpath(skipped, path)}: it is the store this version is saved to")
    before = set(repo.ids())
    try:
        with byte_progress(lambda: _safe_size(path, skipped), "saving") as progress:
            result = repo.save(
                path,
                meta,
                message=message,
                parent=parent,
                tag=tag,
                progress=progress,
                refuse_unsafe=refuse_unsafe,
                allow=allow or [],
            )
    except KeyboardInterrupt:
        fail(_interrupted_save(repo, before), 130)
    for line in unsafe_warnings(result):
        typer.echo(line, err=True)
    vid = result["timestamp"]
    if as_json:
        emit_json(result)
        return
    if state.quiet:  # `ID=$(mstore save -q model.joblib)`
        typer.echo(vid)
        return
    typer.echo(f"saved version {vid}")
    note(save_summary(result))


def _interrupted_save(repo: Repository, before: set[str]) -> str:
    """What an interrupted save left behind, and how to free it."""
    try:
        published = sorted(set(repo.ids()) - before)
    except (MStoreError, OSError):
        published = []
    if published:  # interrupted after the commit point: the version is complete
        vid = published[-1]
        return f"interrupted after version {vid} was published; it is complete (`mstore show {vid}`)"
    grace = format_duration(DEFAULT_GRACE_SECONDS)
    return (
        "interrupted: nothing was published; the objects written so far are unused, and `mstore gc` frees them "
        f"once they are older than the grace period ({grace})"
    )


def _safe_size(path: Path, exclude: Path | None) -> int:
    try:
        return source_size(path, exclude)
    except (MStoreError, OSError):
        return 0  # save() reports the real problem


@app.command(short_help="Restore a version's model, verified bit-exact.")
def checkout(
    ref: Annotated[str, typer.Argument(metavar="REF", help="Version to restore.")],
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="Where to write the model (ending in /: into that directory, created if need be). Default: a "
            "file into the current directory under its saved name; a directory model as ./<its saved directory "
            "name>.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing files.")] = False,
    remote: Annotated[
        Optional[str],
        typer.Option(
            "--remote", metavar="NAME", help="Resolve REF on this remote and fetch the version first if needed."
        ),
    ] = None,
    as_json: JsonOpt = False,
    allow_unsafe: AllowUnsafeOpt = False,
    signature: Annotated[
        Optional[str],
        typer.Option(
            "--signature",
            metavar="FILE",
            help="Also write the version's OpenSSF model-signing bundle to FILE (outside the checkout), for "
            "model_signing's verifier.",
        ),
    ] = None,
    signature_key: Annotated[
        Optional[list[str]],
        typer.Option(
            "--signature-key",
            metavar="PUBLIC.pem",
            help="With --signature: write the bundle by this key, verified first (repeatable).",
        ),
    ] = None,
    trusted_keys: TrustedKeysOpt = None,
) -> None:
    """Restore a version's model, verified bit-exact, to a path.

    A version whose pickles are unsafe or unknown is refused, writing nothing, unless --allow-unsafe.
    With --trusted-keys (or MSTORE_TRUSTED_KEYS), so is a version none of those keys signed.
    """
    repo = open_repo()
    vid = repo.fetch(remote, ref, trusted_keys=trusted_keys) if remote else repo.resolve(ref)
    loadable = repo.check_loadable(vid, allow_unsafe=True if allow_unsafe else None, trusted_keys=trusted_keys)
    manifest = loadable.manifest
    if output is None:
        output = "." if manifest.kind == KIND_FILE else saved_name(loadable.meta, vid)
    bundle = repo.checkout_signature(vid, output, signature, signature_key, force=force)
    with byte_progress(lambda: manifest.size, "checkout") as progress:
        written = repo.checkout(loadable, output, force=force, progress=progress)
    if bundle is not None and signature is not None:
        repo.write_signature(signature, bundle, force=force)
    if as_json:
        doc: dict[str, Any] = {"version": vid, "path": str(written), "size": manifest.size}
        emit_json(doc if signature is None else {**doc, "signature": signature})
    else:
        typer.echo(f"checked out {vid} to {written}")
        if signature is not None:
            note(f"wrote its model-signing bundle to {signature}")


@app.command(short_help="Name a version; list, delete tags, or show a tag's history.")
def tag(
    name: Annotated[Optional[str], typer.Argument(metavar="NAME", help="Tag name; omit to list tags.")] = None,
    ref: Annotated[
        str, typer.Argument(metavar="REF", help="Version to tag (an ID, a tag, prod@{1}, prod@{2026-11-30 12:00}).")
    ] = "latest",
    force: Annotated[bool, typer.Option("--force", "-f", help="Move an existing tag.")] = False,
    delete: Annotated[bool, typer.Option("--delete", "-d", help="Delete the tag.")] = False,
    message: Annotated[
        Optional[str], typer.Option("--message", "-m", metavar="TEXT", help="Why: kept in the tag's history.")
    ] = None,
    history: Annotated[bool, typer.Option("--history", help="Show the tag's moves, newest first.")] = False,
    remote: Annotated[
        Optional[str],
        typer.Option("--remote", metavar="NAME|URL", help="Act on the remote's tag (REF resolved there)."),
    ] = None,
    sign: Annotated[
        bool, typer.Option("--sign", help="Sign the move's history record with --key PRIVATE.pem.")
    ] = False,
    key: Annotated[
        Optional[list[str]],
        typer.Option(
            "--key",
            metavar="PEM",
            help="With --sign: the EC private key. With --history: public keys to check signatures with.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Name a version (or list tags, delete one with -d, or show one's history with --history).

    Every move is recorded in the tag's history (who, when, from and to, the -m message); `NAME@{1}` is
    what the tag named one move ago, so `mstore tag -f prod prod@{1}` rolls a promotion back. `--sign
    --key PRIVATE.pem` signs that record; `--history --key PUBLIC.pem` says which records verify.
    """
    repo = open_repo()
    if sign and (history or delete or name is None):
        raise BadInput("--sign signs a move: mstore tag NAME REF [--remote R] --sign --key PRIVATE.pem")
    if sign and len(key or []) != 1:
        raise BadInput("--sign needs one --key PRIVATE.pem")
    if key and not (sign or history):
        raise BadInput("--key goes with --sign (a private key) or --history (public keys)")
    if name is None:
        if history or delete or remote is not None:
            raise BadInput("name the tag (mstore tag NAME ...)")
        tags = repo.tags()
        if as_json:
            emit_json(tags)
        else:
            for tag_name, vid in tags.items():
                typer.echo(f"{tag_name}  {vid}")
        return
    if history:
        moves = repo.tag_history(name, remote=remote, keys=key)
        if as_json:
            emit_json(moves)
            return
        if not moves:
            note(f"no history is recorded for tag {name} (it was made before mstore kept tag histories)")
        for move in moves:
            said = f"  {move['message']}" if move["message"] else ""
            line = f"{move['time']}  {move['from'] or '-'} -> {move['to'] or '(deleted)'}  {move['who']}"
            typer.echo(line + signed_text(move) + said)
        return
    where = f" on {remote}" if remote is not None else ""
    sign_key = key[0] if sign and key else None
    if delete:
        vid = repo.untag(name, message=message) if remote is None else repo.untag_remote(remote, name, message=message)
        result: dict[str, Any] = {"tag": name, "version": vid, "deleted": True}
        text = f"deleted tag {name}{where} (was {vid})"
    else:
        if remote is None:
            vid = repo.tag(name, ref, force=force, message=message, sign_key=sign_key)
        else:
            vid = repo.tag_remote(remote, name, ref, force=force, message=message, sign_key=sign_key)[0]
        result = {"tag": name, "version": vid, "deleted": False}
        text = f"tagged {vid} as {name}{where}" + (" (signed)" if sign else "")
    if remote is not None:
        result["remote"] = remote
    if as_json:
        emit_json(result)
    else:
        typer.echo(text)


def signed_text(move: dict[str, Any]) -> str:
    """With --key: `  [signed by key 1a2b..]`, `  [BAD SIGNATURE by key ..]` or `  [unsigned]`; without:
    `  [unverified signature by key 1a2b..]` or nothing."""
    status, keyid = move.get("signature"), move["signed_by"]
    if status is None:
        return f"  [unverified signature by key {keyid[:16]}]" if keyid else ""
    return f"  [{status}{f' by key {keyid[:16]}' if keyid else ''}]"


@app.command(short_help="Remove a version (then `mstore gc` frees its space).")
def rm(
    ref: Annotated[str, typer.Argument(metavar="REF", help="Version to remove.")],
    force: Annotated[bool, typer.Option("--force", "-f", help="Also remove a tagged version and its tags.")] = False,
    remote: Annotated[
        Optional[str],
        typer.Option("--remote", metavar="NAME", help="Remove the version from this remote (REF resolved there)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a version (run `mstore gc` afterwards to free its space; with --remote, `mstore gc --remote NAME`)."""
    if remote is not None:
        vid, tags = open_repo().remove_remote(remote, ref, force=force)
        if as_json:
            emit_json({"removed": vid, "remote": remote, "tags_removed": tags})
            return
        dropped = f" and its tag(s) {', '.join(tags)}" if tags else ""
        typer.echo(f"removed version {vid}{dropped} from {remote}")
        note(f"run `mstore gc --remote {remote}` to free the space only it used there")
        return
    repo = open_repo()
    vid, tags = repo.remove(ref, force=force)
    if as_json:
        emit_json({"removed": vid, "tags_removed": tags})
    else:
        dropped = f" and its tag(s) {', '.join(tags)}" if tags else ""
        typer.echo(f"removed version {vid}{dropped}")
        note(gc_when(repo) or "run `mstore gc` to free the space only it used")
