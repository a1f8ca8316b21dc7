"""Many processes at once: writers get unique IDs in save order and never corrupt each other, readers
never fail, and gc running in a loop never takes an object from a committed version."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import blake3
import pytest

from mstore import Repository
from mstore.store import Store

WRITER = """
import sys, random
from mstore import Repository
store, name, saves = sys.argv[1], sys.argv[2], int(sys.argv[3])
repo = Repository.init(store)
shared = random.Random(0).randbytes(3 << 20)    # every writer shares this first chunk
for i in range(saves):
    path = f"{name}.{i}"
    with open(path, "wb") as f:
        f.write(shared + f"{name}-{i}".encode() * 1000)
    repo.save(path, {"writer": name, "i": i})
"""

GC_LOOP = """
import sys, time
from mstore import Repository
repo = Repository.open(sys.argv[1])
deadline = time.time() + float(sys.argv[2])
runs = 0
while time.time() < deadline:
    repo.gc(grace_seconds=0)
    runs += 1
print(runs)
"""

READER = """
import sys, time
from mstore import Repository
repo = Repository.open(sys.argv[1])
deadline, reads = time.time() + float(sys.argv[2]), 0
while time.time() < deadline:
    for meta in repo.versions(limit=3):
        repo.checkout(meta["timestamp"], sys.argv[3] + f"/{reads}")
        reads += 1
print(reads)
"""


def _start(code: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _check_all(repo: Repository, tmp_path: Path) -> None:
    for meta in repo.versions():
        src = Path(f"{meta['writer']}.{meta['i']}")
        manifest = repo.manifest(meta["timestamp"])
        data = b"".join(repo.store.objects.read(c.oid, c.size) for c in manifest.files[0].chunks)
        assert blake3.blake3(data).hexdigest() == meta["model_hash"] == blake3.blake3(src.read_bytes()).hexdigest()


def test_8_writers_x_25_saves_with_readers(tmp_path: Path) -> None:
    store = tmp_path / "store"
    Repository.init(store)
    for r in range(2):
        (tmp_path / f"r{r}").mkdir()
    writers = [_start(WRITER, store, tmp_path / f"w{w}", 25) for w in range(8)]
    time.sleep(0.5)
    readers = [_start(READER, store, 5, tmp_path / f"r{r}") for r in range(2)]
    for p in writers + readers:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    repo = Repository.open(store)
    ids = repo.ids()
    assert len(ids) == len(set(ids)) == 200
    assert repo.store.refs.latest() == ids[-1]
    assert repo.fsck().problems == []
    _check_all(repo, tmp_path)
    for w in range(8):  # each writer's saves got increasing IDs
        mine = sorted((m for m in repo.versions() if m["writer"] == str(tmp_path / f"w{w}")), key=lambda m: m["i"])
        assert [m["timestamp"] for m in mine] == sorted(m["timestamp"] for m in mine)
    with repo.store.write_lock(), repo.store.gc_lock(exclusive=True):
        pass  # no lock is still held
    assert list(repo.store.tmp.iterdir()) == []


def test_writers_while_gc_loops_with_grace_zero(tmp_path: Path) -> None:
    store = tmp_path / "store"
    Repository.init(store)
    gc = _start(GC_LOOP, store, 8)
    writers = [_start(WRITER, store, tmp_path / f"w{w}", 6) for w in range(8)]
    for p in writers:
        assert p.wait(timeout=300) == 0, p.stderr.read() if p.stderr else ""
    out, err = gc.communicate(timeout=60)
    assert gc.returncode == 0, err
    assert int(out) > 5  # gc really ran while the writers saved
    repo = Repository.open(store)
    assert len(repo.ids()) == 48
    assert repo.fsck().ok
    _check_all(repo, tmp_path)


@contextmanager
def _gc_during_save(repo: Repository, *, lock: bool, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run gc (grace 0) in another thread at the worst moment: objects written, version not yet published."""
    if not lock:

        @contextmanager
        def no_lock(self: Store, exclusive: bool = False):  # type: ignore[no-untyped-def]
            yield

        monkeypatch.setattr(Store, "gc_lock", no_lock)
    original_sync = repo.store.objects.sync
    finished = threading.Event()

    def sync_then_gc() -> None:
        original_sync()
        threading.Thread(target=lambda: (repo.gc(grace_seconds=0), finished.set())).start()
        finished.wait(timeout=1)  # with the lock, gc must wait for this save; without it, it sweeps now

    monkeypatch.setattr(repo.store.objects, "sync", sync_then_gc)
    yield finished
    finished.wait(timeout=10)


@pytest.mark.parametrize("lock", [True, False])
def test_gc_lock_is_what_protects_a_save_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lock: bool
) -> None:
    repo = Repository.init(tmp_path / "store")
    src = tmp_path / "m.bin"
    src.write_bytes(os.urandom(1 << 20))
    with _gc_during_save(repo, lock=lock, monkeypatch=monkeypatch):
        meta = repo.save(src)
    report = repo.fsck()
    if lock:
        assert report.ok and repo.checkout(meta["timestamp"], tmp_path / "out").read_bytes() == src.read_bytes()
    else:  # the demonstration: without the lock, gc deletes the objects of the save in progress
        assert not report.ok and meta["timestamp"] in report.damaged_versions
