"""Lazy reads from S3: one tensor, or the list of tensors, of a large checkpoint, without the rest.

    python scripts/bench_lazy.py [--size-mb 4096] [--tensor-mb 64] [--runs 3] [--endpoint URL] [--markdown]

Starts moto's S3 server on 127.0.0.1 (unless --endpoint is given), writes a safetensors checkpoint of
--size-mb (random fp32 tensors of --tensor-mb each, streamed to disk: memory stays at one tensor), saves
it into a local store and pushes it. Then, per run, with a fresh empty cache and no local store:

- `open`: `mstore.open_tensors(ref, remote=URL)`: resolve the ref, fetch the manifest and the header;
- `list`: the names, dtypes, shapes and sizes (`tensors()`): no further fetch;
- `get`: `f[name]` of the middle tensor: its chunks, each verified.

Reports medians of the times, and the bytes fetched, next to what the goals allow (issue 25): the list
fetches no weight bytes (only the manifest and the header chunk), one tensor fetches at most its stored
size + 1 MiB and arrives in under 0.3 s. Bytes do not depend on the machine's load; times do.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import mstore  # noqa: E402
from mstore import Repository  # noqa: E402
from mstore.content.storedfile import StoredFile  # noqa: E402
from mstore.formats.tensors import index_tensors  # noqa: E402
from mstore.store.layout import manifest_id  # noqa: E402

from s3helpers import moto_server, s3_client  # noqa: E402

MIB = 1 << 20


def write_checkpoint(path: Path, size_mb: int, tensor_mb: int) -> list[str]:
    """A safetensors file of random fp32 tensors, written one tensor at a time."""
    count = max(1, size_mb // tensor_mb)
    elements = tensor_mb * MIB // 4
    names = [f"layers.{i:04d}.weight" for i in range(count)]
    header: dict[str, Any] = {}
    for i, name in enumerate(names):
        header[name] = {
            "dtype": "F32",
            "shape": [elements // 1024, 1024],
            "data_offsets": [i * elements * 4, (i + 1) * elements * 4],
        }
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as out:
        out.write(len(head).to_bytes(8, "little") + head)
        for i in range(count):
            out.write(np.random.default_rng(i).standard_normal(elements, np.float32).tobytes())
    return names


def stored_bytes(repo: Repository, ref: str, name: str) -> tuple[int, int]:
    """(stored bytes of the chunks holding tensor `name`, of the manifest and the chunks before the first
    tensor: everything a list of the tensors needs)."""
    vid = repo.resolve(ref)
    moid = manifest_id(repo.get(vid), vid)
    entry = repo.manifest(ref).files[0]
    stored = StoredFile(entry, repo.store.objects)
    tensors = {t.name: t for t in index_tensors(entry.path, stored.read, entry.size) or []}
    first = min(t.offset for t in tensors.values())
    size = repo.store.objects.size
    tensor = sum(size(oid) for _, oid in stored.chunk_ids(tensors[name].offset, tensors[name].length))
    return tensor, size(moid) + sum(size(oid) for _, oid in stored.chunk_ids(0, first))


def one_run(url: str, ref: str, name: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-lazy-cache-") as cache:
        started = time.perf_counter()
        f = mstore.open_tensors(ref, remote=url, cache_dir=cache)
        opened = time.perf_counter()
        listed = f.tensors()
        after_list = time.perf_counter()
        list_bytes = f.bytes_fetched
        array = f[name]
        done = time.perf_counter()
        assert array.shape[0] > 0 and len(listed) > 0
        return {
            "open_s": opened - started,
            "list_s": after_list - opened,
            "list_bytes": list_bytes,
            "get_s": done - after_list,
            "get_bytes": f.bytes_fetched - list_bytes,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=4096)
    parser.add_argument("--tensor-mb", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--endpoint", help="an S3 server already running (default: start moto on 127.0.0.1)")
    parser.add_argument("--markdown", action="store_true", help="print the table for docs/benchmarks.md")
    args = parser.parse_args()
    with nullcontext(args.endpoint) if args.endpoint else moto_server() as endpoint:
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        with tempfile.TemporaryDirectory(prefix="bench-lazy-") as tmp:
            work = Path(tmp)
            names = write_checkpoint(work / "model.safetensors", args.size_mb, args.tensor_mb)
            repo = Repository.init(work / "store")
            repo.save(work / "model.safetensors")
            (work / "model.safetensors").unlink()
            bucket = f"bench-lazy-{uuid.uuid4().hex[:12]}"
            s3_client(endpoint).create_bucket(Bucket=bucket)
            url = f"s3://{bucket}/models"
            repo.remote_add("origin", url)
            repo.push("origin")
            name = names[len(names) // 2]
            tensor_stored, header_stored = stored_bytes(repo, "latest", name)
            runs = [one_run(url, "latest", name) for _ in range(args.runs)]
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    report(args, len(names), name, tensor_stored, header_stored, median)


def report(
    args: argparse.Namespace, count: int, name: str, tensor_stored: int, header_stored: int, m: dict[str, float]
) -> None:
    allowed = tensor_stored + MIB
    rows = [
        (
            "open (resolve, manifest, header)",
            f"{m['open_s']:.3f} s",
            f"{m['list_bytes'] / MIB:.3f} MiB",
            f"= manifest + header chunks ({header_stored / MIB:.3f} MiB stored): no weight bytes",
        ),
        ("list every tensor", f"{m['list_s']:.4f} s", "0 (no further fetch)", "headers only"),
        (
            f"get one tensor ({args.tensor_mb} MiB)",
            f"{m['get_s']:.3f} s",
            f"{m['get_bytes'] / MIB:.3f} MiB",
            f"<= {allowed / MIB:.3f} MiB (stored {tensor_stored / MIB:.3f} + 1), < 0.3 s",
        ),
    ]
    title = f"{args.size_mb} MiB checkpoint, {count} fp32 tensors of {args.tensor_mb} MiB, medians of {args.runs}"
    if args.markdown:
        print(f"### {title}\n\n| step | time | fetched | goal |\n|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        print(title)
        for row in rows:
            print("  " + "  ".join(f"{c:<34}" for c in row))
    ok_bytes = m["get_bytes"] <= allowed and m["list_bytes"] == header_stored
    print(f"\nbytes within the goals: {ok_bytes}; one tensor under 0.3 s: {m['get_s'] < 0.3} (tensor {name})")


if __name__ == "__main__":
    main()
