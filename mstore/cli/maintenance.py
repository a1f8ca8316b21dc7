"""Commands that keep a store healthy: fsck, gc, prune."""

from __future__ import annotations

import time
from typing import Annotated, Any, Optional

import typer

from ..errors import EXIT_PROBLEM
from ..humanize import format_bytes, format_duration, parse_duration, safe
from ..ops.fsck import Report as FsckReport
from ..ops.fsck import unused_summary
from ..ops.gc import DEFAULT_GRACE_SECONDS
from ..repository import Repository
from .render import gc_when_text
from .shared import JsonOpt, app, byte_progress, emit_json, note, open_repo, state, styled, transfer_progress


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

    with byte_progress(total, "verifying") as progress:
        report = repo.fsck(verify_data=not quick, progress=progress)
    quarantined = repo.quarantine(report) if repair else []
    if as_json:
        emit_json(report.to_json() | {"quarantined": quarantined})
    else:
        for p in report.problems:
            if p.code == "unreachable":  # summarised in one line below; --json lists each
                continue
            label = styled(p.severity, "bad" if p.severity == "error" else "deco")
            affected = f" (affects {', '.join(p.versions)})" if p.versions else ""
            typer.echo(f"{label}: {safe(p.message)}{affected}")
        if report.unused_mtimes:
            typer.echo(f"{styled('info', 'deco')}: {_unused_line(report)}")
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
    with transfer_progress("verifying") as progress:
        report = repo.fsck_remote(
            remote, verify_data=verify_data, progress=progress.advance if progress is not None else None
        )
    repaired, unrepairable = repo.repair_remote(remote, report) if repair else ([], [])
    if as_json:
        emit_json(report.to_json() | {"repaired": repaired, "not_repairable": unrepairable})
    else:
        for p in report.problems:
            label = styled(p.severity, "bad" if p.severity == "error" else "deco")
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
        note("warning: --grace 0 deletes unreferenced objects however new they are")
    if remote is not None:
        remote_plan = open_repo().gc_remote(remote, dry_run=dry_run, grace_seconds=grace_seconds)
        if as_json:  # the same keys as a local gc, plus the remote's name and the ids it freed
            doc = _gc_json(dry_run, len(remote_plan.garbage), remote_plan.garbage_bytes, 0, remote_plan.kept_young)
            emit_json(doc | {"remote": remote, "deleted": remote_plan.deleted, "object_ids": remote_plan.garbage})
            return
        verb = "would free" if dry_run else "freed"
        count = len(remote_plan.garbage)
        typer.echo(f"{remote}: {verb} {format_bytes(remote_plan.garbage_bytes)} in {count} objects")
        if remote_plan.kept_young:
            note(f"kept {remote_plan.kept_young} unreferenced objects younger than {grace} (see --grace)")
        return
    plan = open_repo().gc(dry_run=dry_run, grace_seconds=grace_seconds)
    if as_json:
        doc = _gc_json(dry_run, len(plan.objects), plan.bytes, len(plan.leftovers), plan.kept_young)
        emit_json(doc | {"remote": None, "deleted": not dry_run, "object_ids": list(plan.objects)})
        return
    verb = "would free" if dry_run else "freed"
    typer.echo(f"{verb} {format_bytes(plan.bytes)} in {len(plan.objects)} objects, {len(plan.leftovers)} leftovers")
    if plan.kept_young:
        later = gc_when_text(0, plan.young_bytes, plan.young_until)
        note(f"kept {plan.kept_young} unreferenced objects younger than {grace}; {later}")


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
        plan = open_repo().prune_remote(remote, keep_last=keep_last, keep_within=within, dry_run=dry_run)
    else:
        plan, freed = open_repo().prune(
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
        emit_json(doc | ({"remote": remote} if remote is not None else {}))
        return
    verb = "would remove" if dry_run else "removed"
    for vid in plan.remove:
        typer.echo(f"{verb} {vid}")
    for vid in plan.keep:
        note(f"keep {vid} ({', '.join(plan.reasons[vid])})")
    summary = f"{verb} {len(plan.remove)} version(s), kept {len(plan.keep)}"
    if freed is not None:
        summary += f", freed {format_bytes(freed.bytes)}"
    if remote is not None:
        summary += f" on {remote}"
    typer.echo(summary)
    if freed is not None and freed.young_bytes:  # within the grace period the gc just run freed none of it
        note(gc_when_text(0, freed.young_bytes, freed.young_until))
    if remote is not None and plan.remove and not dry_run:
        note(f"run `mstore gc --remote {remote}` to free the space only they used there")
