"""Commands that move versions between stores: remote, push, pull, clone, export, import."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..errors import EXIT_PROBLEM
from ..humanize import format_bytes
from ..repository import Repository

if TYPE_CHECKING:  # remote support loads only when a remote command runs
    from ..remote.transfer import TransferStats

from .shared import (
    AllowUnsafeOpt,
    CommandGroup,
    EndpointOpt,
    JsonOpt,
    TrustedKeysOpt,
    app,
    emit_json,
    note,
    open_repo,
    state,
    transfer_progress,
)

remote_app = typer.Typer(
    cls=CommandGroup,
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
    repo = open_repo()
    repo.remote_add(name, url, endpoint_url=endpoint_url)
    typer.echo(f"added remote {name} -> {repo.remotes()[name]}")


@remote_app.command("list")
def remote_list(as_json: JsonOpt = False) -> None:
    """List remotes."""
    repo = open_repo()
    if as_json:
        emit_json(repo.remotes())
    else:
        settings = repo.remote_settings()
        if not settings:
            note("no remotes (add one with `mstore remote add NAME URL`)")
        for name, info in settings.items():
            endpoint = f"  (endpoint {info['endpoint_url']})" if info.get("endpoint_url") else ""
            typer.echo(f"{name}  {info['url']}{endpoint}")


@remote_app.command("remove")
def remote_remove(name: Annotated[str, typer.Argument(metavar="NAME", help="Remote to forget.")]) -> None:
    """Forget a remote (its data is left alone)."""
    open_repo().remote_remove(name)
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
    if stats.tags_moved:
        text += f"; tags set or moved: {', '.join(stats.tags_moved)}"
    return text


def _report_transfer(verb: str, stats: TransferStats, as_json: bool) -> None:
    if as_json:
        emit_json(asdict(stats))
    else:
        typer.echo(_transfer_summary(verb, stats))
    for vid in stats.refused:
        typer.echo(
            f"mstore: error: refused version {vid}: its ID lies in the future (a broken clock or a forged record "
            "on the remote)",
            err=True,
        )
    for line in stats.conflict_messages:
        typer.echo(f"mstore: error: {line}", err=True)
    if stats.refused or stats.tag_conflicts:
        raise typer.Exit(EXIT_PROBLEM)
    if as_json:
        return
    if stats.latest_newer_than_sent:  # an older version pushed (a tag, a late push): nobody's work was lost
        note(f"note: the remote's latest stays {stats.latest}, newer than the version(s) sent; nothing was overwritten")


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
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Move remote tags even if someone else moved them since.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Send versions and their tags to a remote; only objects it lacks are uploaded.

    Objects go first, then version records, then refs (by compare-and-swap), so nobody reading the
    remote ever sees a version with missing objects; an interrupted push resumes when run again.
    A tag moved here moves there too, unless someone moved it there since this store last synced:
    then push exits 1 naming it (pull to take theirs, or --force to overwrite it).
    """
    repo = open_repo()
    remote, refs = repo.remote_and_refs(args or [])
    with transfer_progress("pushing") as progress:
        stats = repo.push(remote, None if all_ else refs, progress=progress, force=force)
    _report_transfer("pushed", stats, as_json)


@app.command(short_help="Fetch versions and tags from a remote.")
def pull(
    args: RemoteRefsArg = None,
    all_: AllOpt = False,
    as_json: JsonOpt = False,
    trusted_keys: TrustedKeysOpt = None,
) -> None:
    """Fetch versions and their tags from a remote, verifying every object before it is stored.

    A tag moved there moves here too, unless it was moved here since the last sync: then pull exits 1
    naming it and keeps this store's. With --trusted-keys (or MSTORE_TRUSTED_KEYS), a version none of
    those keys signed is not pulled (checked before its chunks are fetched): pull exits 1 naming it.
    """
    repo = open_repo()
    remote, refs = repo.remote_and_refs(args or [])
    with transfer_progress("pulling") as progress:
        stats = repo.pull(remote, None if all_ else refs, progress=progress, trusted_keys=trusted_keys)
    _report_transfer("pulled", stats, as_json)


@app.command(short_help="Copy a whole store into a new directory.")
def clone(
    url: Annotated[str, typer.Argument(metavar="URL", help="The store to copy: s3://BUCKET/PREFIX or a directory.")],
    dest: Annotated[Path, typer.Argument(metavar="DIR", help="New store directory.")],
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy a whole store into a new directory; the source becomes its remote `origin`."""
    with transfer_progress("cloning") as progress:
        stats = Repository.clone(url, dest, endpoint_url=endpoint_url, progress=progress)[1]
    _report_transfer(f"cloned into {dest}:", stats, as_json)


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
    allow_unsafe: AllowUnsafeOpt = False,
) -> None:
    """Export versions, their tags and every object they need as one self-verifying archive file (or, with
    --plain, as plain files).

    Plain files leave mstore's pickle verdict behind: --plain refuses a version whose pickles are unsafe or
    unknown, writing nothing, unless --allow-unsafe (an archive keeps the bytes, and every importer
    recomputes the verdict from them)."""
    repo = open_repo()
    if plain:
        written = repo.export_plain(refs, output, allow_unsafe=True if allow_unsafe else None)
        if as_json:
            emit_json({"path": str(output), "written": [str(p) for p in written]})
        else:
            typer.echo(f"exported {len(written)} version(s) to {output}")
        return
    result = repo.export(refs, output, force=force)
    if as_json:
        emit_json(result)
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
    stats = Repository.import_into(state.store, archive)
    if as_json:
        emit_json(dataclasses.asdict(stats))
        return
    typer.echo(
        f"imported {len(stats.versions_imported)} version(s), skipped {len(stats.versions_skipped)} "
        f"already here, {stats.objects_stored} new object(s)"
        + (f", tags set: {', '.join(stats.tags_set)}" if stats.tags_set else "")
    )
    for name in stats.tag_conflicts:
        typer.echo(f"warning: tag {name!r} already names another version here; left as it is", err=True)
