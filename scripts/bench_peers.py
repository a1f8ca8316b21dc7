"""mstore against borg, restic, git-lfs, DVC and MLflow, and against the machine's limits (b3sum, cp), in one run.

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

DVC (`dvc add` + a git commit / `dvc checkout` / md5sum of its cache) and MLflow (`log_artifact` to a
file tracking store / `download_artifacts`; it verifies nothing) are installed with pip into their own
virtual environments under `--venvs` (default $XDG_CACHE_HOME/mstore-bench, reused between runs) and are
skipped with a note when that fails. `mlflow+sync` is MLflow counted until its bytes are durable (its
save or checkout, then a `sync`).

Each timed command is a fresh process (start-up included), `sync` runs before it (untimed) so no tool
pays for another's dirty pages, and before each limit. The limits are timed on their own, after that
`sync`: `b3sum` + `cp` + `sync` of the copy (a save is durable), `b3sum` + `cp` (a checkout returns
with its bytes in the page cache, as cp does), `b3sum` of the distinct content the stores hold
(verify). Prints a markdown table of medians with ratios, the machine and the load average. Writes
nothing into the repository; the work directory (default: a temp dir) is removed.
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

TOOLS = ("mstore", "borg", "restic", "git-lfs", "dvc", "mlflow")
PEERS = ("borg", "restic", "git-lfs", "dvc")  # "best peer": the tools that verify what they store
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


PIP = {"dvc": ("dvc>=3,<4", "dvc"), "mlflow": ("mlflow-skinny>=3", "python")}  # tool: (requirement, executable)
VENVS = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mstore-bench"
NOTES: list[str] = []


def ensure_venv(tool: str, venvs: Path, install: bool = True) -> Path | None:
    """The executable of a pip-installed peer in its own virtual environment (created once), or None."""
    requirement, exe = PIP[tool]
    venv = venvs / tool
    path = venv / "bin" / exe
    probe = [str(path), "-c", "import mlflow"] if tool == "mlflow" else [str(path), "version"]
    ok = path.exists() and subprocess.run(probe, capture_output=True).returncode == 0
    if not ok and install:
        print(f"installing {requirement} into {venv}", file=sys.stderr)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
            pip = [str(venv / "bin" / "pip"), "install", "-q", requirement]
            subprocess.run(pip, check=True, capture_output=True)
            ok = subprocess.run(probe, capture_output=True).returncode == 0
        except (OSError, subprocess.CalledProcessError) as exc:
            NOTES.append(f"{tool} skipped: pip install {requirement!r} failed ({exc})")
            return None
    if not ok:
        NOTES.append(f"{tool} skipped: not installed in {venv}")
        return None
    return path


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


class Dvc(Tool):
    """`dvc add` of the model file in a git + DVC workspace (the model's own directory, as DVC users keep
    it), committed and tagged in git; checkout removes the file and runs `dvc checkout`."""

    name = "dvc"
    exe = "dvc"

    @property
    def ws(self) -> Path:
        return self.source.parent

    def init(self) -> None:
        for leftover in (".git", ".dvc", ".dvcignore", ".gitignore", f"{self.source.name}.dvc"):
            target = self.ws / leftover
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        self.run(["git", "init", "-q"], cwd=self.ws)
        self.run([self.exe, "init", "-q"], cwd=self.ws)
        self.run([self.exe, "config", "core.analytics", "false"], cwd=self.ws)

    def run(self, args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        super().run(args, cwd=cwd or self.ws, env={"DVC_SITE_CACHE_DIR": str(self.root / "site"), **(env or {})})

    def save(self, label: str) -> None:
        name = self.source.name
        self.run([self.exe, "add", "-q", name])
        self.run(
            ["sh", "-c", f"git add {name}.dvc .gitignore && git commit -q --allow-empty -m {label} && git tag {label}"]
        )

    def checkout(self, label: str, dest: Path) -> Path:
        # the workspace file is set aside (a rename), so DVC restores the file from its cache
        keep = self.ws / ".bench-keep"
        os.replace(self.source, keep)
        try:
            self.run(["sh", "-c", f"git checkout -q {label} -- {self.source.name}.dvc"])
            self.run([self.exe, "checkout", "-q", f"{self.source.name}.dvc"])
            out = dest / self.source.name
            shutil.move(self.source, out)
        finally:
            os.replace(keep, self.source)
            self.run(["git", "checkout", "-q", "HEAD", "--", f"{self.source.name}.dvc"])
        return out

    def verify(self) -> None:
        # DVC has no fsck: md5 of every file in its cache is what verifying it takes
        cache = self.ws / ".dvc" / "cache"
        self.run(["sh", "-c", f"find {cache} -type f -print0 | xargs -0 -r md5sum"])


_MLFLOW = """
import json, sys
import mlflow
from mlflow.artifacts import download_artifacts
op, uri = sys.argv[1], sys.argv[2]
mlflow.set_tracking_uri(uri)
if op == "save":
    with mlflow.start_run() as run:
        mlflow.log_artifact(sys.argv[3])
    print(run.info.run_id)
else:
    download_artifacts(run_id=sys.argv[3], artifact_path=sys.argv[4], dst_path=sys.argv[5])
"""


class MLflow(Tool):
    """log_artifact into a file tracking store, download_artifacts to check out (the model registry of a
    file store needs a logged model, not a plain file). MLflow keeps a plain copy: no hash, no dedup, no
    fsync, nothing to verify."""

    name = "mlflow"
    exe = "python"

    def init(self) -> None:
        self.runs: dict[str, str] = {}
        self.uri = f"file://{self.repo}"

    def save(self, label: str) -> None:
        out = subprocess.run(
            [self.exe, "-c", _MLFLOW, "save", self.uri, str(self.source)],
            env={**self.env, "MLFLOW_ALLOW_FILE_STORE": "true"},
            check=True,
            capture_output=True,
        )
        self.runs[label] = out.stdout.decode().strip().splitlines()[-1]

    def checkout(self, label: str, dest: Path) -> Path:
        args = [self.exe, "-c", _MLFLOW, "get", self.uri, self.runs[label], self.source.name, str(dest)]
        self.run(args, env={"MLFLOW_ALLOW_FILE_STORE": "true"})
        return dest / self.source.name

    def verify(self) -> None:
        raise NotImplementedError


class MStoreBefore(MStore):
    name = "mstore-before"


CLASSES: dict[str, type[Tool]] = {c.name: c for c in (MStore, MStoreBefore, Borg, Restic, GitLfs, Dvc, MLflow)}


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
    extra = [[Dvc.exe, "version"]] if Dvc.exe != "dvc" or shutil.which("dvc") else []
    if MLflow.exe != "python":
        extra.append([MLflow.exe, "-c", "import mlflow; print('mlflow', mlflow.__version__)"])
    for args in (["borg", "--version"], ["restic", "version"], ["git-lfs", "version"], ["b3sum", "--version"], *extra):
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
        t: {op: [] for op in OPS} for t in [*tools, "mlflow+sync", "b3sum", "cp", "sync", "b3sum-distinct"]
    }

    def place(version: str) -> None:
        tmp = src_dir / ".incoming"
        shutil.copyfile(models[version], tmp)
        os.replace(tmp, source)
        time.sleep(1.1)  # the file is older than a second when saved, as a real model file would be

    def limits(op: str) -> None:
        """b3sum and cp of the file, each timed on its own after an untimed `sync` (so the limit never pays
        for the writeback a tool left behind), and the `sync` of the copy (a save's bytes are durable)."""
        times["b3sum"][op].append(timed(quiet, "b3sum", str(source), cpu=cpu_of("b3sum", op)))
        copy = workdir / "cp-copy"
        times["cp"][op].append(timed(quiet, "cp", str(source), str(copy), cpu=cpu_of("cp", op)))
        start = time.perf_counter()
        subprocess.run(["sync"], check=True)  # not `timed`: that would sync the copy first
        times["sync"][op].append(time.perf_counter() - start)
        copy.unlink()

    def run_tool(name: str, op: str, fn: Callable[..., object], *args: object) -> None:
        times[name][op].append(timed(fn, *args, cpu=cpu_of(name, op)))
        if name == "mlflow":  # counted until its bytes are durable, as mstore's are
            start = time.perf_counter()
            subprocess.run(["sync"], check=True)
            times["mlflow+sync"][op].append(times[name][op][-1] + time.perf_counter() - start)

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
                run_tool(name, op, repos[name].save, label)
            limits(op)
        for name in order:
            dest = workdir / f"run{run}" / f"{name}-out"
            dest.mkdir()
            run_tool(name, "checkout", repos[name].checkout, "v3", dest)
            if b3(dest / source.name) != expected:
                raise SystemExit(f"{name}: checkout of v3 is not bit-exact")
            shutil.rmtree(dest)
        limits("checkout")
        for name in order:
            if name != "mlflow":  # nothing to verify: MLflow keeps no hashes
                run_tool(name, "verify", repos[name].verify)
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

    def cell(value: float | None, unit: str = " s") -> str:
        return f"{value:.2f}{unit}" if value is not None else "-"

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}x" if a is not None and b else ""

    columns = [*tools, *(["mlflow+sync"] if "mlflow" in tools else [])]
    peers = [t for t in tools if t in PEERS]
    head = ["operation", *columns, "limit", "mstore / best peer", "mstore / limit"]
    head += ["mstore / dvc"] if "dvc" in tools else []
    head += ["mstore / mlflow+sync"] if "mlflow" in tools else []
    head += ["mstore / before"] if "mstore-before" in tools else []
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for op in OPS:
        b, c, y = med("b3sum", op), med("cp", op), med("sync", op)
        if op == "verify":
            limit = med("b3sum-distinct", op)
        elif op == "save_unchanged":
            limit = b  # the goal: faster than one b3sum of the file
        elif op == "checkout":
            limit = b + c if b is not None and c is not None else None
        else:  # a save is durable: b3sum + cp + sync of the copy
            limit = b + c + y if b is not None and c is not None and y is not None else None
        row = [LABEL[op]] + [cell(med(t, op)) for t in columns]
        known = [v for v in (med(t, op) for t in peers) if v is not None]
        m = med("mstore", op)
        row += [cell(limit), ratio(m, min(known) if known else None), ratio(m, limit)]
        if "dvc" in tools:
            row.append(ratio(m, med("dvc", op)))
        if "mlflow" in tools:
            row.append(ratio(m, med("mlflow+sync", op)))
        if "mstore-before" in tools:
            row.append(ratio(m, med("mstore-before", op)))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def report(times: dict[str, dict[str, list[float]]], tools: list[str], size_mb: int, runs: int) -> str:
    notes = [
        "",
        f"{size_mb} MB fp32 safetensors model, medians of {runs} interleaved runs, fresh processes, warm page cache.",
        "limit (each part timed on its own after an untimed sync): b3sum + cp + sync of the copy (saves);",
        "b3sum + cp (checkout); one b3sum of the file (unchanged save); b3sum of the distinct content, v1 + v3",
        "(verify). best peer: the best of " + ", ".join(PEERS) + " (MLflow verifies nothing; mlflow+sync is",
        "MLflow counted until its bytes are durable).",
        *NOTES,
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
    parser.add_argument("--no-install", action="store_true", help="do not apt-get / pip-install missing tools")
    parser.add_argument("--venvs", type=Path, default=VENVS, help=f"virtual environments of DVC, MLflow ({VENVS})")
    args = parser.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    if args.before:
        MStoreBefore.pythonpath = str(args.before.resolve())
        tools.insert(1, "mstore-before")
    if "mstore" not in tools or any(t not in CLASSES for t in tools):
        parser.error(f"--tools must include mstore and name only {', '.join(TOOLS)}")
    if not args.no_install:
        ensure_tools()
    for tool, cls in (("dvc", Dvc), ("mlflow", MLflow)):
        if tool in tools:
            exe = ensure_venv(tool, args.venvs, not args.no_install)
            if exe is None:
                tools.remove(tool)
            else:
                cls.exe = str(exe)
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
