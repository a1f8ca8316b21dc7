"""A/B of batched durability: MSTORE_BATCH_DURABILITY=0 (before: one fsync per object) vs 1 (batched).
save of 1 GB new fp32, save of a bf16 full fine-tune (v2 over v1), clone of a 3-version fp32 store from a
directory remote. `sync` before every timed run; runs alternate before/after; wall, user+sys CPU."""

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_peers
import bench_scale

W = Path(os.environ.get("BENCH_DIR", "/tmp/bench-durability"))
W.mkdir(parents=True, exist_ok=True)
MS = [sys.executable, "-m", "mstore"]
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
BF16_GIB = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
if not (W / "fp32/v3.safetensors").exists():
    (W / "fp32").mkdir(exist_ok=True)
    bench_peers.make_models(W / "fp32", 1024)
if not (W / "bf16/v2").exists():
    for v in (1, 2):
        bench_scale.write_version(W / f"bf16/v{v}", BF16_GIB, v)


def run(args, mode):
    env = dict(os.environ, MSTORE_BATCH_DURABILITY=mode)
    subprocess.run(["sync"])
    t = time.perf_counter()
    r0 = os.times()
    subprocess.run(MS + args, env=env, check=True, stdout=subprocess.DEVNULL)
    r1 = os.times()
    return time.perf_counter() - t, (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)


def fresh(p):
    shutil.rmtree(p, ignore_errors=True)


res = {}
# remote for clone: built once
remote = W / "remote"
if not (remote / "versions").exists() and not remote.exists():
    for v in ("v1", "v2", "v3"):
        subprocess.run(MS + ["--store", str(remote), "-q", "save", str(W / f"fp32/{v}.safetensors")], check=True)
for r in range(RUNS):
    for mode in ("0", "1") if r % 2 == 0 else ("1", "0"):
        s = W / "s"
        fresh(s)
        res.setdefault(("save-new fp32 1GB", mode), []).append(
            run(["--store", str(s), "-q", "save", str(W / "fp32/v1.safetensors")], mode)
        )
        fresh(s)
        subprocess.run(
            MS + ["--store", str(s), "-q", "save", str(W / "bf16/v1")],
            check=True,
            env=dict(os.environ, MSTORE_BATCH_DURABILITY=mode),
        )
        res.setdefault((f"save bf16 full fine-tune {BF16_GIB}GiB", mode), []).append(
            run(["--store", str(s), "-q", "save", str(W / "bf16/v2")], mode)
        )
        fresh(s)
        c = W / "c"
        fresh(c)
        res.setdefault(("clone 3x1GB fp32 dir remote", mode), []).append(
            run(["-q", "clone", str(remote), str(c)], mode)
        )
        fresh(c)
        print(r, mode, {k[0]: v[-1] for k, v in res.items() if k[1] == mode}, "load", os.getloadavg(), flush=True)
print("| op | before wall (cpu) | after wall (cpu) | runs |")
for op in dict.fromkeys(k[0] for k in res):
    b, a = res[(op, "0")], res[(op, "1")]

    def f(xs: list[tuple[float, float]]) -> str:
        return f"{statistics.median(x[0] for x in xs):.2f} s ({statistics.median(x[1] for x in xs):.2f} s)"

    walls = f"before {[round(x[0], 2) for x in b]} after {[round(x[0], 2) for x in a]}"
    print(f"| {op} | {f(b)} | {f(a)} | {len(b)} | all: {walls}")
print("load", os.getloadavg())
