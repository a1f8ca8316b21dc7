"""How a file's bytes are cut into objects. One small interface, so that content-defined and
model-aware chunkers can replace the fixed-size one without touching the rest of the store.

The chunker's parameters are recorded in the store's config: an existing store keeps cutting the
same way, which is what makes unchanged content dedup across versions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO, Protocol

DEFAULT_CHUNK_SIZE = 4 << 20  # 4 MiB: few objects per GB, little per-object overhead
MIN_CHUNK_SIZE = 4 << 10
MAX_CHUNK_SIZE = 64 << 20


class Chunker(Protocol):
    def split(self, stream: BinaryIO) -> Iterator[bytes]:
        """Yield consecutive non-empty pieces of `stream` that concatenate to all of its bytes."""
        ...

    def config(self) -> dict[str, Any]:
        """Parameters to record in the store's config (round-trips through `chunker_from_config`)."""
        ...


class FixedSizeChunker:
    """Cuts every `size` bytes. Dedups identical files and unchanged prefixes; nothing after an insertion."""

    def __init__(self, size: int = DEFAULT_CHUNK_SIZE) -> None:
        if not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes")
        self.size = size

    def split(self, stream: BinaryIO) -> Iterator[bytes]:
        while piece := stream.read(self.size):
            yield piece

    def config(self) -> dict[str, Any]:
        return {"name": "fixed", "size": self.size}


def chunker_from_config(config: dict[str, Any]) -> Chunker:
    name = config.get("name")
    if name == "fixed":
        size = config.get("size")
        if not isinstance(size, int) or isinstance(size, bool):
            raise ValueError("fixed chunker needs an integer size")
        return FixedSizeChunker(size)
    raise ValueError(f"unknown chunker {name!r}")
