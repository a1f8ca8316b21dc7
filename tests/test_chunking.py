"""Chunkers cut any byte stream into pieces that concatenate back to it."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mstore.chunking import MIN_CHUNK_SIZE, FixedSizeChunker, chunker_from_config


@given(data=st.binary(max_size=5 * MIN_CHUNK_SIZE), size=st.integers(MIN_CHUNK_SIZE, 2 * MIN_CHUNK_SIZE))
def test_fixed_chunks_concatenate_to_the_input(data: bytes, size: int) -> None:
    pieces = list(FixedSizeChunker(size).split(io.BytesIO(data)))
    assert b"".join(pieces) == data
    assert all(0 < len(p) <= size for p in pieces)
    assert all(len(p) == size for p in pieces[:-1])


def test_config_round_trips_and_rejects_nonsense() -> None:
    chunker = FixedSizeChunker(1 << 20)
    assert chunker_from_config(chunker.config()).config() == chunker.config()
    for bad in ({"name": "fixed", "size": 1}, {"name": "fixed", "size": "4M"}, {"name": "magic"}):
        with pytest.raises(ValueError):
            chunker_from_config(bad)
