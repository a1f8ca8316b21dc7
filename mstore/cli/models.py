"""Commands for using a version from code: path and the read-only model cache."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated, Optional

import typer

from ..cache import upkeep
from ..cache.entries import Cache
from ..errors import EXIT_PROBLEM, BadInput, VersionNotFound
from ..humanize import format_bytes, format_duration, parse_duration, parse_size, safe
from ..modelpath import locate
from .shared import AllowUnsafeOpt, CommandGroup, JsonOpt, TrustedKeysOpt, app, emit_json, note, state


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
    include: Annotated[
        Optional[list[str]],
        typer.Option(
            "--include",
            "-I",
            metavar="GLOB",
            help="Only the files matching this pattern (repeatable; `*.json`, `tokenizer/`): fetched and written "
            "alone, added to the cached folder later calls fill in.",
        ),
    ] = None,
    exclude: Annotated[
        Optional[list[str]],
        typer.Option("--exclude", "-X", metavar="GLOB", help="Leave out the files matching this pattern (repeatable)."),
    ] = None,
    as_json: JsonOpt = False,
    allow_unsafe: AllowUnsafeOpt = False,
    trusted_keys: TrustedKeysOpt = None,
) -> None:
    """Print the path of a version's model in the read-only cache: python serve.py --model "$(mstore path prod)".

    The model is written into the cache once, verified bit-exact, and made read-only; later calls check a
    small stamp instead of reading it. The cache is $MSTORE_CACHE, else $XDG_CACHE_HOME/mstore, else
    ~/.cache/mstore. MSTORE_OFFLINE=1 answers only refs resolved before; MSTORE_OFFLINE=auto does so, with a
    warning, when the remote cannot be reached. --include / --exclude choose files of a folder model as
    huggingface_hub's allow_patterns / ignore_patterns do (`*` also crosses `/`); a pattern that matches no
    file is an error. A version whose pickles are unsafe or unknown is refused unless --allow-unsafe; with
    --trusted-keys (or MSTORE_TRUSTED_KEYS), so is a version none of those keys signed (from a remote, its
    signature is fetched from there and verified here; offline, the one kept by the last trusted call).
    """
    found = locate(
        ref,
        store=state.store,
        remote=remote,
        offline=True if offline else None,
        include=include,
        exclude=exclude,
        allow_unsafe=True if allow_unsafe else None,
        trusted_keys=trusted_keys,
    )
    if as_json:
        emit_json(found.to_json())
    else:
        typer.echo(str(found.path))
        if found.bytes_fetched:
            note(f"fetched {found.objects_fetched} object(s) / {format_bytes(found.bytes_fetched)} into the cache")


cache_app = typer.Typer(
    cls=CommandGroup,
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
        emit_json([e.to_json() for e in entries])
        return
    if not entries:
        note("the cache is empty")
    now = time.time()
    for e in sorted(entries, key=lambda e: e.last_used, reverse=True):
        refs = ", ".join(sorted({f"{r['ref']}={r['version']}" for r in e.refs})) or "-"
        state_ = "" if e.intact else "  (changed on disk: rebuilt on next use)"
        if e.intact and not e.complete:
            state_ = f"  (partial: {e.files} file(s); later calls add what they ask for)"
        typer.echo(
            f"{e.key[:12]}  {format_bytes(e.size):>10}  used {format_duration(now - e.last_used)} ago  "
            f"{safe(refs)}  {e.path or ''}{state_}"
        )


@cache_app.command("du", short_help="Space the model cache takes.")
def cache_du(as_json: JsonOpt = False) -> None:
    """How much space the cache takes: models and fetched objects."""
    doc = upkeep.du(_cache())
    if as_json:
        emit_json(doc)
        return
    typer.echo(
        f"{format_bytes(doc['total_bytes'])} in {doc['cache']}: {doc['entries']} model(s) "
        f"{format_bytes(doc['models_bytes'])}, {doc['objects']} object(s) {format_bytes(doc['objects_bytes'])}"
        + (
            f"; and {doc['remote_mirrors']} remote(s) browsed, {format_bytes(doc['remote_mirrors_bytes'])} of metadata"
            if doc["remote_mirrors"]
            else ""
        )
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
    limit = parse_size(max_size) if max_size is not None else None
    age = parse_duration(older_than) if older_than is not None else None
    cache = _cache()
    planned = upkeep.plan_eviction(cache, max_size=limit, older_than=age)
    plan = planned.outcome() if dry_run else upkeep.execute(cache, planned)
    if as_json:
        emit_json({"dry_run": dry_run, **asdict(plan)})
        return
    verb = "would remove" if dry_run else "removed"
    for key in plan.removed:
        typer.echo(f"{verb} {key}")
    for key in plan.in_use:
        note(f"kept {key[:12]}: in use by a running process")
    typer.echo(
        f"{verb} {len(plan.removed)} model(s) and {plan.objects_removed} object(s), "
        f"{format_bytes(plan.freed_bytes)}; the cache {'would take' if dry_run else 'takes'} "
        f"{format_bytes(plan.total_after)}"
    )
    if limit is not None and plan.total_after > limit:
        note(f"note: still above {max_size}: {len(plan.in_use)} model(s) in use were kept")


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
        emit_json({"removed": removed, "in_use": in_use})
    else:
        for key in removed:
            typer.echo(f"removed {key}")
        for key in in_use:
            note(f"kept {key[:12]}: in use by a running process")
    if in_use and not removed:
        raise typer.Exit(EXIT_PROBLEM)


@cache_app.command("verify", short_help="Re-hash every cached model and object.")
def cache_verify(
    repair: Annotated[
        bool,
        typer.Option("--repair", help="Drop damaged models (the next use rebuilds them) and delete corrupt objects."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-hash every cached model and object; exit 1 on a mismatch. Only reports, unless --repair."""
    cache = _cache()
    problems = upkeep.verify(cache)
    if repair:
        upkeep.repair(cache, problems)
    if as_json:
        emit_json({"ok": not problems, "repaired": repair, "problems": [p.to_json() for p in problems]})
    else:
        for p in problems:
            typer.echo(f"{p.key}: {safe(p.problem)}")
        if not problems:
            typer.echo("cache ok")
        elif repair:
            typer.echo(f"{len(problems)} problem(s) found and repaired: damaged models are rebuilt on next use")
        else:
            typer.echo(f"{len(problems)} problem(s) found; `mstore cache verify --repair` drops them")
    if problems:
        raise typer.Exit(EXIT_PROBLEM)
