"""A hostile *local* store (copied from someone, or tampered with): mstore must not write or delete outside
it, hang, exhaust memory, trust a forged model_hash or stumble into a traceback (issue 16).

Each store is built by hand from docs/format.md (tests/craft.py) and driven through the real command line
in a subprocess with a time limit.
"""

from __future__ import annotations

import json
import os
import resource
import tracemalloc
from pathlib import Path

import pytest
import zstandard
from craft import (
    GROUPED,
    add_crafted_file_version,
    b3,
    envelope,
    mstore,
    put_object,
    read_meta,
    replace_file,
    snapshot,
    write_version,
    xor_delta,
)

from mstore import Repository
from mstore.errors import DamagedDeltaBase
from mstore.formats.tensors import index_tensors

pytestmark = pytest.mark.slow  # runs the real command against damaged stores: not in the quick loop


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, str, str]:
    """A store with two versions of a one-file model, and a work directory to run commands in."""
    store = tmp_path / "store"
    work = tmp_path / "work"
    work.mkdir()
    repo = Repository.init(store)
    model = tmp_path / "model.bin"
    model.write_bytes(b"first model " * 100)
    v1 = repo.save(model)["timestamp"]
    model.write_bytes(b"second model " * 100)
    v2 = repo.save(model)["timestamp"]
    return store, v1, v2


# 1. original_path is never used as a path unless it is one safe name ---------------------------------


@pytest.mark.parametrize("original", ["/x/..", "/x/.", "/", "", "a\x00b", "/models/-rf", 7])
def test_checkout_without_o_refuses_an_unsafe_saved_name(tmp_path: Path, original: object) -> None:
    store = tmp_path / "store"
    repo = Repository.init(store)
    model = tmp_path / "src" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    vid = repo.save(model)["timestamp"]
    meta = read_meta(store, vid)
    meta["original_path"] = original
    write_version(store, vid, meta)
    work = tmp_path / "outer" / "work"
    work.mkdir(parents=True)
    before = snapshot(tmp_path / "outer")
    run = mstore("checkout", vid, "--force", cwd=work, store=store)
    assert run.one_line_error and run.code == 2 and "-o PATH" in run.stderr
    assert snapshot(tmp_path / "outer") == before  # nothing written, in work/ or above it


def test_checkout_without_o_uses_the_saved_directory_name(tmp_path: Path) -> None:
    store = tmp_path / "store"
    model = tmp_path / "src" / "bert-base"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    vid = Repository.init(store).save(model)["timestamp"]
    run = mstore("checkout", vid, cwd=tmp_path, store=store)
    assert run.code == 0, run.stderr
    assert (tmp_path / "bert-base" / "config.json").read_text() == "{}"


# 2. gc and fsck never follow a symlink inside the store -------------------------------------------------


@pytest.mark.parametrize("linked", ["tmp", "objects", "locks", "refs/tags"])
def test_a_symlinked_store_directory_is_refused_by_gc_and_reported_by_fsck(
    saved: tuple[Path, str, str], tmp_path: Path, linked: str
) -> None:
    store, _, _ = saved
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("precious.txt", "a" * 62, ".tmp-x"):
        (victim / name).write_text("keep me")
        os.utime(victim / name, (0, 0))  # older than any grace period
    real = store / linked
    real.rename(tmp_path / "moved-away")
    os.symlink(victim, real)
    before = snapshot(victim)
    for args in (["gc", "--grace", "0"], ["gc"], ["prune", "--keep-last", "1"], ["save", str(tmp_path / "x")]):
        (tmp_path / "x").write_bytes(b"new model")
        run = mstore(*args, cwd=tmp_path, store=store)
        assert run.one_line_error and run.code == 1 and "symbolic link" in run.stderr, (args, run)
    assert snapshot(victim) == before
    run = mstore("fsck", cwd=tmp_path, store=store)
    assert run.code == 1 and "symbolic link" in run.stdout and "Traceback" not in run.stderr


def test_a_symlinked_fan_out_directory_is_neither_listed_nor_written_through(
    saved: tuple[Path, str, str], tmp_path: Path
) -> None:
    store, _, _ = saved
    victim = tmp_path / "victim"
    victim.mkdir()
    name = "b" * 62  # looks like an object file name under objects/ab/
    (victim / name).write_text("keep me")
    os.utime(victim / name, (0, 0))
    os.symlink(victim, store / "objects" / "ab")
    run = mstore("gc", "--grace", "0", cwd=tmp_path, store=store)
    assert run.code == 0, run.stderr
    assert (victim / name).read_text() == "keep me"  # gc removed the stray link itself, never what it points at
    assert not (store / "objects" / "ab").exists()


# 4. FIFOs, devices and directories where files belong: no hang, one line ---------------------------------


def test_a_fifo_in_place_of_store_files_never_hangs(saved: tuple[Path, str, str], tmp_path: Path) -> None:
    store, v1, v2 = saved
    moid = read_meta(store, v2)["mstore"]["manifest"]  # type: ignore[index]
    replace_file(store / "objects" / moid[:2] / moid[2:], "fifo")
    replace_file(store / f"version_{v1}" / "metadata.json", "fifo")
    for args in (["checkout", v2, "-o", "out"], ["fsck"], ["gc", "--dry-run"], ["show", v1], ["diff", v1, v2]):
        run = mstore(*args, cwd=tmp_path, store=store, timeout=30)
        assert run.code == 1 and "Traceback" not in run.stderr, (args, run)
    replace_file(store / "mstore.json", "fifo")
    run = mstore("log", cwd=tmp_path, store=store, timeout=30)
    assert run.one_line_error and "not a regular file" in run.stderr


def test_a_directory_inside_refs_tags_is_reported_not_a_crash(saved: tuple[Path, str, str], tmp_path: Path) -> None:
    store, _, _ = saved
    (store / "refs" / "tags" / "weird").mkdir()
    run = mstore("fsck", "--json", cwd=tmp_path, store=store)
    assert run.code == 1 and "Traceback" not in run.stderr
    assert '"bad-ref"' in run.stdout and "refs/tags/weird" in run.stdout


# 6. delta chains: cycles and deep chains are bounded ----------------------------------------------------


def test_a_delta_cycle_is_one_line_not_a_recursion_error(saved: tuple[Path, str, str], tmp_path: Path) -> None:
    store, _, _ = saved
    a_content, b_content = b"A" * 4096, b"B" * 4096
    a, b = b3(a_content), b3(b_content)
    put_object(store, a, xor_delta(a_content, b_content, base=b))
    put_object(store, b, xor_delta(b_content, a_content, base=a))
    add_crafted_file_version(store, "20261127_000000", "cycle.bin", a_content, a)
    run = mstore("checkout", "20261127_000000", "-o", "out.bin", cwd=tmp_path, store=store)
    assert run.one_line_error and run.code == 1 and "cycle" in run.stderr
    assert not (tmp_path / "out.bin").exists()
    run = mstore("fsck", cwd=tmp_path, store=store)
    assert run.code == 1 and "cycle" in run.stdout and "Traceback" not in run.stderr


def _deep_chain(store: Path, depth: int, size: int) -> str:
    """A chain of `depth` valid XOR deltas over a raw base, each level declaring `size` bytes; returns the top."""
    zeros = bytes(size)
    put_object(store, b3(zeros), envelope(GROUPED, size, zstandard.ZstdCompressor().compress(zeros)))
    below_oid, below = b3(zeros), zeros
    for level in range(1, depth + 1):
        content = level.to_bytes(4, "little") + bytes(size - 4)
        # the XOR with the level below touches only the first 4 bytes: tiny payloads, full-size decodes
        diff = bytes(x ^ y for x, y in zip(content[:4], below[:4], strict=True)) + bytes(size - 4)
        payload = zstandard.ZstdCompressor().compress(diff)
        oid = b3(content)
        put_object(store, oid, envelope(3, size, payload, base=below_oid, depth=level))
        below_oid, below = oid, content
    return below_oid


def test_a_deep_delta_chain_decodes_in_memory_independent_of_its_depth(tmp_path: Path) -> None:
    store = tmp_path / "store"
    repo = Repository.init(store)
    size = 16 << 20
    top = _deep_chain(store, 12, size)
    tracemalloc.start()  # numpy and zstandard report their buffers to tracemalloc: a deterministic peak
    try:
        data = repo.store.objects.read(top, size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert data == (12).to_bytes(4, "little") + bytes(size - 4)
    # one level at a time: a few copies of one object (holding every level, as recursion did, is ~15x)
    assert peak < 6 * size, f"reading a 12-deep chain peaked at {peak / size:.1f}x the object's size"
    add_crafted_file_version(store, "20261127_000000", "deep.bin", data, top)
    run = mstore("checkout", "20261127_000000", "-o", tmp_path / "deep.bin", cwd=tmp_path, store=store)
    assert run.code == 0 and (tmp_path / "deep.bin").read_bytes() == data


def test_a_chain_longer_than_any_mstore_writes_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    repo = Repository.init(store)
    top = _deep_chain(store, 40, 4096)
    with pytest.raises(DamagedDeltaBase, match="longer than"):
        repo.store.objects.read(top, 4096)


# 7. a hostile .npz header is opaque bytes, not an allocation --------------------------------------------


def _npz_with_header(header: bytes) -> bytes:
    """A stored (uncompressed) zip with one `.npy` entry whose header text is `header`."""
    import io
    import zipfile

    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\x00" * 16
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("w.npy", npy)
    return buf.getvalue()


@pytest.mark.parametrize(
    "header",
    [
        b"{'descr': '<f4', 'fortran_order': False, 'shape': ('a', 1000000000), }",
        b"{'descr': '<f4', 'fortran_order': False, 'shape': ('a', 'b'), }",
        b"{'descr': 7, 'fortran_order': False, 'shape': (4,), }",
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }",
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (-4, -1), }",
    ],
)
def test_a_crafted_npy_header_is_refused_before_anything_is_allocated(tmp_path: Path, header: bytes) -> None:
    data = _npz_with_header(header)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tensors = index_tensors("m.npz", lambda at, n: data[at : at + n], len(data))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert tensors is None or all(t.length <= len(data) for t in tensors)
    assert grown_mib < 50
    model = tmp_path / "m.npz"
    model.write_bytes(data)
    run = mstore("save", model, cwd=tmp_path, store=tmp_path / "store")
    assert run.code == 0, run.stderr
    assert mstore("fsck", cwd=tmp_path, store=tmp_path / "store").code == 0


# 8. model_hash must match the content -------------------------------------------------------------------


def test_a_forged_model_hash_is_refused_by_checkout_and_diff(saved: tuple[Path, str, str], tmp_path: Path) -> None:
    store, v1, v2 = saved
    meta = read_meta(store, v2)
    meta["model_hash"] = read_meta(store, v1)["model_hash"]  # claims to be v1's bytes
    write_version(store, v2, meta)
    for args in (["checkout", v2, "-o", "out.bin"], ["diff", v1, v2]):
        run = mstore(*args, cwd=tmp_path, store=store)
        assert run.one_line_error and run.code == 1 and "model_hash" in run.stderr, (args, run)
    assert not (tmp_path / "out.bin").exists()


# 9. version IDs that are not times ----------------------------------------------------------------------


@pytest.mark.parametrize("bogus", ["99999999_999999", "20261399_000000", "99991231_235959_999"])
def test_a_bogus_or_far_future_version_id_never_blocks_log_diff_or_save(
    saved: tuple[Path, str, str], tmp_path: Path, bogus: str
) -> None:
    store, v1, v2 = saved
    meta = read_meta(store, v2)
    meta["timestamp"] = bogus
    write_version(store, bogus, meta)
    for args in (["log"], ["diff"], ["diff", v1, v2], ["du"]):
        run = mstore(*args, cwd=tmp_path, store=store)
        assert run.code == 0 and "Traceback" not in run.stderr, (args, run)
    model = tmp_path / "next.bin"
    model.write_bytes(b"third model")
    run = mstore("save", model, "--json", cwd=tmp_path, store=store)
    assert run.code == 0, run.stderr
    new = json.loads(run.stdout)["timestamp"]
    assert new.startswith("20") and new != bogus
    assert mstore("show", "latest", cwd=tmp_path, store=store).stdout.startswith(f"version {new}")


# 10. numbers beyond float range ---------------------------------------------------------------------------


def test_a_metric_beyond_float_range_is_refused_at_save(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"m")
    run = mstore("save", model, "-M", "acc=" + "9" * 400, cwd=tmp_path, store=tmp_path / "store")
    assert run.one_line_error and run.code == 2 and "too large" in run.stderr


def test_huge_numbers_in_stored_metadata_are_tolerated_when_reading(
    saved: tuple[Path, str, str], tmp_path: Path
) -> None:
    store, v1, v2 = saved
    for vid, value in ((v1, 10**400), (v2, -(10**400))):
        meta = read_meta(store, vid)
        meta["metrics"] = {"accuracy": value}
        meta["mstore"]["new_bytes"] = value  # type: ignore[index]
        write_version(store, vid, meta)
    for args in (["log"], ["log", "--oneline"], ["diff"], ["show"], ["diff", "--json"]):
        run = mstore(*args, cwd=tmp_path, store=store)
        assert run.code == 0 and "Traceback" not in run.stderr, (args, run)


# 11. a damaged store config -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        b'{"format": 2, "chunker": {"name": "model-aware", "cdc": [524288, 2097152, 8388608], '
        b'"tensor_piece": 4194304}, "compression": {"opaque_level": "abc"}}',
        b'{"format": 2, "chunker": {"name": "fixed", "size": 0}}',
        b'{"format": "2", "chunker": {"name": "fixed", "size": 4096}}',
        b"[1]",
    ],
)
def test_an_invalid_store_config_is_one_line(saved: tuple[Path, str, str], tmp_path: Path, config: bytes) -> None:
    store, _, _ = saved
    (store / "mstore.json").write_bytes(config)
    model = tmp_path / "m.bin"
    model.write_bytes(b"m")
    for args in (["log"], ["save", model]):
        run = mstore(*args, cwd=tmp_path, store=store)
        assert run.one_line_error and "not a valid mstore config" in run.stderr, (args, run)
        assert run.code == 1, (args, run)  # a damaged store is a problem found (exit 1), not bad usage (2)
