"""The pickle verdict is a function of the bytes (issue 21, item 4): after pull, clone and import, and for
`model_path(remote=...)`, what show / log / the refusals use is recomputed from the stored bytes, never
taken from the metadata a remote or an archive brought (content/verdict.py).

The attacker is a bucket writer: the version's model is an `os.system` pickle (written opcode by opcode,
as tests/test_pickle_attacks.py does, and never loaded) and its metadata.json says `pickle_verdict: safe`,
with a matching metadata.b3 (a checksum proves no damage, not authorship).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from craft import read_meta, write_version

import mstore
from mstore import Repository
from mstore.content import verdict as V
from mstore.errors import UnsafeModel

UNSAFE = b"cos\nsystem\n(S'true'\ntR."  # os.system("true") under pickle.load
SAFE = b"\x80\x04}\x94\x8c\x01a\x94K\x01s."  # {"a": 1}


def forge_safe(store: Path, vid: str, **extra: Any) -> None:
    """Rewrite a version's metadata to claim that its pickles are all known-safe."""
    meta = read_meta(store, vid)
    block = meta["mstore"]
    assert isinstance(block, dict)
    block["pickle_globals"] = {rel: [] for rel in block.get("pickle_globals") or {"model.pkl": []}}
    block["unsafe_globals"] = []
    block.pop("pickle_incomplete", None)
    block["pickle_verdict"] = "safe"
    block.update(extra)
    write_version(store, vid, meta)


@pytest.fixture
def attacker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A directory remote holding one version: model.pkl runs os.system; its metadata says safe."""
    monkeypatch.delenv("MSTORE_ALLOW_UNSAFE", raising=False)
    monkeypatch.delenv("MSTORE_ALLOW_FILE", raising=False)
    monkeypatch.setenv("MSTORE_CACHE", str(tmp_path / "cache"))
    evil = Repository.init(tmp_path / "evil")
    (tmp_path / "model.pkl").write_bytes(UNSAFE)
    vid = str(evil.save(tmp_path / "model.pkl")["timestamp"])
    evil.remote_add("bucket", str(tmp_path / "remote"))
    evil.push("bucket")
    forge_safe(tmp_path / "remote", vid)
    assert read_meta(tmp_path / "remote", vid)["mstore"]["pickle_verdict"] == "safe"  # type: ignore[index]
    (tmp_path / "work").mkdir()
    return tmp_path, vid


def _cli(tmp_path: Path, *args: str, store: Path, code: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSTORE_")}
    env.update(MSTORE_DIR=str(store), MSTORE_CACHE=str(tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, "-m", "mstore", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path / "work",
    )
    assert result.returncode == code, (args, result.stdout, result.stderr)
    return result


def assert_found_unsafe(tmp_path: Path, store: Path, vid: str) -> None:
    """show, log and the API say UNSAFE (and what was claimed); model_path, path and checkout refuse."""
    repo = Repository.open(store)
    block = repo.get(vid)["mstore"]
    assert block["pickle_verdict"] == "unsafe" and block["unsafe_globals"] == ["os.system"]
    assert block["pickle_claimed"] == "safe"
    assert repo.show(vid)["metadata"]["mstore"]["pickle_verdict"] == "unsafe"
    assert repo.log()[0]["mstore"]["pickle_verdict"] == "unsafe"
    with pytest.raises(UnsafeModel, match=rf"{vid}.*os\.system"):
        mstore.model_path(vid, store=store)
    shown = _cli(tmp_path, "show", vid, store=store).stdout
    assert "UNSAFE: loading it imports os.system" in shown and "claimed safe" in shown
    assert "UNSAFE" in _cli(tmp_path, "log", "--oneline", store=store).stdout
    refused = _cli(tmp_path, "path", vid, store=store, code=1).stderr
    assert "refused" in refused and "os.system" in refused
    refused = _cli(tmp_path, "checkout", vid, "-o", "out.pkl", store=store, code=1).stderr
    assert "refused" in refused and "os.system" in refused
    assert os.listdir(tmp_path / "work") == []


def test_pull_recomputes_the_verdict(attacker: tuple[Path, str]) -> None:
    tmp_path, vid = attacker
    mine = Repository.init(tmp_path / "mine")
    mine.remote_add("origin", str(tmp_path / "remote"))
    mine.pull("origin")
    assert read_meta(tmp_path / "mine", vid)["mstore"]["pickle_verdict"] == "safe"  # type: ignore[index]
    assert V.read_record(V.records_dir(mine.store), mine.store.versions.read(vid)["mstore"]["manifest"])
    assert_found_unsafe(tmp_path, tmp_path / "mine", vid)


def test_pull_by_the_cli_recomputes_the_verdict(attacker: tuple[Path, str]) -> None:
    tmp_path, vid = attacker
    Repository.init(tmp_path / "mine").remote_add("origin", str(tmp_path / "remote"))
    _cli(tmp_path, "pull", store=tmp_path / "mine")
    assert_found_unsafe(tmp_path, tmp_path / "mine", vid)


def test_clone_recomputes_the_verdict(attacker: tuple[Path, str]) -> None:
    tmp_path, vid = attacker
    Repository.clone(str(tmp_path / "remote"), tmp_path / "mine")
    assert_found_unsafe(tmp_path, tmp_path / "mine", vid)


def test_import_of_an_archive_recomputes_the_verdict(attacker: tuple[Path, str]) -> None:
    tmp_path, vid = attacker
    forge_safe(tmp_path / "evil", vid)  # the archive is exported from a store whose metadata lies
    Repository.open(tmp_path / "evil").export([vid], tmp_path / "evil.mstore")
    Repository.import_into(tmp_path / "mine", tmp_path / "evil.mstore")
    assert_found_unsafe(tmp_path, tmp_path / "mine", vid)
    Repository.init(tmp_path / "other").import_archive(tmp_path / "evil.mstore")
    assert Repository.open(tmp_path / "other").get(vid)["mstore"]["pickle_verdict"] == "unsafe"


def test_model_path_from_the_remote_recomputes_the_verdict(attacker: tuple[Path, str]) -> None:
    tmp_path, vid = attacker
    url = str(tmp_path / "remote")
    with pytest.raises(UnsafeModel, match=rf"{vid}.*os\.system"):
        mstore.model_path(vid, remote=url)
    with pytest.raises(UnsafeModel, match=rf"{vid}.*os\.system"):
        mstore.model_path(vid, remote=url, files=["model.pkl"])
    assert mstore.model_path(vid, remote=url, allow_unsafe=True).read_bytes() == UNSAFE
    with pytest.raises(UnsafeModel, match=rf"{vid}.*os\.system"):  # the offline record keeps the finding
        mstore.model_path(vid, remote=url, offline=True)
    with pytest.raises(UnsafeModel, match=rf"{vid}.*os\.system"):  # answered from the kept record
        mstore.model_path(vid, remote=url)


def test_a_remote_cannot_allow_a_global(attacker: tuple[Path, str]) -> None:
    """`pickle_allowed` in metadata from elsewhere adds nothing: only the local allowlist counts."""
    tmp_path, vid = attacker
    forge_safe(tmp_path / "remote", vid, pickle_allowed=["os.system", "posix.system"])
    Repository.clone(str(tmp_path / "remote"), tmp_path / "mine")
    block = Repository.open(tmp_path / "mine").get(vid)["mstore"]
    assert block["pickle_verdict"] == "unsafe" and "pickle_allowed" not in block


def test_the_local_allowlist_file_still_counts(attacker: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path, vid = attacker
    Repository.clone(str(tmp_path / "remote"), tmp_path / "mine")
    allow = tmp_path / "allow.txt"
    allow.write_text("os.system\n")
    monkeypatch.setenv("MSTORE_ALLOW_FILE", str(allow))
    assert Repository.open(tmp_path / "mine").get(vid)["mstore"]["pickle_verdict"] == "safe"


def test_a_store_without_records_computes_them_on_first_use(attacker: tuple[Path, str]) -> None:
    """A store older than the records (or whose cache was removed): the verdict is computed from the bytes
    the first time it is needed, then kept."""
    tmp_path, vid = attacker
    Repository.clone(str(tmp_path / "remote"), tmp_path / "mine")
    shutil.rmtree(tmp_path / "mine" / "cache" / "verdicts")
    assert_found_unsafe(tmp_path, tmp_path / "mine", vid)
    assert os.listdir(tmp_path / "mine" / "cache" / "verdicts")


def test_a_forged_record_of_another_scanner_is_recomputed(attacker: tuple[Path, str]) -> None:
    tmp_path, vid = attacker
    Repository.clone(str(tmp_path / "remote"), tmp_path / "mine")
    (record,) = (tmp_path / "mine" / "cache" / "verdicts").iterdir()
    doc = json.loads(record.read_bytes())
    doc["files"] = {"model.pkl": {"globals": []}}  # does not validate: ignored, recomputed
    record.write_text(json.dumps(doc))
    assert Repository.open(tmp_path / "mine").get(vid)["mstore"]["pickle_verdict"] == "unsafe"


def test_a_safe_pickle_claimed_unsafe_is_found_safe(tmp_path: Path) -> None:
    """The other direction: the bytes decide both ways, and the claim is kept for show."""
    repo = Repository.init(tmp_path / "a")
    (tmp_path / "m.pkl").write_bytes(SAFE)
    vid = str(repo.save(tmp_path / "m.pkl")["timestamp"])
    meta = read_meta(tmp_path / "a", vid)
    meta["mstore"]["unsafe_globals"] = ["os.system"]  # type: ignore[index]
    meta["mstore"]["pickle_verdict"] = "unsafe"  # type: ignore[index]
    write_version(tmp_path / "a", vid, meta)
    Repository.clone(str(tmp_path / "a"), tmp_path / "b")
    block = Repository.open(tmp_path / "b").get(vid)["mstore"]
    assert block["pickle_verdict"] == "safe" and block["pickle_claimed"] == "unsafe"


def test_a_pickle_whose_metadata_hides_it_is_found(attacker: tuple[Path, str]) -> None:
    """Metadata with no pickle keys at all (as if the model had no pickle) does not hide one."""
    tmp_path, vid = attacker
    meta = read_meta(tmp_path / "remote", vid)
    for key in V.PICKLE_KEYS:
        meta["mstore"].pop(key, None)  # type: ignore[attr-defined]
    write_version(tmp_path / "remote", vid, meta)
    Repository.clone(str(tmp_path / "remote"), tmp_path / "mine")
    with pytest.raises(UnsafeModel, match=rf"{vid}.*os\.system"):
        mstore.model_path(vid, store=tmp_path / "mine")
    with pytest.raises(UnsafeModel, match=rf"{vid}.*os\.system"):
        mstore.model_path(vid, remote=str(tmp_path / "remote"), cache_dir=tmp_path / "cache2")


def test_saved_records_keep_the_save_allowlist(tmp_path: Path) -> None:
    """A save's own `--allow` entries are a local decision: kept in the local record, so the verdict
    stays what the save said."""
    repo = Repository.init(tmp_path / "a")
    (tmp_path / "m.pkl").write_bytes(UNSAFE)
    meta = repo.save(tmp_path / "m.pkl", allow=["os.system"])
    assert meta["mstore"]["pickle_verdict"] == "safe"
    assert repo.get("latest")["mstore"]["pickle_verdict"] == "safe"
    Repository.clone(str(tmp_path / "a"), tmp_path / "b")  # elsewhere, the remote's allowlist is not taken
    assert Repository.open(tmp_path / "b").get("latest")["mstore"]["pickle_verdict"] == "unsafe"


def test_the_web_ui_marks_what_the_bytes_say(attacker: tuple[Path, str]) -> None:
    from starlette.testclient import TestClient

    from mstore.ui.app import create_app

    tmp_path, vid = attacker
    Repository.clone(str(tmp_path / "remote"), tmp_path / "mine")
    client = TestClient(create_app(tmp_path / "mine"), base_url="http://127.0.0.1")
    row = client.get("/").text
    assert '<span class="badge unsafe"' in row[row.index(f'<tr data-version="{vid}">') :]
    page = client.get(f"/versions/{vid}").text
    assert 'id="unsafe">UNSAFE</span>' in page and "its metadata claimed safe" in page
    assert "mstore.model_path(" not in page


def test_a_partial_load_from_the_remote_scans_what_it_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """files= scans only those files; a later offline load of a file it did not scan is refused as unknown."""
    monkeypatch.delenv("MSTORE_ALLOW_UNSAFE", raising=False)
    monkeypatch.setenv("MSTORE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "evil.pkl").write_bytes(UNSAFE)
    (folder / "ok.pkl").write_bytes(SAFE)
    (folder / "config.json").write_bytes(b"{}")
    evil = Repository.init(tmp_path / "evil")
    vid = str(evil.save(folder)["timestamp"])
    evil.remote_add("bucket", str(tmp_path / "remote"))
    evil.push("bucket")
    forge_safe(tmp_path / "remote", vid)
    url = str(tmp_path / "remote")
    path = mstore.model_path(vid, remote=url, files=["ok.pkl", "config.json"])
    assert (path / "ok.pkl").read_bytes() == SAFE and not (path / "evil.pkl").exists()
    for offline in (True, False):
        with pytest.raises(UnsafeModel, match=rf"{vid}.*evil\.pkl"):
            mstore.model_path(vid, remote=url, files=["evil.pkl"], offline=offline)
    with pytest.raises(UnsafeModel, match=vid):
        mstore.model_path(vid, remote=url, offline=True)
    with pytest.raises(UnsafeModel, match=rf"{vid}.*os\.system"):
        mstore.model_path(vid, remote=url)
    assert mstore.model_path(vid, remote=url, files=["ok.pkl"]).is_dir()  # the whole record answers now


def test_unreadable_bytes_are_unknown_and_not_kept(attacker: tuple[Path, str]) -> None:
    """A chunk that cannot be read makes the verdict unknown (refused), and no record is kept: once the
    object is back (a pull, `fsck` repair), the verdict is taken again."""
    tmp_path, vid = attacker
    Repository.clone(str(tmp_path / "remote"), tmp_path / "mine")
    repo = Repository.open(tmp_path / "mine")
    shutil.rmtree(tmp_path / "mine" / "cache" / "verdicts")
    (chunk,) = repo.manifest(vid).files[0].chunks
    path = repo.store.objects.path(chunk.oid)
    saved = path.read_bytes()
    os.chmod(path, 0o644)
    path.unlink()
    block = repo.get(vid)["mstore"]
    assert block["pickle_verdict"] == "unknown"
    assert not (tmp_path / "mine" / "cache" / "verdicts").exists() or not os.listdir(
        tmp_path / "mine" / "cache" / "verdicts"
    )
    path.write_bytes(saved)
    assert repo.get(vid)["mstore"]["pickle_verdict"] == "unsafe"


def test_gc_drops_the_records_of_the_manifests_it_deletes(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "a")
    for data in (UNSAFE, SAFE):
        (tmp_path / "m.pkl").write_bytes(data)
        repo.save(tmp_path / "m.pkl")
    records = tmp_path / "a" / "cache" / "verdicts"
    first, second = repo.ids()
    gone = repo.store.versions.read(first)["mstore"]["manifest"]
    assert {p.name for p in records.iterdir()} >= {f"{gone}.json"}
    repo.remove(first)
    repo.gc(grace_seconds=0)
    assert f"{gone}.json" not in {p.name for p in records.iterdir()}
    assert repo.get(second)["mstore"]["pickle_verdict"] == "safe" and len(list(records.iterdir())) == 1
