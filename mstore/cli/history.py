"""Commands that look at history: log, show, diff, du and the local web page (ui)."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..diff.ranking import default_metrics, did_you_mean
from ..errors import BadInput
from ..humanize import parse_time
from ..repository import Repository
from . import pager as _pager
from .pager import NoPagerOpt
from .render import diff_lines, du_lines, format_line, format_names, format_values, log_lines, show_lines, tensor_lines
from .shared import BrowseOpt, JsonOpt, app, echo_lines, emit_json, gc_when, note, open_repo, state, styled


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
    where: Annotated[
        Optional[str],
        typer.Option(
            metavar="EXPR",
            help="Only versions for which EXPR holds, over metrics, params and fields: "
            '"accuracy>0.95 and C<1", "not (kernel=\'rbf\') or loss<=0.2".',
        ),
    ] = None,
    format_: Annotated[
        Optional[str],
        typer.Option(
            "--format",
            metavar="TEMPLATE",
            help="One line per version from TEMPLATE, its names in braces replaced: id, hash, date, age, tags, "
            "message, parent, any metric or param (accuracy, metrics.accuracy, params.C); - where a version has none.",
        ),
    ] = None,
    remote: BrowseOpt = None,
    no_pager: NoPagerOpt = False,
) -> None:
    """List versions, newest first (or best first with --sort): ID, age, hash, metrics, new bytes, tags, message.

    Metrics shown by default: every top-level metric that holds a number in any version shown (nested ones
    with -M a.b); choose others with -M.
    """
    if format_ is not None and (as_json or jsonl or oneline or plot is not None):
        raise BadInput("--format prints its own lines; it does not combine with --json, --jsonl, --oneline or --plot")
    if plot is not None and (as_json or jsonl or sort is not None):
        raise BadInput("--plot draws versions oldest to newest; it does not combine with --json, --jsonl or --sort")
    if (asc or desc) and sort is None:
        raise BadInput("--asc and --desc order a --sort METRIC; name one")
    if asc and desc:
        raise BadInput("--asc and --desc contradict each other; give one")
    repo = open_repo(remote)
    now = datetime.now(timezone.utc)
    entries = repo.log(
        limit=n,
        since=parse_time(since, now) if since else None,
        until=parse_time(until, now) if until else None,
        tags=tag,
        sort=sort,
        descending=True if desc else False if asc else None,
        where=where,
    )
    if metric and entries:
        repo.check_metrics(metric, entries)
    if plot is not None and entries:
        from ..ui.termplot import plot as draw

        repo.check_metrics([plot], entries)
        typer.echo(draw(entries, plot))
        return
    if as_json:
        emit_json(entries)
        return
    if jsonl:
        for entry in entries:
            typer.echo(json.dumps(entry, ensure_ascii=False))
        return
    if not entries:
        note("no versions match" if (since or until or tag or where) else "no versions yet")
        return
    if format_ is not None:
        _check_format(format_, entries, now)
        _pager.show([format_line(format_, entry, now) for entry in entries], pager=not no_pager)
        return
    ids = repo.ids()
    names = metric or default_metrics(entries)
    if sort is not None and sort not in names:
        names = [sort, *names]
    lines = log_lines(entries, names, ids[-1] if ids else None, now, oneline=oneline, style=styled)
    _pager.show(lines, pager=not no_pager)


def _check_format(template: str, entries: list[dict[str, Any]], now: datetime) -> None:
    """A `{name}` no version listed has is a typo: refuse it rather than print a column of `-`."""
    known: set[str] = set()
    for entry in entries:
        known.update(format_values(entry, now))
    for name in format_names(template):
        if name not in known:
            raise BadInput(f"--format: no version listed has {{{name}}}{did_you_mean(name, known)}")


@app.command(short_help="Show one version: metadata, lineage, files, tensors.")
def show(
    ref: Annotated[str, typer.Argument(metavar="REF", help="Version: ID, prefix, tag, latest or latest~N.")] = "latest",
    tensors: Annotated[
        bool,
        typer.Option("--tensors", help="List every tensor (name, dtype, shape, size) from the file headers alone."),
    ] = False,
    remote: Annotated[
        Optional[str],
        typer.Option(
            "--remote",
            metavar="NAME|URL",
            help="Read the version on this remote, without cloning it (no local store needed): only metadata is "
            "fetched, and with --tensors the file headers, never weight bytes.",
        ),
    ] = None,
    no_pager: NoPagerOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a version's metadata, what trained it, its files, and how much it shares with its parent; with
    --tensors, the tensors of its safetensors, npz, ONNX and GGUF files (read lazily: mstore.open_tensors)."""
    if tensors:
        from ..tensorfile import list_tensors

        listed = list_tensors(ref, store=state.store, remote=remote)
        if as_json:
            emit_json(listed)
        else:
            _pager.show(tensor_lines(listed), pager=not no_pager)
        return
    shown = open_repo(remote).show(ref)
    if as_json:
        emit_json(shown)
    else:
        _pager.show(show_lines(shown, styled), pager=not no_pager)


@app.command(short_help="Compare two versions, down to config keys and tensors.")
def diff(
    old: Annotated[
        Optional[str],
        typer.Argument(metavar="OLD", help="Older version; given alone, the version whose changes to show."),
    ] = None,
    new: Annotated[Optional[str], typer.Argument(metavar="NEW", help="Newer version.")] = None,
    stat: Annotated[bool, typer.Option("--stat", help="A short summary only.")] = False,
    full: Annotated[
        bool, typer.Option("--full", help="Every tensor name, not long runs folded by prefix with counts.")
    ] = False,
    remote: BrowseOpt = None,
    no_pager: NoPagerOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Compare two versions: time, model hash, metadata, metrics, categories, training data and code, files,
    config keys and tensors. With one version, what changed in it (from its parent, as `git show`); with
    none, latest~1 to latest. With --remote, two versions of a remote (fetching only their manifests and the
    tensor headers the comparison reads)."""
    repo = open_repo(remote)
    result = repo.compare("latest~1", "latest") if old is None else repo.compare(old, new)
    if as_json:
        emit_json(result)
    else:
        _pager.show(diff_lines(result, stat=stat, style=styled, full=full), pager=not no_pager)


@app.command(short_help="Disk usage: what versions cost, what each alone holds.")
def du(
    top: Annotated[
        int, typer.Option("--top", metavar="N", help="How many of the largest versions to list.", min=0)
    ] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Disk usage: logical size of all versions, bytes on disk, savings, what each version alone holds."""
    repo = open_repo()
    usage = repo.du(largest=top)
    if as_json:
        emit_json(usage)
    else:
        echo_lines(du_lines(usage, gc_when(repo) if usage["unreachable_bytes"] else None))


UI_REFRESH_SECONDS = 10.0  # `ui --remote`: a request refreshes the mirror when it is this old


@app.command(short_help="A local read-only web page: versions, charts, diffs.")
def ui(
    host: Annotated[
        Optional[str],
        typer.Option(metavar="HOST", help="Address to listen on (default 127.0.0.1: this machine only)."),
    ] = None,
    port: Annotated[int, typer.Option(metavar="PORT", help="Port (0: any free one).", min=0, max=65535)] = 8765,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a web browser.")] = False,
    remote: Annotated[
        Optional[str],
        typer.Option(
            "--remote",
            metavar="NAME|URL",
            help="Serve this remote read-only, without cloning it: its metadata is mirrored into the cache at "
            "start; model bytes a page needs (tensor headers) are fetched when it is opened.",
        ),
    ] = None,
) -> None:
    """A read-only web page of the store: versions, metric charts, diffs (needs `pip install 'mstore[ui]'`).

    Prints its URL on stdout and serves until interrupted. With --remote, a remote's versions, no clone needed."""
    from ..ui import missing

    absent = missing()
    if absent:
        raise BadInput(
            f"mstore ui needs {', '.join(absent)}: pip install 'mstore[ui]' (in a clone: pip install -e '.[ui]')"
        )
    from ..ui.server import DEFAULT_HOST, is_loopback, serve

    if host is not None and not is_loopback(host):
        note(f"warning: listening on {host}: anyone who can reach it can read every version in this store")

    def announce(url: str) -> None:
        typer.echo(url)
        sys.stdout.flush()
        note("serving read-only; press Ctrl+C to stop")

    served: Repository | Path
    if remote is not None:
        from ..modelpath import offline_mode

        served = Repository.browse(
            remote, store=state.store, refresh_seconds=UI_REFRESH_SECONDS, offline=offline_mode(None)
        )
    else:
        served = Repository.open(state.store).root
    serve(served, host or DEFAULT_HOST, port, open_browser=not no_browser, announce=announce)
