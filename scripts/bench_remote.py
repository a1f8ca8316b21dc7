"""Push / pull throughput against a local S3 server, next to a plain boto3 upload of the same file.

    python scripts/bench_remote.py [--size-mb 1000] [--runs 3] [--endpoint http://127.0.0.1:PORT] [--markdown]

Starts moto's S3 server on 127.0.0.1 (unless --endpoint is given), writes a safetensors model of
--size-mb (random fp32 tensors of 4 MiB: incompressible-ish, like trained weights), saves it into a
local store, then per run, each into a fresh bucket:

- baseline: boto3 `upload_file` / `download_file` of the model file (what `aws s3 cp` does: multipart,
  10 threads), and `download_file` as one streamed GET (moto serves ranged GETs of a large object
  slowly, so downloads are compared with the faster of the two);
- `mstore push` of the whole model, `mstore clone` of it (every object verified on the way in);
- an incremental version (one 4 MiB tensor retrained): `mstore push` and `mstore pull` of just it.

mstore runs as a fresh process each time (start-up included). Reports medians and the ratio to the
baseline measured in the same run, plus the bytes each incremental transfer sent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import numpy as np
from boto3.s3.transfer import TransferConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import safetensors_bytes  # noqa: E402
from s3helpers import free_port, wait_until_up  # noqa: E402

TENSOR = 1 << 20  # fp32 elements per tensor: 4 MiB


def model_bytes(n_tensors: int, changed: int | None = None) -> bytes:
    tensors = {}
    for i in range(n_tensors):
        seed = 1000 + i if i != changed else 9999
        tensors[f"layer{i:04d}.weight"] = ("F32", np.random.default_rng(seed).standard_normal(TENSOR, np.float32))
    return safetensors_bytes(tensors)


def mstore(store: Path, *args: str, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "mstore.cli", "--store", str(store), *args, "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started, json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--endpoint", help="an S3 endpoint to use instead of starting moto")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mstore-bench-remote-"))
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
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    try:
        n = max(1, args.size_mb * (1 << 20) // (TENSOR * 4))
        model = work / "model.safetensors"
        model.write_bytes(model_bytes(n))
        size = model.stat().st_size
        store = work / "store"
        mstore(store, "save", str(model), env=env)
        tuned = work / "tuned.safetensors"
        tuned.write_bytes(model_bytes(n, changed=n // 2))
        results: dict[str, list[float]] = {}
        incremental_bytes: dict[str, int] = {}

        def record(name: str, seconds: float) -> None:
            results.setdefault(name, []).append(seconds)

        for run in range(args.runs):
            bucket = f"bench-{uuid.uuid4().hex[:12]}"
            client.create_bucket(Bucket=bucket)
            config = TransferConfig()  # boto3's defaults: what `aws s3 cp` uses
            started = time.perf_counter()
            client.upload_file(str(model), bucket, "baseline/model.safetensors", Config=config)
            record("boto3 upload_file", time.perf_counter() - started)
            started = time.perf_counter()
            client.download_file(bucket, "baseline/model.safetensors", str(work / "downloaded"), Config=config)
            record("boto3 download_file", time.perf_counter() - started)
            (work / "downloaded").unlink()
            one_get = TransferConfig(multipart_threshold=size + 1)  # one streamed GET instead of ranged parts
            started = time.perf_counter()
            client.download_file(bucket, "baseline/model.safetensors", str(work / "downloaded"), Config=one_get)
            record("boto3 download_file (one GET)", time.perf_counter() - started)
            (work / "downloaded").unlink()

            run_store = work / f"store{run}"
            shutil.copytree(store, run_store)
            url = f"s3://{bucket}/models"
            subprocess.run(
                [sys.executable, "-m", "mstore.cli", "--store", str(run_store), "remote", "add", "origin", url],
                env=env,
                check=True,
                capture_output=True,
            )
            seconds, _ = mstore(run_store, "push", env=env)
            record("mstore push (new model)", seconds)
            clone = work / f"clone{run}"
            seconds, _ = mstore(work, "clone", url, str(clone), env=env)
            record("mstore clone (new model)", seconds)

            mstore(run_store, "save", str(tuned), env=env)
            seconds, stats = mstore(run_store, "push", env=env)
            record("mstore push (1 tensor changed)", seconds)
            incremental_bytes["push"] = stats["bytes_sent"]
            seconds, stats = mstore(clone, "pull", env=env)
            record("mstore pull (1 tensor changed)", seconds)
            incremental_bytes["pull"] = stats["bytes_sent"]
            restored = work / "restored.safetensors"
            subprocess.run(
                [sys.executable, "-m", "mstore.cli", "--store", str(clone), "checkout", "latest", "-o", str(restored)],
                env=env,
                check=True,
                capture_output=True,
            )
            assert restored.read_bytes() == tuned.read_bytes(), "the pulled model is not bit-exact"
            restored.unlink()
            shutil.rmtree(run_store)
            shutil.rmtree(clone)
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)

        print_table(results, size, incremental_bytes, args.markdown)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def print_table(results: dict[str, list[float]], size: int, incremental: dict[str, int], markdown: bool) -> None:
    mib = 1 << 20
    up = statistics.median(results["boto3 upload_file"])
    down = min(
        statistics.median(results["boto3 download_file"]), statistics.median(results["boto3 download_file (one GET)"])
    )
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    runs = len(results["boto3 upload_file"])
    print(f"model: {size / mib:.0f} MiB safetensors; machine: {machine}; medians of {runs} runs")
    rows = []
    for name, times in results.items():
        median = statistics.median(times)
        baseline = down if ("clone" in name or "pull" in name or "download" in name) else up
        sent = ""
        if "changed" in name:
            sent = f"{incremental['push' if 'push' in name else 'pull'] / mib:.2f} MiB"
        throughput = f"{size / mib / median:.0f} MiB/s" if "changed" not in name else "-"
        rows.append((name, f"{median:.2f} s", throughput, f"{median / baseline:.2f}x", sent))
    header = ("operation", "median", "throughput", "time vs best boto3", "bytes sent")
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|---|---:|---:|---:|---:|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        for row in [header, *rows]:
            print(f"{row[0]:34} {row[1]:>9} {row[2]:>11} {row[3]:>14} {row[4]:>11}")


if __name__ == "__main__":
    main()
