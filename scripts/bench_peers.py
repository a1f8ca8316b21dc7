"""mstore against borg, restic and git-lfs, and against the machine's limits (b3sum, cp), in one run.

    python scripts/bench_peers.py                 # 1 GB fp32 safetensors model, medians of 3 runs
    python scripts/bench_peers.py --size 256 --runs 3 --json /tmp/peers.json

A model of `--size` MB of random-normal fp32 tensors (4 MiB each, plus a 4 MiB `head`) is generated
with a hand-written safetensors header: v1, v2 (v1 with only the head retrained) and v3 (every tensor
retrained, all-new bytes). Every tool gets a fresh repository and saves v1 (untimed), then, one
operation at a time with the tools interleaved (their order rotates per run):

    save, only the head changed      v2 after v1
    save, all-new content            v3 after v2 (nothing dedups against v1)
    save, unchanged file             v3 again, the file untouched since its last save
    checkout                         restore v3 into an empty directory (checked byte for byte, untimed)
    verify every byte                mstore fsck / borg check --verify-data / restic check --read-data /
                                     git lfs fsck

Each timed command is a fresh process (start-up included), `sync` runs before it (untimed) so no tool
pays for another's dirty pages. The limits: `b3sum` + `cp` of the file (save and checkout), `b3sum` of
the distinct content the stores hold (verify). Prints a markdown table of medians with ratios and the
machine. Writes nothing into the repository; the work directory (default: a temp dir) is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import blake3
import numpy as np

TOOLS = ("mstore", "borg", "restic", "git-lfs")
OPS = ("save_head", "save_new", "save_unchanged", "checkout", "verify")
LABEL = {
    "save_new": "save all-new content (v3 after v2)",
    "save_head": "save with only the head changed (v2 after v1)",
    "save_unchanged": "save of an unchanged file",
    "checkout": "checkout (restore one version)",
    "verify": "verify every stored byte",
}
TENSOR = 4 << 20
APT = {"borg": "borgbackup", "restic": "restic", "git-lfs": "git-lfs", "b3sum": "b3sum"}


def ensure_tools() -> None:
    missing = [pkg for exe, pkg in APT.items() if shutil.which(exe) is None]
    if missing:
        print(f"installing {' '.join(missing)} with apt-get", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, stdout=subprocess.DEVNULL)


def write_safetensors(path: Path, tensors: list[tuple[str, np.ndarray]]) -> None:
    """A safetensors file: u64le header length, JSON header (padded to 8 bytes), then the tensors."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, array in tensors:
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, array in tensors:
            f.write(array.tobytes())


def make_models(workdir: Path, size_mb: int) -> dict[str, Path]:
    n = max(2, (size_mb << 20) // TENSOR)
    elements = TENSOR // 4
    rng = np.random.default_rng(10)

    def tensor() -> np.ndarray:
        return (rng.standard_normal(elements, dtype=np.float32) * np.float32(0.02)).reshape(1024, -1)

    body = [(f"layers.{i}.weight", tensor()) for i in range(n - 1)]
    head = ("head.weight", tensor())
    paths = {v: workdir / f"{v}.safetensors" for v in ("v1", "v2", "v3")}
    write_safetensors(paths["v1"], [*body, head])
    write_safetensors(paths["v2"], [*body, ("head.weight", tensor())])
    del body
    write_safetensors(paths["v3"], [(f"layers.{i}.weight", tensor()) for i in range(n - 1)] + [head])
    return paths


def b3(path: Path) -> str:
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with open(path, "rb") as f:
        while block := f.read(16 << 20):
            h.update(block)
    return str(h.hexdigest())


class Tool:
    """One tool's repository and commands. `source` is the model file every tool saves (same path)."""

    name = ""

    def __init__(self, root: Path, source: Path, env: dict[str, str]) -> None:
        self.root, self.source, self.env = root, source, env
        self.repo = root / "repo"
        root.mkdir(parents=True)

    def run(self, args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        subprocess.run(
            args,
            cwd=cwd,
            env={**self.env, **(env or {})},
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def init(self) -> None: ...
    def save(self, label: str) -> None: ...
    def checkout(self, label: str, dest: Path) -> Path: ...
    def verify(self) -> None: ...


class MStore(Tool):
    name = "mstore"
    pythonpath: str | None = None  # another checkout of mstore (the "before" column)

    def cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mstore", "--store", str(self.repo), *args]

    def run(self, args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        # cwd: `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH. Bytecode is
        # cached (outside the repository) as an installed package's is: with PYTHONDONTWRITEBYTECODE set,
        # as on the project's machines, every command would compile mstore's ~30 modules again (~0.15 s)
        extra = {"PYTHONPATH": self.pythonpath} if self.pythonpath else {}
        extra["PYTHONPYCACHEPREFIX"] = str(self.root.parent.parent / "pycache")
        merged = {**self.env, **(env or {}), **extra}
        merged.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run(
            args, cwd=cwd or self.root, env=merged, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def init(self) -> None:
        self.run(self.cmd("init"))

    def save(self, label: str) -> None:
        self.run(self.cmd("save", str(self.source), "--tag", label))

    def checkout(self, label: str, dest: Path) -> Path:
        out = dest / self.source.name
        self.run(self.cmd("checkout", label, "-o", str(out)))
        return out

    def verify(self) -> None:
        self.run(self.cmd("fsck"))


class Borg(Tool):
    name = "borg"

    def init(self) -> None:
        self.run(["borg", "init", "-e", "none", str(self.repo)])

    def save(self, label: str) -> None:
        self.run(["borg", "create", "-C", "zstd,3", f"{self.repo}::{label}", self.source.name], cwd=self.source.parent)

    def checkout(self, label: str, dest: Path) -> Path:
        self.run(["borg", "extract", f"{self.repo}::{label}"], cwd=dest)
        return dest / self.source.name

    def verify(self) -> None:
        self.run(["borg", "check", "--verify-data", str(self.repo)])


class Restic(Tool):
    name = "restic"

    def init(self) -> None:
        self.run(["restic", "init", "--repo", str(self.repo)])

    def save(self, label: str) -> None:
        self.run(
            ["restic", "backup", "--repo", str(self.repo), "--tag", label, self.source.name], cwd=self.source.parent
        )

    def checkout(self, label: str, dest: Path) -> Path:
        self.run(["restic", "restore", "--repo", str(self.repo), "latest", "--tag", label, "--target", str(dest)])
        return dest / self.source.name

    def verify(self) -> None:
        self.run(["restic", "check", "--repo", str(self.repo), "--read-data"])


class GitLfs(Tool):
    """A git repository whose work tree is the model's directory (GIT_DIR elsewhere), the file tracked by LFS."""

    name = "git-lfs"

    def git(self, *args: str, work_tree: Path | None = None, index: Path | None = None) -> None:
        env = {"GIT_DIR": str(self.repo), "GIT_WORK_TREE": str(work_tree or self.source.parent)}
        if index is not None:
            env["GIT_INDEX_FILE"] = str(index)
        self.run(["git", *args], cwd=work_tree or self.source.parent, env=env)

    def init(self) -> None:
        self.run(["git", "init", "-q", "--bare", str(self.repo)])
        self.run(["git", "config", "core.bare", "false"], env={"GIT_DIR": str(self.repo)})
        self.git("lfs", "install", "--local")
        (self.repo / "info").mkdir(exist_ok=True)
        (self.repo / "info" / "attributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")

    def save(self, label: str) -> None:
        name = self.source.name
        script = f"git add {name} && git commit -q --allow-empty -m {label} && git tag {label}"
        self.run(
            ["sh", "-c", script],
            cwd=self.source.parent,
            env={"GIT_DIR": str(self.repo), "GIT_WORK_TREE": str(self.source.parent)},
        )

    def checkout(self, label: str, dest: Path) -> Path:
        self.git("checkout", "-q", label, "--", self.source.name, work_tree=dest, index=self.root / "checkout-index")
        return dest / self.source.name

    def verify(self) -> None:
        self.git("lfs", "fsck", "--objects")


class MStoreBefore(MStore):
    name = "mstore-before"


CLASSES: dict[str, type[Tool]] = {c.name: c for c in (MStore, MStoreBefore, Borg, Restic, GitLfs)}


LOAD = os.getloadavg()
CPU: dict[str, dict[str, list[float]]] = {}  # tool -> op -> user + system CPU seconds of its processes


def timed(fn: Callable[..., object], *args: object, cpu: list[float] | None = None) -> float:
    """Wall seconds of fn(*args); with `cpu`, also appends the CPU seconds its child processes used."""
    subprocess.run(["sync"], check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    fn(*args)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return elapsed


def cpu_of(tool: str, op: str) -> list[float]:
    return CPU.setdefault(tool, {}).setdefault(op, [])


def quiet(*args: str) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"Linux {platform.release()}, Python {platform.python_version()}"
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {system}"


def versions() -> str:
    out = []
    for args in (["borg", "--version"], ["restic", "version"], ["git-lfs", "version"], ["b3sum", "--version"]):
        try:
            out.append(subprocess.run(args, capture_output=True, text=True, check=True).stdout.split("\n")[0].strip())
        except (OSError, subprocess.CalledProcessError):
            out.append(f"{args[0]}: unavailable")
    return "; ".join(out)


def bench(size_mb: int, runs: int, tools: list[str], workdir: Path) -> dict[str, dict[str, list[float]]]:
    models = make_models(workdir, size_mb)
    src_dir = workdir / "src"
    src_dir.mkdir()
    source = src_dir / "model.safetensors"
    env = {
        **os.environ,
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        "BORG_BASE_DIR": str(workdir / "borg-home"),
        "RESTIC_PASSWORD": "bench",
        "RESTIC_CACHE_DIR": str(workdir / "restic-cache"),
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
        "HOME": str(workdir / "home"),
    }
    (workdir / "home").mkdir()
    expected = b3(models["v3"])
    times: dict[str, dict[str, list[float]]] = {
        t: {op: [] for op in OPS} for t in [*tools, "b3sum", "cp", "b3sum-distinct"]
    }

    def place(version: str) -> None:
        tmp = src_dir / ".incoming"
        shutil.copyfile(models[version], tmp)
        os.replace(tmp, source)
        time.sleep(1.1)  # the file is older than a second when saved, as a real model file would be

    def limits(op: str) -> None:
        """b3sum and cp of the file, timed right after the tools did `op` (so in the same conditions)."""
        times["b3sum"][op].append(timed(quiet, "b3sum", str(source), cpu=cpu_of("b3sum", op)))
        copy = workdir / "cp-copy"
        times["cp"][op].append(timed(quiet, "cp", str(source), str(copy), cpu=cpu_of("cp", op)))
        copy.unlink()

    for run in range(runs):
        order = tools[run % len(tools) :] + tools[: run % len(tools)]
        repos = {}
        for name in order:
            root = workdir / f"run{run}" / name
            repos[name] = CLASSES[name](root, source, env)
            repos[name].init()
        place("v1")
        for name in order:
            repos[name].save("v1")
        for op, version, label in (
            ("save_head", "v2", "v2"),
            ("save_new", "v3", "v3"),
            ("save_unchanged", None, "v3b"),
        ):
            if version:
                place(version)
            for name in order:
                times[name][op].append(timed(repos[name].save, label, cpu=cpu_of(name, op)))
            limits(op)
        for name in order:
            dest = workdir / f"run{run}" / f"{name}-out"
            dest.mkdir()
            times[name]["checkout"].append(timed(repos[name].checkout, "v3", dest, cpu=cpu_of(name, "checkout")))
            if b3(dest / source.name) != expected:
                raise SystemExit(f"{name}: checkout of v3 is not bit-exact")
            shutil.rmtree(dest)
        limits("checkout")
        for name in order:
            times[name]["verify"].append(timed(repos[name].verify, cpu=cpu_of(name, "verify")))
        # b3sum of the distinct content the stores hold (v1 + v3; v2 adds one tensor)
        distinct = ("b3sum", str(models["v1"]), str(models["v3"]))
        times["b3sum-distinct"]["verify"].append(timed(quiet, *distinct, cpu=cpu_of("b3sum-distinct", "verify")))
        for name in order:
            shutil.rmtree(repos[name].root)
        print(f"run {run + 1}/{runs} done", file=sys.stderr)
    return times


def table(times: dict[str, dict[str, list[float]]], tools: list[str]) -> str:
    def med(tool: str, op: str) -> float | None:
        values = times.get(tool, {}).get(op) or []
        return statistics.median(values) if values else None

    peers = [t for t in tools if not t.startswith("mstore")]
    head = ["operation", *tools, "limit", "mstore / best peer", "mstore / limit"]
    if "mstore-before" in tools:
        head.append("mstore / before")
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for op in OPS:
        if op == "verify":
            limit = med("b3sum-distinct", op)
        else:
            b, c = med("b3sum", op), med("cp", op)
            limit = b + c if b is not None and c is not None else None
            if op == "save_unchanged":
                limit = b  # the goal: faster than one b3sum of the file
        row = [LABEL[op]] + [f"{med(t, op):.2f} s" for t in tools]
        best = min((med(t, op) or float("inf") for t in peers), default=float("inf"))
        m = med("mstore", op)
        row.append(f"{limit:.2f} s" if limit else "")
        row.append(f"{m / best:.2f}x" if m is not None and best != float("inf") else "")
        row.append(f"{m / limit:.2f}x" if m is not None and limit else "")
        if "mstore-before" in tools:
            before = med("mstore-before", op)
            row.append(f"{m / before:.2f}x" if m is not None and before else "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def report(times: dict[str, dict[str, list[float]]], tools: list[str], size_mb: int, runs: int) -> str:
    notes = [
        "",
        f"{size_mb} MB fp32 safetensors model, medians of {runs} interleaved runs, fresh processes, warm page cache.",
        "limit: b3sum + cp of the file (save, checkout); one b3sum of the file (unchanged save);",
        "b3sum of the distinct content, v1 + v3 (verify).",
        f"machine: {machine()}",
        f"load average (1 min) at the start / end: {LOAD[0]:.1f} / {os.getloadavg()[0]:.1f} (other users' work too)",
        f"tools: {versions()}",
        "",
    ]
    cpu = [
        "",
        "CPU seconds (user + system, all processes of the command; medians), the same runs:",
        "",
        table(CPU, tools),
    ]
    return "\n".join(["Wall seconds:", "", table(times, tools), *notes, *cpu])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="model size in MB (default 1024)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of " + ",".join(TOOLS))
    parser.add_argument("--workdir", type=Path, help="where repositories and models go (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the raw times here")
    parser.add_argument(
        "--before", type=Path, help="another mstore source tree, timed in the same runs as column mstore-before"
    )
    parser.add_argument("--no-install", action="store_true", help="do not apt-get missing tools")
    args = parser.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    if args.before:
        MStoreBefore.pythonpath = str(args.before.resolve())
        tools.insert(1, "mstore-before")
    if "mstore" not in tools or any(t not in CLASSES for t in tools):
        parser.error(f"--tools must include mstore and name only {', '.join(TOOLS)}")
    if not args.no_install:
        ensure_tools()
    base = args.workdir or Path(tempfile.mkdtemp(prefix="bench-peers-", dir=os.environ.get("TMPDIR", "/var/tmp")))
    base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(dir=base))
    try:
        times = bench(args.size, args.runs, tools, workdir)
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"{' '.join(map(str, exc.cmd))} failed: {exc.stderr.decode(errors='replace')}") from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        record = {"size_mb": args.size, "runs": args.runs, "times": times, "cpu": CPU}
        args.json.write_text(json.dumps(record, indent=1))
    print(report(times, tools, args.size, args.runs))


if __name__ == "__main__":
    main()
