"""`model_path(ref, include=/files=/exclude=)` and `mstore path --include`: some files of a folder model.

Only the files asked for are written (and, from a remote, fetched: test_model_path_s3.py); a later call
for more adds them to the same cache entry in place. Readers of the files held before never see them
change, and nobody sees a half-added set; an edit behind mstore's back, before or while files are added,
is rebuilt, never vouched for; a process killed at any step while adding leaves a cache the next call
repairs; a typo is one line naming the nearest paths, and writes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import mstore
from mstore import Repository
from mstore.cache import upkeep
from mstore.cache.entries import Cache
from mstore.errors import BadInput, NotInModel
from mstore.store import fsutil

from helpers import cli, head_model, read_tree, write_tree

FILES = {
    "config.json": b'{"hidden_size": 8}',
    "tokenizer/vocab.txt": b"a\nb\nc\n",
    "tokenizer/merges.txt": b"a b\n",
    "model.safetensors": head_model(1, backbone=1 << 14),
}


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MSTORE_CACHE", str(tmp_path / "cache"))
    repo = Repository.init(tmp_path / "store")
    repo.save(write_tree(tmp_path / "ckpt", FILES))
    repo.tag("prod", "latest")
    return repo.root


def _tree(path: Path) -> dict[str, bytes]:
    return {rel: data for rel, (data, _) in read_tree(path).items()}


def _located(store: Path, *args: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(cli(store, "path", "prod", *args, "--json").stdout)
    return doc


def test_include_writes_only_those_files_and_later_calls_add_to_the_same_folder(store: Path) -> None:
    first = _located(store, "--include", "config.json")
    folder = Path(first["path"])
    assert _tree(folder) == {"config.json": FILES["config.json"]}
    assert (first["files"], first["complete"], first["cached"]) == (["config.json"], False, False)
    config_inode = os.stat(folder / "config.json").st_ino

    again = _located(store, "--include", "config.json")
    assert again["cached"] is True and again["path"] == first["path"]

    more = _located(store, "-I", "tokenizer/", "-I", "config.json")
    assert more["path"] == first["path"] and more["cached"] is False and more["complete"] is False
    assert _tree(folder) == {k: v for k, v in FILES.items() if k != "model.safetensors"}
    assert os.stat(folder / "config.json").st_ino == config_inode  # held files are never rewritten
    assert _located(store, "--include", "*.txt")["cached"] is True  # already held: nothing written

    whole = _located(store)
    assert whole["path"] == first["path"] and whole["complete"] is True and whole["files"] is None
    assert _tree(folder) == FILES and os.stat(folder / "config.json").st_ino == config_inode
    assert not any(os.stat(p).st_mode & 0o222 for p in [folder, *folder.rglob("*")])  # all sealed again
    assert _located(store, "--include", "config.json")["cached"] is True  # a whole entry answers any subset
    assert upkeep.verify(Cache.open(None)) == []


def test_files_exclude_and_python_api(store: Path) -> None:
    path = mstore.model_path("prod", store=store, files=["model.safetensors"], include=["tokenizer/*"])
    assert sorted(_tree(path)) == ["model.safetensors", "tokenizer/merges.txt", "tokenizer/vocab.txt"]
    assert "partial: 3 file(s)" in cli(store, "cache", "ls").stdout
    assert upkeep.verify(Cache.open(None)) == []  # verify re-hashes what a partial entry holds
    path = mstore.model_path("prod", store=store, exclude=["*.safetensors"])  # config.json is added
    assert _tree(path) == FILES  # the weights were there from the first call
    entry = Cache.open(None).entries()[0]
    assert (entry.complete, entry.files) == (True, 4)  # together the calls asked for every file


def test_a_typo_is_one_line_with_the_nearest_names_and_writes_nothing(store: Path, tmp_path: Path) -> None:
    bad = cli(store, "path", "prod", "--include", "confg.json", code=2)
    assert bad.stderr.strip() == (
        "mstore: error: the pattern 'confg.json' matches no file of the model (nearest: 'config.json')"
    )
    with pytest.raises(NotInModel, match=r"no file 'tokenizer/vocab' \(nearest: 'tokenizer/vocab.txt'"):
        mstore.model_path("prod", store=store, files=["tokenizer/vocab"])
    assert "leave no file" in cli(store, "path", "prod", "--exclude", "*", code=2).stderr
    with pytest.raises(BadInput, match=r"include=\['\*.json'\]"):
        mstore.model_path("prod", store=store, include="*.json")  # type: ignore[arg-type]
    assert not os.listdir(tmp_path / "cache" / "models")


def test_an_edit_behind_mstores_back_is_rebuilt_not_extended(store: Path) -> None:
    folder = Path(_located(store, "--include", "config.json")["path"])
    os.chmod(folder / "config.json", 0o644)
    (folder / "config.json").write_bytes(b'{"hidden_size": 9}')
    _located(store, "--include", "tokenizer/")
    assert (folder / "config.json").read_bytes() == FILES["config.json"]  # rebuilt: the edit is gone


def test_an_edit_while_files_are_added_is_not_vouched_for(store: Path) -> None:
    """The window between the stamp check and the new stamp: an edit there must not be laundered."""
    folder = Path(_located(store, "--include", "config.json")["path"])

    def edit_once(op: str, path: Path) -> None:  # at the first file renamed into the entry
        if op == "rename" and path.parent.parent == folder and not edited:
            edited.append(path)
            os.chmod(folder / "config.json", 0o644)
            (folder / "config.json").write_bytes(b"edited")

    edited: list[Path] = []
    fsutil.set_fault_hook(edit_once)
    try:
        _located(store, "--include", "tokenizer/")
    finally:
        fsutil.set_fault_hook(None)
    assert edited
    assert _tree(folder) == {k: v for k, v in FILES.items() if k != "model.safetensors"}
    assert _located(store, "--include", "config.json", "--include", "tokenizer/")["cached"] is True


def test_readers_see_the_files_held_unchanged_and_never_a_half_added_set(store: Path) -> None:
    folder = Path(_located(store, "--include", "config.json")["path"])
    cache, key = Cache.open(None), folder.name
    model_hash = Repository.open(store).get("prod")["model_hash"]
    seen: list[str] = []

    def look(op: str, path: Path) -> None:  # before each step of the addition, as a reader would
        if op != "rename" or folder not in path.parents:
            return
        seen.append(path.name)
        assert (folder / "config.json").read_bytes() == FILES["config.json"]
        assert cache.lookup(key, model_hash, frozenset({"tokenizer/vocab.txt", "tokenizer/merges.txt"})) is None
        assert cache.lookup(key, model_hash, frozenset({"tokenizer/merges.txt"})) is None

    fsutil.set_fault_hook(look)
    try:
        _located(store, "--include", "tokenizer/")
    finally:
        fsutil.set_fault_hook(None)
    assert seen == ["merges.txt", "vocab.txt"]
    assert cache.lookup(key, model_hash, frozenset({"tokenizer/vocab.txt", "config.json"})) == folder


@pytest.mark.slow
def test_a_process_killed_at_any_step_of_an_addition_leaves_a_cache_the_next_call_repairs(
    store: Path, tmp_path: Path
) -> None:
    mstore_cmd = [sys.executable, "-m", "mstore", "--store", str(store), "path", "prod", "-I", "tokenizer/"]
    wanted = {k: v for k, v in FILES.items() if k != "model.safetensors"}
    step = 1
    while True:
        cache = tmp_path / f"cache{step}"
        mstore.model_path("prod", store=store, cache_dir=cache, include=["config.json"])
        env = {**os.environ, "MSTORE_CACHE": str(cache), "MSTORE_CRASH_AT": str(step)}
        killed = subprocess.run(mstore_cmd, env=env)
        again = mstore.model_path("prod", store=store, cache_dir=cache, include=["tokenizer/"])
        assert _tree(again) == wanted, step
        assert upkeep.verify(Cache.open(cache)) == [], step
        if killed.returncode == 0:
            break
        assert killed.returncode == fsutil.CRASH_EXIT_CODE, step
        step += 1
    assert step > 5  # the kills landed inside the addition, not only before it
