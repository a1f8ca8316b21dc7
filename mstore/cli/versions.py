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
from .shared import JsonOpt, app, byte_progress, emit_json, fail, note, open_repo, state


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


def _metadata_from_options(
    metadata_file: Path | None, training_file: str | None, fields: list[str], metrics: list[str]
) -> dict[str, Any]:
    """The version's metadata from save's options: the file first, then --training-file, --set, --metric."""
    meta: dict[str, Any] = _load_metadata_file(metadata_file) if metadata_file else {}
    if training_file is not None:
        meta["training_file"] = training_file
    for item in fields:
        key, raw = _split_pair(item, "--set")
        try:
            meta[key] = json.loads(raw)
        except ValueError:
            meta[key] = raw
    if metrics:
        recorded = meta.setdefault("metrics", {})
        if not isinstance(recorded, dict):
            raise BadInput("metadata field 'metrics' must be an object to add --metric values")
        for item in metrics:
            name, raw = _split_pair(item, "--metric")
            recorded[name] = _parse_number(raw)
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
    the globals they import; unsafe ones are warned about, and recorded."""
    meta = _metadata_from_options(metadata_file, training_file, set_ or [], metric or [])
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
        Optional[Path],
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="Where to write the model. Default: a file into the current directory under its saved name; "
            "a directory model as ./<its saved directory name>.",
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
) -> None:
    """Restore a version's model, verified bit-exact, to a path."""
    repo = open_repo()
    vid = repo.fetch(remote, ref) if remote else repo.resolve(ref)
    manifest = repo.manifest(vid)
    if output is None:
        output = Path(".") if manifest.kind == KIND_FILE else Path(saved_name(repo.get(vid), vid))
    with byte_progress(lambda: manifest.size, "checkout") as progress:
        written = repo.checkout(vid, output, force=force, progress=progress)
    if as_json:
        emit_json({"version": vid, "path": str(written), "size": manifest.size})
    else:
        typer.echo(f"checked out {vid} to {written}")


@app.command(short_help="Name a version; list or delete tags.")
def tag(
    name: Annotated[Optional[str], typer.Argument(metavar="NAME", help="Tag name; omit to list tags.")] = None,
    ref: Annotated[str, typer.Argument(metavar="REF", help="Version to tag.")] = "latest",
    force: Annotated[bool, typer.Option("--force", "-f", help="Move an existing tag.")] = False,
    delete: Annotated[bool, typer.Option("--delete", "-d", help="Delete the tag.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Name a version (or list tags, or delete one with -d)."""
    repo = open_repo()
    if name is None:
        tags = repo.tags()
        if as_json:
            emit_json(tags)
        else:
            for tag_name, vid in tags.items():
                typer.echo(f"{tag_name}  {vid}")
        return
    if delete:
        vid = repo.untag(name)
        result = {"tag": name, "version": vid, "deleted": True}
        message = f"deleted tag {name} (was {vid})"
    else:
        vid = repo.tag(name, ref, force=force)
        result = {"tag": name, "version": vid, "deleted": False}
        message = f"tagged {vid} as {name}"
    if as_json:
        emit_json(result)
    else:
        typer.echo(message)


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
    vid, tags = open_repo().remove(ref, force=force)
    if as_json:
        emit_json({"removed": vid, "tags_removed": tags})
    else:
        dropped = f" and its tag(s) {', '.join(tags)}" if tags else ""
        typer.echo(f"removed version {vid}{dropped}")
        note("run `mstore gc` to free the space only it used")
