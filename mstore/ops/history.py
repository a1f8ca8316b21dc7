"""Reading history: versions newest first, filtered and ranked (`log`), one version in full (`show`).

Readers take no lock: a version appears by one rename and leaves by one, so a version removed while a
listing runs is skipped, never half read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..content import verdict as _verdict
from ..diff import query as _query
from ..diff.ranking import check_metric_names, did_you_mean, sort_by_metric
from ..errors import BadInput, TagNotFound, VersionNotFound
from ..store.layout import Store
from ..store.versions import newest, parse_id_time
from .revparse import resolve
from .usage import shared_bytes


def versions(store: Store, limit: int | None = None) -> list[dict[str, Any]]:
    """Metadata of the newest `limit` versions (all by default), newest first; one removed meanwhile is skipped."""
    out: list[dict[str, Any]] = []
    for version_id in reversed(store.versions.ids()):
        if limit is not None and len(out) >= limit:
            break
        try:
            out.append(_verdict.local(store, version_id, store.versions.read(version_id)))
        except VersionNotFound:
            continue
    return out


def tags_by_version(tags: dict[str, str]) -> dict[str, list[str]]:
    """Version ID -> the tags (name -> version ID) naming it, sorted."""
    by_version: dict[str, list[str]] = {}
    for name, vid in sorted(tags.items()):
        by_version.setdefault(vid, []).append(name)
    return by_version


def log(
    store: Store,
    *,
    limit: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    tags: list[str] | None = None,
    sort: str | None = None,
    descending: bool | None = None,
    where: str | None = None,
) -> list[dict[str, Any]]:
    """Versions newest first, filtered by time (the ID is the save time) and tags, each with its
    metadata plus `tags` (names pointing at it). Reads only the versions it returns.

    With `sort` (a metric name), the best come first (see `ranking`); `descending` overrides the
    direction the metric's name implies. Ranking reads every version that passes the filters.
    `where` keeps the versions an expression over metrics and params holds for (`diff.query`).
    """
    query = _query.parse(where) if where is not None else None  # a syntax error before any reading
    known: set[str] = set()
    all_tags = store.refs.tags()
    by_version = tags_by_version(all_tags)
    wanted = set(tags or [])
    for name in sorted(wanted - set(all_tags)):  # a typo must not look like "no versions match"
        raise TagNotFound(f"no tag named {name!r}{did_you_mean(name, all_tags)}")
    out: list[dict[str, Any]] = []
    for version_id in reversed(store.versions.ids()):
        if sort is None and limit is not None and len(out) >= limit:
            break
        when = parse_id_time(version_id)
        if (since and when < since) or (until and when > until):
            continue
        if wanted and not wanted & set(by_version.get(version_id, [])):
            continue
        try:
            meta = store.versions.read(version_id)
        except VersionNotFound:  # removed while we listed
            continue
        if query is not None:
            known.update(_query.fields(meta))
            if not query.matches(meta):
                continue
        out.append({**meta, "tags": by_version.get(version_id, [])})
    if query is not None:
        _check_query_names(store, query, known)
    if sort is not None and out:
        check_metrics(store, [sort], out)  # a typo first: its "did you mean" helps more than a direction
        out = sort_by_metric(out, sort, descending)[:limit]
    return [_verdict.local(store, meta["timestamp"], meta) for meta in out]  # the verdict of the bytes


_WHERE = ("--where", "where")


def _check_query_names(store: Store, query: _query.Query, known: set[str]) -> None:
    """A name no version has is a typo (`acuracy>0.9` would quietly match nothing): refuse it."""
    missing = [n for n in query.names if n not in known]
    if missing:
        for meta in versions(store):
            known.update(_query.fields(meta))
    for name in missing:
        if name not in known:
            hint = did_you_mean(name, known)
            raise BadInput(f"{{opt}}: no version has a metric, param or field named {name!r}{hint}", opt=_WHERE)


def check_metrics(store: Store, names: list[str], shown: list[dict[str, Any]]) -> None:
    """Raise BadInput (with a "did you mean") for a metric name that no version has."""
    check_metric_names(names, shown, lambda: versions(store))


def show(store: Store, ref: str) -> dict[str, Any]:
    """A version's metadata, its files, and how much of its content it shares with its parent."""
    version_id = resolve(store, ref)
    meta = store.versions.read(version_id)
    manifest = store.version_manifest(version_id, meta)
    meta = _verdict.local(store, version_id, meta)  # the verdict of the bytes, not the metadata's claim
    ids = store.versions.ids()
    parent, removed = parent_of(meta, version_id, ids)
    parent_manifest = store.version_manifest(parent) if parent else None
    return {
        "metadata": meta,
        "files": [{"path": e.path, "size": e.size, "executable": e.executable} for e in manifest.files],
        "size": manifest.size,
        "parent": parent,
        "parent_removed": removed,
        "shared_with_parent_bytes": shared_bytes(manifest, parent_manifest),
    }


def parent_of(meta: dict[str, Any], version_id: str, ids: list[str]) -> tuple[str | None, str | None]:
    """(the version's parent if it still exists, the recorded parent if it was removed). After rm or
    prune the recorded parent may be gone: it is reported as removed, never replaced by another version."""
    found = meta.get("mstore")
    block: dict[str, Any] = found if isinstance(found, dict) else {}
    recorded = block.get("parent")
    if "parent" in block:
        if isinstance(recorded, str) and recorded in ids:
            return recorded, None
        return None, recorded if isinstance(recorded, str) else None
    index = ids.index(version_id) if version_id in ids else 0  # saved before parents were recorded
    return (ids[index - 1] if index else None), None


def parent_pair(store: Store, ref: str) -> tuple[str, str]:
    """(parent, version) for `diff REF` alone: what changed in REF, as `git show` does."""
    version_id = resolve(store, ref)
    parent, removed = parent_of(store.versions.read(version_id), version_id, store.versions.ids())
    if parent is None:
        why = f"its parent {removed} was removed" if removed else "it is the first version"
        raise VersionNotFound(f"{version_id} has no parent to compare it with ({why}); name two versions")
    return parent, version_id


def latest(store: Store) -> dict[str, Any] | None:
    """Metadata of the newest version (as `latest` resolves), or None in an empty store."""
    vid = newest(store.versions.ids())
    return _verdict.local(store, vid, store.versions.read(vid)) if vid else None
