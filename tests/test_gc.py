"""gc frees exactly what no version needs, plans before it deletes, and fails closed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mstore import Repository
from mstore.errors import GcRefused

from helpers import store_bytes


def _save(repo: Repository, tmp_path: Path, name: str, data: bytes) -> str:
    src = tmp_path / name
    src.write_bytes(data)
    return str(repo.save(src)["timestamp"])


def test_gc_frees_only_unreachable_objects(tmp_path: Path, repo: Repository) -> None:
    shared = os.urandom(5 << 20)  # most chunks are shared by both versions
    v1 = _save(repo, tmp_path, "a", shared)
    v2 = _save(repo, tmp_path, "b", shared[: 4 << 20] + os.urandom(1 << 20))
    needed_by_v2 = {repo.get(v2)["mstore"]["manifest"], *repo.manifest(v2).chunk_ids()}
    only_v1 = ({repo.get(v1)["mstore"]["manifest"], *repo.manifest(v1).chunk_ids()}) - needed_by_v2
    before = store_bytes(repo)
    repo.remove(v1)
    dry = repo.gc(dry_run=True, grace_seconds=0)
    assert store_bytes(repo) == before  # a dry run deletes nothing
    assert set(dry.objects) == only_v1 and len(only_v1) >= 2  # v1's own chunks and its manifest
    assert dry.bytes == sum(repo.store.objects.size(o) for o in dry.objects)
    done = repo.gc(grace_seconds=0)
    assert done.objects == dry.objects
    assert store_bytes(repo) == before - done.bytes
    assert set(repo.store.objects) == needed_by_v2
    assert repo.fsck().ok and repo.fsck().problems == []
    out = repo.checkout(v2, tmp_path / "out")
    assert out.read_bytes()[: 4 << 20] == shared[: 4 << 20]


def test_grace_period_keeps_young_objects(tmp_path: Path, repo: Repository) -> None:
    v1 = _save(repo, tmp_path, "a", b"only in v1")
    repo.remove(v1)
    plan = repo.gc(grace_seconds=3600)
    assert plan.objects == () and plan.kept_young == 2
    for oid in repo.store.objects:
        old = time.time() - 7200
        os.utime(repo.store.objects.path(oid), (old, old))
    assert len(repo.gc(grace_seconds=3600).objects) == 2
    assert list(repo.store.objects) == []


def test_gc_fails_closed_when_any_version_is_unreadable(tmp_path: Path, repo: Repository) -> None:
    v1 = _save(repo, tmp_path, "a", b"one")
    _save(repo, tmp_path, "b", b"two")
    (repo.root / f"version_{v1}" / "metadata.json").write_text("{}")
    objects = set(repo.store.objects)
    (repo.store.tmp / ".tmp-x").write_bytes(b"")
    with pytest.raises(GcRefused):
        repo.gc(grace_seconds=0)
    assert set(repo.store.objects) == objects


def test_gc_removes_old_leftovers_and_is_rerunnable(tmp_path: Path, repo: Repository) -> None:
    _save(repo, tmp_path, "a", b"keep")
    leftover = repo.store.tmp / ".tmp-stage-99-dead"
    leftover.mkdir()
    (leftover / "metadata.json").write_text("{}")
    fan = repo.store.objects.root / "ab"
    fan.mkdir(exist_ok=True)
    (fan / ".tmp-half-written").write_bytes(b"x")
    plan = repo.gc(grace_seconds=0)
    assert len(plan.leftovers) == 2 and not leftover.exists()
    assert repo.gc(grace_seconds=0).leftovers == ()
    assert repo.fsck().problems == []
