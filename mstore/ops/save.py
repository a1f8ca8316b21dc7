"""Saving a model as a new version: check everything that can be refused, write the objects, then commit.

Three steps, so that bad input changes nothing and a typo never costs a whole save: `plan` (metadata,
names, the store-inside-the-source rule, the pickle scan: no writes), `write_objects` (the model's
objects and manifest, durable, under the shared gc lock), then `commit` (the version named by the clock
and published by one rename, then `latest` and the tag, under the write lock; store/commit.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..content import verdict as _verdict
from ..content.ingest import IngestStats, ingest, inside, scan
from ..content.parents import parent_pieces
from ..content.statcache import StatCache
from ..diff import environment as _environment
from ..diff import lineage as _lineage
from ..errors import BadInput, SourceChanged, TagExists, UnsafeModel
from ..formats import allowlist as _allowlist
from ..formats import pickles as _pickles
from ..store import commit as _commit
from ..store import metadata as _metadata
from ..store.identity import who
from ..store.layout import Store
from ..store.manifest import Manifest
from ..store.objects import hash_bytes
from ..store.refs import check_tag_name
from ..store.versions import is_future, next_version_id
from .revparse import resolve

Progress = Callable[[int], None]


def now() -> datetime:
    """The clock that names versions (a seam: tests move it rather than sleep past a second)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Plan:
    """What a save checked before writing anything."""

    user: dict[str, Any]  # the caller's metadata, normalized
    source: Path
    exclude: Path | None  # a store inside the source, left out
    pickles: dict[str, tuple[Path, _pickles.Scan]]
    safety: dict[str, Any]  # pickle globals, unsafe ones
    lineage: dict[str, Any]
    saved_by: str = ""  # who saved it (store/identity.py)
    environment: dict[str, Any] = field(default_factory=dict)  # python, platform, package versions


@dataclass(frozen=True)
class Written:
    """The objects a save wrote: its manifest and what they cost."""

    manifest: Manifest
    manifest_oid: str
    new_bytes: int  # stored bytes of new objects, manifest included
    stats: IngestStats


def save(
    store: Store,
    source: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
    *,
    message: str | None = None,
    parent: str | None = None,
    tag: str | None = None,
    progress: Progress | None = None,
    refuse_unsafe: bool = False,
    allow: Sequence[str] = (),
) -> dict[str, Any]:
    """Store a model file or directory as a new version and return its metadata (Repository.save says more)."""
    planned = plan(store, source, metadata, message=message, tag=tag, refuse_unsafe=refuse_unsafe, allow=allow)
    with store.gc_lock():
        ids = store.versions.ids()
        parent_id = resolve(store, parent) if parent is not None else (ids[-1] if ids else None)
        cache = StatCache(store.root)
        written = write_objects(store, planned, parent_id, progress, cache)
        scans = {rel: sc for rel, (_, sc) in planned.pickles.items()}
        _verdict.keep_save_record(store, written.manifest_oid, scans, planned.safety.get("pickle_allowed", []))
        meta = commit(store, planned, written, parent_id, tag)
        cache.flush()  # only ever saves a re-read of unchanged files next time
    return meta


def plan(
    store: Store,
    source: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None,
    *,
    message: str | None,
    tag: str | None,
    refuse_unsafe: bool,
    allow: Sequence[str] = (),
) -> Plan:
    """Everything a save can refuse, checked before any object is written: a typo must not cost a
    whole save, and bad input must change nothing."""
    user = _metadata.normalize(metadata)
    if tag is not None:
        check_tag_free(store, tag)
    if message is not None:
        user["message"] = message
    source_path = Path(source)
    if inside(source_path, store.root):
        raise BadInput(f"cannot save {source_path}: it lies inside the store {store.root} it would be saved to")
    exclude = store_inside(store, source_path)
    extra = allowed_extra(allow)
    pickles = _pickles.scan_source(scan(source_path, exclude)[1], _allowlist.table(extra))
    safety = pickle_safety({rel: sc for rel, (_, sc) in pickles.items()}, extra)
    if refuse_unsafe:
        refuse_if_unsafe(safety)
    lineage = _lineage.collect(user)  # before any lock: hashing a large training file takes a while
    return Plan(user, source_path, exclude, pickles, safety, lineage, who(), _environment.collect())


def write_objects(
    store: Store, planned: Plan, parent_id: str | None, progress: Progress | None, cache: StatCache
) -> Written:
    """The model's objects and manifest, durable before anything refers to them (under the gc lock)."""
    bases = parent_pieces(store, parent_id) if store.compression and store.compression.delta else {}
    with store.objects.batch():  # objects made durable together, never at their final name before that
        manifest, stats = ingest(
            planned.source,
            store.objects,
            store.chunker,
            progress,
            compression=store.compression,
            parent=bases,
            exclude=planned.exclude,
            cache=cache,
        )
        for full, sc in planned.pickles.values():
            if not _pickles.unchanged(full, sc):
                raise SourceChanged(f"{full} changed while it was being saved; nothing was published")
        manifest_bytes = manifest.encode()
        manifest_oid = hash_bytes(manifest_bytes)
        manifest_is_new = store.objects.put(manifest_bytes, manifest_oid)
        store.objects.sync()  # every object is durable before anything refers to it
    manifest_cost = len(manifest_bytes) if manifest_is_new else 0
    return Written(manifest, manifest_oid, stats.stored_new + manifest_cost, stats)


def commit(store: Store, planned: Plan, written: Written, parent_id: str | None, tag: str | None) -> dict[str, Any]:
    """Name the version by the clock and publish it, then `latest` and the tag (under the write lock)."""
    with store.write_lock():
        if tag is not None:
            check_tag_free(store, tag)  # again under the lock: another process may have taken it
        when = now()
        current = [i for i in store.versions.ids() if not is_future(i, when)]  # a forged future ID
        version_id = next_version_id(when, current[-1] if current else None)  # never blocks a save
        meta = version_record(store, planned, written, version_id, parent_id)
        _commit.publish(store, version_id, meta)  # the commit point
        _commit.refresh_latest(store)
        if tag is not None:
            store.refs.set_tag(tag, version_id)
    return meta


def version_record(
    store: Store, planned: Plan, written: Written, version_id: str, parent_id: str | None
) -> dict[str, Any]:
    """metadata.json of the new version: the caller's fields, the seed's three, and mstore's own block."""
    manifest, stats = written.manifest, written.stats
    return {
        **planned.user,
        "timestamp": version_id,
        "model_hash": manifest.model_hash,
        "original_path": os.path.abspath(planned.source),
        "mstore": {
            "format": store.format,
            "manifest": written.manifest_oid,
            "kind": manifest.kind,
            "size": manifest.size,
            "files": len(manifest.files),
            "parent": parent_id,
            "new_bytes": written.new_bytes,
            "new_content_bytes": stats.bytes_new,
            "reused_bytes": stats.bytes_reused,
            "delta_objects": stats.deltas,
            "lineage": planned.lineage,
            "saved_by": planned.saved_by,
            "environment": planned.environment,
            **planned.safety,
        },
    }


def check_tag_free(store: Store, name: str) -> None:
    check_tag_name(name)
    current = store.refs.tag(name)
    if current is not None:
        raise TagExists(
            f"tag {name!r} already names version {current}; nothing was saved "
            "(choose another name, or move it afterwards with {move})",
            move=(f"`mstore tag --force {name} REF`", f"tag({name!r}, ref, force=True)"),
        )


def store_inside(store: Store, source: str | os.PathLike[str]) -> Path | None:
    """The store's directory when it lies inside the model directory `source` (a save leaves it out)."""
    source_path = Path(source)
    if source_path.is_dir() and not inside(source_path, store.root) and inside(store.root, source_path):
        return store.root
    return None


def allowed_extra(allow: Sequence[str] = ()) -> list[str]:
    """The user's additions to the allowlist (`--allow`, then the file `MSTORE_ALLOW_FILE` names), each
    checked and in display form; BadInput for one that is not a global name."""
    try:
        entries = [*allow, *_allowlist.extra_from_env()]
        return sorted({_allowlist.display(*_allowlist.parse(e)) for e in entries})
    except (ValueError, OSError) as exc:
        raise BadInput(f"--allow / MSTORE_ALLOW_FILE: {exc}") from None


def pickle_safety(scans: Mapping[str, _pickles.Scan], extra: Sequence[str] = ()) -> dict[str, Any]:
    """The metadata a save records about its pickles (nothing at all for a model without pickles):
    the globals per file, those off the allowlist, the files whose walk stopped early, the verdict
    ("unsafe" > "unknown" > "safe") and the user's allowlist additions it was taken with."""
    if not scans:
        return {}
    out: dict[str, Any] = {
        "pickle_globals": {rel: s.globals for rel, s in sorted(scans.items())},
        "unsafe_globals": sorted({g for s in scans.values() for g in s.unsafe}),
    }
    incomplete = {rel: s.error for rel, s in sorted(scans.items()) if not s.complete}
    if incomplete:
        out["pickle_incomplete"] = incomplete
    out["pickle_verdict"] = "unsafe" if out["unsafe_globals"] else "unknown" if incomplete else "safe"
    if extra:
        out["pickle_allowed"] = list(extra)
    return out


def refuse_if_unsafe(safety: Mapping[str, Any]) -> None:
    unsafe = safety.get("unsafe_globals") or []
    incomplete = safety.get("pickle_incomplete") or {}
    if unsafe:
        shown = ", ".join(unsafe[:5]) + (f" and {len(unsafe) - 5} more" if len(unsafe) > 5 else "")
        raise UnsafeModel(
            f"refused: loading this model would import {shown} (outside the known-safe set); nothing was saved"
        )
    if incomplete:
        rel, why = next(iter(incomplete.items()))
        raise UnsafeModel(f"refused: pickle {rel!r} could not be read to its end ({why}); nothing was saved")
