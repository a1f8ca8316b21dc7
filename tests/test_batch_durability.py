"""Batched durability (ObjectStore.put / flush / sync): objects are written to temp files, made durable
together, and only then linked to their final names, so a crash or an fsync error anywhere in a batch
never leaves an object at a final name (where dedup trusts it) that was not durable."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest

from mstore import Repository
from mstore.store import fsutil, objects
from mstore.store.objects import ObjectStore, hash_bytes

from reliability import run_in_child

pytestmark = pytest.mark.skipif(not fsutil.BATCHED, reason="batched durability is Linux-only")


@pytest.fixture(autouse=True)
def _no_hook_leaks() -> object:
    yield
    fsutil.set_fault_hook(None)


def _blobs(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(1000 + i) for i in range(n)]


def _ops_of(fn: object) -> list[tuple[str, Path]]:
    seen: list[tuple[str, Path]] = []
    fsutil.set_fault_hook(lambda op, path: seen.append((op, path)))
    try:
        fn()  # type: ignore[operator]
    finally:
        fsutil.set_fault_hook(None)
    return seen


def _put_all(store: ObjectStore, blobs: list[bytes]) -> None:
    for blob in blobs:
        store.put(blob)
    store.sync()


def _at_final_names(store: ObjectStore, blobs: list[bytes]) -> list[str]:
    return [hash_bytes(b) for b in blobs if store.path(hash_bytes(b)).exists()]


def test_every_object_of_a_batch_is_fsynced_before_any_of_them_is_linked(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects")
    blobs = _blobs(6)
    ops = _ops_of(lambda: _put_all(store, blobs))
    kinds = [op for op, _ in ops]
    assert kinds.count("fsync") == 6 and kinds.count("link") == 6  # one fdatasync per object, no more
    first_link = kinds.index("link")
    assert kinds[first_link - 6 : first_link] == ["fsync"] * 6  # the batch is made durable together...
    assert "fsync" not in kinds[: first_link - 6] and "fsync" not in kinds[first_link:]  # ...and only then linked
    assert kinds[-1] == "fsync_dir"
    synced = {path for op, path in ops if op == "fsync"}
    written = [path for op, path in ops if op == "create"]
    assert set(written) == synced  # the temp files written are the ones made durable
    assert sorted(_at_final_names(store, blobs)) == sorted(hash_bytes(b) for b in blobs)
    assert list(store.stray_files()) == []


@pytest.mark.parametrize("where", ["first fsync", "last fsync", "first link"])
def test_a_crash_between_a_batchs_writes_and_its_links_leaves_nothing_at_a_final_name(
    tmp_path: Path, where: str
) -> None:
    repo = Repository.init(tmp_path / "store")
    blobs = _blobs(5)
    kinds = [op for op, _ in _ops_of(lambda: _put_all(ObjectStore(tmp_path / "probe"), blobs))]
    step = {
        "first fsync": kinds.index("fsync"),
        "last fsync": len(kinds) - 1 - kinds[::-1].index("fsync"),
        "first link": kinds.index("link"),
    }[where] + 1  # crash_at counts from 1: die just before that operation
    code = run_in_child(lambda: _put_all(repo.store.objects, blobs), crash_at=step)
    assert code == fsutil.CRASH_EXIT_CODE
    assert _at_final_names(repo.store.objects, blobs) == []  # written, maybe durable, never named
    assert len(list(repo.store.objects.stray_files())) == 5  # only temp files, which fsck reports...
    report = repo.fsck()
    assert report.ok and "leftover" in {p.code for p in report.problems}
    repo.gc(grace_seconds=0)  # ...and gc removes
    assert list(repo.store.objects.stray_files()) == []


def test_a_crash_after_the_first_link_leaves_only_durable_objects_named(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "store")
    blobs = _blobs(5)
    ops = _ops_of(lambda: _put_all(ObjectStore(tmp_path / "probe"), blobs))
    kinds = [op for op, _ in ops]
    second_link = [i for i, k in enumerate(kinds) if k == "link"][1]
    assert run_in_child(lambda: _put_all(repo.store.objects, blobs), crash_at=second_link + 1) == 137
    named = _at_final_names(repo.store.objects, blobs)
    assert len(named) == 1  # the first object was linked after the whole batch was fsynced
    assert repo.store.objects.verify(named[0]) is None


@pytest.mark.parametrize(("op", "err"), [("fsync", errno.EIO), ("write", errno.ENOSPC), ("link", errno.ENOSPC)])
def test_a_failed_write_or_fsync_mid_batch_names_nothing_undurable_and_removes_every_temp(
    tmp_path: Path, op: str, err: int
) -> None:
    store = ObjectStore(tmp_path / "objects")
    blobs = _blobs(5)
    seen: list[str] = []

    def fault(kind: str, path: Path) -> None:
        if kind == op:
            seen.append(kind)
            if len(seen) == 3:
                raise OSError(err, "injected", str(path))

    fsutil.set_fault_hook(fault)
    with pytest.raises(OSError) as failed:
        _put_all(store, blobs)
    fsutil.set_fault_hook(None)
    assert failed.value.errno == err and len(seen) == 3  # the failed operation is never retried
    named = _at_final_names(store, blobs)
    assert len(named) == (2 if op == "link" else 0)  # only links made after the whole batch was durable
    assert all(store.verify(oid) is None for oid in named)
    assert list(store.stray_files()) == []  # every temp of the batch is gone
    with pytest.raises(OSError):
        store.sync()  # a failed batch is never reported durable later
    store.discard()
    _put_all(store, blobs)  # the next attempt works
    assert len(_at_final_names(store, blobs)) == 5


def test_a_failed_save_leaves_no_temp_behind(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "store")
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(3 << 20))
    repo.store.config["chunker"] = {"name": "fixed", "size": 256 << 10}
    fsyncs: list[Path] = []

    def fault(kind: str, path: Path) -> None:
        if kind == "fsync":
            fsyncs.append(path)
            if len(fsyncs) == 4:
                raise OSError(errno.EIO, "injected", str(path))

    fsutil.set_fault_hook(fault)
    with pytest.raises(OSError):
        repo.save(src)
    fsutil.set_fault_hook(None)
    assert repo.ids() == [] and list(repo.store.objects) == [] and list(repo.store.objects.stray_files()) == []
    repo.save(src)
    assert repo.fsck().ok


def test_a_pending_object_is_read_and_deduplicated_before_it_is_durable(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects")
    data = b"a delta base a transfer just stored"
    oid = hash_bytes(data)
    assert store.put(data) is True
    assert not store.path(oid).exists()  # not durable yet, so not at its final name
    assert store.has_intact(oid, len(data)) and not store.has_intact(oid, 3)
    assert store.put(data) is False  # written once
    assert store.read(oid, len(data)) == data and store.claimed_size(oid) == len(data)
    store.sync()
    assert store.path(oid).exists() and list(store.stray_files()) == []


def test_a_full_batch_is_made_durable_without_waiting_for_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(objects, "BATCH_FILES", 4)
    store = ObjectStore(tmp_path / "objects")
    blobs = _blobs(9)
    for blob in blobs:
        store.put(blob)
    assert len(_at_final_names(store, blobs)) == 8  # two full batches, the ninth waits for sync
    store.sync()
    assert len(_at_final_names(store, blobs)) == 9


def test_without_batching_every_object_is_fsynced_then_linked_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fsutil, "BATCHED", False)  # a non-Linux system, or MSTORE_BATCH_DURABILITY=0
    store = ObjectStore(tmp_path / "objects")
    blobs = _blobs(3)
    ops = _ops_of(lambda: [store.put(b) for b in blobs])
    assert [op for op, _ in ops if op in ("fsync", "link")] == ["fsync", "link"] * 3
    assert len(_at_final_names(store, blobs)) == 3  # before any sync
