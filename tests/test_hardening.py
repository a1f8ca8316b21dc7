"""Defects a careful review found (issue 14): each test here failed before its fix."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mstore import Repository
from mstore.errors import RemoteExists, RemoteNotFound, TagExists, TagNotFound
from mstore.store import fsutil
from mstore.store.layout import CONFIG, Store

runner = CliRunner()


def _store(tmp_path: Path, versions: int = 2) -> tuple[Repository, list[str]]:
    repo = Repository.init(tmp_path / "store")
    src = tmp_path / "model.bin"
    ids = []
    for i in range(versions):
        src.write_bytes(f"model {i} ".encode() * 200)
        ids.append(repo.save(src)["timestamp"])
    return repo, ids


def test_save_with_a_taken_tag_publishes_nothing(tmp_path: Path) -> None:
    repo, ids = _store(tmp_path)
    repo.tag("prod", ids[0])
    (tmp_path / "new.bin").write_bytes(b"a new model")
    result = runner.invoke(app_(), ["--store", str(repo.root), "save", str(tmp_path / "new.bin"), "--tag", "prod"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "nothing was saved" in result.stderr
    assert repo.ids() == ids and repo.tags() == {"prod": ids[0]}
    with pytest.raises(TagExists, match="force=True"):
        repo.save(tmp_path / "new.bin", tag="prod")
    assert repo.ids() == ids
    meta = repo.save(tmp_path / "new.bin", tag="candidate")
    assert repo.tags()["candidate"] == meta["timestamp"]


def app_():  # type: ignore[no-untyped-def]
    from mstore.cli import app

    return app


@pytest.mark.parametrize("byte", [0, 20, 60, -3])
def test_a_flipped_bit_in_mstore_json_is_found(tmp_path: Path, byte: int) -> None:
    repo, _ = _store(tmp_path, 1)
    path = repo.root / CONFIG
    data = bytearray(path.read_bytes())
    data[byte] ^= 0x01
    path.write_bytes(bytes(data))
    report = repo.fsck()  # a store opened before the damage re-reads the file
    assert not report.ok and "bad-config" in {p.code for p in report.errors}
    result = runner.invoke(app_(), ["--store", str(repo.root), "fsck"])  # a fresh open: refused or reported
    assert result.exit_code in (1, 2) and "mstore.json" in result.stdout + result.stderr


def test_a_digit_changed_in_mstore_json_is_found(tmp_path: Path) -> None:
    repo, _ = _store(tmp_path, 1)
    path = repo.root / CONFIG
    path.write_text(path.read_text().replace('"opaque_level": 3', '"opaque_level": 2'))
    assert "bad-config" in {p.code for p in Repository.open(repo.root, strict=False).fsck().errors}
    result = runner.invoke(app_(), ["--store", str(repo.root), "log"])
    assert result.exit_code == 1 and "checksum" in result.stderr  # never silently written with other settings


def test_an_older_mstore_json_without_a_checksum_still_works(tmp_path: Path) -> None:
    repo, ids = _store(tmp_path, 1)
    config = json.loads((repo.root / CONFIG).read_text())
    del config["b3"]
    (repo.root / CONFIG).write_text(json.dumps(config, indent=2))
    assert Repository.open(repo.root).fsck().ok and Repository.open(repo.root).ids() == ids
    Repository.open(repo.root).remote_add("nas", str(tmp_path / "nas"))  # a rewrite adds the checksum
    assert "b3" in json.loads((repo.root / CONFIG).read_text())
    assert Store.open(repo.root).config["remotes"]["nas"]["url"].endswith("nas")


def test_an_object_that_cannot_be_read_is_unreadable_not_corrupt(tmp_path: Path) -> None:
    repo, ids = _store(tmp_path, 1)
    victim = repo.store.objects.path(next(iter(repo.store.objects)))

    def eio(op: str, path: Path) -> None:
        if Path(path) == victim:
            raise OSError(errno.EIO, "Input/output error", str(path))

    fsutil.set_read_fault_hook(eio)
    try:
        report = repo.fsck()
        assert [p.code for p in report.errors] == ["unreadable"]
        assert repo.quarantine(report) == []  # an I/O error is not proof of damage: nothing is moved
    finally:
        fsutil.set_read_fault_hook(None)
    assert victim.exists() and repo.fsck().ok


def test_each_error_names_its_own_cause(tmp_path: Path) -> None:
    repo, _ = _store(tmp_path, 1)
    repo.remote_add("nas", str(tmp_path / "nas"))
    with pytest.raises(RemoteExists):
        repo.remote_add("nas", str(tmp_path / "other"))
    with pytest.raises(RemoteNotFound):
        repo.remote("nope")
    with pytest.raises(RemoteNotFound):
        repo.remote_remove("nope")
    with pytest.raises(TagNotFound):
        repo.untag("nope")
    for exc in (RemoteExists, RemoteNotFound, TagNotFound):
        assert not issubclass(exc, TagExists) and exc.__name__ != "VersionNotFound"


def test_a_missing_manifest_is_one_error_not_two(tmp_path: Path) -> None:
    repo, ids = _store(tmp_path, 1)
    moid = repo.get(ids[0])["mstore"]["manifest"]
    repo.store.objects.path(moid).unlink()
    errors = repo.fsck().errors
    assert [(p.code, p.subject) for p in errors] == [("missing-object", moid)]


def test_local_and_remote_fsck_and_gc_speak_one_json_shape(tmp_path: Path) -> None:
    repo, _ = _store(tmp_path, 2)
    repo.remote_add("nas", str(tmp_path / "nas"))
    repo.push("nas")
    app = app_()
    local = json.loads(runner.invoke(app, ["--store", str(repo.root), "fsck", "--json"]).stdout)
    remote = json.loads(runner.invoke(app, ["--store", str(repo.root), "fsck", "--remote", "nas", "--json"]).stdout)
    shared = {"ok", "versions", "objects", "bytes_checked", "errors", "damaged_versions", "problems"}
    assert shared <= set(local) and shared <= set(remote)
    gc_local = json.loads(runner.invoke(app, ["--store", str(repo.root), "gc", "--dry-run", "--json"]).stdout)
    gc_remote = json.loads(
        runner.invoke(app, ["--store", str(repo.root), "gc", "--remote", "nas", "--dry-run", "--json"]).stdout
    )
    assert set(gc_local) == set(gc_remote)
    # the same damage gets the same code on both sides
    (repo.root / "refs" / "tags").mkdir(exist_ok=True)
    for root in (repo.root, tmp_path / "nas"):
        (root / "refs" / "tags" / "broken").write_bytes(b"not a ref")
    local = json.loads(runner.invoke(app, ["--store", str(repo.root), "fsck", "--json"]).stdout)
    remote = json.loads(runner.invoke(app, ["--store", str(repo.root), "fsck", "--remote", "nas", "--json"]).stdout)
    assert {p["code"] for p in local["problems"] if p["subject"].endswith("broken")} == {"bad-ref"}
    assert {p["code"] for p in remote["problems"] if p["subject"].endswith("broken")} == {"bad-ref"}


def test_byte_grouping_false_in_mstore_json_is_obeyed(tmp_path: Path) -> None:
    """Every setting mstore.json holds is real: with byte_grouping false, no object is byte-grouped."""
    import numpy as np

    from mstore.formats.tensors import safetensors_bytes
    from mstore.store import codec

    weights = np.random.default_rng(0).standard_normal((256, 1024)).astype(np.float32)
    model = tmp_path / "m.safetensors"
    model.write_bytes(safetensors_bytes({"w": ("F32", weights)}))
    widths = {}
    for grouping in (True, False):
        repo = Repository.init(tmp_path / f"store-{grouping}")
        with repo.store.write_lock():
            repo.store.config["compression"]["byte_grouping"] = grouping
            repo.store.save_config()
        repo = Repository.open(repo.root)
        repo.save(model)
        headers = [codec.parse_header(repo.store.objects.header(o)) for o in repo.store.objects]
        widths[grouping] = {h.width for h in headers if h is not None}
        assert repo.fsck().ok
    assert 4 in widths[True] and widths[False] == {1}


def test_a_fifo_swapped_in_after_the_scan_is_refused_not_waited_on(tmp_path: Path) -> None:
    """A save opens each model file without blocking: a FIFO that replaced a file between the scan and
    the read is refused at once (opening it for reading used to wait for a writer forever)."""
    fifo = tmp_path / "model.bin"
    os.mkfifo(fifo)
    probe = (
        "import sys; from pathlib import Path; from mstore.content.ingest import _open_source; "
        "from mstore.errors import UnsupportedSource\n"
        "try:\n    _open_source(Path(sys.argv[1]))\nexcept UnsupportedSource as e:\n    print('refused:', e)"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(fifo)], capture_output=True, text=True, timeout=30)
    assert done.stdout.startswith("refused:") and "not a regular file" in done.stdout, done.stderr
    target = tmp_path / "real.bin"
    target.write_bytes(b"weights")
    (tmp_path / "link.bin").symlink_to(target)
    from mstore.content.ingest import _open_source

    with _open_source(tmp_path / "link.bin") as f:  # a model path given as a link is still read
        assert f.read() == b"weights"
