"""The codec alone, in one process: encode and decode of tensor pieces, this tree against another one.

    python scripts/bench_codec.py                           # this tree only
    python scripts/bench_codec.py --before /path/to/other   # A/B, alternating, in the same process

Pieces of 4 MiB (mstore's tensor piece): bf16 and fp32 random-normal weights (all new) and the same
weights after a full fine-tune (every value nudged by ~1% of itself), encoded against their parent as
a save does (with the parent's sample). Times are CPU seconds of this thread (`time.thread_time`),
medians over `--rounds`, so other processes on a busy machine change them less than wall time would;
the sizes are exact. Also times python-blosc2 (shuffle + zstd level 1) on the same pieces when it is
installed (`pip install blosc2`), for comparison only.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

PIECE = 4 << 20


def pieces() -> dict[str, tuple[bytes, bytes]]:
    """name -> (parent content, content)."""
    rng = np.random.default_rng(23)
    w = rng.standard_normal(PIECE // 4, dtype=np.float32) * np.float32(0.02)
    tuned = w + w * rng.standard_normal(PIECE // 4, dtype=np.float32) * np.float32(0.01)

    def bf16(x: np.ndarray, n: int) -> bytes:
        u = x[:n].view(np.uint32)
        return (
            ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype("<u2").tobytes()
        )

    n16 = PIECE // 2
    w16 = np.concatenate([w, rng.standard_normal(PIECE // 4, dtype=np.float32) * np.float32(0.02)])
    t16 = w16 + w16 * rng.standard_normal(len(w16), dtype=np.float32) * np.float32(0.01)
    return {
        "bf16": (bf16(w16, n16), bf16(t16, n16)),
        "fp32": (w.tobytes(), tuned.astype(np.float32).tobytes()),
    }


def load(tree: Path | None) -> ModuleType:
    if tree is None:
        return importlib.import_module("mstore.store.codec")
    link = Path(tempfile.mkdtemp()) / "mstore_before"
    link.symlink_to(tree.resolve() / "mstore")
    sys.path.insert(0, str(link.parent))
    return importlib.import_module("mstore_before.store.codec")


def cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.thread_time()
    out = fn()
    return time.thread_time() - start, out


def measure(codec: ModuleType, data: dict[str, tuple[bytes, bytes]]) -> dict[str, tuple[float, int]]:
    """step -> (CPU seconds, stored bytes) for one round."""
    out: dict[str, tuple[float, int]] = {}
    for name, (parent, child) in data.items():
        out.update(measure_one(codec, name, parent, child, 2 if name == "bf16" else 4))
    return out


def measure_one(codec: ModuleType, name: str, parent: bytes, child: bytes, width: int) -> dict[str, tuple[float, int]]:
    enc = codec.Encoder(planes=True)
    out: dict[str, tuple[float, int]] = {}
    t, stored_parent = cpu(lambda: enc.encode(parent, width))
    out[f"{name} encode, all new"] = (t, len(stored_parent))
    sample = codec.sample_of(stored_parent, len(parent), width)
    base = codec.DeltaBase("ab" * 32, lambda: parent, 0)
    t, stored = cpu(lambda: enc.encode(child, width, base, base_sample=sample))
    out[f"{name} encode, fine-tune vs parent"] = (t, len(stored))
    t, got = cpu(lambda: codec.decode(stored_parent, len(parent), None, buffer=True))
    out[f"{name} decode, all new"] = (t, len(got))
    t, got = cpu(lambda: codec.decode(stored, len(child), lambda oid, n: parent, buffer=True))
    assert bytes(got) == child
    out[f"{name} decode, fine-tune (base given)"] = (t, len(got))
    grouped = codec.group(child, width)
    out[f"{name} group"] = (cpu(lambda: codec.group(child, width))[0], len(child))
    out[f"{name} ungroup"] = (cpu(lambda: codec.ungroup(grouped, width))[0], len(child))
    return out


def blosc2_round(data: dict[str, tuple[bytes, bytes]]) -> dict[str, tuple[float, int]]:
    try:
        import blosc2
    except ImportError:
        return {}
    blosc2.set_nthreads(1)  # thread CPU time: compare one core's work
    out = {}
    for name, (parent, child) in data.items():
        width = 2 if name == "bf16" else 4
        for label, content in (("all new", parent), ("fine-tune XOR parent", _xor(child, parent))):
            t, packed = cpu(
                lambda c=content, w=width: blosc2.compress2(
                    c, typesize=w, clevel=1, codec=blosc2.Codec.ZSTD, filters=[blosc2.Filter.SHUFFLE]
                )
            )
            out[f"{name} blosc2 shuffle+zstd1, {label}"] = (t, len(packed))
            t2, _ = cpu(lambda p=packed: blosc2.decompress2(p))
            out[f"{name} blosc2 decompress, {label}"] = (t2, len(content))
    return out


def _xor(a: bytes, b: bytes) -> bytes:
    return np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)).tobytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="another mstore source tree (the A of an A/B)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    data = pieces()
    trees = {"this tree": load(None)}
    if args.before:
        trees["before"] = load(args.before)
    results: dict[str, dict[str, list[tuple[float, int]]]] = {k: {} for k in [*trees, "blosc2"]}
    load_start = os.getloadavg()[0]
    for i in range(args.rounds):
        order = list(trees.items())
        for label, codec in order[::-1] if i % 2 else order:  # alternating, each first every other round
            for step, value in measure(codec, data).items():
                results[label].setdefault(step, []).append(value)
        for step, value in blosc2_round(data).items():
            results["blosc2"].setdefault(step, []).append(value)
    labels = list(trees)
    head = ["step (4 MiB piece)", *[f"{k} ms CPU" for k in labels], *[f"{k} MB/s" for k in labels]]
    head += ["stored bytes " + k for k in labels]
    if "before" in trees:
        head.append("this / before (CPU)")
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for step in results["this tree"]:
        med = {k: statistics.median(t for t, _ in results[k][step]) for k in labels}
        size = {k: results[k][step][0][1] for k in labels}
        row = [
            step,
            *[f"{med[k] * 1e3:.1f}" for k in labels],
            *[f"{PIECE / max(med[k], 1e-9) / 1e6:.0f}" for k in labels],
        ]
        row += [str(size[k]) for k in labels]
        if "before" in trees:
            row.append(f"{med['this tree'] / med['before']:.2f}x")
        print("| " + " | ".join(row) + " |")
    if results["blosc2"]:
        print()
        print("| python-blosc2, one thread | ms CPU | MB/s | bytes |")
        print("|---|---:|---:|---:|")
        for step, values in results["blosc2"].items():
            t = statistics.median(v for v, _ in values)
            print(f"| {step} | {t * 1e3:.1f} | {PIECE / t / 1e6:.0f} | {values[0][1]} |")
    end = os.getloadavg()[0]
    print(f"\nmedians of {args.rounds} rounds; load average (1 min) at the start / end: {load_start:.1f} / {end:.1f}")


if __name__ == "__main__":
    main()
