"""Directory remotes: push, pull and clone move exactly what the other side lacks, verified, in an order
that never publishes a version before its objects."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mstore import Repository
from mstore.cli import app
from mstore.errors import CorruptObject

from helpers import format_2_store, safetensors_bytes

runner = CliRunner()


def _model(seed: int, head_seed: int) -> bytes:
    rng, head = np.random.default_rng(seed), np.random.default_rng(head_seed)
    return safetensors_bytes(
        {
            "backbone": ("F32", rng.standard_normal(1 << 18).astype(np.float32)),
            "head": ("F32", head.standard_normal(1024).astype(np.float32)),
        }
    )


def _cli(store: Path, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, ["--store", str(store), *args])
    assert result.exit_code == code, (args, result.stdout, result.stderr)
    return result.stdout


def test_push_clone_pull_round_trip_and_incremental_push(tmp_path: Path) -> None:
    alice, shared = tmp_path / "alice", tmp_path / "shared"
    src = tmp_path / "model.safetensors"
    src.write_bytes(_model(0, 1))
    _cli(alice, "save", str(src), "-M", "accuracy=0.9", "--tag", "prod")
    _cli(alice, "remote", "add", "origin", str(shared))
    assert json.loads(_cli(alice, "remote", "list", "--json")) == {"origin": str(shared)}
    first = json.loads(_cli(alice, "push", "--json"))
    assert first["versions_sent"] == 1 and first["objects_sent"] >= 2

    src.write_bytes(_model(0, 2))  # fine-tuned: only the head changed
    _cli(alice, "save", str(src), "-M", "accuracy=0.92")
    second = json.loads(_cli(alice, "push", "--json"))
    assert second["versions_sent"] == 1 and second["versions_skipped"] == 1
    assert second["bytes_sent"] < 16 * 1024  # the head (4 KiB) and a manifest, not the 1 MiB backbone
    assert second["objects_skipped"] >= 1

    bob = tmp_path / "bob"
    cloned = json.loads(_cli(tmp_path / "unused", "clone", str(shared), str(bob), "--json"))
    assert cloned["versions_sent"] == 2
    assert cloned["bytes_sent"] == first["bytes_sent"] + second["bytes_sent"]  # each object fetched once
    bob_repo = Repository.open(bob)
    assert bob_repo.remotes() == {"origin": str(shared.resolve())}
    assert bob_repo.tags() == {"prod": bob_repo.ids()[0]}
    assert bob_repo.checkout("latest", tmp_path / "bob.safetensors").read_bytes() == src.read_bytes()
    assert bob_repo.fsck().ok

    src.write_bytes(_model(0, 3))
    _cli(alice, "save", str(src))
    _cli(alice, "push")
    pulled = json.loads(_cli(bob, "pull", "--json"))
    assert pulled["versions_sent"] == 1 and pulled["versions_skipped"] == 2
    assert Repository.open(bob).ids() == Repository.open(alice).ids()
    assert "pulled 0 version(s)" in _cli(bob, "pull")


def test_a_corrupt_object_never_travels(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "a")
    src = tmp_path / "m.safetensors"
    src.write_bytes(_model(5, 6))
    vid = repo.save(src)["timestamp"]
    oid = repo.manifest(vid).files[0].chunks[-1].oid
    path = repo.store.objects.path(oid)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    repo.remote_add("backup", str(tmp_path / "backup"))
    with pytest.raises(CorruptObject):
        repo.push("backup")
    remote = Repository.open(tmp_path / "backup")
    assert remote.ids() == [] and oid not in set(remote.store.objects)


def test_remote_errors_are_clear(tmp_path: Path) -> None:
    store = tmp_path / "s"
    src = tmp_path / "m.bin"
    src.write_bytes(b"model")
    _cli(store, "save", str(src))
    bad = runner.invoke(app, ["--store", str(store), "remote", "add", "x", "ftp://host/x"])
    assert bad.exit_code == 2 and "use s3://BUCKET/PREFIX" in bad.stderr
    bad = runner.invoke(app, ["--store", str(store), "remote", "add", "x", "s3:///nobucket"])
    assert bad.exit_code == 2 and "not an S3 URL" in bad.stderr
    bad = runner.invoke(app, ["--store", str(store), "remote", "add", "x", "s3://bkt/a/../b"])
    assert bad.exit_code == 2 and "'..'" in bad.stderr
    bad = runner.invoke(app, ["--store", str(store), "remote", "add", "x", str(tmp_path), "--endpoint-url", "http://h"])
    assert bad.exit_code == 2 and "only applies to s3://" in bad.stderr
    assert Repository.open(store).remotes() == {}
    _cli(store, "push", code=2)  # no remote named origin
    _cli(store, "remote", "add", "origin", str(tmp_path / "r"))
    _cli(store, "remote", "add", "origin", str(tmp_path / "r2"), code=2)
    _cli(store, "remote", "remove", "origin")
    _cli(store, "remote", "remove", "origin", code=2)
    _cli(store, "clone", str(tmp_path / "nothing-here"), str(tmp_path / "c"), code=2)


def test_identical_re_saves_travel_once(tmp_path: Path) -> None:
    """Two versions of the same model share every object, its manifest included: each crosses once."""
    alice, shared = Repository.init(tmp_path / "alice"), tmp_path / "shared"
    src = tmp_path / "m.safetensors"
    src.write_bytes(_model(7, 7))
    alice.save(src)
    alice.save(src, {"metrics": {"accuracy": 0.5}})
    alice.remote_add("origin", str(shared))
    pushed = alice.push("origin")
    bob, cloned = Repository.clone(str(shared), tmp_path / "bob")
    assert pushed.versions_sent == cloned.versions_sent == 2
    assert cloned.objects_sent == pushed.objects_sent and cloned.bytes_sent == pushed.bytes_sent
    assert bob.checkout("latest", tmp_path / "out").read_bytes() == src.read_bytes()


def test_pushing_an_older_tagged_version_says_what_is_true(tmp_path: Path) -> None:
    store, nas = tmp_path / "store", tmp_path / "nas"
    src = tmp_path / "model.bin"
    src.write_bytes(b"first")
    _cli(store, "save", str(src))
    _cli(store, "remote", "add", "nas", str(nas))
    _cli(store, "push", "nas")
    src.write_bytes(b"second")
    _cli(store, "save", str(src))
    _cli(store, "push", "nas")
    first, second = Repository.open(store).ids()
    _cli(store, "tag", "prod", "latest~1")
    result = runner.invoke(app, ["--store", str(store), "push", "nas", "prod"])
    assert result.exit_code == 0, result.stderr
    assert "someone else" not in result.stderr
    assert f"note: the remote's latest stays {second}, newer than the version(s) sent; nothing was overwritten" in (
        result.stderr
    )
    stats = json.loads(_cli(store, "push", "nas", "prod", "--json"))
    assert stats["latest"] == second and stats["latest_newer_than_sent"] is True
    assert Repository.open(store).remote("nas").get_ref("tags/prod")[0] == first


def test_the_only_remote_needs_no_name_and_remote_alone_lists(tmp_path: Path) -> None:
    store, other = tmp_path / "store", tmp_path / "other"
    src = tmp_path / "model.bin"
    src.write_bytes(b"first")
    _cli(store, "save", str(src), "--tag", "prod")
    src.write_bytes(b"second")
    _cli(store, "save", str(src))
    assert "no remote configured" in runner.invoke(app, ["--store", str(store), "push"]).stderr
    _cli(store, "remote", "add", "nas", str(tmp_path / "nas"))
    assert _cli(store, "remote") == f"nas  {tmp_path / 'nas'}\n"  # like `mstore tag` lists tags
    assert json.loads(_cli(store, "push", "prod", "--json"))["versions_sent"] == 1  # a version, not a remote
    assert json.loads(_cli(store, "push", "--json"))["versions_sent"] == 1
    _cli(other, "init")
    _cli(other, "remote", "add", "nas", str(tmp_path / "nas"))
    assert json.loads(_cli(other, "pull", "--json"))["versions_sent"] == 2
    _cli(store, "remote", "add", "backup", str(tmp_path / "backup"))
    result = runner.invoke(app, ["--store", str(store), "push"])
    assert result.exit_code == 2
    assert result.stderr == "mstore: error: 2 remotes are configured (backup, nas): name the one to use\n"
    assert json.loads(_cli(store, "push", "backup", "prod", "--json"))["versions_sent"] == 1


def test_a_format_2_store_or_remote_never_receives_codecs_it_cannot_read(tmp_path: Path) -> None:
    from mstore.store import codec

    old = format_2_store(tmp_path / "old")
    (tmp_path / "a.safetensors").write_bytes(_model(1, 1))
    old.save(tmp_path / "a.safetensors")
    old.remote_add("r", str(tmp_path / "remote"))
    old.push("r")  # the remote takes the format-2 config
    time.sleep(1.1)  # version IDs are save times: two stores saving in one second would conflict
    new = Repository.init(tmp_path / "new")
    assert new.store.format == 3
    (tmp_path / "b.safetensors").write_bytes(_model(2, 2))
    new.save(tmp_path / "b.safetensors")
    assert any(new.store.objects.path(o).read_bytes()[4:5] == bytes([codec.PLANES]) for o in new.store.objects)
    new.remote_add("r", str(tmp_path / "remote"))
    new.push("r")
    old.pull("r")
    for path in [*(tmp_path / "remote").rglob("*"), *(tmp_path / "old" / "objects").rglob("*")]:
        if path.is_file():
            head = path.read_bytes()[:5]
            assert not (head.startswith(codec.MAGIC) and head[4] in (codec.PLANES, codec.PLANES_XOR_DELTA)), path
    assert old.fsck().ok
    out = old.checkout("latest", tmp_path / "out.safetensors")
    assert out.read_bytes() == (tmp_path / "b.safetensors").read_bytes()
