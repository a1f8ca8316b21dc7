"""Hostile input: damaged or crafted store files, changing sources and terminal escapes are refused
with a clear error, and nothing is written where it should not be."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mstore import Repository
from mstore.cli import app
from mstore.errors import CorruptManifest, CorruptVersion, InvalidName, SourceChanged
from mstore.store.chunking import ModelAwareChunker
from mstore.store.manifest import KIND_DIR, Chunk, Entry, Manifest
from mstore.store.objects import hash_bytes
from mstore.store.versions import checksum_line

runner = CliRunner()


def _saved(tmp_path: Path) -> tuple[Repository, str]:
    repo = Repository.init(tmp_path / "store")
    src = tmp_path / "m.bin"
    src.write_bytes(b"model")
    return repo, repo.save(src)["timestamp"]


def _forge_metadata(repo: Repository, vid: str, data: bytes) -> None:
    """Replace metadata.json *and* its checksum, as an attacker (or a careless script) could."""
    directory = repo.root / f"version_{vid}"
    (directory / "metadata.json").write_bytes(data)
    (directory / "metadata.b3").write_bytes(checksum_line(data))


@pytest.mark.parametrize(
    "payload",
    [
        b'{"x": "' + b"y" * (17 << 20) + b'"}',  # huge
        b'{"a": ' * 5000 + b"1" + b"}" * 5000,  # deeply nested
        b'{"metrics": {"accuracy": NaN}}',
        b'{"metrics": {"accuracy": Infinity}}',
        b'{"name": "\xff\xfe"}',  # invalid UTF-8
        b"[1, 2, 3]",
        b"",
    ],
)
def test_malformed_metadata_is_a_clean_error(tmp_path: Path, payload: bytes) -> None:
    repo, vid = _saved(tmp_path)
    _forge_metadata(repo, vid, payload)
    with pytest.raises(CorruptVersion):
        repo.get(vid)
    result = runner.invoke(app, ["--store", str(repo.root), "show", vid])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert [p.code for p in repo.fsck().errors] == ["bad-metadata"]


@pytest.mark.parametrize("evil", ["../escaped", "/tmp/absolute-escape", "a/../../escaped"])
def test_a_crafted_manifest_never_writes_outside_the_target(tmp_path: Path, evil: str) -> None:
    repo, vid = _saved(tmp_path)
    payload = b"pwned"
    oid = hash_bytes(payload)
    repo.store.objects.put(payload, oid)
    # hand-build the msgpack so the encoder's own validation cannot stop it
    import msgpack

    doc = {
        "mstore": "manifest",
        "v": 1,
        "kind": KIND_DIR,
        "entries": [
            {
                "path": evil,
                "type": "f",
                "size": 5,
                "exec": False,
                "b3": bytes.fromhex(oid),
                "chunks": [[bytes.fromhex(oid), 5]],
            }
        ],
    }
    raw = msgpack.packb(doc, use_bin_type=True)
    moid = hash_bytes(raw)
    repo.store.objects.put(raw, moid)
    meta = repo.get(vid)
    meta["mstore"]["manifest"] = moid
    _forge_metadata(repo, vid, json.dumps(meta).encode())
    with pytest.raises(CorruptManifest):
        repo.checkout(vid, tmp_path / "out" / "target")
    assert not (tmp_path / "out" / "escaped").exists() and not Path("/tmp/absolute-escape").exists()
    assert "bad-manifest" in {p.code for p in repo.fsck().errors}


def test_restore_rechecks_paths_even_for_a_trusted_manifest(tmp_path: Path) -> None:
    repo, _ = _saved(tmp_path)
    oid = hash_bytes(b"x")
    repo.store.objects.put(b"x", oid)
    evil = Manifest(KIND_DIR, (Entry("../escaped", False, 1, False, oid, (Chunk(oid, 1),)),))
    from mstore.content.restore import restore

    with pytest.raises(InvalidName):
        restore(evil, repo.store.objects, tmp_path / "target")
    assert not (tmp_path / "escaped").exists()


def test_symlinked_directory_inside_a_model_is_refused(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "store")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    os.symlink("/etc", model / "etc")
    result = runner.invoke(app, ["--store", str(repo.root), "save", str(model)])
    assert result.exit_code == 2 and "symbolic link" in result.stderr
    assert repo.ids() == [] and list(repo.store.objects) == []


def test_a_source_that_changes_while_saving_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Repository.init(tmp_path / "store")
    src = tmp_path / "growing.bin"
    src.write_bytes(os.urandom(3 * (4 << 20)))
    original_split = ModelAwareChunker.split

    def split_while_training_job_writes(self: ModelAwareChunker, stream, path, size, *rest):  # type: ignore[no-untyped-def]
        for i, piece in enumerate(original_split(self, stream, path, size, *rest)):
            if i == 1:
                with open(src, "ab") as f:
                    f.write(b"the training job is still writing")
            yield piece

    monkeypatch.setattr(ModelAwareChunker, "split", split_while_training_job_writes)
    with pytest.raises(SourceChanged):
        repo.save(src)
    assert repo.ids() == [] and repo.store.refs.latest() is None


def test_metadata_is_escaped_on_the_terminal(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "store")
    src = tmp_path / "m.bin"
    src.write_bytes(b"m")
    repo.save(src, {"note": "\x1b[2J\x1b]0;pwned\x07"}, message="\x1b[31mred\x1b[0m")
    for args in (["log"], ["show"]):
        out = runner.invoke(app, ["--store", str(repo.root), *args]).stdout
        assert "\x1b" not in out and "\x07" not in out and "\\x1b" in out


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.update(mstore="a string"),
        lambda m: m.update(mstore=[1, 2]),
        lambda m: m["mstore"].update(lineage="abc"),
        lambda m: m["mstore"].update(lineage={"git": "abc"}),
        lambda m: m["mstore"].update(lineage={"training_file": {"path": 3}}),
        lambda m: m["mstore"].update(parent=["20260101_000000"]),
        lambda m: m["mstore"].update(size="big"),
        lambda m: m["mstore"].update(files=True),
        lambda m: m.update(model_hash=7),
    ],
    ids=["block-str", "block-list", "lineage-str", "git-str", "path-int", "parent-list", "size", "files", "hash"],
)
def test_odd_types_in_mstore_fields_are_one_line_everywhere(tmp_path: Path, mutate: object) -> None:
    """A version from a remote or an archive is only as well-formed as its writer made it: a self-consistent
    metadata.json whose mstore-owned fields have the wrong types is a damaged version (log, show, the UI and
    fsck say so in one line), never a traceback or a bare 500."""
    from starlette.testclient import TestClient

    from mstore.ui.app import create_app

    repo, vid = _saved(tmp_path)
    meta = json.loads((repo.root / f"version_{vid}" / "metadata.json").read_bytes())
    mutate(meta)  # type: ignore[operator]
    _forge_metadata(repo, vid, json.dumps(meta).encode())
    for command in (["log"], ["log", "--oneline"], ["show", vid], ["diff", vid, vid], ["du"]):
        result = runner.invoke(app, ["--store", str(repo.root), *command])
        assert result.exit_code == 1, (command, result.output)
        assert result.stderr.count("\n") == 1 and "metadata.json has" in result.stderr, (command, result.stderr)
    assert [p.code for p in repo.fsck().errors] == ["bad-metadata"]
    client = TestClient(create_app(repo.root), base_url="http://127.0.0.1:8000")
    for path in ("/", f"/versions/{vid}", "/api/versions"):
        response = client.get(path)
        assert "metadata.json has" in response.text, (path, response.status_code)
