"""How fast `mstore log -n 20` answers on a store with many versions, next to `ls` of the same store.

Builds a store of N versions with real saves (default 10,000; kept in --dir for reruns), then times
each command as a fresh process, several times, and prints the medians.

    python scripts/bench_log.py [--versions 10000] [--dir /tmp/mstore-bench-log] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mstore import Repository


def build(store: Path, count: int) -> None:
    repo = Repository.init(store)
    have = len(repo.ids())
    src = store.parent / "model.bin"
    for i in range(have, count):
        src.write_bytes(os.urandom(64) + i.to_bytes(4, "little"))
        repo.save(src, {"metrics": {"accuracy": 0.8 + (i % 100) / 1000, "loss": 1 / (i + 1)}, "step": i})
        if i % 1000 == 999:
            print(f"  {i + 1} versions", file=sys.stderr)


def timed(command: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/mstore-bench-log"))
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    store = args.dir / "store"
    args.dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    build(store, args.versions)
    print(f"store with {args.versions} versions ready ({time.perf_counter() - started:.0f}s)")
    mstore = [sys.executable, "-m", "mstore", "--store", str(store)]
    rows = [
        ("ls STORE", ["ls", str(store)]),
        ("ls -l STORE", ["ls", "-l", str(store)]),
        ("mstore --version (start-up only)", [*mstore, "--version"]),
        ("mstore log -n 20", [*mstore, "log", "-n", "20"]),
        ("mstore log -n 20 --oneline", [*mstore, "log", "-n", "20", "--oneline"]),
        ("mstore log -n 20 --json", [*mstore, "log", "-n", "20", "--json"]),
        ("mstore log --since 1h -n 20", [*mstore, "log", "--since", "1h", "-n", "20"]),
    ]
    print(f"\n| command ({args.versions} versions, median of {args.runs}) | seconds |")
    print("|---|---|")
    for label, command in rows:
        print(f"| `{label}` | {timed(command, args.runs):.3f} |")


if __name__ == "__main__":
    main()
