"""`mstore.model_path` / `mstore path` and the read-only model cache, from a local store, with real processes.

Returned bytes are what was saved and read-only; 8 processes asking at once share one writer; a repeat
call reads nothing of the model; a cache changed behind mstore's back is rebuilt, never returned;
prune keeps to its size limit and skips entries a running process holds; hostile refs and cache
contents are refused without writing outside the cache or hanging.
"""

from __future__ import annotations

import builtins
import json
import os
import stat
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import mstore
from mstore import ModelVersioning, Repository
from mstore.cache.entries import Cache, _make_stamp
from mstore.errors import NotACache
from mstore.store import fsutil
from mstore.store.manifest import Manifest
from mstore.store.objects import ObjectStore

from helpers import mstore_env as _env
from helpers import read_tree, write_tree
from helpers import run_mstore as _mstore


def _path_json(tmp_path: Path, *args: str, **env: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_mstore(tmp_path, "path", *args, "--json", **env).stdout)
    return doc


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mstore: error: "), result.stderr
    return lines[0]


def _save(tmp_path: Path, source: Path, tag: str | None = None) -> str:
    repo = Repository.init(tmp_path / "store")
    vid = str(repo.save(source)["timestamp"])
    if tag:
        repo.tag(tag, vid, force=True)
    return vid


def _entry_files(path: Path) -> dict[str, int]:
    root = path if path.is_dir() else path.parent
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in [root, *sorted(root.rglob("*"))]}


def test_returned_bytes_are_what_was_saved_and_read_only(tmp_path: Path) -> None:
    clf = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    joblib.dump(clf, tmp_path / "model.joblib")
    vid = _save(tmp_path, tmp_path / "model.joblib", tag="prod")
    path = mstore.model_path("prod", store=tmp_path / "store", cache_dir=tmp_path / "cache")
    assert path.name == "model.joblib" and path.read_bytes() == (tmp_path / "model.joblib").read_bytes()
    assert joblib.load(path).predict([[3.0]])[0] == 1  # the one-liner the docs show
    assert set(_entry_files(path).values()) == {0o555, 0o444}
    assert (tmp_path / "cache" / "CACHEDIR.TAG").read_bytes().startswith(b"Signature: 8a477f597d28d172789f06886806bc55")

    tree = write_tree(tmp_path / "ckpt", {"config.json": b"{}", "w/a.bin": os.urandom(70000), "run.sh": b"#!/bin/sh\n"})
    os.chmod(tree / "run.sh", 0o755)
    _save(tmp_path, tree)
    doc = _path_json(tmp_path)
    assert read_tree(Path(doc["path"])) == read_tree(tree)
    modes = _entry_files(Path(doc["path"]))
    assert modes == {".": 0o555, "config.json": 0o444, "run.sh": 0o555, "w": 0o555, "w/a.bin": 0o444}
    assert doc["cached"] is False and doc["version"] != vid

    # the same model under another ref, and from a second store, is the same entry
    other = ModelVersioning(tmp_path / "other")
    other.save_model_version(tmp_path / "model.joblib")
    assert other.get_model_path(cache_dir=tmp_path / "cache") == path
    assert len(Cache.open(tmp_path / "cache").keys()) == 2


@pytest.mark.slow
def test_eight_processes_at_once_get_one_complete_copy(tmp_path: Path) -> None:
    model = tmp_path / "big.bin"
    model.write_bytes(os.urandom(48 << 20))
    _save(tmp_path, model, tag="prod")
    go, ready = tmp_path / "go", tmp_path / "ready"
    ready.mkdir()
    script = (
        "import json, os, sys, time\n"
        "from mstore.modelpath import locate\n"
        f"open(os.path.join({str(ready)!r}, str(os.getpid())), 'w').close()\n"  # imported: ready to race
        f"while not os.path.exists({str(go)!r}): time.sleep(0.005)\n"
        "found = locate('prod')\n"
        "print(json.dumps(found.to_json()))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=_env(tmp_path))
        for _ in range(8)
    ]
    deadline = time.monotonic() + 120
    while len(os.listdir(ready)) < 8:  # a barrier, not a guess: every process imported mstore and waits
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a process did not start"
        time.sleep(0.01)
    go.touch()
    docs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len({d["path"] for d in docs}) == 1
    assert sum(not d["cached"] for d in docs) == 1, docs  # exactly one process wrote it
    path = Path(docs[0]["path"])
    assert path.read_bytes() == model.read_bytes()
    assert os.listdir(tmp_path / "cache" / "tmp") == []


def test_a_second_call_reads_nothing_of_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = write_tree(tmp_path / "ckpt", {f"shard{i}.bin": os.urandom(1 << 20) for i in range(4)})
    _save(tmp_path, tree, tag="prod")
    kwargs: dict[str, Any] = {"store": tmp_path / "store", "cache_dir": tmp_path / "cache"}
    first = mstore.model_path("prod", **kwargs)
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file: Any, *args: Any, **kw: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kw)

    def spy_os_open(path: Any, *args: Any, **kw: Any) -> int:
        opened.append(str(path))
        return real_os_open(path, *args, **kw)

    def no_reading(*args: Any, **kw: Any) -> Any:
        raise AssertionError("the model was read again")

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    monkeypatch.setattr(ObjectStore, "read_with_blob", no_reading)
    for _ in range(3):
        assert mstore.model_path("prod", **kwargs) == first
    assert opened and not [p for p in opened if p.startswith(str(first))], opened
    assert not [p for p in opened if "/objects/" in p]


def _tamper_cases(path: Path) -> list[tuple[str, Any]]:
    def chmod_only() -> None:
        os.chmod(path, 0o644)

    def edit_keeping_size_and_mtime() -> None:
        st = path.stat()
        os.chmod(path, 0o644)
        with open(path, "r+b") as f:
            f.seek(100)
            f.write(b"\x00\xff" * 8)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.chmod(path, 0o444)

    def replace_with_symlink() -> None:
        outside = path.parent.parent.parent.parent / "outside.bin"
        outside.write_bytes(b"not the model")
        os.chmod(path.parent, 0o755)
        path.unlink()
        path.symlink_to(outside)

    def add_a_file() -> None:
        os.chmod(path.parent, 0o755)
        (path.parent / "extra.py").write_bytes(b"print('hi')")

    return [
        ("chmod", chmod_only),
        ("edit", edit_keeping_size_and_mtime),
        ("link", replace_with_symlink),
        ("add", add_a_file),
    ]


@pytest.mark.slow
def test_a_model_changed_behind_mstores_back_is_rebuilt_never_returned(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "ckpt", {"weights.bin": os.urandom(200_000), "config.json": b'{"a": 1}'})
    _save(tmp_path, tree, tag="prod")
    first = _path_json(tmp_path, "prod")
    weights = Path(first["path"]) / "weights.bin"
    for name, tamper in _tamper_cases(weights):
        tamper()
        again = _path_json(tmp_path, "prod")
        assert again["path"] == first["path"] and again["cached"] is False, name
        assert read_tree(Path(again["path"])) == read_tree(tree), name
        assert _entry_files(Path(again["path"]))["weights.bin"] == 0o444
        assert _path_json(tmp_path, "prod")["cached"] is True, name
    assert (tmp_path / "outside.bin").read_bytes() == b"not the model"


@pytest.mark.slow
def test_cache_verify_rehashes_and_finds_what_a_forged_stamp_hides(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(os.urandom(100_000))
    _save(tmp_path, model, tag="prod")
    path = Path(_path_json(tmp_path, "prod")["path"])
    assert _mstore(tmp_path, "cache", "verify").stdout.strip() == "cache ok"
    os.chmod(path, 0o644)
    path.write_bytes(b"x" * 100_000)
    os.chmod(path, 0o444)
    cache = Cache.open(tmp_path / "cache")
    key = path.parent.name
    manifest = Manifest.decode(cache.objects.read(key))
    stamp = _make_stamp(path.parent, key, manifest)  # a stamp forged to match the edit
    (tmp_path / "cache" / "stamps" / key).write_text(json.dumps(stamp))
    assert _path_json(tmp_path, "prod")["cached"] is True  # the stamp is a cheap check, not a proof...
    result = _mstore(tmp_path, "cache", "verify", "--json", code=1)  # ...verify is
    assert json.loads(result.stdout)["problems"][0]["key"] == key
    assert _path_json(tmp_path, "prod")["cached"] is True  # verify only reports, as fsck does...
    result = _mstore(tmp_path, "cache", "verify", "--repair", code=1)  # ...--repair acts on what it found
    assert "repaired" in result.stdout
    assert _path_json(tmp_path, "prod")["cached"] is False
    assert path.read_bytes() == model.read_bytes()
    _mstore(tmp_path, "cache", "verify")


@pytest.mark.slow
def test_cache_ls_du_rm(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(os.urandom(50_000))
    vid = _save(tmp_path, model, tag="prod")
    _path_json(tmp_path, "prod")
    _path_json(tmp_path, vid)
    listed = json.loads(_mstore(tmp_path, "cache", "ls", "--json").stdout)
    assert len(listed) == 1 and listed[0]["size"] == 50_000 and listed[0]["intact"]
    assert sorted(r["ref"] for r in listed[0]["refs"]) == sorted(["prod", vid])
    du = json.loads(_mstore(tmp_path, "cache", "du", "--json").stdout)
    assert du["entries"] == 1 and du["models_bytes"] == 50_000 and du["total_bytes"] >= 50_000
    assert "prod=" in _mstore(tmp_path, "cache", "ls").stdout
    _one_line_error(_mstore(tmp_path, "cache", "rm", "nothing-like-it", code=2))
    assert _mstore(tmp_path, "cache", "rm", "prod").stdout.startswith("removed ")
    assert json.loads(_mstore(tmp_path, "cache", "ls", "--json").stdout) == []
    _path_json(tmp_path, "prod")
    _mstore(tmp_path, "cache", "rm", "--all")
    assert os.listdir(tmp_path / "cache" / "models") == []


def _hold(tmp_path: Path, ref: str) -> subprocess.Popen[str]:
    """A process that got the path of `ref` and keeps running (it holds the entry's use lock)."""
    script = "import sys, mstore\nprint(mstore.model_path(sys.argv[1]), flush=True)\nsys.stdin.read()\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, ref],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
    )
    assert proc.stdout is not None and proc.stdout.readline()
    return proc


@pytest.mark.slow
def test_prune_keeps_to_the_size_limit_least_recently_used_first_and_skips_entries_in_use(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    for i, tag in enumerate(["a", "b", "c", "d"]):
        model.write_bytes(bytes([i]) * 1_000_000 + os.urandom(1_000_000))
        _save(tmp_path, model, tag=tag)
        _path_json(tmp_path, tag)
    keys = {e.refs[0]["ref"]: e.key for e in Cache.open(tmp_path / "cache").entries()}
    holder = _hold(tmp_path, "b")  # b will be the oldest, but a running process uses it
    for age, tag in enumerate(["d", "a", "c", "b"]):  # least recently used first: b, c, a, d
        os.utime(tmp_path / "cache" / "stamps" / keys[tag], (time.time() - 1000 * (age + 1),) * 2)
    try:
        plan = json.loads(_mstore(tmp_path, "cache", "prune", "--max-size", "4.5M", "--dry-run", "--json").stdout)
        assert plan["removed"] == [keys["c"], keys["a"]] and plan["in_use"] == [keys["b"]]
        assert len(os.listdir(tmp_path / "cache" / "models")) == 4  # a dry run removes nothing
        plan = json.loads(_mstore(tmp_path, "cache", "prune", "--max-size", "4.5M", "--json").stdout)
        assert plan["removed"] == [keys["c"], keys["a"]] and plan["in_use"] == [keys["b"]]
        assert plan["total_after"] <= 4.5 * (1 << 20)
        du = json.loads(_mstore(tmp_path, "cache", "du", "--json").stdout)
        assert du["total_bytes"] == plan["total_after"] and du["entries"] == 2
        assert sorted(os.listdir(tmp_path / "cache" / "models")) == sorted([keys["b"], keys["d"]])
        assert _mstore(tmp_path, "cache", "rm", "b", code=1).stderr.startswith("kept ")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    os.utime(tmp_path / "cache" / "stamps" / keys["d"])
    plan = json.loads(_mstore(tmp_path, "cache", "prune", "--older-than", "5m", "--json").stdout)
    assert plan["removed"] == [keys["b"]]  # free once its process ended; d was used just now
    _one_line_error(_mstore(tmp_path, "cache", "prune", code=2))
    _one_line_error(_mstore(tmp_path, "cache", "prune", "--max-size", "lots", code=2))


@pytest.mark.parametrize("ref", ["../x", "a/b", "-rf", "latest\x00", "x" * 500, "prod;rm", "/etc/passwd"])
def test_hostile_refs_are_one_line_and_write_nothing(tmp_path: Path, ref: str) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"model")
    _save(tmp_path, model, tag="prod")
    if "\x00" in ref:
        with pytest.raises(mstore.MStoreError):
            mstore.model_path(ref, store=tmp_path / "store", cache_dir=tmp_path / "cache")
    else:
        line = _one_line_error(_mstore(tmp_path, "path", "--", ref, code=2))
        assert "reference" in line or "no version" in line
    models = tmp_path / "cache" / "models"
    assert not models.exists() or os.listdir(models) == []


@pytest.mark.slow
def test_hostile_cache_contents_never_write_outside_or_hang(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(os.urandom(10_000))
    _save(tmp_path, model, tag="prod")
    home = tmp_path / "home"
    write_tree(home, {"notes.txt": b"mine"})
    # a directory that is not a cache (a mistyped MSTORE_CACHE) is refused, never filled
    line = _one_line_error(_mstore(tmp_path, "path", code=2, MSTORE_CACHE=str(home)))
    assert "not an mstore cache" in line and os.listdir(home) == ["notes.txt"]

    first = Path(_path_json(tmp_path)["path"])
    cache = tmp_path / "cache"
    key = first.parent.name
    # the stamp is a FIFO: no hang, the entry is rebuilt
    (cache / "stamps" / key).unlink()
    os.mkfifo(cache / "stamps" / key)
    assert _path_json(tmp_path)["cached"] is False
    # the entry is a symlink to a directory outside: rebuilt, the outside untouched
    os.chmod(first.parent, 0o755)
    os.rename(first.parent, tmp_path / "moved")
    (cache / "models" / key).symlink_to(home)
    assert _path_json(tmp_path)["cached"] is False and first.read_bytes() == model.read_bytes()
    assert os.listdir(home) == ["notes.txt"]
    # a layout directory linked elsewhere: refused, nothing written there
    os.rename(cache / "tmp", tmp_path / "old-tmp")
    (cache / "tmp").symlink_to(home)
    line = _one_line_error(_mstore(tmp_path, "cache", "rm", "--all", code=1))
    assert "symbolic link" in line
    _one_line_error(_mstore(tmp_path, "path", code=1))
    assert os.listdir(home) == ["notes.txt"] and first.read_bytes() == model.read_bytes()
    # a lock file linked elsewhere is refused too
    (cache / "tmp").unlink()
    os.rename(tmp_path / "old-tmp", cache / "tmp")
    for lock in (cache / "locks").iterdir():
        lock.unlink()
        lock.symlink_to(home / "notes.txt")
    _one_line_error(_mstore(tmp_path, "path", code=1))
    assert (home / "notes.txt").read_bytes() == b"mine"


@pytest.mark.slow
def test_cache_paths_that_are_no_cache_are_refused(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"model")
    _save(tmp_path, model)
    (tmp_path / "a-file").write_bytes(b"x")
    for bad in (tmp_path / "a-file", tmp_path / "bad\x1bname", tmp_path):
        with pytest.raises(mstore.MStoreError) as caught:
            mstore.model_path(store=tmp_path / "store", cache_dir=bad)
        assert "\n" not in str(caught.value)
    assert not (tmp_path / "bad\x1bname").exists() and not (tmp_path / "models").exists()
    # commands that only read or shrink the cache do not create one
    for args in (("cache", "ls"), ("cache", "du"), ("cache", "verify"), ("cache", "prune", "--max-size", "1G")):
        _mstore(tmp_path, *args, MSTORE_CACHE=str(tmp_path / "none"))
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
def test_cleaning_tmp_never_deletes_a_build_in_progress(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"model")
    _save(tmp_path, model)
    _path_json(tmp_path)
    cache = tmp_path / "cache"
    key = "ab" * 32
    building = cache / "tmp" / f".tmp-build-{key}-1-0123456789ab"
    building.mkdir()
    left = cache / "tmp" / ".tmp-trash-0123456789abcdef-1-0123456789ab"
    left.mkdir()
    lock = fsutil.try_lock(cache / "locks" / f"{key}.build")  # as a process writing that entry holds it
    try:
        _mstore(tmp_path, "cache", "rm", "--all")
        assert building.is_dir() and not left.exists()
    finally:
        assert lock is not None
        os.close(lock)
    _mstore(tmp_path, "cache", "prune", "--older-than", "1d")
    assert not building.exists()


def test_a_first_open_racing_another_is_not_mistaken_for_someone_elses_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight processes opening a new cache at once: one reads "no CACHEDIR.TAG" just before another writes it,
    then finds the other's folders. The interleaving is forced here (no luck involved): the other process
    finishes its first open between this one's read of the tag and its look at the directory."""
    from mstore.cache import entries

    root = tmp_path / "cache"
    root.mkdir()
    real_scandir = os.scandir
    raced = []

    def scandir(path: Any) -> Any:
        if Path(path) == root and not raced:
            raced.append(True)
            monkeypatch.setattr(entries.os, "scandir", real_scandir)
            Cache.open(root)  # the other process's whole first open
        return real_scandir(path)

    monkeypatch.setattr(entries.os, "scandir", scandir)
    assert Cache.open(root).root == root and raced  # before: NotACache ("not empty and has no CACHEDIR.TAG")


@pytest.mark.parametrize("made_by_user", [False, True])
def test_a_cache_tag_once_there_is_never_replaced_so_no_reader_sees_it_missing(
    tmp_path: Path, made_by_user: bool
) -> None:
    """The CI flake of the eight processes: two first opens both found no CACHEDIR.TAG and both wrote one, the
    second replacing the first while a third process, which already saw the first's folders, read the tag
    again. Forced here at a fault point (no luck involved): another process's whole first open runs exactly
    when this one is about to publish its tag. The tag must stay the one first written (an exclusive create,
    never a replace, so no filesystem can show a reader a moment without it), and at every filesystem step
    of both opens a reader that sees anything in the directory finds the tag."""
    from mstore.cache import entries

    root = tmp_path / "cache"
    if made_by_user:
        root.mkdir()  # an empty directory the user made for the cache is adopted
    tag = root / entries.TAG_FILE
    inodes: set[int] = set()
    raced: list[str] = []

    def hook(op: str, path: Path) -> None:
        with suppress(FileNotFoundError):
            inodes.add(os.lstat(tag).st_ino)
        if root.is_dir() and any(not fsutil.is_temp_name(n) for n in os.listdir(root)):
            assert entries._read_tag(tag) is not None, f"{op} {path}: folders visible, no tag"
        if path == tag and not raced:  # this open is about to publish its tag: the other open runs now
            raced.append(op)
            Cache.open(root)

    fsutil.set_fault_hook(hook)
    try:
        Cache.open(root)
    finally:
        fsutil.set_fault_hook(None)
    inodes.add(os.lstat(tag).st_ino)
    assert raced and len(inodes) == 1, raced  # before: the second open replaced the first's tag
    assert sorted(os.listdir(root)) == sorted([entries.TAG_FILE, *entries.LAYOUT])
    assert Cache.open(root, create=False).root == root


@pytest.mark.parametrize("where", ["", "models", "stamps"])
@pytest.mark.parametrize("how", ["world-writable", "another user"])
def test_a_cache_others_can_write_is_refused(tmp_path: Path, where: str, how: str) -> None:
    """A world-writable MSTORE_CACHE (or one of its directories) lets another user forge a stamp and an entry,
    which a lookup trusts: such a cache is refused with one line, as git refuses a repository of dubious
    ownership; the user's own cache works."""
    (tmp_path / "m.bin").write_bytes(b"weights" * 100)
    _save(tmp_path, tmp_path / "m.bin", tag="prod")
    path = mstore.model_path("prod", store=tmp_path / "store", cache_dir=tmp_path / "cache")
    target = tmp_path / "cache" / where
    if how == "world-writable":
        target.chmod(target.stat().st_mode | 0o002)
    elif os.geteuid() == 0:
        os.chown(target, 4242, 4242)
    else:
        pytest.skip("giving a directory to another user needs root")
    with pytest.raises(NotACache, match="forged"):
        mstore.model_path("prod", store=tmp_path / "store", cache_dir=tmp_path / "cache")
    refused = _mstore(tmp_path, "path", "prod", code=2)
    assert "could be forged" in _one_line_error(refused)
    assert path.read_bytes() == b"weights" * 100  # nothing was removed
