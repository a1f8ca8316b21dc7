"""The `mstore` command line: parses arguments, calls the Repository API, renders results.

Data goes to stdout (exactly one JSON document with --json); messages, progress and errors go to
stderr. Exit codes: 0 success, 1 a problem was found, 2 bad usage or bad input.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer
from typer.core import TyperArgument, TyperGroup

from . import __version__
from .cache import Cache, human_size
from .errors import EXIT_PROBLEM, BadInput, MStoreError, VersionNotFound
from .fsck import Report as FsckReport
from .fsck import unused_summary
from .gc import DEFAULT_GRACE_SECONDS
from .humanize import format_bytes, format_duration, parse_duration, parse_time, safe
from .ingest import source_size
from .manifest import KIND_FILE
from .modelpath import locate
from .refs import check_tag_name
from .render import default_metrics, diff_lines, du_lines, log_lines, save_summary, show_lines, unsafe_warnings
from .repository import Repository
from .versions import saved_name

if TYPE_CHECKING:  # remote support loads only when a remote command runs
    from .transfer import TransferStats

DEFAULT_STORE = "data/models"
PROGRESS_MIN_BYTES = 64 << 20


_UsageError: type[Exception] = typer.BadParameter.__mro__[1]  # click's UsageError, whichever click typer uses


class _Argument(TyperArgument):
    """A positional argument shown as `PATH` / `[REF]` in usage lines and without a `<path>` type in help."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _set_store(value: Optional[str]) -> None:
    if value is not None:
        state.store = value


def _set_quiet(value: bool) -> None:
    if value:
        state.quiet = True


def _global_options() -> list[Any]:
    """`--store` and `--quiet` after the command name too (`mstore save -q x`, `mstore log --store DIR`)."""
    probe = typer.Typer(add_completion=False)

    @probe.command()
    def options(
        store: Annotated[
            Optional[str],
            typer.Option(
                "--store",
                "-s",
                metavar="DIR",
                expose_value=False,
                callback=_set_store,
                help="Store directory (also accepted before the command; default: $MSTORE_DIR, else data/models).",
            ),
        ] = None,
        quiet: Annotated[
            bool,
            typer.Option(
                "--quiet", "-q", expose_value=False, callback=_set_quiet, help="Print only results, no messages."
            ),
        ] = False,
    ) -> None:
        """Never run: only its options are taken."""

    return list(typer.main.get_command(probe).params)


class _Group(TyperGroup):
    """Maps every known error to one line on stderr and its exit code, in one place."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        extra = _global_options()
        for command in self.commands.values():
            for param in command.params:
                if isinstance(param, TyperArgument):
                    param.__class__ = _Argument
            if not any(param.name == "store" for param in command.params):
                command.params.extend(extra)

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        """`mstore --bogus`: parsing the options before the command fails in one line too."""
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `mstore`: the help, as before
                raise
            _usage_fail(exc)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """A mistyped command is one line with a suggestion, not Click's usage box."""
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None and not ctx.resilient_parsing:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (see `{ctx.command_path} --help`)"
            _fail(f"no such command {name!r}{hint}", 2)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except MStoreError as exc:
            _fail(exc.cli_message, exc.exit_code)
        except BrokenPipeError:  # `mstore log | head`: stop quietly, as git does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None
        except OSError as exc:
            if os.environ.get("MSTORE_DEBUG"):
                raise
            where = f": {exc.filename}" if exc.filename else ""
            _fail(f"{exc.strerror or exc}{where}", EXIT_PROBLEM)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except _UsageError as exc:  # a missing argument, an unknown option: one line, not Click's usage box
            _usage_fail(exc)


app = typer.Typer(
    cls=_Group,
    help="Versioned, deduplicated, verifiable storage for trained ML models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _State:
    store: str = DEFAULT_STORE
    quiet: bool = False


state = _State()


def _fail(message: str, code: int) -> NoReturn:
    if os.environ.get("MSTORE_DEBUG") and sys.exc_info()[0] is not None:
        raise
    typer.echo(f"mstore: error: {safe(message)}", err=True)
    raise typer.Exit(code)


def _usage_fail(exc: Exception) -> NoReturn:
    text = str(getattr(exc, "format_message", lambda: str(exc))()).rstrip(".")
    where = getattr(exc, "ctx", None)
    hint = f" (see `{where.command_path} --help`)" if where is not None else ""
    _fail(text[:1].lower() + text[1:] + hint, 2)


def _info(message: str) -> None:
    if not state.quiet:
        typer.echo(message, err=True)


def _emit_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def _repo() -> Repository:
    return Repository.open(state.store)


@contextmanager
def _progress(total_of: Callable[[], int], label: str) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on stderr for long work on a terminal; nothing when piped or quiet.

    `total_of` is only called when a bar could be shown, so piped runs never pay for sizing the work.
    """
    if state.quiet or not sys.stderr.isatty():
        yield None
        return
    total = total_of()
    if total < PROGRESS_MIN_BYTES:
        yield None
        return
    with _bar(label, total) as (bar, task):
        yield lambda n: bar.advance(task, n)


@contextmanager
def _bar(label: str, total: int | None) -> Iterator[tuple[Any, Any]]:
    """A transient rich bar on stderr (bytes done / total, speed); rich is imported only when one is shown."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        yield bar, bar.add_task(label, total=total)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"mstore {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    store: Annotated[
        str,
        typer.Option(
            "--store", "-s", envvar="MSTORE_DIR", metavar="DIR", help="Store directory (before or after the command)."
        ),
    ] = DEFAULT_STORE,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only results, no messages.")] = False,
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    """Versioned, deduplicated, verifiable storage for trained ML models."""
    state.store = store
    state.quiet = quiet


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


@app.command(short_help="Create an empty store.")
def init(as_json: JsonOpt = False) -> None:
    """Create an empty store (saving a model also creates one)."""
    repo = Repository.init(state.store)
    if as_json:
        _emit_json({"store": str(repo.root.resolve())})
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
    as_json: JsonOpt = False,
) -> None:
    """Save a model file or directory as a new version. Pickle / joblib files are read (never loaded) for
    the globals they import; unsafe ones are warned about, and recorded."""
    meta: dict[str, Any] = _load_metadata_file(metadata_file) if metadata_file else {}
    if training_file is not None:
        meta["training_file"] = training_file
    for item in set_ or []:
        key, raw = _split_pair(item, "--set")
        try:
            meta[key] = json.loads(raw)
        except ValueError:
            meta[key] = raw
    if metric:
        metrics = meta.setdefault("metrics", {})
        if not isinstance(metrics, dict):
            raise BadInput("metadata field 'metrics' must be an object to add --metric values")
        for item in metric:
            name, raw = _split_pair(item, "--metric")
            metrics[name] = _parse_number(raw)
    if tag is not None:
        check_tag_name(tag)  # before anything is written
    repo = Repository.init(state.store)
    skipped = repo.store_inside(path)
    if skipped is not None:
        _info(f"note: leaving out {os.path.relpath(skipped, path)}: it is the store this version is saved to")
    before = set(repo.ids())
    try:
        with _progress(lambda: _safe_size(path, skipped), "saving") as progress:
            result = repo.save(
                path, meta, message=message, parent=parent, tag=tag, progress=progress, refuse_unsafe=refuse_unsafe
            )
    except KeyboardInterrupt:
        _fail(_interrupted_save(repo, before), 130)
    for line in unsafe_warnings(result):
        typer.echo(line, err=True)
    vid = result["timestamp"]
    if as_json:
        _emit_json(result)
        return
    typer.echo(f"saved version {vid}")
    _info(save_summary(result))


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


_ROLES = {"id": "yellow", "deco": "cyan", "good": "green", "bad": "red", "dim": "bright_black", "head": "bright_black"}


def _style(text: str, role: str) -> str:
    """Colour for a terminal; plain when piped or NO_COLOR is set."""
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty() or role not in _ROLES:
        return text
    return typer.style(text, fg=_ROLES[role])


def _echo_lines(lines: list[str]) -> None:
    for line in lines:
        typer.echo(line)


@app.command(short_help="List versions: metrics, new bytes, tags, message.")
def log(
    n: Annotated[
        Optional[int], typer.Option("-n", "--max-count", metavar="N", help="Show at most N versions.", min=0)
    ] = None,
    oneline: Annotated[bool, typer.Option("--oneline", help="One line per version.")] = False,
    metric: Annotated[
        Optional[list[str]],
        typer.Option(
            "--metric",
            "-M",
            metavar="NAME",
            help="Metric to show (repeatable; dotted names reach nested ones). Default: every top-level metric "
            "with a number in any version shown; other values are shown as they are.",
        ),
    ] = None,
    since: Annotated[
        Optional[str], typer.Option(metavar="WHEN", help="Only versions saved at or after (2026-11-01, 7d).")
    ] = None,
    until: Annotated[
        Optional[str], typer.Option(metavar="WHEN", help="Only versions saved at or before (2026-11-20, 1d).")
    ] = None,
    tag: Annotated[
        Optional[list[str]], typer.Option("--tag", "-t", metavar="NAME", help="Only versions with this tag.")
    ] = None,
    sort: Annotated[
        Optional[str],
        typer.Option(
            metavar="METRIC",
            help="Best first by this metric (accuracy, f1, ... highest first; loss, error, ... lowest first); "
            "versions without it come last.",
        ),
    ] = None,
    asc: Annotated[bool, typer.Option("--asc", help="With --sort: lowest first.")] = False,
    desc: Annotated[bool, typer.Option("--desc", help="With --sort: highest first.")] = False,
    as_json: JsonOpt = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON object per line.")] = False,
    plot: Annotated[
        Optional[str],
        typer.Option(metavar="METRIC", help="Draw this metric across the versions as a chart in the terminal."),
    ] = None,
) -> None:
    """List versions, newest first (or best first with --sort): ID, age, hash, metrics, new bytes, tags, message.

    Metrics shown by default: every top-level metric that holds a number in any version shown (nested ones
    with -M a.b); choose others with -M.
    """
    if plot is not None and (as_json or jsonl or sort is not None):
        raise BadInput("--plot draws versions oldest to newest; it does not combine with --json, --jsonl or --sort")
    if (asc or desc) and sort is None:
        raise BadInput("--asc and --desc order a --sort METRIC; name one")
    if asc and desc:
        raise BadInput("--asc and --desc contradict each other; give one")
    repo = _repo()
    now = datetime.now(timezone.utc)
    entries = repo.log(
        limit=n,
        since=parse_time(since, now) if since else None,
        until=parse_time(until, now) if until else None,
        tags=tag,
        sort=sort,
        descending=True if desc else False if asc else None,
    )
    if metric and entries:
        repo.check_metrics(metric, entries)
    if plot is not None and entries:
        from .ui.termplot import plot as draw

        repo.check_metrics([plot], entries)
        typer.echo(draw(entries, plot))
        return
    if as_json:
        _emit_json(entries)
        return
    if jsonl:
        for entry in entries:
            typer.echo(json.dumps(entry, ensure_ascii=False))
        return
    if not entries:
        _info("no versions match" if (since or until or tag) else "no versions yet")
        return
    ids = repo.ids()
    names = metric or default_metrics(entries)
    if sort is not None and sort not in names:
        names = [sort, *names]
    _echo_lines(log_lines(entries, names, ids[-1] if ids else None, now, oneline=oneline, style=_style))


@app.command(short_help="Show one version: metadata, lineage, files.")
def show(
    ref: Annotated[str, typer.Argument(metavar="REF", help="Version: ID, prefix, tag, latest or latest~N.")] = "latest",
    as_json: JsonOpt = False,
) -> None:
    """Show a version's metadata, what trained it, its files, and how much it shares with its parent."""
    shown = _repo().show(ref)
    if as_json:
        _emit_json(shown)
    else:
        _echo_lines(show_lines(shown, _style))


@app.command(short_help="Compare two versions, down to config keys and tensors.")
def diff(
    old: Annotated[str, typer.Argument(metavar="OLD", help="Older version (default latest~1).")] = "latest~1",
    new: Annotated[str, typer.Argument(metavar="NEW", help="Newer version (default latest).")] = "latest",
    stat: Annotated[bool, typer.Option("--stat", help="A short summary only.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Compare two versions: time, model hash, metadata, metrics, categories, training data and code, files,
    config keys and tensors."""
    result = _repo().compare(old, new)
    if as_json:
        _emit_json(result)
    else:
        _echo_lines(diff_lines(result, stat=stat, style=_style))


@app.command(short_help="Disk usage: what versions cost, what each alone holds.")
def du(
    top: Annotated[
        int, typer.Option("--top", metavar="N", help="How many of the largest versions to list.", min=0)
    ] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Disk usage: logical size of all versions, bytes on disk, savings, what each version alone holds."""
    usage = _repo().du(largest=top)
    if as_json:
        _emit_json(usage)
    else:
        _echo_lines(du_lines(usage))


@app.command(short_help="A local read-only web page: versions, charts, diffs.")
def ui(
    host: Annotated[
        Optional[str],
        typer.Option(metavar="HOST", help="Address to listen on (default 127.0.0.1: this machine only)."),
    ] = None,
    port: Annotated[int, typer.Option(metavar="PORT", help="Port (0: any free one).", min=0, max=65535)] = 8765,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a web browser.")] = False,
) -> None:
    """A read-only web page of the store: versions, metric charts, diffs (needs `pip install 'mstore[ui]'`).

    Prints its URL on stdout and serves until interrupted."""
    from .ui import missing

    absent = missing()
    if absent:
        raise BadInput(f"mstore ui needs {', '.join(absent)}: pip install 'mstore[ui]'")
    from .ui.server import DEFAULT_HOST, is_loopback, serve

    if host is not None and not is_loopback(host):
        _info(f"warning: listening on {host}: anyone who can reach it can read every version in this store")

    def announce(url: str) -> None:
        typer.echo(url)
        sys.stdout.flush()
        _info("serving read-only; press Ctrl+C to stop")

    serve(Repository.open(state.store).root, host or DEFAULT_HOST, port, open_browser=not no_browser, announce=announce)


@app.command(short_help="Export versions as one self-verifying archive file.")
def export(
    refs: Annotated[list[str], typer.Argument(metavar="REF...", help="Versions to export.", show_default=False)],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", metavar="PATH", help="The archive file (FILE.mstore), or with --plain a new directory."
        ),
    ],
    plain: Annotated[
        bool,
        typer.Option("--plain", help="Write DIR/version_<ID>/<model> and metadata.json instead (no mstore needed)."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing archive file.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Export versions, their tags and every object they need as one self-verifying archive file (or, with
    --plain, as plain files)."""
    repo = _repo()
    if plain:
        written = repo.export_plain(refs, output)
        if as_json:
            _emit_json({"path": str(output), "written": [str(p) for p in written]})
        else:
            typer.echo(f"exported {len(written)} version(s) to {output}")
        return
    result = repo.export(refs, output, force=force)
    if as_json:
        _emit_json(result)
    else:
        typer.echo(
            f"exported {len(result['versions'])} version(s), {len(result['tags'])} tag(s), "
            f"{result['objects']} object(s) to {output}"
        )


@app.command("import", short_help="Import an archive file: all verified, all or nothing.")
def import_(
    archive: Annotated[Path, typer.Argument(metavar="FILE", help="An archive written by `mstore export`.")],
    as_json: JsonOpt = False,
) -> None:
    """Import an archive: every object is verified before anything is stored; existing versions are skipped."""
    stats = Repository.init(state.store).import_archive(archive)
    if as_json:
        _emit_json(dataclasses.asdict(stats))
        return
    typer.echo(
        f"imported {len(stats.versions_imported)} version(s), skipped {len(stats.versions_skipped)} "
        f"already here, {stats.objects_stored} new object(s)"
        + (f", tags set: {', '.join(stats.tags_set)}" if stats.tags_set else "")
    )
    for name in stats.tag_conflicts:
        typer.echo(f"warning: tag {name!r} already names another version here; left as it is", err=True)


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
    repo = _repo()
    vid = repo.fetch(remote, ref) if remote else repo.resolve(ref)
    manifest = repo.manifest(vid)
    if output is None:
        output = Path(".") if manifest.kind == KIND_FILE else Path(saved_name(repo.get(vid), vid))
    with _progress(lambda: manifest.size, "checkout") as progress:
        written = repo.checkout(vid, output, force=force, progress=progress)
    if as_json:
        _emit_json({"version": vid, "path": str(written), "size": manifest.size})
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
    repo = _repo()
    if name is None:
        tags = repo.tags()
        if as_json:
            _emit_json(tags)
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
        _emit_json(result)
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
        vid, tags = _repo().remove_remote(remote, ref, force=force)
        if as_json:
            _emit_json({"removed": vid, "remote": remote, "tags_removed": tags})
            return
        dropped = f" and its tag(s) {', '.join(tags)}" if tags else ""
        typer.echo(f"removed version {vid}{dropped} from {remote}")
        _info(f"run `mstore gc --remote {remote}` to free the space only it used there")
        return
    vid = _repo().remove(ref, force=force)
    if as_json:
        _emit_json({"removed": vid})
    else:
        typer.echo(f"removed version {vid}")
        _info("run `mstore gc` to free the space only it used")


@app.command(short_help="Verify the store (or a remote) bit for bit.")
def fsck(
    quick: Annotated[
        bool, typer.Option("--quick", help="Check structure and sizes only; do not re-hash object data.")
    ] = False,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Move corrupt objects to quarantine/ (nothing is patched). With --remote: upload this store's "
            "good copies of the remote's missing or corrupt objects.",
        ),
    ] = False,
    remote: Annotated[
        Optional[str], typer.Option("--remote", metavar="NAME", help="Check this remote instead of the local store.")
    ] = None,
    verify_data: Annotated[
        bool, typer.Option("--verify-data", help="With --remote: also download and re-hash every object.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Verify the store: re-hash every object, check manifests, metadata and refs.

    Exit 0 when every version can be restored bit-exact (information such as unreachable objects may be
    listed), 1 when errors were found. With --remote, checks the remote's structure (versions, refs,
    manifests, presence of every object), and with --verify-data its bytes too.
    """
    repo = Repository.open(state.store, strict=remote is not None or repair)  # fsck reports what strict refuses
    if remote is not None:
        _fsck_remote(repo, remote, verify_data, repair, as_json)
        return

    def total() -> int:
        return 0 if quick else sum(repo.store.objects.size(o) for o in repo.store.objects)

    with _progress(total, "verifying") as progress:
        report = repo.fsck(verify_data=not quick, progress=progress)
    quarantined = repo.quarantine(report) if repair else []
    if as_json:
        _emit_json(report.to_json() | {"quarantined": quarantined})
    else:
        for p in report.problems:
            if p.code == "unreachable":  # summarised in one line below; --json lists each
                continue
            label = _style(p.severity, "bad" if p.severity == "error" else "deco")
            affected = f" (affects {', '.join(p.versions)})" if p.versions else ""
            typer.echo(f"{label}: {safe(p.message)}{affected}")
        if report.unused_mtimes:
            typer.echo(f"{_style('info', 'deco')}: {_unused_line(report)}")
        checked = f", {format_bytes(report.bytes_checked)} re-hashed" if not quick else ""
        verdict = "ok" if report.ok else f"{len(report.errors)} error(s)"
        typer.echo(f"{report.versions} versions, {report.objects} objects{checked}: {verdict}")
        if quarantined:
            typer.echo(f"moved {len(quarantined)} corrupt object(s) to {repo.root / 'quarantine'}")
        if report.damaged_versions:
            typer.echo(
                f"damaged versions: {', '.join(report.damaged_versions)} "
                "(save the same model files again to heal them, or `mstore rm` them)"
            )
    if not report.ok:
        raise typer.Exit(EXIT_PROBLEM)


def _unused_line(report: FsckReport) -> str:
    """`3 objects (1.2 MiB) are not used by any version; `mstore gc` frees them now` (or when, given the grace)."""
    ready, total, wait = unused_summary(report, time.time(), DEFAULT_GRACE_SECONDS)
    grace = format_duration(DEFAULT_GRACE_SECONDS)
    text = f"{total} object(s) ({format_bytes(report.unused_bytes)}) are not used by any version; "
    if wait is None:
        return text + "`mstore gc` frees them now"
    # young unused objects may belong to a save still running, so the grace period is not talked away
    later = f"in {format_duration(max(wait, 1))} (grace period {grace})"
    return text + (f"`mstore gc` frees {ready} now, the rest {later}" if ready else f"`mstore gc` frees them {later}")


def _fsck_remote(repo: Repository, remote: str, verify_data: bool, repair: bool, as_json: bool) -> None:
    with _transfer_progress("verifying") as progress:
        report = repo.fsck_remote(
            remote, verify_data=verify_data, progress=progress.advance if progress is not None else None
        )
    repaired, unrepairable = repo.repair_remote(remote, report) if repair else ([], [])
    if as_json:
        _emit_json(report.to_json() | {"repaired": repaired, "not_repairable": unrepairable})
    else:
        for p in report.problems:
            label = _style(p.severity, "bad" if p.severity == "error" else "deco")
            typer.echo(f"{label}: {safe(p.message)}")
        checked = f", {report.objects_verified} re-hashed" if verify_data else " (structure; --verify-data reads all)"
        errors = sum(p.severity == "error" for p in report.problems)
        verdict = "ok" if report.ok else f"{errors} error(s)"
        typer.echo(f"{report.url}: {report.versions} versions, {report.objects} objects{checked}: {verdict}")
        if repaired:
            typer.echo(f"uploaded good copies of {len(repaired)} object(s) from this store; run fsck again to confirm")
        if unrepairable:
            typer.echo(f"{len(unrepairable)} object(s) are not in this store either: {', '.join(unrepairable)}")
    if not report.ok:
        raise typer.Exit(EXIT_PROBLEM)


@app.command(short_help="Delete objects that no version uses.")
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Show what would be freed; delete nothing.")] = False,
    grace: Annotated[
        str, typer.Option(metavar="DURATION", help="Keep unreferenced objects younger than this (e.g. 0, 30m, 2h, 7d).")
    ] = format_duration(DEFAULT_GRACE_SECONDS),
    remote: Annotated[
        Optional[str],
        typer.Option("--remote", metavar="NAME", help="Collect on this remote (only ever when asked by name)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete objects that no version uses (and leftovers of interrupted commands)."""
    grace_seconds = parse_duration(grace)
    if grace_seconds == 0:
        _info("warning: --grace 0 deletes unreferenced objects however new they are")
    if remote is not None:
        remote_plan = _repo().gc_remote(remote, dry_run=dry_run, grace_seconds=grace_seconds)
        if as_json:  # the same keys as a local gc, plus the remote's name and the ids it freed
            doc = _gc_json(dry_run, len(remote_plan.garbage), remote_plan.garbage_bytes, 0, remote_plan.kept_young)
            _emit_json(doc | {"remote": remote, "deleted": remote_plan.deleted, "object_ids": remote_plan.garbage})
            return
        verb = "would free" if dry_run else "freed"
        count = len(remote_plan.garbage)
        typer.echo(f"{remote}: {verb} {format_bytes(remote_plan.garbage_bytes)} in {count} objects")
        if remote_plan.kept_young:
            _info(f"kept {remote_plan.kept_young} unreferenced objects younger than {grace} (see --grace)")
        return
    plan = _repo().gc(dry_run=dry_run, grace_seconds=grace_seconds)
    if as_json:
        doc = _gc_json(dry_run, len(plan.objects), plan.bytes, len(plan.leftovers), plan.kept_young)
        _emit_json(doc | {"remote": None, "deleted": not dry_run, "object_ids": list(plan.objects)})
        return
    verb = "would free" if dry_run else "freed"
    typer.echo(f"{verb} {format_bytes(plan.bytes)} in {len(plan.objects)} objects, {len(plan.leftovers)} leftovers")
    if plan.kept_young:
        _info(f"kept {plan.kept_young} unreferenced objects younger than {grace} (see --grace)")


def _gc_json(dry_run: bool, objects: int, freed: int, leftovers: int, kept_young: int) -> dict[str, Any]:
    """One `gc --json` shape for a local store and a remote."""
    return {"dry_run": dry_run, "objects": objects, "bytes": freed, "leftovers": leftovers, "kept_young": kept_young}


@app.command(short_help="Remove versions outside retention rules.")
def prune(
    keep_last: Annotated[Optional[int], typer.Option(metavar="N", help="Keep the newest N versions.", min=0)] = None,
    keep_within: Annotated[
        Optional[str], typer.Option(metavar="DURATION", help="Keep versions younger than this (e.g. 30d, 12h).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Show the plan; remove nothing.")] = False,
    grace: Annotated[
        str, typer.Option(metavar="DURATION", help="gc grace period for the freed objects.")
    ] = format_duration(DEFAULT_GRACE_SECONDS),
    remote: Annotated[
        Optional[str],
        typer.Option(
            "--remote",
            metavar="NAME",
            help="Prune this remote instead (its tags and latest are kept); free the space with `gc --remote`.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove versions outside the retention rules, then free their space. Tagged versions and the
    newest version are always kept."""
    within = parse_duration(keep_within) if keep_within is not None else None
    freed = None
    if remote is not None:
        plan = _repo().prune_remote(remote, keep_last=keep_last, keep_within=within, dry_run=dry_run)
    else:
        plan, freed = _repo().prune(
            keep_last=keep_last, keep_within=within, dry_run=dry_run, grace_seconds=parse_duration(grace)
        )
    doc = {
        "dry_run": dry_run,
        "keep": list(plan.keep),
        "remove": list(plan.remove),
        "freed_bytes": freed.bytes if freed else 0,
        "freed_objects": len(freed.objects) if freed else 0,
    }
    if as_json:
        _emit_json(doc | ({"remote": remote} if remote is not None else {}))
        return
    verb = "would remove" if dry_run else "removed"
    for vid in plan.remove:
        typer.echo(f"{verb} {vid}")
    for vid in plan.keep:
        _info(f"keep {vid} ({', '.join(plan.reasons[vid])})")
    summary = f"{verb} {len(plan.remove)} version(s), kept {len(plan.keep)}"
    if freed is not None:
        summary += f", freed {format_bytes(freed.bytes)}"
    if remote is not None:
        summary += f" on {remote}"
    typer.echo(summary)
    if remote is not None and plan.remove and not dry_run:
        _info(f"run `mstore gc --remote {remote}` to free the space only they used there")


EndpointOpt = Annotated[
    Optional[str],
    typer.Option(
        "--endpoint-url",
        metavar="URL",
        help="S3 endpoint (MinIO, R2, Ceph…); default: AWS_ENDPOINT_URL or AWS itself.",
    ),
]


remote_app = typer.Typer(
    cls=_Group,
    help="Manage remotes: S3-compatible buckets (s3://BUCKET/PREFIX) or directories; alone, list them.",
    short_help="List, add or remove remotes (S3 buckets, directories).",
)
app.add_typer(remote_app, name="remote")


@remote_app.callback(invoke_without_command=True)
def remote_main(ctx: typer.Context) -> None:
    """Manage remotes: S3-compatible buckets (s3://BUCKET/PREFIX) or directories. Alone, lists them."""
    if ctx.invoked_subcommand is None:  # `mstore remote` lists, as `mstore tag` lists tags
        remote_list(as_json=False)


@remote_app.command("add")
def remote_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Remote name, e.g. origin.")],
    url: Annotated[
        str, typer.Argument(metavar="URL", help="s3://BUCKET/PREFIX, or a directory (local or NFS path, file://).")
    ],
    endpoint_url: EndpointOpt = None,
) -> None:
    """Register a remote. Credentials come from the usual AWS settings (environment, ~/.aws, AWS_PROFILE)."""
    repo = _repo()
    repo.remote_add(name, url, endpoint_url=endpoint_url)
    typer.echo(f"added remote {name} -> {repo.remotes()[name]}")


@remote_app.command("list")
def remote_list(as_json: JsonOpt = False) -> None:
    """List remotes."""
    repo = _repo()
    if as_json:
        _emit_json(repo.remotes())
    else:
        settings = repo.remote_settings()
        if not settings:
            _info("no remotes (add one with `mstore remote add NAME URL`)")
        for name, info in settings.items():
            endpoint = f"  (endpoint {info['endpoint_url']})" if info.get("endpoint_url") else ""
            typer.echo(f"{name}  {info['url']}{endpoint}")


@remote_app.command("remove")
def remote_remove(name: Annotated[str, typer.Argument(metavar="NAME", help="Remote to forget.")]) -> None:
    """Forget a remote (its data is left alone)."""
    _repo().remote_remove(name)
    typer.echo(f"removed remote {name}")


def _transfer_summary(verb: str, stats: TransferStats) -> str:
    rate = ""
    if stats.seconds > 0 and stats.bytes_sent:
        rate = f", {format_bytes(int(stats.bytes_sent / stats.seconds))}/s"
    moved = "uploaded" if verb == "pushed" else "downloaded"
    text = (
        f"{verb} {stats.versions_sent} version(s) ({stats.versions_skipped} already there): "
        f"{stats.objects_sent} object(s) / {format_bytes(stats.bytes_sent)} {moved}, "
        f"{stats.objects_skipped} already there, in {stats.seconds:.1f} s{rate}"
    )
    if stats.tag_conflicts:
        text += f"; tags left as they were on the other side: {', '.join(stats.tag_conflicts)}"
    return text


def _report_transfer(verb: str, stats: TransferStats, as_json: bool) -> None:
    if as_json:
        _emit_json(asdict(stats))
    else:
        typer.echo(_transfer_summary(verb, stats))
    for vid in stats.refused:
        typer.echo(
            f"mstore: error: refused version {vid}: its ID lies in the future (a broken clock or a forged record "
            "on the remote)",
            err=True,
        )
    if stats.refused:
        raise typer.Exit(EXIT_PROBLEM)
    if as_json:
        return
    if stats.latest_newer_than_sent:  # an older version pushed (a tag, a late push): nobody's work was lost
        _info(
            f"note: the remote's latest stays {stats.latest}, newer than the version(s) sent; nothing was overwritten"
        )


class _BarProgress:
    """TransferProgress on a rich bar: the total is known only once the transfer has planned its work."""

    def __init__(self, bar: Any, task: Any) -> None:
        self.bar, self.task = bar, task

    def start(self, total_bytes: int) -> None:
        self.bar.update(self.task, total=total_bytes, completed=0)

    def advance(self, n: int) -> None:
        self.bar.advance(self.task, n)


@contextmanager
def _transfer_progress(label: str) -> Iterator[_BarProgress | None]:
    """A progress bar for network work on a terminal (its size is unknown until planned); none when piped."""
    if state.quiet or not sys.stderr.isatty():
        yield None
        return
    with _bar(label, None) as (bar, task):
        yield _BarProgress(bar, task)


RemoteRefsArg = Annotated[
    Optional[list[str]],
    typer.Argument(
        metavar="NAME|REF",
        help="A remote's name first (optional with one remote configured; else origin), then the versions "
        "(default: all).",
        show_default=False,
    ),
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every version (the default when no REF is given).")]


@app.command(short_help="Send versions and tags to a remote.")
def push(
    args: RemoteRefsArg = None,
    all_: AllOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Send versions and their tags to a remote; only objects it lacks are uploaded.

    Objects go first, then version records, then refs (by compare-and-swap), so nobody reading the
    remote ever sees a version with missing objects; an interrupted push resumes when run again.
    """
    repo = _repo()
    remote, refs = repo.remote_and_refs(args or [])
    with _transfer_progress("pushing") as progress:
        stats = repo.push(remote, None if all_ else refs, progress=progress)
    _report_transfer("pushed", stats, as_json)


@app.command(short_help="Fetch versions and tags from a remote.")
def pull(
    args: RemoteRefsArg = None,
    all_: AllOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Fetch versions and their tags from a remote, verifying every object before it is stored."""
    repo = _repo()
    remote, refs = repo.remote_and_refs(args or [])
    with _transfer_progress("pulling") as progress:
        stats = repo.pull(remote, None if all_ else refs, progress=progress)
    _report_transfer("pulled", stats, as_json)


@app.command(short_help="Copy a whole store into a new directory.")
def clone(
    url: Annotated[str, typer.Argument(metavar="URL", help="The store to copy: s3://BUCKET/PREFIX or a directory.")],
    dest: Annotated[Path, typer.Argument(metavar="DIR", help="New store directory.")],
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy a whole store into a new directory; the source becomes its remote `origin`."""
    with _transfer_progress("cloning") as progress:
        stats = Repository.clone(url, dest, endpoint_url=endpoint_url, progress=progress)[1]
    _report_transfer(f"cloned into {dest}:", stats, as_json)


@app.command(short_help="Print the cached, verified path of a version's model.")
def path(
    ref: Annotated[str, typer.Argument(metavar="REF", help="Version to locate.")] = "latest",
    remote: Annotated[
        Optional[str],
        typer.Option(
            "--remote",
            metavar="NAME|URL",
            help="Resolve REF on this remote (a remote of the store, or s3://BUCKET/PREFIX or a directory, "
            "which needs no local store) and fetch only the chunks the cache lacks.",
        ),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Answer from the cache only, no network (as MSTORE_OFFLINE=1).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the path of a version's model in the read-only cache: python serve.py --model "$(mstore path prod)".

    The model is written into the cache once, verified bit-exact, and made read-only; later calls check a
    small stamp instead of reading it. The cache is $MSTORE_CACHE, else $XDG_CACHE_HOME/mstore, else
    ~/.cache/mstore. MSTORE_OFFLINE=1 answers only refs resolved before; MSTORE_OFFLINE=auto does so, with a
    warning, when the remote cannot be reached.
    """
    found = locate(ref, store=state.store, remote=remote, offline=True if offline else None)
    if as_json:
        _emit_json(found.to_json())
    else:
        typer.echo(str(found.path))
        if found.bytes_fetched:
            _info(f"fetched {found.objects_fetched} object(s) / {format_bytes(found.bytes_fetched)} into the cache")


cache_app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    help="The read-only model cache behind `mstore path` ($MSTORE_CACHE, else $XDG_CACHE_HOME/mstore, "
    "else ~/.cache/mstore).",
)
app.add_typer(cache_app, name="cache", short_help="The read-only model cache: ls, du, prune, rm, verify.")


def _cache(create: bool = False) -> Cache:
    return Cache.open(None, create=create)


@cache_app.command("ls", short_help="List cached models, sizes, last use, refs.")
def cache_ls(as_json: JsonOpt = False) -> None:
    """List cached models: size, last use, and the refs that resolved to each."""
    entries = _cache().entries()
    if as_json:
        _emit_json([e.to_json() for e in entries])
        return
    if not entries:
        _info("the cache is empty")
    now = time.time()
    for e in sorted(entries, key=lambda e: e.last_used, reverse=True):
        refs = ", ".join(sorted({f"{r['ref']}={r['version']}" for r in e.refs})) or "-"
        state_ = "" if e.intact else "  (changed on disk: rebuilt on next use)"
        typer.echo(
            f"{e.key[:12]}  {format_bytes(e.size):>10}  used {format_duration(now - e.last_used)} ago  "
            f"{safe(refs)}  {e.path or ''}{state_}"
        )


@cache_app.command("du", short_help="Space the model cache takes.")
def cache_du(as_json: JsonOpt = False) -> None:
    """How much space the cache takes: models and fetched objects."""
    doc = _cache().du()
    if as_json:
        _emit_json(doc)
        return
    typer.echo(
        f"{format_bytes(doc['total_bytes'])} in {doc['cache']}: {doc['entries']} model(s) "
        f"{format_bytes(doc['models_bytes'])}, {doc['objects']} object(s) {format_bytes(doc['objects_bytes'])}"
    )


@cache_app.command("prune", short_help="Remove least recently used cached models.")
def cache_prune(
    max_size: Annotated[
        Optional[str], typer.Option("--max-size", metavar="SIZE", help="Shrink the cache to this size (e.g. 20G).")
    ] = None,
    older_than: Annotated[
        Optional[str], typer.Option("--older-than", metavar="DURATION", help="Remove models not used for this long.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Show the plan; remove nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove least recently used models (and the objects only they need). Models in use by a running
    process are skipped."""
    if max_size is None and older_than is None:
        raise BadInput("cache prune needs --max-size SIZE and/or --older-than DURATION")
    limit = human_size(max_size) if max_size is not None else None
    age = parse_duration(older_than) if older_than is not None else None
    plan = _cache().prune(max_size=limit, older_than=age, dry_run=dry_run)
    if as_json:
        _emit_json({"dry_run": dry_run, **asdict(plan)})
        return
    verb = "would remove" if dry_run else "removed"
    for key in plan.removed:
        typer.echo(f"{verb} {key}")
    for key in plan.in_use:
        _info(f"kept {key[:12]}: in use by a running process")
    typer.echo(
        f"{verb} {len(plan.removed)} model(s) and {plan.objects_removed} object(s), "
        f"{format_bytes(plan.freed_bytes)}; the cache {'would take' if dry_run else 'takes'} "
        f"{format_bytes(plan.total_after)}"
    )
    if limit is not None and plan.total_after > limit:
        _info(f"note: still above {max_size}: {len(plan.in_use)} model(s) in use were kept")


@cache_app.command("rm", short_help="Remove cached models (a ref, or --all).")
def cache_rm(
    ref: Annotated[
        Optional[str],
        typer.Argument(metavar="REF", help="A ref or version ID resolved before, or an entry key (prefix)."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every cached model.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove cached models (the next `mstore path` writes them again)."""
    if (ref is None) == (not all_):
        raise BadInput("give REF or --all")
    cache = _cache()
    entries = cache.entries()
    if all_:
        keys = [e.key for e in entries]
    else:
        assert ref is not None
        keys = [
            e.key
            for e in entries
            if (len(ref) >= 6 and e.key.startswith(ref)) or any(ref in (r["ref"], r["version"]) for r in e.refs)
        ]
        if not keys:
            raise VersionNotFound(f"nothing in the cache matches {ref!r} (see `mstore cache ls`)")
    removed = [k for k in keys if cache.remove(k)]
    in_use = [k for k in keys if k not in removed]
    cache.clear_tmp()
    if as_json:
        _emit_json({"removed": removed, "in_use": in_use})
    else:
        for key in removed:
            typer.echo(f"removed {key}")
        for key in in_use:
            _info(f"kept {key[:12]}: in use by a running process")
    if in_use and not removed:
        raise typer.Exit(EXIT_PROBLEM)


@cache_app.command("verify", short_help="Re-hash every cached model and object.")
def cache_verify(as_json: JsonOpt = False) -> None:
    """Re-hash every cached model and object; exit 1 on a mismatch (damaged models are rebuilt on next use)."""
    cache = _cache()
    problems = cache.verify()
    if as_json:
        _emit_json({"ok": not problems, "problems": [{"key": k, "problem": p} for k, p in problems]})
    else:
        for key, problem in problems:
            typer.echo(f"{key}: {safe(problem)}")
        typer.echo("cache ok" if not problems else f"{len(problems)} problem(s) found")
    if problems:
        raise typer.Exit(EXIT_PROBLEM)


def run() -> None:
    """Console-script entry point."""
    app(prog_name="mstore")


if __name__ == "__main__":
    run()
