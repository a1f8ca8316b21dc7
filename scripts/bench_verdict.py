"""How long recomputing a pickle verdict from stored bytes takes (content/verdict.py), for a ~100 MB joblib
file: one large array (skipped by seeking), and a random forest (many small arrays and opcodes).

    .venv/bin/python scripts/bench_verdict.py [--mb 100]

Prints, per model: the save's own scan of the file on disk, and the recompute from the store's objects
(what pull / clone / import pay once per distinct model), with the peak memory the recompute added.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import joblib
import numpy as np

from mstore import Repository
from mstore.content import verdict
from mstore.formats import pickles


def models(mb: int) -> dict[str, object]:
    rng = np.random.default_rng(0)
    out: dict[str, object] = {"one array": {"w": rng.standard_normal(mb * (1 << 20) // 8)}}
    try:
        from sklearn.ensemble import RandomForestClassifier

        x = rng.standard_normal((20_000, 20))
        y = (x[:, 0] + rng.standard_normal(20_000) > 0).astype(int)
        trees = max(1, mb * 5 // 2)  # ~0.4 MB a tree
        out["random forest"] = RandomForestClassifier(n_estimators=trees, random_state=0, n_jobs=1).fit(x, y)
    except ImportError:
        pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-verdict-"))
    try:
        for name, model in models(args.mb).items():
            path = root / "model.joblib"
            joblib.dump(model, path)
            size = path.stat().st_size
            t = time.perf_counter()
            scan = pickles.scan_file(path)
            on_disk = time.perf_counter() - t
            assert scan is not None
            repo = Repository.init(root / "store")
            vid = str(repo.save(path)["timestamp"])
            meta = repo.store.versions.read(vid)
            shutil.rmtree(verdict.records_dir(repo.store))
            tracemalloc.start()
            t = time.perf_counter()
            record = verdict.record_for(repo.store, vid, meta)
            stored = time.perf_counter() - t
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            found = verdict.block_of(record).get("pickle_verdict")
            print(
                f"{name}: {size / 1e6:.0f} MB, {len(scan.globals)} globals, {scan.arrays} arrays; scan on disk "
                f"{on_disk:.2f} s; recompute from stored bytes {stored:.2f} s (peak +{peak / 1e6:.0f} MB); {found}"
            )
            shutil.rmtree(root / "store")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
