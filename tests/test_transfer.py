"""Directory remotes: push, pull and clone move exactly what the other side lacks, verified, in an order
that never publishes a version before its objects."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mstore import Repository
from mstore.cli import app
from mstore.errors import CorruptObject

from helpers import cli, format_2_store, head_model

runner = CliRunner()


@pytest.mark.slow
def test_push_clone_pull_round_trip_and_incremental_push(tmp_path: Path) -> None:
    alice, shared = tmp_path / "alice", tmp_path / "shared"
    src = tmp_path / "model.safetensors"
    src.write_bytes(head_model(1, seed=0))
    cli(alice, "save", str(src), "-M", "accuracy=0.9", "--tag", "prod")
    cli(alice, "remote", "add", "origin", str(shared))
    assert json.loads(cli(alice, "remote", "list", "--json").stdout) == {"origin": str(shared)}
    first = json.loads(cli(alice, "push", "--json").stdout)
    assert first["versions_sent"] == 1 and first["objects_sent"] >= 2

    src.write_bytes(head_model(2, seed=0))  # fine-tuned: only the head changed
    cli(alice, "save", str(src), "-M", "accuracy=0.92")
    second = json.loads(cli(alice, "push", "--json").stdout)
    assert second["versions_sent"] == 1 and second["versions_skipped"] == 1
    assert second["bytes_sent"] < 16 * 1024  # the head (4 KiB) and a manifest, not the 1 MiB backbone
    assert second["objects_skipped"] >= 1

    bob = tmp_path / "bob"
    cloned = json.loads(cli(tmp_path / "unused", "clone", str(shared), str(bob), "--json").stdout)
    assert cloned["versions_sent"] == 2
    assert cloned["bytes_sent"] == first["bytes_sent"] + second["bytes_sent"]  # each object fetched once
    bob_repo = Repository.open(bob)
    assert bob_repo.remotes() == {"origin": str(shared.resolve())}
    assert bob_repo.tags() == {"prod": bob_repo.ids()[0]}
    assert bob_repo.checkout("latest", tmp_path / "bob.safetensors").read_bytes() == src.read_bytes()
    assert bob_repo.fsck().ok

    src.write_bytes(head_model(3, seed=0))
    cli(alice, "save", str(src))
    cli(alice, "push")
    pulled = json.loads(cli(bob, "pull", "--json").stdout)
    assert pulled["versions_sent"] == 1 and pulled["versions_skipped"] == 2
    assert Repository.open(bob).ids() == Repository.open(alice).ids()
    assert "pulled 0 version(s)" in cli(bob, "pull").stdout


def test_a_corrupt_object_never_travels(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "a")
    src = tmp_path / "m.safetensors"
    src.write_bytes(head_model(6, seed=5))
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
    cli(store, "save", str(src))
    bad = runner.invoke(app, ["--store", str(store), "remote", "add", "x", "ftp://host/x"])
    assert bad.exit_code == 2 and "use s3://BUCKET/PREFIX" in bad.stderr
    bad = runner.invoke(app, ["--store", str(store), "remote", "add", "x", "s3:///nobucket"])
    assert bad.exit_code == 2 and "not an S3 URL" in bad.stderr
    bad = runner.invoke(app, ["--store", str(store), "remote", "add", "x", "s3://bkt/a/../b"])
    assert bad.exit_code == 2 and "'..'" in bad.stderr
    bad = runner.invoke(app, ["--store", str(store), "remote", "add", "x", str(tmp_path), "--endpoint-url", "http://h"])
    assert bad.exit_code == 2 and "only applies to s3://" in bad.stderr
    assert Repository.open(store).remotes() == {}
    cli(store, "push", code=2)  # no remote named origin
    cli(store, "remote", "add", "origin", str(tmp_path / "r"))
    cli(store, "remote", "add", "origin", str(tmp_path / "r2"), code=2)
    cli(store, "remote", "remove", "origin")
    cli(store, "remote", "remove", "origin", code=2)
    cli(store, "clone", str(tmp_path / "nothing-here"), str(tmp_path / "c"), code=2)


def test_identical_re_saves_travel_once(tmp_path: Path) -> None:
    """Two versions of the same model share every object, its manifest included: each crosses once."""
    alice, shared = Repository.init(tmp_path / "alice"), tmp_path / "shared"
    src = tmp_path / "m.safetensors"
    src.write_bytes(head_model(7, seed=7))
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
    cli(store, "save", str(src))
    cli(store, "remote", "add", "nas", str(nas))
    cli(store, "push", "nas")
    src.write_bytes(b"second")
    cli(store, "save", str(src))
    cli(store, "push", "nas")
    first, second = Repository.open(store).ids()
    cli(store, "tag", "prod", "latest~1")
    result = runner.invoke(app, ["--store", str(store), "push", "nas", "prod"])
    assert result.exit_code == 0, result.stderr
    assert "someone else" not in result.stderr
    assert f"note: the remote's latest stays {second}, newer than the version(s) sent; nothing was overwritten" in (
        result.stderr
    )
    stats = json.loads(cli(store, "push", "nas", "prod", "--json").stdout)
    assert stats["latest"] == second and stats["latest_newer_than_sent"] is True
    assert Repository.open(store).remote("nas").get_ref("tags/prod")[0] == first


@pytest.mark.slow
def test_the_only_remote_needs_no_name_and_remote_alone_lists(tmp_path: Path) -> None:
    store, other = tmp_path / "store", tmp_path / "other"
    src = tmp_path / "model.bin"
    src.write_bytes(b"first")
    cli(store, "save", str(src), "--tag", "prod")
    src.write_bytes(b"second")
    cli(store, "save", str(src))
    assert "no remote configured" in runner.invoke(app, ["--store", str(store), "push"]).stderr
    cli(store, "remote", "add", "nas", str(tmp_path / "nas"))
    assert cli(store, "remote").stdout == f"nas  {tmp_path / 'nas'}\n"  # like `mstore tag` lists tags
    assert json.loads(cli(store, "push", "prod", "--json").stdout)["versions_sent"] == 1  # a version, not a remote
    assert json.loads(cli(store, "push", "--json").stdout)["versions_sent"] == 1
    cli(other, "init")
    cli(other, "remote", "add", "nas", str(tmp_path / "nas"))
    assert json.loads(cli(other, "pull", "--json").stdout)["versions_sent"] == 2
    cli(store, "remote", "add", "backup", str(tmp_path / "backup"))
    result = runner.invoke(app, ["--store", str(store), "push"])
    assert result.exit_code == 2
    assert result.stderr == "mstore: error: 2 remotes are configured (backup, nas): name the one to use\n"
    assert json.loads(cli(store, "push", "backup", "prod", "--json").stdout)["versions_sent"] == 1


def test_a_format_2_store_or_remote_never_receives_codecs_it_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mstore.ops import save
    from mstore.store import codec

    old = format_2_store(tmp_path / "old")
    (tmp_path / "a.safetensors").write_bytes(head_model(1, seed=1))
    old.save(tmp_path / "a.safetensors")
    old.remote_add("r", str(tmp_path / "remote"))
    old.push("r")  # the remote takes the format-2 config
    later = datetime.now(timezone.utc) + timedelta(seconds=2)  # two stores saving in one second would conflict
    monkeypatch.setattr(save, "now", lambda: later)  # (version IDs are save times): the clock seam, not a sleep
    new = Repository.init(tmp_path / "new")
    assert new.store.format == 3
    (tmp_path / "b.safetensors").write_bytes(head_model(2, seed=2))
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


def test_push_and_clone_decode_each_object_once_handing_verified_bases_down_chains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four warm-started versions: every delta'd tensor is a chain v1 <- v2 <- v3 <- v4. A push decodes
    every object it sends exactly once (each delta with its base verified moments before), so does a
    clone for every object it fetches, and the clone restores every version bit for bit and passes fsck."""
    import numpy as np

    from mstore.store import objects as objects_module

    from helpers import safetensors_bytes

    repo = Repository.init(tmp_path / "a")
    rng = np.random.default_rng(23)
    w = rng.standard_normal(64 * 1024).astype(np.float32)
    src = tmp_path / "model.safetensors"
    saved = []
    for v in range(4):
        tensors = {"backbone.weight": ("F32", w), "head.weight": ("F32", w[:1024] * np.float32(v + 1))}
        src.write_bytes(safetensors_bytes(tensors))
        saved.append(src.read_bytes())
        repo.save(src)
        w = (w + rng.standard_normal(w.shape).astype(np.float32) * np.float32(1e-3) * np.abs(w)).astype(np.float32)
    store = repo.store  # the chains are really there: a depth-3 delta exists
    depths = [
        header.depth
        for oid in store.objects
        if (header := objects_module.codec.parse_header(store.objects.header(oid))) is not None
    ]
    assert max(depths) == 3
    decoded: list[str] = []
    original = objects_module.decode_object

    def counting(oid: str, *args: object, **kwargs: object) -> bytes:
        decoded.append(oid)
        return original(oid, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(objects_module, "decode_object", counting)
    repo.remote_add("origin", str(tmp_path / "shared"))
    stats = repo.push("origin", None)
    monkeypatch.undo()
    assert stats.versions_sent == 4
    from mstore.store.layout import manifest_id

    manifests = {manifest_id(store.versions.read(vid), vid) for vid in repo.ids()}
    sent = [oid for oid in decoded if oid not in manifests]  # a manifest is also read to plan the push
    assert len(sent) == len(set(sent)) == stats.objects_sent - len(manifests)
    decoded.clear()
    monkeypatch.setattr(objects_module, "decode_object", counting)
    from mstore.content import verdict

    def uncounted(store: object, ids: object) -> None:  # the pickle verdict's own pass over the bytes after it
        with monkeypatch.context() as inner:
            inner.setattr(objects_module, "decode_object", original)
            real_recompute(store, ids)  # type: ignore[arg-type]

    real_recompute = verdict.recompute
    monkeypatch.setattr(verdict, "recompute", uncounted)
    clone, pulled = Repository.clone(str(tmp_path / "shared"), tmp_path / "b")
    monkeypatch.undo()
    fetched = [oid for oid in decoded if oid not in manifests]  # so does a pull, to check model hashes
    assert len(fetched) == len(set(fetched)) == pulled.objects_sent - len(manifests)
    for vid, expected in zip(clone.ids(), saved, strict=True):
        assert clone.checkout(vid, tmp_path / f"{vid}.safetensors").read_bytes() == expected
    assert clone.fsck().ok


def test_a_push_to_a_bucket_sends_stored_bytes_checked_by_their_envelope_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Encoded objects go to a bucket as stored, once their envelope checksum holds: none is decoded on
    the way out (only raw ones are hashed). A flipped byte is still refused before it travels, and what
    arrived pulls back bit for bit, every object decoded and hashed by the receiver."""
    import numpy as np

    from mstore.remote.bucket import MemoryBucket
    from mstore.remote.remotes import BucketRemote
    from mstore.remote.transfer import pull, push
    from mstore.store import codec
    from mstore.store import objects as objects_module
    from mstore.store.layout import Store

    from helpers import safetensors_bytes

    repo = Repository.init(tmp_path / "a")
    w = np.random.default_rng(7).standard_normal(256 * 1024).astype(np.float32)
    src = tmp_path / "model.safetensors"
    src.write_bytes(safetensors_bytes({"w": ("F32", w)}))
    repo.save(src)
    src.write_bytes(safetensors_bytes({"w": ("F32", w * np.float32(1.001))}))  # a delta against v1
    repo.save(src)
    objects = repo.store.objects
    encoded = {oid for oid in objects if codec.parse_header(objects.header(oid)) is not None}
    assert encoded and any(codec.is_delta(objects.stored(oid)) for oid in encoded)
    decoded: list[str] = []
    original = objects_module.decode_object

    def counting(oid: str, *args: object, **kwargs: object) -> bytes:
        decoded.append(oid)
        return original(oid, *args, **kwargs)  # type: ignore[arg-type]

    from mstore.store.layout import manifest_id

    manifests = {manifest_id(repo.store.versions.read(vid), vid) for vid in repo.ids()}
    bucket = MemoryBucket()
    monkeypatch.setattr(objects_module, "decode_object", counting)
    stats = push(repo.store, BucketRemote(bucket), repo.ids())
    monkeypatch.undo()
    assert stats.versions_sent == 2 and stats.objects_sent == len(set(objects))
    assert not (set(decoded) - manifests) & encoded  # no encoded chunk decoded to be sent
    for oid in objects:
        assert bucket.get(f"objects/{oid[:2]}/{oid[2:]}", limit=1 << 30) == objects.stored(oid)

    other = Store.init(tmp_path / "b", like=repo.store.config)
    pulled = pull(BucketRemote(bucket), other, repo.ids())
    assert pulled.versions_sent == 2
    assert Repository.open(tmp_path / "b").checkout("latest", tmp_path / "out").read_bytes() == src.read_bytes()

    victim = sorted(encoded - manifests)[0]  # damage one stored byte: its envelope no longer holds
    path = objects.path(victim)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    fresh = MemoryBucket()
    with pytest.raises(CorruptObject):
        push(repo.store, BucketRemote(fresh), repo.ids())
    assert f"objects/{victim[:2]}/{victim[2:]}" not in {e.key for e in fresh.list("objects/")}
    assert not [e for e in fresh.list("version_")]
