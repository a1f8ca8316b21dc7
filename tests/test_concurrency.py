"""Several processes saving into one store at once: unique IDs in save order, nothing lost or corrupt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mstore import Repository

WORKER = """
import sys
from mstore import Repository
repo = Repository.init(sys.argv[1])
for i in range(int(sys.argv[3])):
    path = sys.argv[2] + f".{i}"
    with open(path, "wb") as f:
        f.write(b"shared prefix " * 1000 + sys.argv[2].encode() + str(i).encode())
    repo.save(path, {"worker": sys.argv[2], "i": i})
"""


def test_parallel_writers_in_the_same_second(tmp_path: Path) -> None:
    store, workers, saves = tmp_path / "store", 4, 10
    Repository.init(store)
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(store), str(tmp_path / f"w{w}"), str(saves)])
        for w in range(workers)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * workers
    repo = Repository.open(store)
    ids = repo.ids()
    assert len(ids) == len(set(ids)) == workers * saves
    assert repo.store.refs.latest() == ids[-1]
    assert repo.fsck().problems == []
    for vid in ids:
        meta = repo.get(vid)
        src = Path(f"{meta['worker']}.{meta['i']}")
        assert repo.checkout(vid, tmp_path / "out" / vid).read_bytes() == src.read_bytes()
    # within one worker, later saves got later IDs
    for w in range(workers):
        mine = [m for m in repo.versions() if m["worker"] == str(tmp_path / f"w{w}")]
        assert [m["i"] for m in sorted(mine, key=lambda m: m["timestamp"])] == list(range(saves))
    assert not os.listdir(store / "tmp")
