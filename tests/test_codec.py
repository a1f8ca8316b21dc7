"""Every codec round-trips any bytes exactly; decoding is bounded by the size the manifest declares."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from mstore.errors import CorruptObject
from mstore.store.codec import (
    GROUPED,
    MAGIC,
    MAX_DEPTH,
    PLANE_RAW,
    PLANE_ZSTD,
    PLANES,
    PLANES_MIN,
    PLANES_XOR_DELTA,
    XOR_DELTA,
    DeltaBase,
    Encoder,
    _envelope,
    _split_planes,
    decode,
    group,
    is_delta,
    parse_header,
    ungroup,
    xor,
)
from mstore.store.objects import hash_bytes

enc = Encoder()
planes_enc = Encoder(planes=True)


def _no_base(oid: str, n: int) -> bytes:
    raise AssertionError("no base expected")


@given(data=st.binary(max_size=5000), width=st.sampled_from([1, 2, 4, 8]))
def test_any_bytes_round_trip(data: bytes, width: int) -> None:
    stored = enc.encode(data, width)
    assert decode(stored, len(data), _no_base) == data
    assert group(data, width) == data if len(data) % width else ungroup(group(data, width), width) == data


@given(
    a=st.binary(min_size=1, max_size=3000),
    flips=st.lists(st.integers(0, 2999), max_size=30),
    width=st.sampled_from([1, 2, 4]),
)
def test_delta_round_trips(a: bytes, flips: list[int], width: int) -> None:
    b = bytearray(a)
    for i in flips:
        b[i % len(b)] ^= 0x01
    base = DeltaBase("ab" * 32, a, 0)
    stored = enc.encode(bytes(b), width, base)
    assert decode(stored, len(b), lambda oid, n: a if (oid, n) == (base.oid, len(a)) else b"") == bytes(b)


def test_float_tensors_compress_better_grouped_and_deltas_win_on_small_moves() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal(1 << 18).astype(np.float32)
    moved = (w + rng.standard_normal(w.shape).astype(np.float32) * 1e-3 * np.abs(w)).astype(np.float32)
    plain = len(zstandard.ZstdCompressor(level=3).compress(moved.tobytes()))
    grouped = len(enc.encode(moved.tobytes(), 4))
    delta = enc.encode(moved.tobytes(), 4, DeltaBase("cd" * 32, w.tobytes(), 0))
    assert grouped < 0.95 * plain
    assert is_delta(delta) and len(delta) < 0.75 * plain


def test_incompressible_data_stays_raw_and_magic_content_is_wrapped() -> None:
    noise = np.random.default_rng(2).bytes(10000)
    assert enc.encode(noise) == noise
    tricky = MAGIC + noise
    stored = enc.encode(tricky)
    assert stored != tricky and decode(stored, len(tricky), _no_base) == tricky


def test_chains_are_bounded() -> None:
    data = bytes(1000)
    deep = enc.encode(data + b"", 1, DeltaBase("ef" * 32, bytes(999) + b"\x01", MAX_DEPTH))
    assert not is_delta(deep)  # at the depth limit a full copy (a keyframe) is stored instead


def test_decompression_bombs_and_lies_are_refused() -> None:
    bomb = zstandard.ZstdCompressor().compress(bytes(10 << 20))
    envelope = _envelope(1, 1, 1000, bomb)  # claims 1000 bytes, holds 10 MiB of zeros
    with pytest.raises(CorruptObject):
        decode(envelope, 1000, _no_base)
    honest = _envelope(1, 1, 10 << 20, bomb)
    with pytest.raises(CorruptObject):  # the manifest says this chunk is 1000 bytes: never inflate 10 MiB
        decode(honest, 1000, _no_base)
    for bad in (
        MAGIC + b"\x01",
        MAGIC + struct.pack("<BBQ", 9, 1, 10) + bytes(8),
        MAGIC + struct.pack("<BBQ", 1, 3, 10) + bytes(8),
    ):
        with pytest.raises(CorruptObject):
            parse_header(bad)
    truncated_delta = MAGIC + struct.pack("<BBQ", XOR_DELTA, 1, 10) + b"\x00" * 13
    with pytest.raises(CorruptObject):
        parse_header(truncated_delta)


@given(data=st.binary(min_size=64, max_size=2000), width=st.sampled_from([1, 4]), bit=st.integers(0, 1 << 20))
def test_every_bit_of_an_envelope_is_protected(data: bytes, width: int, bit: int) -> None:
    stored = enc.encode(data * 8, width)  # repetitive: always compressed, so always an envelope
    assert stored.startswith(MAGIC)
    damaged = bytearray(stored)
    damaged[(bit // 8) % len(stored)] ^= 1 << (bit % 8)
    try:
        out = decode(bytes(damaged), len(data) * 8, _no_base)
    except CorruptObject:
        return
    # no error: then the bytes must differ, so the object's hash check (ObjectStore.read) catches it;
    # a flip that decoded to the original bytes (a bit zstd ignores) would go unnoticed
    assert out != data * 8


# Objects written by format-2 stores (mstore before codecs 4/5), kept as bytes: they must decode exactly,
# forever. 48 fp32 values 0..47, byte-grouped and zstd'd (codec 2), and the same as an XOR delta (codec 3)
# against the values 0.5..47.5.
OLD_GROUPED = bytes.fromhex(
    "4d535a010204c000000000000000548dbb36759745d528b52ffd20c01502006403000080004080a0c0e0001020304050"
    "607080889098a0a8b0b8c0c8d0d8e0e8f0f80004080c1014181c2024282c3034383c003f4041420410009dd42b02e409"
    "0b"
)
OLD_DELTA = bytes.fromhex(
    "4d535a010304c000000000000000b93e53f6397fa253abababababababababababababababababababababababababab"
    "abababababab0128b52ffd20c0d50000700000402020101010100804023f000510009bd8b12e32ce1316"
)
OLD_ID = "9adf5ad602a8606b974bce17c0d149afd18ccad1716b1ac878a049472973a1f0"


def test_objects_of_format_2_stores_still_decode_exactly() -> None:
    values = np.arange(48, dtype=np.float32).tobytes()
    base = (np.arange(48, dtype=np.float32) + np.float32(0.5)).tobytes()
    assert OLD_GROUPED[4] == GROUPED and OLD_DELTA[4] == XOR_DELTA
    assert decode(OLD_GROUPED, len(values), _no_base) == values
    assert decode(OLD_DELTA, len(values), lambda oid, n: base if (oid, n) == ("ab" * 32, 192) else b"") == values
    assert hash_bytes(values) == OLD_ID
    # and an encoder for a format-2 store still writes exactly those bytes (its readers know codecs 0-3 only)
    assert enc.encode(values, 4) == OLD_GROUPED
    assert enc.encode(values, 4, DeltaBase("ab" * 32, base, 0)) == OLD_DELTA


def _fp32(seed: int, n: int = 1 << 18) -> bytes:
    return (np.random.default_rng(seed).standard_normal(n, dtype=np.float32) * np.float32(0.02)).tobytes()


def _plane_table(stored: bytes, width: int) -> list[tuple[int, int]]:
    offset = parse_header(stored).payload_offset  # type: ignore[union-attr]
    return [struct.unpack_from("<BI", stored, offset + 5 * i) for i in range(width)]


def test_planes_keep_random_mantissas_raw_and_compress_the_exponents() -> None:
    data = _fp32(1)
    stored = planes_enc.encode(data, 4)
    assert stored[4] == PLANES and decode(stored, len(data), _no_base) == data
    table = _plane_table(stored, 4)
    assert [how for how, _ in table] == [PLANE_RAW, PLANE_RAW, PLANE_RAW, PLANE_ZSTD]
    assert table[3][1] < 0.5 * len(data) // 4
    # about the ratio of codec 2's single zstd stream (which finds ~0.7% more in plane 2 at this size)
    assert len(stored) <= 1.01 * len(enc.encode(data, 4))


def test_planes_delta_is_kept_for_small_moves_and_skipped_for_new_content() -> None:
    w = np.frombuffer(_fp32(2), np.float32)
    noise = np.frombuffer(_fp32(3), np.float32)
    moved = (w + noise * np.float32(0.05) * np.abs(w)).astype(np.float32).tobytes()
    base = DeltaBase("cd" * 32, w.tobytes(), 1)
    delta = planes_enc.encode(moved, 4, base)
    assert delta[4] == PLANES_XOR_DELTA and is_delta(delta)
    assert parse_header(delta).depth == 2  # type: ignore[union-attr]
    assert decode(delta, len(moved), lambda oid, n: w.tobytes()) == moved
    fresh = _fp32(4)
    stored = planes_enc.encode(fresh, 4, base)
    assert stored[4] == PLANES and decode(stored, len(fresh), _no_base) == fresh


@given(
    data=st.binary(min_size=1, max_size=256),
    repeat=st.integers(1, 2000),
    width=st.sampled_from([2, 4, 8]),
    flips=st.lists(st.integers(0, 1 << 30), max_size=20),
)
def test_planes_round_trip_any_bytes(data: bytes, repeat: int, width: int, flips: list[int]) -> None:
    content = (data * repeat)[: max(width, len(data) * repeat // width * width)]
    content += bytes(-len(content) % width)
    stored = planes_enc.encode(content, width)
    assert decode(stored, len(content), _no_base) == content
    changed = bytearray(content)
    for f in flips:
        changed[f % len(changed)] ^= 1 << (f % 8)
    delta = planes_enc.encode(bytes(changed), width, DeltaBase("ef" * 32, content, 0))
    assert decode(delta, len(changed), lambda oid, n: content) == bytes(changed)


@given(bit=st.integers(0, 1 << 30))
def test_every_bit_of_a_planes_envelope_is_protected(bit: int) -> None:
    data = np.repeat(np.frombuffer(_fp32(5, 4096), np.float32), 8).tobytes()  # exponents and mantissas compress
    stored = planes_enc.encode(data, 4)
    assert stored[4] == PLANES and len(data) >= PLANES_MIN
    damaged = bytearray(stored)
    damaged[(bit // 8) % len(stored)] ^= 1 << (bit % 8)
    with pytest.raises(CorruptObject):
        out = decode(bytes(damaged), len(data), _no_base)
        assert out != data  # a flip that still decodes must change the bytes (the object hash catches it)
        raise CorruptObject("decoded to other bytes")


def test_lying_plane_tables_are_refused() -> None:
    n = PLANES_MIN
    good = planes_enc.encode(bytes(range(256)) * (n // 256), 4)
    head = good[:22]  # magic, codec, width, size, check
    lies = [
        struct.pack("<BI", PLANE_RAW, n // 4 + 1) * 4 + bytes(n + 4),  # raw plane of the wrong size
        struct.pack("<BI", PLANE_RAW, n // 4) * 4 + bytes(n - 1),  # truncated
        struct.pack("<BI", PLANE_RAW, n // 4) * 4 + bytes(n + 1),  # trailing bytes
        struct.pack("<BI", 7, n // 4) * 4 + bytes(n),  # unknown plane kind
        struct.pack("<BI", PLANE_ZSTD, 9) + zstandard.ZstdCompressor().compress(bytes(n))[:9],  # a bomb / lie
        b"\x00",  # truncated table
    ]
    for payload in lies:
        blob = _envelope(PLANES, 4, n, payload)
        with pytest.raises(CorruptObject):
            decode(blob, n, _no_base)
    assert head.startswith(MAGIC)


def test_a_base_sample_read_from_storage_is_the_content_at_the_sample_spans() -> None:
    from mstore.store.codec import sample_of, sample_spans

    big, small = _fp32(6), _fp32(7, 1000)
    for data, stored in ((big, planes_enc.encode(big, 4)), (big, big), (small, small)):
        assert stored == data or stored[4] == PLANES
        assert sample_of(stored, len(data), 4) == b"".join(data[a:b] for a, b in sample_spans(len(data), 4))
    assert sample_of(enc.encode(_fp32(6), 4), 1 << 20, 4) is None  # codec 2: not cheap, the base is read


def test_a_base_is_not_read_when_its_sample_says_no_delta_can_win() -> None:
    data, other = _fp32(8), _fp32(9)
    from mstore.store.codec import sample_spans

    sample = b"".join(other[a:b] for a, b in sample_spans(len(other), 4))

    def never() -> bytes:
        raise AssertionError("the base was read although no delta could win")

    stored = planes_enc.encode(data, 4, DeltaBase("ab" * 32, never, 0), base_sample=sample)
    assert stored[4] == PLANES and decode(stored, len(data), _no_base) == data


def test_one_encode_per_piece_when_the_sample_estimate_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fine-tuned piece is encoded once (the delta the estimate picks), all-new content once (plain),
    and the base is read once: no plain candidate is built in full before a delta that wins."""
    w = np.frombuffer(_fp32(10), np.float32)
    noise = np.frombuffer(_fp32(11), np.float32)
    moved = (w + noise * np.float32(0.01) * np.abs(w)).astype(np.float32).tobytes()
    encoder = Encoder(planes=True)
    built: list[int] = []
    original = encoder._planes

    def counting(grouped: bytes, width: int, decisions: list[bool]) -> list[bytes | memoryview]:
        built.append(len(grouped))
        return original(grouped, width, decisions)

    monkeypatch.setattr(encoder, "_planes", counting)
    reads: list[int] = []

    def base_content() -> bytes:
        reads.append(1)
        return w.tobytes()

    delta = encoder.encode(moved, 4, DeltaBase("cd" * 32, base_content, 0))
    assert delta[4] == PLANES_XOR_DELTA and decode(delta, len(moved), lambda oid, n: w.tobytes()) == moved
    assert built == [len(moved)] and reads == [1]
    # and it is as small as when both candidates were built: the plain one could not have won
    assert len(delta) < 0.9 * len(encoder.encode(moved, 4))
    built.clear()
    fresh = _fp32(12)
    stored = encoder.encode(fresh, 4, DeltaBase("cd" * 32, w.tobytes(), 0))
    assert stored[4] == PLANES and built == [len(fresh)]


@pytest.mark.parametrize("width", [2, 4, 8])
def test_byte_planes_are_every_elements_byte_i_in_order(width: int) -> None:
    data = bytes(np.random.default_rng(width).integers(0, 256, 4096 * width, dtype=np.uint8))
    planes = group(data, width)
    n = len(data) // width
    for i in range(width):
        assert planes[i * n : (i + 1) * n] == data[i::width]
    assert bytes(ungroup(planes, width)) == data


@given(
    data=st.binary(min_size=0, max_size=4000),
    flips=st.lists(st.integers(0, 3999), max_size=20),
    width=st.sampled_from([1, 2, 4, 8]),
)
def test_split_planes_are_the_grouped_bytes_of_content_or_its_xor(data: bytes, flips: list[int], width: int) -> None:
    """The encoder's fused plane split stores exactly the bytes of `group` (of `xor` with the base), so
    objects written before and after it are identical; the caller's buffers are never modified."""
    data = data[: len(data) - len(data) % width]
    base = bytearray(data)
    for i in flips:
        if i < len(base):
            base[i] ^= 0x5A
    base_before, data_before = bytes(base), bytes(data)
    assert bytes(_split_planes(data, width)) == group(data, width)
    assert bytes(_split_planes(data, width, base)) == group(xor(data, base), width)
    assert bytes(base) == base_before and data == data_before
