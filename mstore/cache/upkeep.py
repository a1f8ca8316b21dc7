"""Keeping the model cache in shape: its size, eviction as plan -> execute, and verify -> repair.

Eviction is the shape gc (and huggingface_hub's cache manager) has: `plan_eviction` scans and returns a
frozen plan with the bytes it expects to free, which `--dry-run` prints and tests inspect; only
`execute` deletes, entries first and the objects they alone needed last, so no entry ever points at a
missing object. `verify` only reports; `repair` acts on its report (drops a damaged entry's stamp so the
next use rebuilds it, deletes corrupt objects), as fsck and `fsck --repair` do for a store.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3

from ..errors import IntegrityError
from ..store import fsutil
from ..store.manifest import KIND_FILE, Manifest
from .entries import Cache, EntryInfo, _tree_size

MIRRORS = "remotes"  # remote/mirror.py keeps each browsed remote's metadata mirror here


def du(cache: Cache) -> dict[str, Any]:
    """How much the cache takes: its models and the objects fetched into it (and, apart, the metadata
    mirrors of remotes browsed with `--remote`, rebuilt on the next browse if deleted)."""
    entries = cache.entries()
    objects = _object_sizes(cache)
    models = sum(e.size for e in entries)
    mirrors = cache.root / MIRRORS
    real = mirrors.is_dir() and not mirrors.is_symlink()
    names = [n for n in os.listdir(mirrors) if not fsutil.is_temp_name(n)] if real else []
    return {
        "remote_mirrors": len(names),
        "remote_mirrors_bytes": _tree_size(mirrors) if names else 0,
        "cache": str(cache.root),
        "entries": len(entries),
        "models_bytes": models,
        "objects": len(objects),
        "objects_bytes": sum(objects.values()),
        "total_bytes": models + sum(objects.values()),
    }


@dataclass(frozen=True)
class EvictionPlan:
    """Which entries go (least recently used first) and which objects no remaining entry needs.

    `in_use` were due to go but a running process holds them, so they stay. `objects` is empty when a
    remaining entry's manifest cannot be read: then nothing can be known to be unneeded."""

    entries: tuple[str, ...]
    in_use: tuple[str, ...]
    objects: tuple[str, ...]
    total_before: int
    total_after: int  # what the cache takes once the plan is carried out

    @property
    def expected_freed_bytes(self) -> int:
        return self.total_before - self.total_after

    def outcome(self) -> Evicted:
        """What executing the plan is expected to do, in the shape `execute` reports (for --dry-run)."""
        return Evicted(
            list(self.entries),
            list(self.in_use),
            len(self.objects),
            self.expected_freed_bytes,
            self.total_before,
            self.total_after,
        )


@dataclass
class Evicted:
    """What `execute` did (`mstore cache prune --json` prints it)."""

    removed: list[str] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)  # planned, but a running process held it
    objects_removed: int = 0
    freed_bytes: int = 0
    total_before: int = 0
    total_after: int = 0


def plan_eviction(cache: Cache, *, max_size: int | None = None, older_than: float | None = None) -> EvictionPlan:
    """Entries to remove, least recently used first, until the cache fits `max_size` bytes, and every entry
    not used for `older_than` seconds; then the objects no remaining entry needs. Deletes nothing."""
    if not (cache.root / "locks").is_dir():
        return EvictionPlan((), (), (), 0, 0)  # no cache yet: nothing to evict
    entries = sorted(cache.entries(), key=lambda e: (e.last_used, e.key))
    objects = _object_sizes(cache)
    needs = {e.key: _needs(cache, e.key) for e in entries}
    remaining = {e.key: e for e in entries}

    def total() -> int:
        kept = _union(needs, remaining)
        held = sum(size for oid, size in objects.items() if kept is None or oid in kept)
        return sum(e.size for e in remaining.values()) + held

    before = sum(e.size for e in entries) + sum(objects.values())
    now = time.time()
    going, in_use = [], []
    for e in entries:
        too_old = older_than is not None and now - e.last_used > older_than
        too_big = max_size is not None and total() > max_size
        if not (too_old or too_big):
            continue
        if cache.in_use(e.key):
            in_use.append(e.key)
            continue
        going.append(e.key)
        del remaining[e.key]
    kept = _union(needs, remaining)
    unneeded = () if kept is None else tuple(sorted(set(objects) - kept))
    return EvictionPlan(tuple(going), tuple(in_use), unneeded, before, total())


def execute(cache: Cache, plan: EvictionPlan) -> Evicted:
    """Carry out a plan under the cache's exclusive gc lock (no entry is being built meanwhile): entries
    first, skipping one a process took since the plan; then the planned objects that no entry present now
    needs, recomputed here, so an entry that stayed or arrived keeps what it needs."""
    done = Evicted(in_use=list(plan.in_use), total_before=plan.total_before)
    if not (cache.root / "locks").is_dir():
        return done
    with cache.gc_lock():
        for key in plan.entries:
            (done.removed if cache.remove(key) else done.in_use).append(key)
        present = {e.key: e for e in cache.entries()}
        kept = _union({k: _needs(cache, k) for k in present}, present)
        for oid in plan.objects:
            if kept is not None and oid not in kept:
                cache.objects.delete(oid)
                done.objects_removed += 1
        done.total_after = sum(e.size for e in present.values()) + sum(_object_sizes(cache).values())
    done.freed_bytes = done.total_before - done.total_after
    cache.clear_tmp()
    return done


@dataclass(frozen=True)
class Problem:
    """Something `verify` found: a damaged entry (`kind` "entry", named by its key) or a corrupt object."""

    kind: str
    key: str
    problem: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "key": self.key, "problem": self.problem}


def verify(cache: Cache) -> list[Problem]:
    """Re-hash every entry (against its manifest, itself checked against the entry's name) and every
    object. Reports only: `repair` acts on what it found."""
    keys = cache.keys()
    problems = [Problem("entry", key, why) for key in keys if (why := _entry_problem(cache, key))]
    for oid in cache.objects:
        found = cache.objects.verify(oid)
        if found is not None and found[0] == "corrupt-object":
            problems.append(Problem("object", oid, found[1]))
    return problems


def repair(cache: Cache, problems: Iterable[Problem]) -> None:
    """A damaged entry loses its stamp, so its next use rebuilds it (never returns it); a corrupt object
    is deleted, so the next fetch or build gets a good copy."""
    for p in problems:
        if p.kind == "entry":
            cache.forget_stamp(p.key)
        else:
            cache.objects.delete(p.key)


def _entry_problem(cache: Cache, key: str) -> str | None:
    try:
        manifest = Manifest.decode(cache.objects.read(key))
    except (IntegrityError, OSError) as exc:
        return f"its manifest cannot be read from the cache ({exc})"
    entry = cache.entry_dir(key)
    try:
        root_mode = os.lstat(entry).st_mode
    except OSError:
        return "its folder is missing"
    if not stat.S_ISDIR(root_mode):
        return "it is not a folder"
    expected = {e.path: e for e in manifest.entries}
    if manifest.kind == KIND_FILE:
        seen = set(os.listdir(entry))
    else:
        seen = set()
        for dirpath, dirnames, filenames in os.walk(entry):
            rel = os.path.relpath(dirpath, entry)
            for name in dirnames + filenames:
                seen.add(name if rel == "." else f"{rel}/{name}")
    stamp = cache.load_stamp(key)
    if stamp is not None and not stamp["complete"]:  # a partial entry: the files its stamp lists, their folders
        held = {r[0] for r in stamp["entries"] if r[1] == "f"}
        folders = {"/".join(p.split("/")[:i]) for p in held for i in range(1, p.count("/") + 1)}
        if not held <= {e.path for e in manifest.files}:
            return "its stamp lists files the model does not have"
        expected = {p: e for p, e in expected.items() if p in held or (e.is_dir and p in folders)}
    if seen != set(expected):
        extra = sorted(seen - set(expected)) or sorted(set(expected) - seen)
        return f"its files differ from the model's ({extra[0]!r})"
    for e in expected.values():
        path = entry / e.path
        mode = os.lstat(path).st_mode
        if e.is_dir:
            if not stat.S_ISDIR(mode):
                return f"{e.path} is not a folder"
            continue
        if not stat.S_ISREG(mode):
            return f"{e.path} is not a regular file"
        if mode & 0o222:
            return f"{e.path} is writable"
        if _hash_file(path) != e.digest:
            return f"{e.path} does not match its saved hash"
    return None


def _hash_file(path: Path) -> str:
    fd = fsutil.open_regular(path)
    hasher = blake3.blake3()
    try:
        while piece := os.read(fd, 8 << 20):
            hasher.update(piece)
    finally:
        os.close(fd)
    return hasher.hexdigest()


def _object_sizes(cache: Cache) -> dict[str, int]:
    out = {}
    for oid in cache.objects:
        with suppress(OSError):
            out[oid] = cache.objects.size(oid)
    return out


def _needs(cache: Cache, key: str) -> set[str] | None:
    """The cache objects an entry was (or can be re)built from; None when its manifest is unreadable."""
    try:
        manifest = Manifest.decode(cache.objects.read(key))
    except (IntegrityError, OSError):
        return None
    return cache.objects.closure({key, *manifest.chunk_ids()})


def _union(needs: dict[str, set[str] | None], entries: dict[str, EntryInfo]) -> set[str] | None:
    """Every object the `entries` need; None when one of their manifests is unreadable (keep everything)."""
    kept: set[str] = set()
    for key in entries:
        found = needs.get(key)
        if found is None:
            return None
        kept |= found
    return kept
