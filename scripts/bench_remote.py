"""Push / clone throughput against a local S3 server (and a directory), next to boto3 moving the same files.

    python scripts/bench_remote.py                         # 1 GB fp32 + a 3-version bf16 folder, medians of 3
    python scripts/bench_remote.py --size-mb 256 --bf16-gib 0.25 --runs 1   # while developing
    python scripts/bench_remote.py --endpoint http://127.0.0.1:PORT         # a server already running

Starts moto's S3 server on 127.0.0.1 (unless --endpoint is given). moto keeps every object **in memory**
(the server's RSS is printed after each run; buckets are emptied after each step) and is pure Python, so
it shares the 2 cores with the client under test: its CPU seconds per step are printed too.

Two stores, built once (untimed), under --workdir (default /tmp/s10-remote):

- `fp32`: one safetensors file of --size-mb of new random fp32 tensors of 4 MiB (the worst case for
  compression: mstore moves ~0.84x the bytes);
- `bf16`: 3 versions of the Llama-style bf16 folder of scripts/bench_scale.py at --bf16-gib a version
  (v1 new, v2 a full fine-tune, v3 a LoRA merge): mstore moves the deltas, boto3 every file of every version.

Per run and store, each step after an untimed `sync`, in a fresh bucket / directory, mstore and boto3
alternating which goes first:

- boto3 `upload_file` of every file of every version, then `download_file` of each: boto3's default
  `TransferConfig` (multipart above 8 MiB, 8 MiB parts, 10 threads: what `aws s3 cp` does), in this
  process (boto3 imported already: no start-up);
- `mstore push` to an `s3://` remote, `mstore clone` of it (fresh processes, start-up included; every
  object verified before it leaves and hashed again before it is stored);
- `mstore push` to a directory remote and `mstore clone` of it;
- with `--before OTHER_TREE`, the same mstore steps again with that tree's package first on PYTHONPATH
  (rows marked `[before]`), in the same runs, the order alternating.

Prints, per step, the median wall time, the bytes on the wire (file bytes for boto3, `bytes_sent` for
mstore), MB/s of those bytes, the logical MB/s (the model's bytes per second: what a user waits for),
the ratio of mstore's time to boto3's, CPU seconds of the client and of the server, and the load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import numpy as np
from boto3.s3.transfer import TransferConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import safetensors_bytes  # noqa: E402
from s3helpers import free_port, wait_until_up  # noqa: E402

TENSOR = 1 << 20  # fp32 elements per tensor: 4 MiB
MB = 1e6


def model_bytes(n_tensors: int) -> bytes:
    tensors = {}
    for i in range(n_tensors):
        tensors[f"layer{i:04d}.weight"] = ("F32", np.random.default_rng(1000 + i).standard_normal(TENSOR, np.float32))
    return safetensors_bytes(tensors)


def sync() -> None:
    subprocess.run(["sync"], check=True)


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (the S3 server)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def mstore(store: Path, *args: str, env: dict[str, str], json_out: bool = True) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "mstore.cli", "--store", str(store), *args, *(["--json"] if json_out else [])],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    parsed: dict[str, Any] = json.loads(out.stdout) if json_out else {}
    return parsed


class Bench:
    def __init__(self, endpoint: str, env: dict[str, str], server_pid: int | None, work: Path) -> None:
        self.endpoint, self.env, self.server_pid, self.work = endpoint, env, server_pid, work
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        self.results: dict[str, dict[str, list[dict[str, float]]]] = {}
        self.server_rss: list[float] = []

    def timed(self, scenario: str, step: str, fn: Any, *, in_process: bool) -> Any:
        sync()
        server0 = proc_cpu(self.server_pid) if self.server_pid else 0.0
        cpu0 = time.process_time() if in_process else child_cpu()
        started = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - started
        cpu = (time.process_time() if in_process else child_cpu()) - cpu0
        server = (proc_cpu(self.server_pid) if self.server_pid else 0.0) - server0
        bytes_moved = out if isinstance(out, int) else 0
        row = {"wall": wall, "cpu": cpu, "server_cpu": server, "bytes": bytes_moved, "load": os.getloadavg()[0]}
        self.results.setdefault(scenario, {}).setdefault(step, []).append(row)
        return out

    def empty(self, bucket: str) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        self.client.delete_bucket(Bucket=bucket)

    def boto3_round(self, scenario: str, files: list[Path]) -> None:
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=bucket)
        config = TransferConfig()  # boto3's defaults: what `aws s3 cp` uses
        keys = [f"baseline/{i}/{f.name}" for i, f in enumerate(files)]

        def upload() -> int:
            for f, key in zip(files, keys, strict=True):
                self.client.upload_file(str(f), bucket, key, Config=config)
            return sum(f.stat().st_size for f in files)

        self.timed(scenario, "boto3 upload_file", upload, in_process=True)
        down = self.work / "downloaded"
        down.mkdir()

        def download() -> int:
            for i, key in enumerate(keys):
                self.client.download_file(bucket, key, str(down / f"{i}"), Config=config)
            return sum(f.stat().st_size for f in files)

        self.timed(scenario, "boto3 download_file", download, in_process=True)
        shutil.rmtree(down)
        self.empty(bucket)

    def mstore_round(self, scenario: str, store: Path, run: int, before: Path | None = None) -> None:
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=bucket)
        env, tag = self.env, ""
        if before is not None:  # the other tree's mstore package first on the path
            env, tag = dict(self.env, PYTHONPATH=str(before)), " [before]"
        for kind, url in (("s3", f"s3://{bucket}/models"), ("dir", str(self.work / f"remote-{run}"))):
            run_store = self.work / f"store-{run}"
            shutil.copytree(store, run_store)
            mstore(run_store, "remote", "add", "origin", url, env=env, json_out=False)
            self.timed(
                scenario,
                f"mstore push ({kind}){tag}",
                lambda s=run_store: int(mstore(s, "push", env=env)["bytes_sent"]),
                in_process=False,
            )
            clone = self.work / f"clone-{run}"
            self.timed(
                scenario,
                f"mstore clone ({kind}){tag}",
                lambda c=clone, u=url: int(mstore(self.work, "clone", u, str(c), env=env)["bytes_sent"]),
                in_process=False,
            )
            shutil.rmtree(run_store)
            shutil.rmtree(clone)
            if kind == "dir":
                shutil.rmtree(url)
        self.empty(bucket)


def built(work: Path, size_mb: int, bf16_gib: float) -> dict[str, tuple[Path, list[Path]]]:
    """The source stores: scenario -> (store, the files of every version saved in it)."""
    out: dict[str, tuple[Path, list[Path]]] = {}
    if size_mb:
        out["fp32"] = (work / "fp32-store", [work / "fp32" / "model.safetensors"])
    if bf16_gib:
        files = [p for v in (1, 2, 3) for p in sorted((work / "bf16" / f"v{v}").iterdir()) if p.is_file()]
        out["bf16"] = (work / "bf16-store", files)
    return out


def build(work: Path, size_mb: int, bf16_gib: float, env: dict[str, str]) -> None:
    """Write the models and save them into the source stores (untimed)."""
    import bench_scale

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if size_mb:
        n = max(1, size_mb * (1 << 20) // (TENSOR * 4))
        src = work / "fp32" / "model.safetensors"
        src.parent.mkdir(parents=True)
        src.write_bytes(model_bytes(n))
        store = work / "fp32-store"
        mstore(store, "save", str(src), env=env)
    if bf16_gib:
        store = work / "bf16-store"
        for version in (1, 2, 3):
            folder = work / "bf16" / f"v{version}"
            bench_scale.write_version(folder, bf16_gib, version)
            mstore(store, "save", str(folder), env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1000, help="the fp32 model's size (0: skip it)")
    parser.add_argument("--bf16-gib", type=float, default=0.5, help="GiB a version of the bf16 folder (0: skip)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--endpoint", help="an S3 endpoint to use instead of starting moto")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/s10-remote"))
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--keep-sources", action="store_true", help="keep the built stores for the next run")
    parser.add_argument("--before", type=Path, help="another tree: its mstore runs the same steps (A/B, alternating)")
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    work = args.workdir / f"bench-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    server = None
    endpoint = args.endpoint
    if endpoint is None:
        port = free_port()
        exe = Path(sys.executable).with_name("moto_server")
        server = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        endpoint = f"http://127.0.0.1:{port}"
        wait_until_up(endpoint)
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", "bench"),
        AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", "bench"),
        AWS_DEFAULT_REGION="us-east-1",
    )
    load_start = os.getloadavg()
    bench = Bench(endpoint, env, server.pid if server else None, work)
    try:
        sources = args.workdir / f"sources-{args.size_mb}-{args.bf16_gib}"
        if not sources.exists():
            build(sources.with_suffix(".tmp"), args.size_mb, args.bf16_gib, env)
            sources.with_suffix(".tmp").rename(sources)
        stores = built(sources, args.size_mb, args.bf16_gib)
        for run in range(args.runs):
            for scenario, (store, files) in stores.items():
                rounds = [partial(bench.boto3_round, scenario, files)]
                rounds.append(partial(bench.mstore_round, scenario, store, run))
                if args.before is not None:
                    rounds.insert(1, partial(bench.mstore_round, scenario, store, run, args.before))
                for go in rounds if run % 2 == 0 else reversed(rounds):
                    go()
                if server is not None:
                    bench.server_rss.append(proc_rss_mib(server.pid))
            print(f"run {run + 1}/{args.runs} done (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
        sizes = {s: sum(f.stat().st_size for f in files) for s, (_, files) in stores.items()}
        print(report(bench, sizes, args.runs, load_start))
        if args.json:
            args.json.write_text(json.dumps({"results": bench.results, "sizes": sizes}, indent=1))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep_sources:
            shutil.rmtree(args.workdir / f"sources-{args.size_mb}-{args.bf16_gib}", ignore_errors=True)


def report(bench: Bench, sizes: dict[str, int], runs: int, load_start: tuple[float, float, float]) -> str:
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"medians of {runs}; load (1 min) at the start / end: {load_start[0]:.1f} / {os.getloadavg()[0]:.1f}",
        "boto3: TransferConfig() defaults (multipart_threshold 8 MiB, multipart_chunksize 8 MiB, "
        "max_concurrency 10), files one after another",
    ]
    if bench.server_rss:
        lines.append(
            f"moto keeps objects in memory: server RSS after each run {', '.join(f'{r:.0f}' for r in bench.server_rss)}"
            " MiB (buckets emptied after each step)"
        )
    header = (
        "| store | step | wall s | bytes moved MB | wire MB/s | model MB/s | vs boto3 | client CPU s | server CPU s |"
    )
    lines += ["", header, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for scenario, steps in bench.results.items():
        med = {step: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for step, rows in steps.items()}
        up, down = med["boto3 upload_file"]["wall"], med["boto3 download_file"]["wall"]
        for step, m in med.items():
            base = down if ("clone" in step or "download" in step) else up
            vs = f"{m['wall'] / base:.2f}x" if "(dir)" not in step else "-"
            lines.append(
                f"| {scenario} ({sizes[scenario] / MB:.0f} MB) | {step} | {m['wall']:.2f} | {m['bytes'] / MB:.0f} | "
                f"{m['bytes'] / MB / m['wall']:.0f} | {sizes[scenario] / MB / m['wall']:.0f} | {vs} | "
                f"{m['cpu']:.2f} | {m['server_cpu']:.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
