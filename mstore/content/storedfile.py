"""Random access to a file as stored: read any byte range by fetching (and verifying) only the chunks
that cover it. Used to parse tensor headers and compare tensors without restoring whole models."""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Protocol

from .. import workers as _workers
from ..errors import MStoreError
from ..formats.tensors import Tensor, onnx_external_tensors
from ..store.manifest import KIND_DIR, Entry, Manifest
from ..store.objects import ObjectStore

CACHE_CHUNKS = 4


class Chunks(Protocol):
    """Where chunks come from, each verified against its id: an ObjectStore, or a fetcher that downloads
    what the cache lacks (modelpath.Origin)."""

    def read(self, oid: str, expected_size: int | None = None) -> bytes: ...


class StoredFile:
    """One file entry of a manifest, readable by offset."""

    def __init__(self, entry: Entry, objects: Chunks) -> None:
        self.entry = entry
        self.objects = objects
        self.size = entry.size
        self._starts: list[int] = []
        offset = 0
        for chunk in entry.chunks:
            self._starts.append(offset)
            offset += chunk.size
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    def _chunk(self, index: int) -> bytes:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        chunk = self.entry.chunks[index]
        data = self.objects.read(chunk.oid, chunk.size)
        self._cache[index] = data
        if len(self._cache) > CACHE_CHUNKS:
            self._cache.popitem(last=False)
        return data

    def _span(self, offset: int, length: int) -> range:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"range {offset}+{length} is outside a file of {self.size} bytes")
        if length == 0:
            return range(0)
        first = bisect.bisect_right(self._starts, offset) - 1
        last = bisect.bisect_right(self._starts, offset + length - 1) - 1
        return range(first, last + 1)

    def _pieces(self, offset: int, length: int) -> Iterator[memoryview]:
        for index in self._span(offset, length):
            start = self._starts[index]
            data = memoryview(self._chunk(index))
            yield data[max(offset - start, 0) : min(offset + length - start, len(data))]

    def read(self, offset: int, length: int) -> bytes:
        """Bytes [offset, offset+length), verified chunk by chunk."""
        return b"".join(self._pieces(offset, length))

    def readinto(self, offset: int, out: memoryview, *, workers: int = 1) -> None:
        """Fill `out` with the bytes from `offset` on (verified chunk by chunk), with no copy in between:
        a tensor read lazily is one allocation, writable. With `workers` > 1, a range of several chunks
        is read on that many threads, a bounded window ahead (a remote's latency overlaps)."""
        span = self._span(offset, len(out))
        if workers <= 1 or len(span) < 2:
            at = 0
            for piece in self._pieces(offset, len(out)):
                out[at : at + len(piece)] = piece
                at += len(piece)
            return

        def read(index: int) -> bytes:
            chunk = self.entry.chunks[index]
            return self.objects.read(chunk.oid, chunk.size)

        with _workers.pool(workers) as executor:
            for index, data in zip(span, _workers.map_ordered(read, span, executor, 2 * workers), strict=True):
                start = self._starts[index]
                lo, hi = max(offset - start, 0), min(offset + len(out) - start, len(data))
                out[start + lo - offset : start + hi - offset] = memoryview(data)[lo:hi]

    def chunk_ids(self, offset: int, length: int) -> tuple[tuple[int, str], ...]:
        """(start, object id) of the chunks covering a range: equal tuples mean equal bytes, unread."""
        return tuple((self._starts[i] - offset, self.entry.chunks[i].oid) for i in self._span(offset, length))


def stored_external_tensors(manifest: Manifest, objects: ObjectStore) -> dict[str, list[Tensor]]:
    """The tensors the stored .onnx files of a directory model place in its other files (ONNX external
    data), by path; {} for single-file models. A damaged model file counts as none."""
    if manifest.kind != KIND_DIR or not any(e.path.endswith(".onnx") for e in manifest.files):
        return {}
    models = [(e.path, _safe(StoredFile(e, objects).read), e.size) for e in manifest.files if e.path.endswith(".onnx")]
    return onnx_external_tensors(models, {e.path: e.size for e in manifest.files})


def _safe(read: Callable[[int, int], bytes]) -> Callable[[int, int], bytes]:
    def checked(offset: int, length: int) -> bytes:
        try:
            return read(offset, length)
        except (MStoreError, OSError):  # an unreadable object only costs the tensor view
            return b""

    return checked
