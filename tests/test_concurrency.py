"""Many processes at once: writers get unique IDs in save order and never corrupt each other, readers
never fail, and gc running in a loop never takes an object from a committed version."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import blake3
import pytest

from mstore import Repository
from mstore.store.layout import Store

from reliability import assert_no_lock_held

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves this suite out of the quick loop

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
import os, sys, time
import blake3
from mstore import Repository
repo = Repository.open(sys.argv[1])
stop, out = sys.argv[2], sys.argv[3]
deadline, reads, seen = time.time() + 240, 0, set()
while True:  # until the writers are done, then one last round
    done = os.path.exists(stop)
    seen.add(len(repo.ids()))
    for meta in repo.versions(limit=3):
        path = repo.checkout(meta["timestamp"], out + f"/{reads}")
        assert blake3.blake3(path.read_bytes()).hexdigest() == meta["model_hash"]
        path.unlink()
        reads += 1
    if done or time.time() > deadline:
        break
    time.sleep(0.05)
print(reads, len(seen))
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
    stop = tmp_path / "writers-done"
    readers = [_start(READER, store, stop, tmp_path / f"r{r}") for r in range(2)]
    writers = [_start(WRITER, store, tmp_path / f"w{w}", 25) for w in range(8)]
    for p in writers:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    stop.touch()
    for p in readers:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        reads, store_sizes_seen = map(int, out.split())
        assert reads > 0 and store_sizes_seen > 1, out  # each reader restored versions while writers saved
    repo = Repository.open(store)
    ids = repo.ids()
    assert len(ids) == len(set(ids)) == 200
    assert repo.store.refs.latest() == ids[-1]
    assert repo.fsck().problems == []
    _check_all(repo, tmp_path)
    for w in range(8):  # each writer's saves got increasing IDs
        mine = sorted((m for m in repo.versions() if m["writer"] == str(tmp_path / f"w{w}")), key=lambda m: m["i"])
        assert [m["timestamp"] for m in mine] == sorted(m["timestamp"] for m in mine)
    assert_no_lock_held(repo)
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
    """Run gc (grace 0) in another thread at the worst moment: objects written, version not yet published.

    No timing decides the outcome: the save goes on only once gc has asked for its lock (with the lock,
    gc then waits for the save, which is checked) or has finished sweeping (without it).
    """
    real_gc_lock = Store.gc_lock
    asking = threading.Event()

    @contextmanager
    def observed_gc_lock(self: Store, exclusive: bool = False):  # type: ignore[no-untyped-def]
        if exclusive:
            asking.set()
        if lock:
            with real_gc_lock(self, exclusive=exclusive):
                yield
        else:
            yield  # the lock disabled

    monkeypatch.setattr(Store, "gc_lock", observed_gc_lock)
    original_sync = repo.store.objects.sync
    finished = threading.Event()

    def sync_then_gc() -> None:
        original_sync()
        threading.Thread(target=lambda: (repo.gc(grace_seconds=0), finished.set())).start()
        assert asking.wait(timeout=60), "gc never asked for its lock"
        if lock:
            assert not finished.is_set()  # it cannot have run: this save holds the lock shared
        else:
            assert finished.wait(timeout=60), "gc did not finish"  # it sweeps now, before the version lands

    monkeypatch.setattr(repo.store.objects, "sync", sync_then_gc)
    yield finished
    assert finished.wait(timeout=60), "gc did not finish after the save"


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
