"""Chunkers cut any byte stream into pieces that concatenate back to it; the model-aware chunker cuts
tensors at their boundaries and opaque bytes by content, so local changes stay local."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mstore.store.chunking import MIN_CHUNK_SIZE, FixedSizeChunker, ModelAwareChunker, chunker_from_config

from helpers import safetensors_bytes

SMALL_CDC = ModelAwareChunker((MIN_CHUNK_SIZE, 2 * MIN_CHUNK_SIZE, 8 * MIN_CHUNK_SIZE), 4 * MIN_CHUNK_SIZE)


def _pieces(chunker: object, data: bytes, path: str = "m.bin") -> list[bytes]:
    return [p.data for p in chunker.split(io.BytesIO(data), path, len(data))]  # type: ignore[attr-defined]


@given(data=st.binary(max_size=5 * MIN_CHUNK_SIZE), size=st.integers(MIN_CHUNK_SIZE, 2 * MIN_CHUNK_SIZE))
def test_fixed_chunks_concatenate_to_the_input(data: bytes, size: int) -> None:
    pieces = _pieces(FixedSizeChunker(size), data)
    assert b"".join(pieces) == data
    assert all(0 < len(p) <= size for p in pieces)
    assert all(len(p) == size for p in pieces[:-1])


@given(data=st.binary(max_size=20 * MIN_CHUNK_SIZE), name=st.sampled_from(["m.bin", "m.safetensors", "m.npz"]))
def test_model_aware_chunks_concatenate_to_any_input(data: bytes, name: str) -> None:
    assert b"".join(_pieces(SMALL_CDC, data, name)) == data


def test_an_insertion_changes_only_nearby_chunks() -> None:
    rng = random.Random(0)
    data = rng.randbytes(64 * MIN_CHUNK_SIZE)
    at = len(data) // 2
    edited = data[:at] + b"inserted bytes" + data[at:]
    before, after = set(_pieces(SMALL_CDC, data)), _pieces(SMALL_CDC, edited)
    new = [p for p in after if p not in before]
    assert len(after) > 20 and 1 <= len(new) <= 3  # fixed-size chunking would change every chunk after it
    assert sum(len(p) for p in new) <= 3 * 8 * MIN_CHUNK_SIZE


@given(
    shapes=st.lists(st.integers(1, 3000), min_size=1, max_size=6),
    dtype=st.sampled_from([("F32", np.float32), ("F16", np.float16), ("I64", np.int64)]),
)
def test_safetensors_pieces_are_tensor_aligned_and_carry_identity(shapes: list[int], dtype: tuple[str, type]) -> None:
    tensors = {f"t{i}": (dtype[0], np.arange(n).astype(dtype[1])) for i, n in enumerate(shapes)}
    data = safetensors_bytes(tensors)
    pieces = list(SMALL_CDC.split(io.BytesIO(data), "m.safetensors", len(data)))
    assert b"".join(p.data for p in pieces) == data
    keyed = [p for p in pieces if p.key is not None]
    for name, (_, array) in tensors.items():
        mine = sorted((p for p in keyed if p.key[0] == name), key=lambda p: p.key[1])  # type: ignore[index]
        assert b"".join(p.data for p in mine) == array.tobytes()
        assert all(len(p.data) % array.itemsize == 0 for p in mine)
        expected_width = array.itemsize if dtype[0].startswith("F") else 1
        assert all(p.width == expected_width for p in mine)


def test_an_unchanged_tensor_dedups_when_everything_around_it_moves() -> None:
    w = np.random.default_rng(1).standard_normal(5000).astype(np.float32)
    v1 = safetensors_bytes({"b": ("F32", w), "head": ("F32", np.ones(10, np.float32))})
    v2 = safetensors_bytes(
        {"a_new_adapter": ("F32", np.zeros(777, np.float32)), "b": ("F32", w), "head": ("F32", np.ones(12, np.float32))}
    )
    p1 = {p.data for p in SMALL_CDC.split(io.BytesIO(v1), "m.safetensors", len(v1)) if p.key and p.key[0] == "b"}
    p2 = {p.data for p in SMALL_CDC.split(io.BytesIO(v2), "m.safetensors", len(v2)) if p.key and p.key[0] == "b"}
    assert p1 == p2 and p1


def test_config_round_trips_and_rejects_nonsense() -> None:
    for chunker in (FixedSizeChunker(1 << 20), SMALL_CDC):
        assert chunker_from_config(chunker.config()).config() == chunker.config()
    bad_configs = [
        {"name": "fixed", "size": 1},
        {"name": "fixed", "size": "4M"},
        {"name": "magic"},
        {"name": "model-aware", "cdc": [1, 2, 3], "tensor_piece": 1 << 20},
        {"name": "model-aware", "cdc": [1 << 20, 1 << 16, 1 << 22], "tensor_piece": 1 << 20},
    ]
    for bad in bad_configs:
        with pytest.raises(ValueError):
            chunker_from_config(bad)


def test_thousands_of_tiny_tensors_are_not_thousands_of_pieces() -> None:
    """A file of 5,000 tiny tensors (a hostile or odd model) is cut by CDC around its few big tensors,
    not into 10,000 pieces (each an object on disk); a few hundred small tensors keep their own pieces."""
    from mstore.store.chunking import MANY_TENSORS, SMALL_TENSOR

    chunker = ModelAwareChunker()
    tiny = {f"t{i}": ("F32", np.full(4, i, dtype=np.float32)) for i in range(MANY_TENSORS + 904)}
    big = {"big": ("F32", np.arange(SMALL_TENSOR // 4, dtype=np.float32))}
    data = safetensors_bytes({**tiny, **big})
    pieces = list(chunker.split(io.BytesIO(data), "m.safetensors", len(data)))
    assert b"".join(p.data for p in pieces) == data
    assert len(pieces) < 20, len(pieces)
    assert [p.key[0] for p in pieces if p.key] == ["big"]
    few = safetensors_bytes({f"t{i}": ("F32", np.full(4, i, dtype=np.float32)) for i in range(300)})
    assert sum(1 for p in chunker.split(io.BytesIO(few), "m.safetensors", len(few)) if p.key) == 300


def test_the_bytes_between_tensors_are_cut_as_they_are_read_not_read_whole() -> None:
    """A model that places one small tensor at the end of a large file: the gap before it is read by CDC
    in windows (never whole), and cut exactly as CDC cuts those bytes on their own."""
    from mstore.formats.tensors import Tensor
    from mstore.store.chunking import CDC_DEFAULT

    gap = random.Random(5).randbytes(20 << 20)
    data = gap + b"\x00" * 16

    class Stream(io.BytesIO):
        largest = 0

        def read(self, n: int | None = -1) -> bytes:
            out = super().read(n)
            Stream.largest = max(Stream.largest, len(out))
            return out

    chunker = ModelAwareChunker()
    tensor = Tensor("w", "F32", (4,), len(gap), 16)
    pieces = list(chunker.split(Stream(data), "data.bin", len(data), external=[tensor]))
    assert b"".join(p.data for p in pieces) == data
    assert [p.data for p in pieces[:-1]] == [bytes(c.data) for c in chunker._cdc().cut_buf(gap)]
    assert Stream.largest <= 2 * CDC_DEFAULT[2], Stream.largest  # windows of about the largest chunk
