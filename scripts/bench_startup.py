"""How long an mstore command takes to start: CPU and wall time of short commands, this tree against another.

    python scripts/bench_startup.py --before /tmp/mstore-before        # 15 interleaved runs of each
    python scripts/bench_startup.py --before /tmp/mstore-before --before-python OLDVENV/bin/python
    (git archive <rev> mstore | tar -x -C /tmp/mstore-before  makes such a tree; a second venv measures
    other dependency versions too, e.g. the typer the older tree was installed with)

Each command runs as a fresh process on a small store (three versions of a 1 MB file), with this tree
and the `--before` tree on PYTHONPATH in turn; CPU is the child's user + system time (less sensitive to
other load than wall time). Prints a markdown table of medians and the ratio now / before.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = [["--version"], ["log"], ["show", "latest"], ["fsck"], ["diff", "latest~1", "latest"]]


def timed(python: str, tree: Path, store: Path, args: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [python, "-m", "mstore", "--store", str(store), *args],
        env={**os.environ, "PYTHONPATH": str(tree)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="a tree holding an older mstore/ package")
    parser.add_argument("--before-python", default=sys.executable, help="the interpreter for the --before tree")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    trees = {"now": (sys.executable, ROOT), "before": (args.before_python, args.before)}
    with tempfile.TemporaryDirectory() as tmp:
        store, model = Path(tmp) / "store", Path(tmp) / "model.bin"
        for _ in range(3):
            model.write_bytes(os.urandom(1 << 20))
            subprocess.run(
                [sys.executable, "-m", "mstore", "--store", str(store), "save", "-q", str(model)],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                check=True,
                stdout=subprocess.DEVNULL,
            )
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.runs):
            for command in COMMANDS:
                for name, (python, tree) in trees.items():
                    results.setdefault((" ".join(command), name), []).append(timed(python, tree, store, command))
    print(
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}; "
        f"{args.runs} interleaved runs; `python scripts/bench_startup.py {' '.join(sys.argv[1:])}`\n"
    )
    print("| command | CPU now (s) | CPU before (s) | now / before | wall now (s) | wall before (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for command in COMMANDS:
        key = " ".join(command)
        now = results[(key, "now")]
        old = results[(key, "before")]
        cpu_now, cpu_old = statistics.median(c for c, _ in now), statistics.median(c for c, _ in old)
        wall_now, wall_old = statistics.median(w for _, w in now), statistics.median(w for _, w in old)
        print(
            f"| `mstore {key}` | {cpu_now:.3f} | {cpu_old:.3f} | {cpu_now / cpu_old:.2f} | "
            f"{wall_now:.3f} | {wall_old:.3f} |"
        )


if __name__ == "__main__":
    main()
