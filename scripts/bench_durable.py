"""A/B of batched durability in one tree: MSTORE_BATCH_DURABILITY=0 (an fsync per object, as before)
against batched, alternating, with a `sync` before every timed run; wall and user+sys CPU of the mstore
process (GNU time). Saves 1 GB of new fp32, a bf16 full fine-tune (GIB of folder, default 1) and a clone
of 3 bf16 versions from a directory remote.

    python scripts/bench_durable.py WORKDIR [RUNS] [fp32] [bf16] [clone]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

TREE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TREE / "scripts"))
import bench_peers  # noqa: E402
import bench_scale  # noqa: E402

PY = os.environ.get("PY", sys.executable)
TIME = "/usr/bin/time"


def mstore(args: list[str], batch: str, timing: Path) -> tuple[float, float]:
    env = dict(os.environ, MSTORE_BATCH_DURABILITY=batch, PYTHONPATH=str(TREE))
    subprocess.run(["sync"], check=True)
    cmd = [TIME, "-q", "-f", "%U %S %e", "-o", str(timing), PY, "-m", "mstore", *args]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    user, system, wall = map(float, timing.read_text().split()[-3:])
    return wall, user + system


def untimed(args: list[str]) -> None:
    env = dict(os.environ, PYTHONPATH=str(TREE))
    subprocess.run([PY, "-m", "mstore", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def main() -> None:
    work = Path(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    what = sys.argv[3:] or ["fp32", "bf16", "clone"]
    gib = float(os.environ.get("GIB", "1"))
    work.mkdir(parents=True, exist_ok=True)
    timing, st = work / "time.txt", work / "st"
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}

    def ab(name: str, r: int, step: object) -> None:
        for mode in ("0", "1") if r % 2 == 0 else ("1", "0"):
            results.setdefault((name, mode), []).append(step(mode))  # type: ignore[operator]

    if "fp32" in what:
        models = work / "fp32"
        if not (models / "v1.safetensors").exists():
            models.mkdir(exist_ok=True)
            bench_peers.make_models(models, 1000)

        def save_new(mode: str) -> tuple[float, float]:
            shutil.rmtree(st, ignore_errors=True)
            untimed(["--store", str(st), "init"])
            return mstore(["--store", str(st), "save", str(models / "v1.safetensors")], mode, timing)

        for r in range(runs):
            ab("save 1 GB fp32 new", r, save_new)
    folders = [work / f"b{v}" for v in (1, 2, 3)]
    if "bf16" in what or "clone" in what:
        for v, folder in enumerate(folders, 1):
            if not folder.exists():
                bench_scale.write_version(folder, gib, v)
    if "bf16" in what:

        def save_finetune(mode: str) -> tuple[float, float]:
            shutil.rmtree(st, ignore_errors=True)
            untimed(["--store", str(st), "init"])
            untimed(["--store", str(st), "save", str(folders[0])])
            return mstore(["--store", str(st), "save", str(folders[1])], mode, timing)

        for r in range(runs):
            ab(f"save bf16 full fine-tune ({gib} GiB)", r, save_finetune)
    if "clone" in what:
        remote, dest = work / "remote", work / "dest"
        if not remote.exists():
            shutil.rmtree(st, ignore_errors=True)
            untimed(["--store", str(st), "init"])
            for folder in folders:
                untimed(["--store", str(st), "save", str(folder)])
            untimed(["--store", str(st), "remote", "add", "origin", str(remote)])
            untimed(["--store", str(st), "push", "origin"])

        def clone(mode: str) -> tuple[float, float]:
            shutil.rmtree(dest, ignore_errors=True)
            return mstore(["clone", str(remote), str(dest)], mode, timing)

        for r in range(runs):
            ab(f"clone of 3 bf16 versions ({gib} GiB each) from a directory", r, clone)
        shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(st, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}; medians of {runs}")
    print("| operation | fsync each: wall / CPU | batched: wall / CPU | batched / each (wall) |")
    print("|---|---:|---:|---:|")
    for name in dict.fromkeys(n for n, _ in results):
        each, batched = results[(name, "0")], results[(name, "1")]

        def med(xs: list[tuple[float, float]], i: int) -> float:
            return statistics.median(x[i] for x in xs)

        print(
            f"| {name} | {med(each, 0):.2f} / {med(each, 1):.2f} s | {med(batched, 0):.2f} / "
            f"{med(batched, 1):.2f} s | {med(batched, 0) / med(each, 0):.2f}x |"
        )


if __name__ == "__main__":
    main()
