"""gc: delete what no version needs, as a frozen plan first and an execution second.

It fails closed (deletes nothing) if any version's metadata or manifest cannot be read, runs under
the exclusive gc lock (saves hold it shared, so no half-written save is swept), and never deletes an
object or leftover younger than the grace period, judged by mtime as git does.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..content import verdict as _verdict
from ..errors import GcRefused, MStoreError
from ..store import fsutil, signatures
from ..store.layout import Store, layout_problems, manifest_id

DEFAULT_GRACE_SECONDS = 3600.0


@dataclass(frozen=True)
class GcPlan:
    objects: tuple[str, ...]  # unreachable objects old enough to delete
    bytes: int
    leftovers: tuple[Path, ...]  # temp files and tmp/ entries old enough to delete
    kept_young: int  # unreachable objects kept because they are younger than the grace period
    young_bytes: int = 0  # their bytes: what a later gc (or `--grace 0` now) frees
    young_until: float | None = None  # when the youngest of them passes the grace period (epoch seconds)


def reachable(store: Store) -> set[str]:
    """Every object some version needs: manifests and their chunks. Raises GcRefused on any doubt."""
    keep: set[str] = set()
    for vid in store.versions.ids():
        try:
            meta = store.versions.read(vid)
            moid = manifest_id(meta, vid)
            manifest = store.read_manifest(moid)
        except MStoreError as exc:
            raise GcRefused(f"gc deleted nothing: {exc} (run {{fsck}})", fsck=("`mstore fsck`", "fsck()")) from None
        keep.add(moid)
        keep.update(manifest.chunk_ids())
    return store.objects.closure(keep)  # delta bases stay alive as long as anything needs them


def _older_than(path: Path, cutoff: float) -> bool:
    try:
        return path.lstat().st_mtime < cutoff
    except FileNotFoundError:
        return False


def plan(store: Store, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> GcPlan:
    cutoff = time.time() - grace_seconds
    keep = reachable(store)
    doomed, young, size, young_bytes, newest = [], 0, 0, 0, None
    for oid in store.objects:
        if oid in keep:
            continue
        path = store.objects.path(oid)
        if _older_than(path, cutoff):
            doomed.append(oid)
            size += path.stat().st_size
            continue
        try:
            st = path.lstat()
        except FileNotFoundError:  # deleted meanwhile (another gc)
            continue
        young += 1
        young_bytes += st.st_size
        newest = st.st_mtime if newest is None else max(newest, st.st_mtime)
    leftovers = [p for p in store.objects.stray_files() if _older_than(p, cutoff)]
    fsutil.check_real_dir(store.tmp, "tmp/")  # never list (and delete) through a link: UnsafeLayout
    if store.tmp.is_dir():
        leftovers += [store.tmp / n for n in sorted(os.listdir(store.tmp)) if _older_than(store.tmp / n, cutoff)]
    leftovers += _orphan_signatures(store, cutoff)
    until = None if newest is None else newest + grace_seconds
    return GcPlan(tuple(doomed), size, tuple(leftovers), young, young_bytes, until)


def _orphan_signatures(store: Store, cutoff: float) -> list[Path]:
    """signatures/<name> of no version here (an rm interrupted between the version and its signatures)."""
    where = store.root / signatures.SIGNATURES
    if not fsutil.check_real_dir(where, "signatures/"):
        return []
    present = set(store.versions.ids())
    orphans = [where / n for n in signatures.version_dirs(store.root) if n not in present]
    return [p for p in orphans if _older_than(p, cutoff)]


def pending(store: Store, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> GcPlan:
    """What gc would free and when, planned without the lock and deleting nothing: `rm`, `prune` and `du`
    use it to say when the space comes back (within the grace period a gc frees nothing of it)."""
    if problems := layout_problems(store.root):
        raise GcRefused(f"gc deleted nothing: {problems[0]}")
    return plan(store, grace_seconds)


def execute(store: Store, gc_plan: GcPlan) -> None:
    """Carry out a plan; safe to rerun after being killed (every step is idempotent)."""
    for oid in gc_plan.objects:
        store.objects.delete(oid)
        _verdict.forget(store, oid)  # the pickle verdict of a deleted manifest, if it was one
    for path in gc_plan.leftovers:
        if path.is_dir() and not path.is_symlink():
            fsutil.remove_tree(path)
        else:
            fsutil.remove_file(path)


def collect(store: Store, *, grace_seconds: float = DEFAULT_GRACE_SECONDS, dry_run: bool = False) -> GcPlan:
    """Plan and (unless `dry_run`) execute under the exclusive gc lock; refuses a store with linked directories."""
    if problems := layout_problems(store.root):
        raise GcRefused(f"gc deleted nothing: {problems[0]}")
    with store.gc_lock(exclusive=True):
        gc_plan = plan(store, grace_seconds)
        if not dry_run:
            execute(store, gc_plan)
    return gc_plan
