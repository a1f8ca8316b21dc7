"""A hostile *remote* (a shared directory or a bucket others can write to): pull, clone, push, checkout
--remote and fsck --remote must not write outside, hang, exhaust memory, accept bytes that contradict
model_hash, or end in a traceback (issue 16). Remotes are tampered with by hand, from docs/format.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import zstandard
from craft import (
    ZSTD,
    add_crafted_file_version,
    b3,
    config_bytes,
    envelope,
    mstore,
    put_object,
    read_meta,
    replace_file,
    snapshot,
    write_version,
    xor_delta,
)

import mstore as mstore_api
from mstore import Repository
from mstore.errors import CorruptObject, IntegrityError, UnsupportedFormat
from mstore.remote.bucket import MemoryBucket, ValueTooLarge
from mstore.remote.remotes import BucketRemote

pytestmark = pytest.mark.slow  # runs the real command against damaged remotes: not in the quick loop


@pytest.fixture
def shared(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A directory remote holding two versions (pushed by a teammate), and an empty place to work."""
    teammate = Repository.init(tmp_path / "teammate")
    model = tmp_path / "model.bin"
    ids = []
    for text in (b"first model " * 100, b"second model " * 100):
        model.write_bytes(text)
        ids.append(teammate.save(model, {"metrics": {"accuracy": 0.5}})["timestamp"])
    remote = tmp_path / "remote"
    teammate.remote_add("nas", str(remote))
    teammate.push("nas")
    work = tmp_path / "work"
    work.mkdir()
    return remote, work, ids


def _mine(work: Path, remote: Path) -> Path:
    """A local store of my own with the remote configured as `nas`."""
    store = work / "mine"
    Repository.init(store).remote_add("nas", str(remote))
    return store


# 3. symlinks in a remote's layout redirect nothing ---------------------------------------------------------


@pytest.mark.parametrize("linked", ["locks", "refs/tags", "objects", "tmp"])
def test_push_refuses_a_remote_whose_layout_has_symlinks(
    shared: tuple[Path, Path, list[str]], tmp_path: Path, linked: str
) -> None:
    remote, work, _ = shared
    victim = tmp_path / "victim"
    victim.mkdir()
    (remote / linked).rename(tmp_path / "moved-away")
    os.symlink(victim, remote / linked)
    store = _mine(work, remote)
    model = work / "m.bin"
    model.write_bytes(b"my model")
    Repository.open(store).save(model)
    Repository.open(store).tag("prod")
    run = mstore("push", "nas", cwd=work, store=store)
    assert run.one_line_error and run.code == 1 and "symbolic link" in run.stderr
    assert list(victim.iterdir()) == []


# 4 and 5. FIFOs, devices and endless files on a remote --------------------------------------------------------


@pytest.mark.parametrize("how", ["fifo", "zero", "huge"])
@pytest.mark.parametrize("which", ["object", "metadata", "config"])
def test_remote_files_that_never_end_or_block_are_refused_quickly(
    shared: tuple[Path, Path, list[str]], how: str, which: str
) -> None:
    remote, work, ids = shared
    if which == "object":
        moid = read_meta(remote, ids[1])["mstore"]["manifest"]  # type: ignore[index]
        replace_file(remote / "objects" / moid[:2] / moid[2:], how)
    elif which == "metadata":
        replace_file(remote / f"version_{ids[1]}" / "metadata.json", how)
    else:
        replace_file(remote / "mstore.json", how)
    store = _mine(work, remote)
    commands = [
        ["pull", "nas"],
        ["checkout", ids[1], "--remote", "nas", "-o", "out.bin"],
        ["fsck", "--remote", "nas", "--verify-data"],
    ]
    for args in commands:
        run = mstore(*args, cwd=work, store=store, timeout=30)
        assert run.code in (1, 2) and run.one_line_error or args[0] == "fsck" and run.code == 1, (args, run)
        assert "Traceback" not in run.stderr and "MemoryError" not in run.stderr
    run = mstore("clone", remote, work / "clone", cwd=work, timeout=30)
    assert run.code in (1, 2) and "Traceback" not in run.stderr, run
    assert not (work / "out.bin").exists()


def test_a_bucket_value_larger_than_its_key_allows_is_never_downloaded_whole() -> None:
    bucket = MemoryBucket()
    remote = BucketRemote(bucket)
    oid = "ab" * 32
    bucket.put(f"objects/{oid[:2]}/{oid[2:]}", b"x" * 5000)
    with pytest.raises(CorruptObject, match="more than"):
        remote.get_object(oid, 1000)
    bucket.put("refs/latest", b"x" * 100_000)
    with pytest.raises(Exception, match="more than"):
        remote.get_ref("latest")
    with pytest.raises(ValueTooLarge):
        bucket.get("refs/latest", limit=10)


def test_s3_refuses_a_value_over_the_limit_from_its_length_alone(s3_url: str) -> None:
    from mstore.remote.s3 import S3Bucket

    bucket = S3Bucket(s3_url)
    bucket.put("refs/latest", b"y" * 4096)
    with pytest.raises(ValueTooLarge):
        bucket.get("refs/latest", limit=1024)
    assert bucket.get("refs/latest", limit=4096) == b"y" * 4096


# 6. delta cycles on a remote --------------------------------------------------------------------------------


def test_a_delta_cycle_on_a_remote_is_one_line(shared: tuple[Path, Path, list[str]]) -> None:
    remote, work, _ = shared
    a_content, b_content = b"A" * 4096, b"B" * 4096
    a, b = b3(a_content), b3(b_content)
    put_object(remote, a, xor_delta(a_content, b_content, base=b))
    put_object(remote, b, xor_delta(b_content, a_content, base=a))
    add_crafted_file_version(remote, "20261127_000000", "cycle.bin", a_content, a)
    store = _mine(work, remote)
    run = mstore("pull", "nas", "20261127_000000", cwd=work, store=store)
    assert run.one_line_error and run.code == 1 and "cycle" in run.stderr
    run = mstore("fsck", "--remote", "nas", "--verify-data", cwd=work, store=store)
    assert run.code == 1 and "cycle" in run.stdout and "Traceback" not in run.stderr


# 8. model_hash that contradicts the content --------------------------------------------------------------------


def test_a_forged_model_hash_on_a_remote_is_refused(shared: tuple[Path, Path, list[str]]) -> None:
    remote, work, ids = shared
    meta = read_meta(remote, ids[1])
    meta["model_hash"] = read_meta(remote, ids[0])["model_hash"]
    write_version(remote, ids[1], meta)
    store = _mine(work, remote)
    for args in (["pull", "nas", ids[1]], ["checkout", ids[1], "--remote", "nas", "-o", "out.bin"]):
        run = mstore(*args, cwd=work, store=store)
        assert run.one_line_error and run.code == 1 and "model_hash" in run.stderr, (args, run)
    assert Repository.open(store).ids() == [] and not (work / "out.bin").exists()
    run = mstore("fsck", "--remote", "nas", cwd=work, store=store)
    assert run.code == 1 and "model_hash" in run.stdout


# 9. version IDs from the future ------------------------------------------------------------------------------


def test_a_future_version_on_a_remote_is_refused_and_never_becomes_latest(
    shared: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    remote, work, ids = shared
    for bogus in ("99991231_235959_999", "99999999_999999"):
        meta = read_meta(remote, ids[1])
        meta["timestamp"] = bogus
        write_version(remote, bogus, meta)
    store = _mine(work, remote)
    run = mstore("pull", "nas", cwd=work, store=store)
    assert run.code == 1 and "refused version 99991231_235959_999" in run.stderr and "Traceback" not in run.stderr
    assert Repository.open(store).ids() == ids  # the good versions arrived; the forged ones did not
    model = work / "m.bin"
    model.write_bytes(b"my model")
    assert mstore("save", model, cwd=work, store=store).code == 0
    assert mstore("log", cwd=work, store=store).code == 0


# 10. numbers beyond float range in pulled metadata ---------------------------------------------------------------


def test_pulled_metadata_with_huge_numbers_reads_fine(shared: tuple[Path, Path, list[str]]) -> None:
    remote, work, ids = shared
    meta = read_meta(remote, ids[1])
    meta["metrics"] = {"accuracy": 10**400}
    meta["mstore"]["new_bytes"] = 10**400  # type: ignore[index]
    write_version(remote, ids[1], meta)
    store = _mine(work, remote)
    assert mstore("pull", "nas", cwd=work, store=store).code == 0
    for args in (["log"], ["diff"], ["show"], ["log", "--json"]):
        run = mstore(*args, cwd=work, store=store)
        assert run.code == 0 and "Traceback" not in run.stderr, (args, run)


# 11. a remote config or tag that no mstore writes ------------------------------------------------------------------


@pytest.mark.parametrize("level", ['"abc"', "1000", "[1]", "true"])
def test_clone_refuses_a_remote_config_that_would_break_every_later_save(
    shared: tuple[Path, Path, list[str]], level: str
) -> None:
    remote, work, _ = shared
    config = json.loads((remote / "mstore.json").read_text())
    config["compression"]["opaque_level"] = json.loads(level)
    (remote / "mstore.json").write_bytes(config_bytes(config))
    run = mstore("clone", remote, work / "copy", cwd=work)
    assert run.one_line_error and run.code == 1 and "opaque_level" in run.stderr  # damage: exit 1, as fsck
    assert not (work / "copy").exists()


def test_fsck_remote_reports_a_tag_named_like_an_option(shared: tuple[Path, Path, list[str]]) -> None:
    remote, work, ids = shared
    (remote / "refs" / "tags" / "-rf").write_bytes(b"whatever")
    (remote / "refs" / "tags" / "subdir").mkdir()
    store = _mine(work, remote)
    run = mstore("fsck", "--remote", "nas", "--json", cwd=work, store=store)
    assert run.code == 1 and "Traceback" not in run.stderr
    codes = {p["code"] for p in json.loads(run.stdout)["problems"]}
    assert {"unsafe-name", "bad-ref"} <= codes
    before = snapshot(work)
    assert mstore("pull", "nas", cwd=work, store=store).code == 0  # pull skips what it cannot use
    assert Repository.open(store).ids() == ids and set(snapshot(work)) >= set(before)


# 12. lazy reads (path --include, open_tensors, show --tensors) ---------------------------------------------


def _crafted(remote: Path, vid: str, name: str, content: bytes) -> str:
    """A one-file version on the remote whose single chunk holds `content` (its hash right)."""
    oid = b3(content)
    put_object(remote, oid, envelope(ZSTD, len(content), zstandard.ZstdCompressor().compress(content)))
    add_crafted_file_version(remote, vid, name, content, oid)
    return oid


def test_a_tensor_header_that_points_outside_its_file_is_not_read(
    shared: tuple[Path, Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    remote, work, _ = shared
    monkeypatch.setenv("MSTORE_CACHE", str(work / "cache"))
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 28], "data_offsets": [0, 1 << 30]}}).encode()
    _crafted(remote, "20261127_000000", "lies.safetensors", len(header).to_bytes(8, "little") + header + b"\0" * 16)
    run = mstore("show", "20261127_000000", "--tensors", "--remote", str(remote), cwd=work)
    assert run.code == 0 and "has no tensor file" in run.stdout, run
    with pytest.raises(UnsupportedFormat, match="not a tensor file"):
        mstore_api.open_tensors("20261127_000000", remote=str(remote), cache_dir=work / "cache")


def test_damaged_chunks_on_a_remote_are_never_returned_by_lazy_reads(
    shared: tuple[Path, Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    remote, work, _ = shared
    monkeypatch.setenv("MSTORE_CACHE", str(work / "cache"))
    import numpy as np

    from mstore.formats.tensors import safetensors_bytes

    content = safetensors_bytes({"w": ("F32", np.arange(1024, dtype=np.float32))})
    oid = _crafted(remote, "20261127_000000", "m.safetensors", content)
    path = remote / "objects" / oid[:2] / oid[2:]
    stored = bytearray(path.read_bytes())
    stored[-3] ^= 0x40  # inside the compressed payload: decodes to other bytes, or not at all
    path.write_bytes(bytes(stored))
    with pytest.raises(IntegrityError):
        mstore_api.open_tensors("20261127_000000", remote=str(remote), cache_dir=work / "cache")["w"]
    run = mstore("path", "20261127_000000", "--remote", str(remote), "--include", "m.safetensors", cwd=work)
    assert run.one_line_error and run.code == 1, run
    cache = work / "cache"
    assert not list((cache / "models").iterdir())
    assert not (cache / "objects" / oid[:2] / oid[2:]).exists()  # the bad copy was never kept
