"""The object store: names are hashes, bytes come back exactly or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mstore.errors import CorruptObject, IntegrityError, MissingObject
from mstore.store.codec import MAGIC
from mstore.store.objects import ObjectStore, check_oid, hash_bytes


@given(data=st.binary(max_size=4096))
def test_put_then_read_round_trips_and_name_is_b3sum(tmp_path: Path, data: bytes) -> None:
    objects = ObjectStore(tmp_path / "objects")
    oid = hash_bytes(data)
    objects.put(data, oid)
    objects.sync()
    assert objects.read(oid) == data
    path = objects.path(oid)
    assert path.parent.name + path.name == oid
    if not data.startswith(MAGIC):  # a raw object is its content: b3sum prints its name
        assert blake3.blake3(path.read_bytes()).hexdigest() == oid


def test_same_bytes_are_stored_once(tmp_path: Path) -> None:
    objects = ObjectStore(tmp_path / "objects")
    assert objects.put(b"weights") is True
    assert objects.put(b"weights") is False
    assert list(objects) == [hash_bytes(b"weights")]


def test_put_refreshes_mtime_of_existing_object(tmp_path: Path) -> None:
    objects = ObjectStore(tmp_path / "objects")
    oid = hash_bytes(b"x" * 10)
    objects.put(b"x" * 10, oid)
    os.utime(objects.path(oid), (1, 1))
    objects.put(b"x" * 10, oid)
    assert objects.path(oid).stat().st_mtime > 1


def test_put_repairs_an_object_of_the_wrong_size(tmp_path: Path) -> None:
    objects = ObjectStore(tmp_path / "objects")
    oid = hash_bytes(b"good bytes")
    objects.put(b"good bytes", oid)
    path = objects.path(oid)
    os.chmod(path, 0o644)
    path.write_bytes(b"good")
    assert objects.put(b"good bytes", oid) is True
    assert objects.read(oid) == b"good bytes"


def test_read_detects_corruption_and_absence(tmp_path: Path) -> None:
    objects = ObjectStore(tmp_path / "objects")
    oid = hash_bytes(b"abcdef")
    objects.put(b"abcdef", oid)
    path = objects.path(oid)
    os.chmod(path, 0o644)
    path.write_bytes(b"abcdeF")
    with pytest.raises(CorruptObject):
        objects.read(oid)
    assert objects.verify(oid) == ("corrupt-object", f"object {oid} is corrupt: its bytes do not match its hash")
    with pytest.raises(CorruptObject):
        objects.read(oid, expected_size=3)
    objects.delete(oid)
    with pytest.raises(MissingObject):
        objects.read(oid)
    assert "missing" in str(objects.verify(oid))


@pytest.mark.parametrize("bad", ["", "../" + "a" * 61, "A" * 64, "a" * 63, "a" * 65, "/" + "a" * 63, "g" * 64])
def test_invalid_ids_never_become_paths(tmp_path: Path, bad: str) -> None:
    with pytest.raises(IntegrityError):
        check_oid(bad)
    with pytest.raises(IntegrityError):
        ObjectStore(tmp_path).path(bad)


def test_iteration_skips_temp_files_and_reports_them_as_strays(tmp_path: Path) -> None:
    objects = ObjectStore(tmp_path / "objects")
    oid = hash_bytes(b"1")
    objects.put(b"1", oid)
    stray = objects.path(oid).parent / ".tmp-leftover"
    stray.write_bytes(b"half")
    assert list(objects) == [oid]
    assert list(objects.stray_files()) == [stray]


def test_peek_reads_only_the_header_and_sample_of_a_planes_object(tmp_path: Path) -> None:
    """A save's delta estimate reads a sixth of the parent's object, and the sample is its content's."""
    import numpy as np

    from mstore.store.codec import PLANES, Encoder, sample_spans

    data = (np.random.default_rng(3).standard_normal(1 << 18, dtype=np.float32) * 0.02).tobytes()
    stored = Encoder(planes=True).encode(data, 4)
    assert stored[4] == PLANES
    store = ObjectStore(tmp_path)
    oid = hash_bytes(data)
    store.put(data, oid, stored)
    reads: list[int] = []
    real_pread = os.pread

    def counting_pread(fd: int, length: int, offset: int) -> bytes:
        reads.append(length)
        return real_pread(fd, length, offset)

    os.pread = counting_pread  # type: ignore[assignment]
    try:
        header, sample = store.peek(oid, len(data), 4)
    finally:
        os.pread = real_pread  # type: ignore[assignment]
    assert header is not None and header.codec == PLANES
    assert sample == b"".join(data[a:b] for a, b in sample_spans(len(data), 4))
    assert sum(reads) < len(stored) / 3
    raw = os.urandom(100_000)
    store.put(raw)
    assert store.peek(hash_bytes(raw), len(raw), 4) == (None, b"".join(raw[a:b] for a, b in sample_spans(len(raw), 4)))
    assert store.peek(hash_bytes(raw), len(raw), 0) == (None, None)
    with pytest.raises(MissingObject):
        store.peek("ab" * 32, 10, 4)


@pytest.mark.slow
def test_freed_object_buffers_are_reused_not_faulted_in_again() -> None:
    """fsutil.keep_freed_memory: a window of four 4 MiB buffers, allocated and freed 100 times (a pool's
    pieces in flight), costs a few thousand page faults, not 400,000 (each one a page zeroed again)."""
    import subprocess
    import sys

    if not os.confstr("CS_GNU_LIBC_VERSION"):
        pytest.skip("the tuning is glibc's")
    script = (
        "import resource, sys\n"
        "from mstore.store import fsutil\n"
        "if sys.argv[1] == '1': fsutil.keep_freed_memory()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for i in range(100):\n"
        "    window = [bytearray(4 << 20) for _ in range(4)]\n"
        "    del window\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    faults = {}
    for tuned in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", script, tuned], capture_output=True, text=True, check=True)
        faults[tuned] = int(out.stdout)
    assert faults["1"] < 20_000 < 200_000 < faults["0"]


def test_a_delta_top_envelope_is_checksummed_once_and_a_flipped_bit_in_it_is_still_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from mstore.store import codec
    from mstore.store.codec import PLANES_XOR_DELTA, DeltaBase, Encoder

    rng = np.random.default_rng(5)
    base = (rng.standard_normal(1 << 17, dtype=np.float32) * 0.02).astype(np.float32)
    data = (base + np.float32(1e-6) * rng.standard_normal(base.size, dtype=np.float32)).tobytes()
    base_bytes = base.tobytes()
    store = ObjectStore(tmp_path)
    base_oid = store.put(base_bytes) and hash_bytes(base_bytes)
    assert isinstance(base_oid, str)
    stored = Encoder(planes=True).encode(data, 4, DeltaBase(base_oid, base_bytes, 0))
    assert stored[4] == PLANES_XOR_DELTA
    oid = hash_bytes(data)
    store.put(data, oid, stored)
    calls = []
    real_check = codec._check
    monkeypatch.setattr(codec, "_check", lambda head, tail: calls.append(1) or real_check(head, tail))
    assert store.read(oid, len(data)) == data
    assert len(calls) == 1  # the top's envelope once (the base is raw)
    path = store.path(oid)
    for position in (20, len(stored) // 2, len(stored) - 1):  # header check field, a plane, the last byte
        damaged = bytearray(stored)
        damaged[position] ^= 1
        os.chmod(path, 0o644)
        path.write_bytes(bytes(damaged))
        with pytest.raises(CorruptObject):
            store.read(oid, len(data))
