"""Refusal at the moment of loading: `model_path`, `mstore path` and `mstore checkout` refuse a version whose
pickle verdict is unsafe or unknown unless the caller allows it (`allow_unsafe=True`, `--allow-unsafe`,
`MSTORE_ALLOW_UNSAFE=1`); one line on stderr naming the first offending global, exit 1, nothing written.

The unsafe pickle is written opcode by opcode (protocol 0 `GLOBAL os system` + REDUCE) and never loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import mstore
from mstore import Repository
from mstore.cache.entries import Cache
from mstore.errors import UnsafeModel

from helpers import run_mstore

# os.system("true") under pickle.load: the scanner must call it unsafe (the test never loads it)
UNSAFE = b"cos\nsystem\n(S'true'\ntR."
# a plain dict {"a": 1}: no globals at all, so "safe"
SAFE = b"\x80\x04}\x94\x8c\x01a\x94K\x01s."


def _mstore(tmp_path: Path, *args: str, code: int = 0, **env: str) -> subprocess.CompletedProcess[str]:
    return run_mstore(tmp_path, *args, code=code, cwd=tmp_path / "work", **env)


@pytest.fixture
def saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, str]]:
    """A store with `bad` (model.pkl unsafe), `good` (model.pkl safe), `plain` (no pickle), and `mixed`
    (a folder: evil.pkl unsafe, ok.pkl safe, config.json)."""
    monkeypatch.delenv("MSTORE_ALLOW_UNSAFE", raising=False)
    monkeypatch.setenv("MSTORE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "work").mkdir()
    repo = Repository.init(tmp_path / "store")
    src = tmp_path / "src"
    src.mkdir()
    ids = {}
    for tag, name, data in (("bad", "model.pkl", UNSAFE), ("good", "model.pkl", SAFE), ("plain", "m.bin", b"x" * 10)):
        d = src / tag
        d.mkdir()
        (d / name).write_bytes(data)
        ids[tag] = str(repo.save(d / name, tag=tag)["timestamp"])
    folder = src / "mixed"
    folder.mkdir()
    (folder / "evil.pkl").write_bytes(UNSAFE)
    (folder / "ok.pkl").write_bytes(SAFE)
    (folder / "config.json").write_bytes(b"{}")
    ids["mixed"] = str(repo.save(folder, tag="mixed")["timestamp"])
    assert repo.get("bad")["mstore"]["pickle_verdict"] == "unsafe"
    assert repo.get("good")["mstore"]["pickle_verdict"] == "safe"
    return tmp_path, ids


def _one_line(result: subprocess.CompletedProcess[str], vid: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mstore: error: refused:"), result.stderr
    assert vid in lines[0] and "os.system" in lines[0] and "--allow-unsafe" in lines[0], lines[0]
    assert result.stdout == ""
    return lines[0]


def _cache_entries(tmp_path: Path) -> list[str]:
    entries = tmp_path / "cache" / "entries"
    return sorted(os.listdir(entries)) if entries.is_dir() else []


# -- model_path ---------------------------------------------------------------------------------------------


def test_model_path_refuses_unsafe_and_writes_nothing(saved: tuple[Path, dict[str, str]]) -> None:
    tmp_path, ids = saved
    with pytest.raises(UnsafeModel, match=rf"{ids['bad']}.*os\.system.*allow_unsafe=True"):
        mstore.model_path("bad", store=tmp_path / "store")
    assert _cache_entries(tmp_path) == []


def test_model_path_allowed_by_argument_and_env(
    saved: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path, _ = saved
    path = mstore.model_path("bad", store=tmp_path / "store", allow_unsafe=True)
    assert path.read_bytes() == UNSAFE
    monkeypatch.setenv("MSTORE_ALLOW_UNSAFE", "1")
    assert mstore.model_path("bad", store=tmp_path / "store") == path
    # the argument wins over the environment
    with pytest.raises(UnsafeModel):
        mstore.model_path("bad", store=tmp_path / "store", allow_unsafe=False)


def test_model_path_safe_and_pickle_free_pass(saved: tuple[Path, dict[str, str]]) -> None:
    tmp_path, _ = saved
    assert mstore.model_path("good", store=tmp_path / "store").read_bytes() == SAFE
    assert mstore.model_path("plain", store=tmp_path / "store").read_bytes() == b"x" * 10


def test_model_path_partial_load_without_the_unsafe_file_passes(saved: tuple[Path, dict[str, str]]) -> None:
    tmp_path, ids = saved
    store = tmp_path / "store"
    path = mstore.model_path("mixed", store=store, files=["ok.pkl", "config.json"])
    assert (path / "ok.pkl").read_bytes() == SAFE and not (path / "evil.pkl").exists()
    with pytest.raises(UnsafeModel, match=r"evil\.pkl.*os\.system"):
        mstore.model_path("mixed", store=store, include=["*.pkl"])
    with pytest.raises(UnsafeModel, match=ids["mixed"]):
        mstore.model_path("mixed", store=store)


def test_model_path_offline_keeps_the_decision(saved: tuple[Path, dict[str, str]]) -> None:
    """Offline answers come from the cache's recorded resolution, which keeps the pickle scan with it; a
    resolution recorded without one (older mstore) is of unknown verdict, so refused."""
    tmp_path, ids = saved
    repo = Repository.open(tmp_path / "store")
    url = str(tmp_path / "remote")
    repo.remote_add("origin", url)
    repo.push("origin")
    assert mstore.model_path("bad", remote=url, allow_unsafe=True).read_bytes() == UNSAFE  # recorded online
    assert mstore.model_path("good", remote=url).read_bytes() == SAFE
    with pytest.raises(UnsafeModel, match=rf"{ids['bad']}.*os\.system"):
        mstore.model_path("bad", remote=url, offline=True)
    assert mstore.model_path("bad", remote=url, offline=True, allow_unsafe=True).read_bytes() == UNSAFE
    assert mstore.model_path("good", remote=url, offline=True).read_bytes() == SAFE
    cache = Cache.open(tmp_path / "cache")
    (found,) = [r for r in cache.resolutions() if r["ref"] == "good"]
    doc = json.loads((tmp_path / "cache" / "refs" / found["file"]).read_bytes())
    del doc["pickle"]
    (tmp_path / "cache" / "refs" / found["file"]).write_text(json.dumps(doc))
    with pytest.raises(UnsafeModel, match=ids["good"]):
        mstore.model_path("good", remote=url, offline=True)
    with pytest.raises(UnsafeModel, match=ids["good"]):
        mstore.model_path("good", remote=url, offline=True, files=["model.pkl"])


# -- mstore path ----------------------------------------------------------------------------------------------


def test_path_refuses_unsafe(saved: tuple[Path, dict[str, str]]) -> None:
    tmp_path, ids = saved
    _one_line(_mstore(tmp_path, "path", "bad", code=1), ids["bad"])
    _one_line(_mstore(tmp_path, "path", "bad", "--json", code=1), ids["bad"])
    assert _cache_entries(tmp_path) == []


@pytest.mark.parametrize("how", ["flag", "env"])
def test_path_allowed(saved: tuple[Path, dict[str, str]], how: str) -> None:
    tmp_path, _ = saved
    if how == "flag":
        out = _mstore(tmp_path, "path", "bad", "--allow-unsafe").stdout
    else:
        out = _mstore(tmp_path, "path", "bad", MSTORE_ALLOW_UNSAFE="1").stdout
    assert Path(out.strip()).read_bytes() == UNSAFE


def test_path_safe_passes_and_partial_include(saved: tuple[Path, dict[str, str]]) -> None:
    tmp_path, ids = saved
    assert Path(_mstore(tmp_path, "path", "good").stdout.strip()).read_bytes() == SAFE
    assert Path(_mstore(tmp_path, "path", "plain").stdout.strip()).read_bytes() == b"x" * 10
    out = _mstore(tmp_path, "path", "mixed", "--include", "ok.pkl").stdout.strip()
    assert (Path(out) / "ok.pkl").read_bytes() == SAFE
    _one_line(_mstore(tmp_path, "path", "mixed", "--exclude", "ok.pkl", code=1), ids["mixed"])


# -- mstore checkout ------------------------------------------------------------------------------------------


def test_checkout_refuses_unsafe_and_writes_nothing(saved: tuple[Path, dict[str, str]]) -> None:
    tmp_path, ids = saved
    _one_line(_mstore(tmp_path, "checkout", "bad", "-o", "out.pkl", code=1), ids["bad"])
    _one_line(_mstore(tmp_path, "checkout", "mixed", code=1), ids["mixed"])
    assert os.listdir(tmp_path / "work") == []


@pytest.mark.parametrize("how", ["flag", "env"])
def test_checkout_allowed(saved: tuple[Path, dict[str, str]], how: str) -> None:
    tmp_path, _ = saved
    if how == "flag":
        _mstore(tmp_path, "checkout", "bad", "-o", "out.pkl", "--allow-unsafe")
    else:
        _mstore(tmp_path, "checkout", "bad", "-o", "out.pkl", MSTORE_ALLOW_UNSAFE="1")
    assert (tmp_path / "work" / "out.pkl").read_bytes() == UNSAFE


def test_checkout_safe_passes(saved: tuple[Path, dict[str, str]]) -> None:
    tmp_path, _ = saved
    _mstore(tmp_path, "checkout", "good", "-o", "good.pkl")
    _mstore(tmp_path, "checkout", "plain", "-o", "m.bin")
    assert (tmp_path / "work" / "good.pkl").read_bytes() == SAFE
    assert (tmp_path / "work" / "m.bin").read_bytes() == b"x" * 10


def test_checkout_says_the_first_reason_to_refuse_in_a_fixed_order(saved: tuple[Path, dict[str, str]]) -> None:
    """With several things wrong at once the user always sees the same one first: the pickle verdict, then
    the trusted keys, then the --signature arguments (nothing is written in any case)."""
    tmp_path, ids = saved
    _mstore(tmp_path, "keygen", "-o", str(tmp_path / "k"))  # a trust root that signed nothing here
    trust = ("--trusted-keys", str(tmp_path / "k.pub.pem"))
    bad_sig = ("--signature", str(tmp_path / "work") + "/")  # names a directory: refused when checked
    key_alone = ("--signature-key", str(tmp_path / "k.pub.pem"))  # --signature-key without --signature
    for extra in (bad_sig, key_alone, (*bad_sig, *trust)):  # unsafe: the verdict comes first
        _one_line(_mstore(tmp_path, "checkout", "bad", "-o", "out.pkl", *extra, code=1), ids["bad"])
    line = _mstore(tmp_path, "checkout", "good", "-o", "g.pkl", *bad_sig, *trust, code=1).stderr.strip()
    assert line.startswith("mstore: error: refused ") and "not signed by a trusted key" in line, line
    for extra in ((), ("--allow-unsafe",)):  # then the signature's arguments
        ref = "bad" if extra else "good"
        line = _mstore(tmp_path, "checkout", ref, "-o", "g.pkl", *bad_sig, *extra, code=2).stderr.strip()
        assert "names a directory" in line and "\n" not in line, line
    line = _mstore(tmp_path, "checkout", "good", "-o", "g.pkl", *key_alone, code=2).stderr.strip()
    assert "--signature-key needs --signature" in line, line
    assert os.listdir(tmp_path / "work") == []


# -- every other load path: Repository.checkout, the seed API's checkout, export --plain ------------------------


def test_repository_checkout_refuses_unsafe_unless_allowed(
    saved: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path, ids = saved
    repo = Repository.open(tmp_path / "store")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsafeModel, match=rf"{ids['bad']}.*os\.system.*allow_unsafe=True"):
        repo.checkout("bad", out / "m.pkl")
    with pytest.raises(UnsafeModel, match=r"evil\.pkl|os\.system"):
        repo.checkout("mixed", out / "mixed")
    assert os.listdir(out) == []
    assert repo.checkout("good", out / "good.pkl").read_bytes() == SAFE
    assert repo.checkout("bad", out / "m.pkl", allow_unsafe=True).read_bytes() == UNSAFE
    monkeypatch.setenv("MSTORE_ALLOW_UNSAFE", "1")
    assert repo.checkout("bad", out / "m2.pkl").read_bytes() == UNSAFE
    with pytest.raises(UnsafeModel):  # the argument wins over the environment
        repo.checkout("bad", out / "m3.pkl", allow_unsafe=False)


def test_seed_api_checkout_refuses_unsafe_unless_allowed(saved: tuple[Path, dict[str, str]]) -> None:
    tmp_path, ids = saved
    mv = mstore.ModelVersioning(tmp_path / "store")
    with pytest.raises(UnsafeModel, match=ids["bad"]):
        mv.checkout("bad", tmp_path / "m.pkl")
    with pytest.raises(UnsafeModel, match=ids["bad"]):
        mv.restore("bad", tmp_path / "m.pkl")
    assert not (tmp_path / "m.pkl").exists()
    assert mv.checkout("bad", tmp_path / "m.pkl", allow_unsafe=True).read_bytes() == UNSAFE


def test_export_plain_refuses_unsafe_and_writes_nothing(saved: tuple[Path, dict[str, str]]) -> None:
    """Plain files leave the verdict behind (anyone can joblib.load them), so --plain refuses as checkout
    does; the archive format keeps the bytes and every importer recomputes the verdict, so it passes."""
    tmp_path, ids = saved
    _one_line(_mstore(tmp_path, "export", "good", "bad", "--plain", "-o", "plain", code=1), ids["bad"])
    assert os.listdir(tmp_path / "work") == []
    repo = Repository.open(tmp_path / "store")
    with pytest.raises(UnsafeModel, match=ids["mixed"]):
        repo.export_plain(["mixed"], tmp_path / "plain")
    assert not (tmp_path / "plain").exists()
    _mstore(tmp_path, "export", "good", "bad", "--plain", "-o", "plain", "--allow-unsafe")
    assert (tmp_path / "work" / "plain" / f"version_{ids['bad']}" / "model.pkl").read_bytes() == UNSAFE
    _mstore(tmp_path, "export", "good", "plain", "--plain", "-o", "plain2")
    _mstore(tmp_path, "export", "bad", "-o", "bad.mstore")  # an archive: the importer decides


def test_open_tensors_is_not_refused_it_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision, documented in tensorfile.py: open_tensors reads raw bytes at offsets found statically,
    so a version whose pickles are unsafe still gives its tensors (and model_path still refuses it)."""
    import numpy as np

    from helpers import safetensors_bytes

    monkeypatch.delenv("MSTORE_ALLOW_UNSAFE", raising=False)
    monkeypatch.setenv("MSTORE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "evil.pkl").write_bytes(UNSAFE)
    weights = np.arange(6, dtype=np.float32)
    (folder / "w.safetensors").write_bytes(safetensors_bytes({"w": ("F32", weights)}))
    repo = Repository.init(tmp_path / "store")
    vid = str(repo.save(folder)["timestamp"])
    with pytest.raises(UnsafeModel, match=vid):
        mstore.model_path(vid, store=tmp_path / "store")
    with mstore.open_tensors(vid, "w.safetensors", store=tmp_path / "store") as f:
        assert f.get_tensor("w").tolist() == weights.tolist()
