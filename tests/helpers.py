"""Helpers shared by the tests: build model files and trees, read them back, measure the store."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import blake3
import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from mstore import Repository
from mstore.formats.tensors import safetensors_bytes

__all__ = [
    "cli",
    "clock_at",
    "examples",
    "format_2_store",
    "head_model",
    "lines_run",
    "mutations",
    "nudge",
    "read_tree",
    "safetensors_bytes",
    "store_bytes",
    "write_tree",
]
T = TypeVar("T")


def write_tree(root: Path, files: dict[str, bytes], executable: frozenset[str] = frozenset()) -> Path:
    """Create `files` (relative path -> bytes) under `root`; returns `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o755 if rel in executable else 0o644)
    return root


def read_tree(root: Path) -> dict[str, tuple[bytes, bool]]:
    """Every file under `root` as relative path -> (bytes, executable)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out[path.relative_to(root).as_posix()] = (path.read_bytes(), bool(path.stat().st_mode & 0o100))
    return out


def store_bytes(repo: Repository) -> int:
    """Bytes held in objects/."""
    return sum(repo.store.objects.size(oid) for oid in repo.store.objects)


def examples(n: int) -> int:
    """`n` hypothesis examples under the default profile, scaled with the loaded one: a test's own
    `max_examples` would otherwise override HYPOTHESIS_PROFILE=thorough (1000, ten times the default 100)."""
    return max(n, n * settings.default.max_examples // 100)


def format_2_store(root: Path) -> Repository:
    """A new store as an mstore before format 3 wrote it: format 2, no `planes`, no config checksum."""
    Repository.init(root)
    config_path = root / "mstore.json"
    config = json.loads(config_path.read_text())
    config["format"] = 2
    del config["compression"]["planes"]
    config.pop("b3")
    config_path.write_text(json.dumps(config))
    return Repository.open(root)


def mutations(sample: bytes) -> st.SearchStrategy[bytes]:
    """`sample` damaged the ways a file is: bits flipped, a few bytes inserted, then cut short."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(sample)
        for at, bit in draw(st.lists(st.tuples(st.integers(0, len(sample) - 1), st.integers(0, 7)), max_size=8)):
            data[at] ^= 1 << bit
        at, extra = draw(st.tuples(st.integers(0, len(sample)), st.binary(max_size=12)))
        data[at:at] = extra
        return bytes(data[: draw(st.integers(0, len(sample))) + len(extra)])

    return mutate()


def lines_run(fn: Callable[[], T]) -> tuple[T, int]:
    """`fn()` and how many lines of Python it ran: a bound on work that, unlike a stopwatch, a loaded
    machine cannot move (for property tests of parsers that must stay cheap on any input)."""
    count = 0

    def local(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        count += 1
        return local

    sys.settrace(lambda frame, event, arg: local)
    try:
        result = fn()
    finally:
        sys.settrace(None)
    return result, count


def head_model(head_seed: int, *, seed: int = 0, backbone: int = 1 << 18, head: int = 1024) -> bytes:
    """A safetensors model: a `backbone` of `seed` (shared across fine-tunes) and a `head` of `head_seed`
    (what a fine-tune retrains), both float32: the shape most transfer and dedup tests need."""
    rng, heads = np.random.default_rng(seed), np.random.default_rng(head_seed)
    return safetensors_bytes(
        {
            "backbone": ("F32", rng.standard_normal(backbone).astype(np.float32)),
            "head": ("F32", heads.standard_normal(head).astype(np.float32)),
        }
    )


def nudge(
    weights: dict[str, np.ndarray], names: list[str], *, scale: float = 1e-3, seed: int = 1
) -> dict[str, np.ndarray]:
    """A fine-tune that moved only `names`, each element by about `scale` of itself."""
    rng = np.random.default_rng(seed)
    out = dict(weights)
    for n in names:
        a = weights[n]
        out[n] = (a + (rng.standard_normal(a.shape) * scale * np.abs(a)).astype(a.dtype)).astype(a.dtype)
    return out


def cli(store: Path, *args: str, code: int = 0) -> Result:
    """`mstore --store STORE ARGS` in-process (Typer's CliRunner), asserting its exit code."""
    from mstore.cli import app

    result = CliRunner().invoke(app, ["--store", str(store), *args])
    assert result.exit_code == code, (args, result.stdout, result.stderr)
    return result


def cli_stderr(store: Path, *args: str, code: int = 0) -> str:
    """`cli`, also asserting that no traceback was printed; its stderr (the one-line notes), stripped."""
    result = cli(store, *args, code=code)
    assert "Traceback" not in result.stdout + result.stderr
    return result.stderr.strip()


def mstore_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any MSTORE_ setting, the store and the cache under `tmp_path`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSTORE_")}
    env.update(MSTORE_DIR=str(tmp_path / "store"), MSTORE_CACHE=str(tmp_path / "cache"))
    env.update(extra)
    return env


def run_mstore(
    tmp_path: Path, *args: str, code: int = 0, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`mstore ARGS` in a child process (`mstore_env` plus `env`), asserting its exit code."""
    result = subprocess.run(
        [sys.executable, "-m", "mstore", *args],
        capture_output=True,
        text=True,
        env=mstore_env(tmp_path, **env),
        timeout=60,
        cwd=cwd,
    )
    assert result.returncode == code, (args, result.stdout, result.stderr)
    return result


def three_versions(tmp_path: Path, t0: datetime) -> tuple[Repository, list[str]]:
    """A store at `tmp_path/s` with three one-file versions saved a minute apart from `t0`."""
    repo = Repository.init(tmp_path / "s")
    src = tmp_path / "m.bin"
    ids = []
    for n in range(3):
        src.write_bytes(bytes([n]) * 100)
        with clock_at(t0 + timedelta(minutes=n)):
            ids.append(repo.save(src)["timestamp"])
    return repo, ids


@contextmanager
def clock_at(when: datetime) -> Iterator[None]:
    """Saves name their versions as if the clock said `when` (ops.save's clock seam): two stores saving in
    one second would otherwise make the same version ID."""
    from mstore.ops import save

    real = save.now
    save.now = lambda: when
    try:
        yield
    finally:
        save.now = real


def saved_repo(tmp_path: Path, chunk: int, seed: int) -> tuple[Repository, Path, dict[str, str]]:
    """A store with fixed-size chunks of `chunk` bytes and one saved version of 4 random chunks:
    (repository, its source file, {version id: content blake3})."""
    repo = Repository.init(tmp_path / "store")
    repo.store.config["chunker"] = {"name": "fixed", "size": chunk}
    src = tmp_path / "model.bin"
    base = random.Random(seed).randbytes(4 * chunk)
    src.write_bytes(base)
    return repo, src, {repo.save(src)["timestamp"]: blake3.blake3(base).hexdigest()}
