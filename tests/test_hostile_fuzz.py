"""Fuzzing a shared remote: damage its files at random, then run what a teammate would run against it.

Every command must end within a time limit with exit 0, or exit 1/2 and a one-line error (fsck may print
its report), never a traceback or a hang, and nothing outside the store or the destination may change.
The remote holds real versions (a tensor file with deltas and a directory model), pushed by mstore itself;
hypothesis picks the damage: flipped bits, truncations, FIFOs, links to /dev/zero or to a directory
outside, directories where files belong, forged metadata (with a matching checksum) and forged refs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from craft import b3, ref_bytes, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mstore import Repository
from mstore.formats.tensors import safetensors_bytes

from helpers import examples

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves this suite out of the quick loop

# The driver runs the commands in one process (imports once), each through Typer's CliRunner, and prints
# one JSON line per command; the test gives the whole driver a time limit.
DRIVER = r"""
import json, os, sys, traceback
from typer.testing import CliRunner
from mstore.cli import app

remote, work = sys.argv[1], sys.argv[2]
os.environ["MSTORE_CACHE"] = os.path.join(work, "cache")
runner = CliRunner()
mine = os.path.join(work, "mine")

def run(*args, cwd=work):
    os.chdir(cwd)
    result = runner.invoke(app, [str(a) for a in args])
    crash = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        crash = "".join(traceback.format_exception(result.exception))
    print(json.dumps({"args": list(map(str, args)), "code": result.exit_code, "stderr": result.stderr,
                      "stdout": result.stdout[-2000:], "crash": crash}), flush=True)
    return result.exit_code

run("clone", remote, os.path.join(work, "cloned"))
run("--store", mine, "init")
run("--store", mine, "remote", "add", "nas", remote)
run("--store", mine, "fsck", "--remote", "nas", "--verify-data")
run("--store", mine, "pull", "nas")
out = os.path.join(work, "out")
os.makedirs(out, exist_ok=True)
run("--store", mine, "checkout", "latest", "--remote", "nas", "--force", cwd=out)
for args in (["log"], ["diff"], ["show"], ["fsck"], ["gc", "--dry-run"], ["du"]):
    run("--store", mine, *args)
model = os.path.join(work, "mine-model.bin")
with open(model, "wb") as f:
    f.write(b"a model of my own")
run("--store", mine, "save", model)
run("--store", mine, "push", "nas")
run("--store", mine, "gc", "--remote", "nas", "--dry-run")
run("--store", mine, "path", "latest", "--remote", "nas", "--include", "config.json")
run("--store", mine, "show", "prod", "--tensors", "--remote", "nas")
browsed = (["log"], ["show", "prod"], ["diff"], ["diff", "latest~2", "latest~1"], ["log", "--format", "{id}"])
for args in browsed:
    run(*args, "--remote", remote)  # browsed without a clone, from no store at all

import hashlib, mstore  # one tensor read lazily: an error of mstore's, or exactly the bytes pushed
crash, code, out, err = None, 0, "", ""
try:
    tensors = mstore.open_tensors("prod", remote=remote, cache_dir=os.path.join(work, "tensor-cache"))
    out = hashlib.sha256(tensors["w"].tobytes()).hexdigest()
except mstore.MStoreError as exc:
    code, err = exc.exit_code, f"mstore: error: {exc}"
except Exception:
    crash = traceback.format_exc()
print(json.dumps({"args": ["open_tensors"], "code": code, "stderr": err, "stdout": out, "crash": crash}), flush=True)
"""


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory remote with three versions: a safetensors model, its fine-tune (deltas), and a folder."""
    root = tmp_path_factory.mktemp("pristine")
    repo = Repository.init(root / "teammate")
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((64, 512)).astype(np.float32)
    model = root / "model.safetensors"
    model.write_bytes(safetensors_bytes({"w": ("F32", weights), "b": ("F32", weights[0])}))
    repo.save(model, {"metrics": {"accuracy": 0.8}}, message="first")
    weights[:4] += 0.001
    model.write_bytes(safetensors_bytes({"w": ("F32", weights), "b": ("F32", weights[0])}))
    repo.save(model, {"metrics": {"accuracy": 0.82}})
    (root / "w.sha256").write_text(hashlib.sha256(weights.tobytes()).hexdigest())  # prod's `w`
    folder = root / "hf-model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"num_labels": 3}')
    (folder / "sub" / "weights.bin").write_bytes(rng.bytes(100_000))
    repo.save(folder)
    repo.tag("prod", "latest~1")
    repo.remote_add("nas", str(root / "remote"))
    repo.push("nas")
    return root / "remote"


def _files(remote: Path) -> list[Path]:
    return sorted(p for p in remote.rglob("*") if p.is_file() and not p.is_symlink())


def _unlink(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        os.chmod(path, 0o644) if not path.is_symlink() else None
        path.unlink()


def _mutate(remote: Path, outside: Path, kind: str, pick: int, offset: int, value: int) -> None:
    files = _files(remote)
    if not files:
        return
    target = files[pick % len(files)]
    if kind == "flip":
        data = bytearray(target.read_bytes())
        if data:
            data[offset % len(data)] ^= 1 << (value % 8)
            _unlink(target)
            target.write_bytes(bytes(data))
    elif kind == "truncate":
        data = target.read_bytes()
        _unlink(target)
        target.write_bytes(data[: offset % (len(data) + 1)])
    elif kind == "fifo":
        _unlink(target)
        os.mkfifo(target)
    elif kind == "dev-zero":
        _unlink(target)
        os.symlink("/dev/zero", target)
    elif kind == "link-outside":
        _unlink(target)
        os.symlink(outside / "secret.txt", target)
    elif kind == "directory":
        _unlink(target)
        target.mkdir()
    elif kind == "layout-link":
        layout = ["locks", "refs/tags", "tmp", "objects", f"objects/{target.parent.name}"]
        directory = remote / layout[pick % len(layout)]
        if directory.is_dir() and not directory.is_symlink():
            shutil.rmtree(directory)
            os.symlink(outside, directory)
    elif kind == "forge-metadata":
        versions = sorted(remote.glob("version_*"))
        meta_path = versions[pick % len(versions)] / "metadata.json"
        if not meta_path.is_file():
            return
        meta = json.loads(meta_path.read_bytes())
        forged = [
            ("model_hash", "0" * 64),
            ("original_path", "/x/.."),
            ("original_path", "a\x00b"),
            ("metrics", {"accuracy": 10**400}),
            ("timestamp", "99991231_235959"),
            ("mstore", {"manifest": "../../etc/passwd"}),
            ("mstore", None),
        ]
        key, forged_value = forged[value % len(forged)]
        meta[key] = forged_value
        data = json.dumps(meta).encode()
        _unlink(meta_path)
        meta_path.write_bytes(data)
        checksum = meta_path.parent / "metadata.b3"
        if checksum.exists():
            _unlink(checksum)
        checksum.write_bytes(f"{b3(data)}  metadata.json\n".encode())
    elif kind == "forge-ref":
        names = ["refs/latest", "refs/tags/prod", "refs/tags/-rf", "refs/tags/ok"]
        ref = remote / names[pick % len(names)]
        if ref.exists() or ref.is_symlink():
            _unlink(ref)
        choices = [ref_bytes("99991231_235959"), ref_bytes("20200101_000000"), b"garbage", b"x" * 100_000]
        ref.write_bytes(choices[value % len(choices)])


KINDS = [
    "flip",
    "truncate",
    "fifo",
    "dev-zero",
    "link-outside",
    "directory",
    "layout-link",
    "forge-metadata",
    "forge-ref",
]
mutations = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 10_000), st.integers(0, 1 << 20), st.integers(0, 255)),
    min_size=1,
    max_size=3,
)


@settings(
    max_examples=examples(12),  # 120 with HYPOTHESIS_PROFILE=thorough
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(damage=mutations)
def test_every_command_against_a_damaged_remote_ends_cleanly(
    pristine: Path, tmp_path_factory: pytest.TempPathFactory, damage: list[tuple[str, int, int, int]]
) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    remote, work, outside = root / "remote", root / "work", root / "outside"
    shutil.copytree(pristine, remote, symlinks=True)
    work.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("not a model")
    for kind, pick, offset, value in damage:
        _mutate(remote, outside, kind, pick, offset, value)
    before = snapshot(outside)
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(remote), str(work)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k not in ("MSTORE_DIR", "MSTORE_DEBUG")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 23, done.stdout[-3000:]
    tensor = results[-1]
    assert tensor["code"] != 0 or tensor["stdout"] == (pristine.parent / "w.sha256").read_text(), damage
    for r in results:
        assert r["crash"] is None, (damage, r["args"], r["crash"])
        assert r["code"] in (0, 1, 2), (damage, r)
        assert "Traceback" not in r["stderr"], (damage, r)
        errors = [line for line in r["stderr"].splitlines() if line.startswith("mstore: error:")]
        if r["code"] != 0 and r["args"][2:3] != ["fsck"] and "pull" not in r["args"] and "clone" not in r["args"]:
            assert len(errors) == 1, (damage, r)  # fsck reports problems; pull/clone list refused versions
    assert snapshot(outside) == before, damage
    assert (outside / "secret.txt").read_text() == "not a model"
    allowed = {"remote", "work", "outside"}
    assert {p.name for p in root.iterdir()} <= allowed, damage
