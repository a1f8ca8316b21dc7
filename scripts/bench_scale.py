"""mstore against DVC and borg on an LLM-sized, sharded bf16 checkpoint folder, in one run.

    python scripts/bench_scale.py                          # 4 GiB a version, medians of 3
    python scripts/bench_scale.py --size-gib 0.5 --runs 1  # while developing

A Llama-style `save_pretrained` folder (config.json, model.safetensors.index.json and 4 bf16 safetensors
shards; hidden 2048, MLP 5632, as many layers as `--size-gib` allows) is generated deterministically,
no download: fp32 values from seeded random normals, rounded to bf16 by hand (round to nearest even on
the bit pattern). The versions:

    v1  the pretrained model (all new)
    v2  a full fine-tune: every tensor nudged by ~1% of itself (most low bytes change, few high bytes)
    v3  a LoRA merge into v2: only the q/k/v/o projections change, by a rank-16 product
    v4  identical to v3 (the files rewritten, so every tool reads them again)

Each tool gets a fresh repository; every operation is a fresh process, after an untimed `sync`:
save v1..v4, checkout v2 and v4 (checked file by file with blake3, untimed), verify (mstore fsck / md5sum
of DVC's cache / borg check --verify-data), push to a directory remote (mstore push / dvc push
--all-commits) and clone from it (mstore clone / git clone + dvc fetch --all-commits). Limits, each part
timed on its own after a `sync`: b3sum + cp -r + sync of the folder (saves), b3sum + cp -r (checkout).
Prints medians, ratios, bytes stored and moved, peak RSS per command (GNU time) and the load average.
DVC is pip-installed into its own venv (see bench_peers.py, `--venvs`); borg and b3sum come from apt.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_peers as peers  # noqa: E402

HIDDEN, MLP, SHARDS, RANK = 2048, 5632, 4, 16
OPS = (
    "save_v1",
    "save_v2",
    "save_v3",
    "save_v4",
    "checkout_v2",
    "checkout_v4",
    "verify",
    "push",
    "clone",
)
LABEL = {
    "save_v1": "save v1 (all new)",
    "save_v2": "save v2 (full fine-tune)",
    "save_v3": "save v3 (LoRA merge)",
    "save_v4": "save v4 (identical)",
    "checkout_v2": "checkout v2",
    "checkout_v4": "checkout v4 (newest)",
    "verify": "verify (fsck)",
    "push": "push to a directory",
    "clone": "clone from it (git clone + dvc fetch)",
}
TOOLS = ("mstore", "dvc", "borg")
RSS: dict[str, dict[str, int]] = {}  # tool -> op -> peak RSS (KiB) of any of its processes
CURRENT: list[str] = ["", ""]  # tool, op being timed (for RSS)


# -- the model ---------------------------------------------------------------------------------------


def layout(size_gib: float) -> tuple[list[tuple[str, tuple[int, ...]]], int, int]:
    """(tensor name, shape) in file order, vocabulary, layers: about `size_gib` GiB of bf16."""
    target = int(size_gib * 2**30)
    vocab = 32000 if target >= 1 << 30 else 8000
    per_layer = 2 * (4 * HIDDEN * HIDDEN + 3 * HIDDEN * MLP + 2 * HIDDEN)
    layers = max(1, round((target - 2 * (2 * vocab * HIDDEN + HIDDEN)) / per_layer))
    names: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, HIDDEN))]
    for i in range(layers):
        p = f"model.layers.{i}."
        names += [(p + "input_layernorm.weight", (HIDDEN,))]
        names += [(p + f"self_attn.{x}_proj.weight", (HIDDEN, HIDDEN)) for x in "qkvo"]
        names += [(p + "post_attention_layernorm.weight", (HIDDEN,))]
        names += [(p + "mlp.gate_proj.weight", (MLP, HIDDEN)), (p + "mlp.up_proj.weight", (MLP, HIDDEN))]
        names += [(p + "mlp.down_proj.weight", (HIDDEN, MLP))]
    names += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (vocab, HIDDEN))]
    return names, vocab, layers


def bf16(values: np.ndarray) -> np.ndarray:
    """fp32 -> bf16 bit patterns (uint16), rounded to nearest even by hand."""
    u = values.astype(np.float32).view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)


def tensor(name: str, shape: tuple[int, ...], version: int) -> np.ndarray:
    """The bf16 bit patterns of one tensor in version 1-4 (deterministic: seeded by name)."""
    seed = zlib.crc32(name.encode())
    rng = np.random.default_rng(seed)
    if len(shape) == 1:  # a norm's weight: near 1
        w = np.float32(1) + rng.standard_normal(shape, dtype=np.float32) * np.float32(0.05)
    else:
        w = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
    if version >= 2:  # full fine-tune: every weight moves by ~1% of itself
        nudge = np.random.default_rng(seed + 1).standard_normal(shape, dtype=np.float32)
        w += w * nudge * np.float32(0.01)
        del nudge
    w = w.astype(np.float32)
    if version >= 3 and any(f"self_attn.{x}_proj" in name for x in "qkvo"):  # LoRA merge: W + B @ A
        r = np.random.default_rng(seed + 2)
        b = r.standard_normal((shape[0], RANK), dtype=np.float32)
        a = r.standard_normal((RANK, shape[1]), dtype=np.float32)
        w = bf16_to_f32(bf16(w)) + (b @ a) * np.float32(0.0005)
    return bf16(w)


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def shards(names: list[tuple[str, tuple[int, ...]]]) -> list[list[tuple[str, tuple[int, ...]]]]:
    total = sum(2 * int(np.prod(s)) for _, s in names)
    out: list[list[tuple[str, tuple[int, ...]]]] = [[] for _ in range(SHARDS)]
    done = 0
    for name, shape in names:
        out[min(SHARDS - 1, done * SHARDS // total)].append((name, shape))
        done += 2 * int(np.prod(shape))
    return [s for s in out if s]


def write_version(folder: Path, size_gib: float, version: int) -> dict[str, str]:
    """Write the model folder for `version`; returns {file: blake3 hex} of what was written."""
    names, vocab, layers = layout(size_gib)
    folder.mkdir(parents=True)
    digests: dict[str, str] = {}
    parts = shards(names)
    weight_map: dict[str, str] = {}
    for k, part in enumerate(parts):
        fname = f"model-{k + 1:05d}-of-{len(parts):05d}.safetensors"
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, shape in part:
            n = 2 * int(np.prod(shape))
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
            weight_map[name] = fname
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        h = blake3.blake3()
        with open(folder / fname, "wb") as f:
            for block in (struct.pack("<Q", len(raw)), raw):
                f.write(block)
                h.update(block)
            for name, shape in part:
                data = tensor(name, shape, version).tobytes()
                f.write(data)
                h.update(data)
        digests[fname] = h.hexdigest()
    total = sum(2 * int(np.prod(s)) for _, s in names)
    small = {
        "config.json": json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "hidden_size": HIDDEN,
                "intermediate_size": MLP,
                "num_hidden_layers": layers,
                "num_attention_heads": 16,
                "vocab_size": vocab,
                "torch_dtype": "bfloat16",
            },
            indent=2,
        ),
        "model.safetensors.index.json": json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2
        ),
    }
    for fname, text in small.items():
        (folder / fname).write_text(text)
        digests[fname] = blake3.blake3(text.encode()).hexdigest()
    return digests


def folder_digests(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.iterdir()):
        h = blake3.blake3(max_threads=blake3.blake3.AUTO)
        with open(path, "rb") as f:
            while block := f.read(16 << 20):
                h.update(block)
        out[path.name] = h.hexdigest()
    return out


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) if path.exists() else 0


# -- commands, with their peak RSS (GNU time) ----------------------------------------------------------

_run = subprocess.run
TIME = "/usr/bin/time"  # GNU time: the peak RSS of the command itself (a child forked from this big
# Python process would report this process's RSS at fork time as its own)


def run_rss(args: Any, **kw: Any) -> subprocess.CompletedProcess[Any]:
    """subprocess.run, with the command's peak RSS recorded under the tool and operation being timed."""
    tool, op = CURRENT
    if not tool or not os.path.exists(TIME):
        return _run(args, **kw)
    with tempfile.NamedTemporaryFile("r") as out:
        result = _run([TIME, "-q", "-f", "%M", "-o", out.name, *args], **kw)
        text = out.read().split()
    if text and text[-1].isdigit():
        ops = RSS.setdefault(tool, {})
        ops[op] = max(ops.get(op, 0), int(text[-1]))
    return result


class MStore(peers.MStore):
    def push(self, remote: Path) -> None:
        self.run(self.cmd("push", "origin"))

    def add_remote(self, remote: Path) -> None:
        self.run(self.cmd("remote", "add", "origin", str(remote)))

    def clone(self, remote: Path, dest: Path) -> None:
        self.run([sys.executable, "-m", "mstore", "clone", str(remote), str(dest)])


class Dvc(peers.Dvc):
    """The remote goes into the local config (`--local`): `--all-commits` reads each commit's own
    committed config, so a remote committed after v1-v4 would push only the newest version."""

    def add_remote(self, remote: Path) -> None:
        self.run([self.exe, "remote", "add", "--local", "-d", "origin", str(remote)])

    def push(self, remote: Path) -> None:
        self.run([self.exe, "push", "-q", "--all-commits"])

    def clone(self, remote: Path, dest: Path) -> None:
        self.run(["git", "clone", "-q", str(self.ws), str(dest)])
        self.run([self.exe, "remote", "add", "--local", "-d", "origin", str(remote)], cwd=dest)
        self.run([self.exe, "fetch", "-q", "--all-commits"], cwd=dest)


class Borg(peers.Borg):
    pass


CLASSES: dict[str, type[peers.Tool]] = {"mstore": MStore, "dvc": Dvc, "borg": Borg}


def bench(size_gib: float, runs: int, tools: list[str], workdir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    src = workdir / "src"
    src.mkdir()
    source = src / "model"
    env = {
        **os.environ,
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        "BORG_BASE_DIR": str(workdir / "borg-home"),
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
        "HOME": str(workdir / "home"),
    }
    (workdir / "home").mkdir()
    times: dict[str, dict[str, list[float]]] = {t: {op: [] for op in OPS} for t in [*tools, "b3sum", "cp", "sync"]}
    sizes: dict[str, Any] = {"store": {}, "moved": {}, "version": 0}
    expected: dict[int, dict[str, str]] = {}

    def timed(tool: str, op: str, fn: Callable[..., object], *args: object) -> None:
        subprocess.run(["sync"], check=True)
        CURRENT[:] = [tool, op]
        start = time.perf_counter()
        try:
            fn(*args)
        finally:
            CURRENT[:] = ["", ""]
        times[tool][op].append(time.perf_counter() - start)

    def limits(op: str, save: bool) -> None:
        subprocess.run(["sync"], check=True)
        files = [str(p) for p in sorted(source.iterdir())]
        start = time.perf_counter()
        peers.quiet("b3sum", *files)
        times["b3sum"][op].append(time.perf_counter() - start)
        subprocess.run(["sync"], check=True)
        copy = workdir / "cp-copy"
        start = time.perf_counter()
        peers.quiet("cp", "-r", str(source), str(copy))
        times["cp"][op].append(time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run(["sync"], check=True)
        if save:
            times["sync"][op].append(time.perf_counter() - start)
        shutil.rmtree(copy)

    for run in range(runs):
        order = tools[run % len(tools) :] + tools[: run % len(tools)]
        repos: dict[str, Any] = {}
        for name in order:
            repos[name] = CLASSES[name](workdir / f"run{run}" / name, source, env)
            repos[name].init()
        for version in (1, 2, 3, 4):
            if source.exists():
                os.replace(source, src / ".old")
                shutil.rmtree(src / ".old")
            start = time.perf_counter()
            expected[version] = write_version(source, size_gib, min(version, 3))
            print(f"v{version} written in {time.perf_counter() - start:.1f} s", file=sys.stderr)
            sizes["version"] = du(source)
            time.sleep(1.1)
            op = f"save_v{version}"
            for name in order:
                timed(name, op, repos[name].save, f"v{version}")
            limits(op, save=True)
        for version in (2, 4):
            op = f"checkout_v{version}"
            for name in order:
                dest = workdir / f"run{run}" / f"{name}-out"
                dest.mkdir()
                timed(name, op, repos[name].checkout, f"v{version}", dest)
                if folder_digests(dest / source.name) != expected[version]:
                    raise SystemExit(f"{name}: checkout of v{version} is not bit-exact")
                shutil.rmtree(dest)
            limits(op, save=False)
        for name in order:
            timed(name, "verify", repos[name].verify)
            sizes["store"][name] = du(repos[name].repo if name != "dvc" else source.parent / ".dvc" / "cache")
        for name in order:
            if not hasattr(repos[name], "push"):
                continue
            remote = workdir / f"run{run}" / f"{name}-remote"
            remote.mkdir()
            repos[name].add_remote(remote)
            timed(name, "push", repos[name].push, remote)
            sizes["moved"][name] = du(remote)
            dest = workdir / f"run{run}" / f"{name}-clone"
            timed(name, "clone", repos[name].clone, remote, dest)
            sizes.setdefault("cloned", {})[name] = du(dest / ".dvc" / "cache" if name == "dvc" else dest)
            shutil.rmtree(dest)
            shutil.rmtree(remote)
        for name in order:
            shutil.rmtree(repos[name].root)
        print(f"run {run + 1}/{runs} done", file=sys.stderr)
    return times, sizes


def report(times: dict[str, Any], sizes: dict[str, Any], tools: list[str], size_gib: float, runs: int) -> str:
    def med(tool: str, op: str) -> float | None:
        values = times.get(tool, {}).get(op) or []
        return statistics.median(values) if values else None

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}x" if a is not None and b else ""

    head = ["operation", *tools, "limit", "mstore / limit"]
    head += ["mstore / dvc"] if "dvc" in tools else []
    head += ["peak RSS " + t for t in tools]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for op in OPS:
        b, c, y = med("b3sum", op), med("cp", op), med("sync", op)
        limit = None
        if b is not None and c is not None:
            limit = b + c + (y or 0) if op.startswith("save") else b + c
        m = med("mstore", op)
        row = [LABEL[op], *[f"{v:.2f} s" if (v := med(t, op)) is not None else "-" for t in tools]]
        row += [f"{limit:.2f} s" if limit else "", ratio(m, limit)]
        if "dvc" in tools:
            row.append(ratio(m, med("dvc", op)))
        row += [f"{RSS[t][op] / 1024:.0f} MiB" if op in RSS.get(t, {}) else "-" for t in tools]
        lines.append("| " + " | ".join(row) + " |")
    gib = 2**30
    stored = ", ".join(f"{t} {sizes['store'].get(t, 0) / gib:.2f} GiB" for t in tools)
    moved = ", ".join(f"{t} {v / gib:.2f} GiB" for t, v in sizes["moved"].items())
    moved += "; cloned: " + ", ".join(f"{t} {v / gib:.2f} GiB" for t, v in sizes.get("cloned", {}).items())
    load = os.getloadavg()
    return "\n".join(
        [
            *lines,
            "",
            f"Llama-style folder, {SHARDS} bf16 safetensors shards, {sizes['version'] / gib:.2f} GiB a version "
            f"(--size-gib {size_gib}); medians of {runs} interleaved runs; a `sync` before every step.",
            "limit (each part timed on its own after a sync): b3sum + cp -r + sync (saves), b3sum + cp -r (checkout).",
            f"bytes stored after v4: {stored}; bytes a push moved: {moved or '-'}",
            "peak RSS: of the command's own process (GNU time %M), the most of any run.",
            f"machine: {peers.machine()}",
            f"load average (1 min) at the start / end: {peers.LOAD[0]:.1f} / {load[0]:.1f} (other users' work too)",
            f"tools: {peers.versions()}",
            *peers.NOTES,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=4.0, help="GiB a version (default 4)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of " + ",".join(TOOLS))
    parser.add_argument("--workdir", type=Path, help="where repositories and models go (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the raw times here")
    parser.add_argument("--venvs", type=Path, default=peers.VENVS, help="virtual environment of DVC")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get / pip-install missing tools")
    parser.add_argument("--generate-only", type=Path, help="write v1-v4 folders under this directory and stop")
    args = parser.parse_args()
    if args.generate_only:
        for version in (1, 2, 3, 4):
            write_version(args.generate_only / f"v{version}", args.size_gib, min(version, 3))
        return
    tools = [t for t in args.tools.split(",") if t]
    if "mstore" not in tools or any(t not in CLASSES for t in tools):
        parser.error(f"--tools must include mstore and name only {', '.join(TOOLS)}")
    if not args.no_install:
        peers.ensure_tools()
    if "dvc" in tools:
        exe = peers.ensure_venv("dvc", args.venvs, not args.no_install)
        if exe is None:
            tools.remove("dvc")
        else:
            peers.Dvc.exe = str(exe)
    subprocess.run = run_rss  # every timed command's peak RSS
    base = args.workdir or Path(tempfile.mkdtemp(prefix="bench-scale-", dir=os.environ.get("TMPDIR", "/var/tmp")))
    base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(dir=base))
    try:
        times, sizes = bench(args.size_gib, args.runs, tools, workdir)
    except subprocess.CalledProcessError as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        raise SystemExit(f"{' '.join(map(str, exc.cmd))} failed: {err}") from None
    finally:
        subprocess.run = _run
        shutil.rmtree(workdir, ignore_errors=True)
        if args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"times": times, "sizes": sizes, "rss_kib": RSS}, indent=1))
    print(report(times, sizes, tools, args.size_gib, args.runs))


if __name__ == "__main__":
    main()
