"""Batched durability (ObjectStore.batch): a save's objects are written to temp files without an fsync
each, fsynced together, and only then linked to their final names. An object is never at its final
name before it is durable (dedup trusts any object there with the right size), a crash or an error
inside a batch leaves nothing at a final name, and a failed batch cleans its own temps."""

from __future__ import annotations

import errno
import random
import shutil
from pathlib import Path

import blake3
import pytest
from typer.testing import CliRunner

from mstore import Repository
from mstore.cli import app
from mstore.store import fsutil
from mstore.store import objects as objects_mod
from mstore.store.chunking import MIN_CHUNK_SIZE
from mstore.store.objects import ObjectStore, hash_bytes

from helpers import saved_repo
from reliability import assert_consistent, leftovers, run_in_child

CHUNK = 16 * MIN_CHUNK_SIZE

pytestmark = pytest.mark.skipif(not fsutil.batching_supported(), reason="batches need Linux (sync_file_range)")


@pytest.fixture(autouse=True)
def _no_hook_leaks() -> object:
    yield
    fsutil.set_fault_hook(None)


def _repo(tmp_path: Path) -> tuple[Repository, Path, dict[str, str]]:
    repo, src, expected = saved_repo(tmp_path, CHUNK, seed=7)
    src.write_bytes(random.Random(8).randbytes(6 * CHUNK))  # all new: a batch of 6 objects + a manifest
    return repo, src, expected


def _ops_of_save(repo: Repository, src: Path) -> list[tuple[str, Path]]:
    seen: list[tuple[str, Path]] = []
    fsutil.set_fault_hook(lambda op, path: seen.append((op, path)))
    try:
        repo.save(src)
    finally:
        fsutil.set_fault_hook(None)
    return seen


def _temp_of(final: Path, ops: list[tuple[str, Path]]) -> Path:
    stem = fsutil.TMP_PREFIX + final.name[:40]
    temps = [p for op, p in ops if op == "create" and p.parent == final.parent and p.name.startswith(stem)]
    assert len(temps) == 1, (final, temps)
    return temps[0]


def test_no_object_reaches_its_final_name_before_its_fsync(tmp_path: Path) -> None:
    repo, src, _ = _repo(tmp_path)
    ops = _ops_of_save(repo, src)
    links = [(i, p) for i, (op, p) in enumerate(ops) if op == "link" and p.parent.parent == repo.store.objects.root]
    assert len(links) >= 7  # the 6 new chunks and the manifest
    fsyncs = [i for i, (op, _) in enumerate(ops) if op == "fsync"]
    for i, final in links:
        tmp = _temp_of(final, ops)
        synced = [j for j, (op, p) in enumerate(ops) if op == "fsync" and p == tmp]
        assert synced and synced[0] < i, f"{final.name} was linked before its temp was fsynced"
    # batched: every temp is written before the first fsync, every fsync comes before the first link
    creates = [i for i, (op, p) in enumerate(ops) if op == "create" and fsutil.is_temp_name(p.name)]
    assert max(creates[: len(links)]) < min(fsyncs) and max(fsyncs[: len(links)]) < links[0][0]


def test_a_crash_between_the_batch_write_and_its_fsync_leaves_nothing_at_a_final_name(tmp_path: Path) -> None:
    repo, src, expected = _repo(tmp_path)
    shutil.copytree(repo.root, tmp_path / "probe")
    probe = Repository.open(tmp_path / "probe")
    probe.store.config = repo.store.config
    ops = _ops_of_save(probe, src)  # the same save in a copy: where its first fsync comes
    first_fsync = next(i for i, (op, _) in enumerate(ops) if op == "fsync")
    assert ops[first_fsync - 1][0] == "write"  # the step before: the last temp of the batch was written
    held = set(repo.store.objects)
    for k in (first_fsync + 1, first_fsync + 2):  # before the first fsync; between the first and second
        code = run_in_child(lambda: repo.save(src), crash_at=k)
        assert code == fsutil.CRASH_EXIT_CODE
        assert set(repo.store.objects) == held  # nothing new at a final name
        assert any(fsutil.is_temp_name(p.name) for p in repo.store.objects.stray_files())  # only temps
        assert_consistent(repo, expected)
    repo.gc(grace_seconds=0)
    assert leftovers(repo) == []
    vid = repo.save(src)["timestamp"]  # the next save writes the objects again (none was trusted half-written)
    assert_consistent(repo, expected | {vid: blake3.blake3(src.read_bytes()).hexdigest()})


@pytest.mark.parametrize(("op", "err", "nth"), [("fsync", errno.EIO, 3), ("write", errno.ENOSPC, 4)])
def test_an_error_mid_batch_fails_the_save_and_cleans_its_temps(tmp_path: Path, op: str, err: int, nth: int) -> None:
    repo, src, expected = _repo(tmp_path)
    held = set(repo.store.objects)
    calls: list[Path] = []

    def hook(kind: str, path: Path) -> None:
        if kind == op:
            calls.append(path)
            if len(calls) == nth:
                raise OSError(err, "injected fault", str(path))

    fsutil.set_fault_hook(hook)
    with pytest.raises(OSError) as caught:
        repo.save(src)
    fsutil.set_fault_hook(None)
    assert caught.value.errno == err and len(calls) == nth  # never retried
    assert set(repo.store.objects) == held  # no object of the failed batch is at a final name
    assert list(repo.store.objects.stray_files()) == []  # and its temps are gone, without gc
    assert_consistent(repo, expected)

    # the same through the CLI (its own config: one 384 KiB chunk and the manifest), at the 2nd such step
    nth = 2
    fsutil.set_fault_hook(hook)
    calls.clear()
    result = CliRunner().invoke(app, ["--store", str(repo.root), "save", str(src)])
    fsutil.set_fault_hook(None)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "injected fault" in result.stderr
    assert set(repo.store.objects) == held and list(repo.store.objects.stray_files()) == []


def test_a_batch_object_is_readable_and_deduplicated_before_it_is_published(tmp_path: Path) -> None:
    objects = ObjectStore(tmp_path / "objects")
    data = random.Random(9).randbytes(1000)
    oid = hash_bytes(data)
    with objects.batch():
        assert objects.put(data, oid) is True
        assert not objects.path(oid).exists()  # not at its final name before it is durable
        assert objects.has_intact(oid, len(data)) and objects.claimed_size(oid) == len(data)
        assert objects.put(data, oid) is False  # deduplicated within the batch
        assert objects.read(oid, len(data)) == data  # read (verified) from its temp file
        objects.sync()
        assert objects.path(oid).exists() and list(objects.stray_files()) == []
    assert objects.read(oid, len(data)) == data


def test_a_full_batch_is_published_without_waiting_for_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(objects_mod, "BATCH_OBJECTS", 3)
    objects = ObjectStore(tmp_path / "objects")
    blobs = [bytes([i]) * 100 for i in range(7)]
    with objects.batch():
        for b in blobs:
            objects.put(b)
        assert len(list(objects)) == 6  # two full batches of 3 published; the 7th pending
    assert len(list(objects)) == 7 and list(objects.stray_files()) == []


def test_without_batching_each_object_is_fsynced_before_its_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSTORE_BATCH_DURABILITY", "0")  # what a non-Linux system does (no sync_file_range)
    assert not fsutil.batching_supported()
    repo, src, _ = _repo(tmp_path)
    ops = _ops_of_save(repo, src)
    kinds = [op for op, p in ops if p.parent.parent == repo.store.objects.root or op == "link"]
    first = kinds.index("create")
    assert kinds[first : first + 3] == ["create", "write", "fsync"] and kinds[first + 3] == "link"
