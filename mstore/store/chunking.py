"""How a file's bytes are cut into objects. One small interface, so chunkers can be swapped without
touching the rest of the store; the chunker's parameters are recorded in the store's config, so an
existing store keeps cutting the same way (which is what makes unchanged content dedup).

- `fixed`: every N bytes (format-1 stores).
- `model-aware` (new stores): tensor containers (safetensors, npz, torch zip, ONNX initializers, GGUF,
  and the external-data files an ONNX model names) are cut at tensor boundaries, each tensor into
  pieces of at most `tensor_piece` bytes, so an unchanged tensor dedups whatever moved around it, and
  every piece carries its tensor's identity (for deltas against the parent) and element width (for
  byte-grouped compression). In joblib files (with `joblib_min`), the arrays where that pays are cut
  out likewise (`joblib_regions`). Everything else (pickle streams, headers, zip directories) is cut by
  content-defined chunking (FastCDC), so an insertion only changes the chunks around it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any, BinaryIO, Protocol

from ..formats.pickles import fingerprint, looks_like_pickle
from ..formats.tensors import BYTES, ITEMSIZE, NotTensors, Tensor, index_tensors, joblib_index
from .codec import group

DEFAULT_CHUNK_SIZE = 4 << 20  # fixed chunker: few objects per GB, little per-object overhead
MIN_CHUNK_SIZE = 4 << 10
MAX_CHUNK_SIZE = 64 << 20
CDC_DEFAULT = (512 << 10, 2 << 20, 8 << 20)  # min, avg, max: chosen with scripts/bench_space.py --sweep
TENSOR_PIECE = 4 << 20
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
OPAQUE = "OPAQUE"  # a joblib array cut out but compressed like the pickle bytes (no planes, no delta)
MANY_TENSORS = 4096  # a file with more tensors than this cuts out only those of SMALL_TENSOR bytes or more
SMALL_TENSOR = 64 << 10  # (100,000 tiny tensors would be as many objects; their bytes go to CDC instead)
JOBLIB_MIN = 256 << 10  # new stores: joblib arrays at least this big may be cut out (joblib_regions)
JOBLIB_SAMPLE = 1 << 20  # bytes per sample span (start, middle, end) that decide it: CDC chunks are this big
JOBLIB_GAIN = 0.97  # planes (or context) must beat zstd of the bytes alone by 3% on the sample
Fingerprint = tuple[int, ...]
PROBE_WIDTH = 0  # "unknown element width": the encoder tries a few on a sample


@dataclass(frozen=True)
class Piece:
    """One chunk of a file, with what the encoder may use: element width and tensor identity."""

    data: bytes
    width: int = 1
    key: tuple[Any, ...] | None = None  # (tensor name, piece index, dtype, shape) for tensor pieces


class Chunker(Protocol):
    def split(
        self, stream: BinaryIO, path: str = "", size: int = -1, external: Sequence[Tensor] = ()
    ) -> Iterator[Piece]:
        """Yield consecutive non-empty pieces of `stream` that concatenate to all of its bytes.

        `external`: tensors that another file of the model places in this one (ONNX external data,
        `tensors.onnx_external_tensors`), used when the file is not a tensor container itself."""
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

    def split(
        self, stream: BinaryIO, path: str = "", size: int = -1, external: Sequence[Tensor] = ()
    ) -> Iterator[Piece]:
        while data := stream.read(self.size):
            yield Piece(data)

    def config(self) -> dict[str, Any]:
        return {"name": "fixed", "size": self.size}


def _width(dtype: str) -> int:
    if dtype in FLOAT_DTYPES:
        return ITEMSIZE[dtype]
    return PROBE_WIDTH if dtype == BYTES else 1


class ModelAwareChunker:
    """Tensor-aligned pieces for tensor containers, FastCDC for everything else."""

    def __init__(
        self, cdc: tuple[int, int, int] = CDC_DEFAULT, tensor_piece: int = TENSOR_PIECE, joblib_min: int = 0
    ) -> None:
        lo, avg, hi = cdc
        if not (MIN_CHUNK_SIZE <= lo <= avg <= hi <= MAX_CHUNK_SIZE) or not (
            MIN_CHUNK_SIZE <= tensor_piece <= MAX_CHUNK_SIZE
        ):
            raise ValueError("invalid chunk sizes")
        if joblib_min < 0:
            raise ValueError("invalid joblib_min")
        self.cdc = (lo, avg, hi)
        self.tensor_piece = tensor_piece
        self.joblib_min = joblib_min  # 0: joblib files are cut by CDC (stores made before array cutting)

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": "model-aware", "cdc": list(self.cdc), "tensor_piece": self.tensor_piece}
        if self.joblib_min:
            config["joblib_min"] = self.joblib_min
        return config

    def _cdc(self) -> Any:
        import pyfastcdc

        lo, avg, hi = self.cdc
        return pyfastcdc.FastCDC(avg_size=avg, min_size=lo, max_size=hi)

    def tensor_regions(
        self,
        read: Callable[[int, int], bytes],
        path: str,
        size: int,
        external: Sequence[Tensor] = (),
        fingerprint: Fingerprint | None = None,
    ) -> list[Tensor]:
        """The file's tensors sorted by offset, if it is a tensor container with non-overlapping tensors
        (else the `external` tensors another file places in it, when they lie inside it).

        `fingerprint`: the open file's (size, mtime_ns, inode, device, ctime_ns), to reuse its safety scan's walk."""
        tensors = index_tensors(path, read, size) if size > 0 else None
        if not tensors and external and all(t.offset >= 0 and t.offset + t.length <= size for t in external):
            tensors = list(external)
        if tensors is None and self.joblib_min and size > 0:
            tensors = self.joblib_regions(read, size, fingerprint)
        if not tensors:
            return []
        tensors = sorted((t for t in tensors if t.length > 0), key=lambda t: t.offset)
        for a, b in pairwise(tensors):
            if a.offset + a.length > b.offset:
                return []
        if len(tensors) > MANY_TENSORS:
            tensors = [t for t in tensors if t.length >= SMALL_TENSOR]
        return tensors

    def joblib_regions(
        self, read: Callable[[int, int], bytes], size: int, fingerprint: Fingerprint | None = None
    ) -> list[Tensor]:
        """The arrays of a joblib file (at least `joblib_min` bytes each) to cut out, sorted by offset.

        A float array whose byte planes beat zstd of its raw bytes (`planes_win`) becomes a tensor: byte
        planes, XOR deltas against the parent's same array. Another array is cut out as an OPAQUE region
        (compressed like the pickle bytes) unless it compresses better after the bytes before it
        (`context_helps`), and only when at least two arrays are cut, so that some stretch of pickle bytes
        between them (a vocabulary) can dedup. Everything else stays in CDC-cut stretches. Any doubt about
        the file (an array outside it, overlapping arrays, a walk that did not finish) leaves it to CDC."""
        if size < 2 or not looks_like_pickle(read(0, 2)):
            return []
        try:
            arrays = joblib_index(read, size, fingerprint)
        except (NotTensors, ValueError, struct.error):
            return []
        arrays = sorted(arrays, key=lambda a: a.offset)
        if any(a.offset < 0 or a.length < 0 or a.offset + a.length > size for a in arrays) or any(
            a.offset + a.length > b.offset for a, b in pairwise(arrays)
        ):
            return []
        cut = []
        for a in arrays:
            if a.length < self.joblib_min:
                continue
            if a.dtype in FLOAT_DTYPES and planes_win(_sample(read, a), ITEMSIZE[a.dtype]):
                cut.append(a)
            elif not context_helps(read, a):
                cut.append(replace(a, dtype=OPAQUE))
        # Arrays cut out for the bytes around them pay only when two of them isolate a stretch of pickle
        # bytes (a vocabulary) that can dedup; one alone isolates the header and costs a little.
        return cut if len(cut) >= 2 or any(a.dtype != OPAQUE for a in cut) else []

    def tensor_pieces(self, t: Tensor) -> Iterator[tuple[int, int, int, tuple[Any, ...]]]:
        """(offset, length, width, key) of each piece of one tensor; pieces are element-aligned."""
        if t.dtype == OPAQUE:
            return
        width = _width(t.dtype)
        step = self.tensor_piece - self.tensor_piece % max(width, 8)
        for i, start in enumerate(range(0, t.length, step)):
            yield t.offset + start, min(step, t.length - start), width, (t.name, i, t.dtype, tuple(t.shape))

    def split(
        self, stream: BinaryIO, path: str = "", size: int = -1, external: Sequence[Tensor] = ()
    ) -> Iterator[Piece]:
        def read(offset: int, length: int) -> bytes:
            stream.seek(offset)
            return stream.read(length)

        tensors = self.tensor_regions(read, path, size, external, _fingerprint(stream)) if size > 0 else []
        stream.seek(0)
        if not tensors:
            for chunk in self._cdc().cut_stream(stream):
                yield Piece(bytes(chunk.data))
            return
        position = 0
        for t in tensors:
            if t.offset > position:  # headers and other bytes between tensors
                yield from self._opaque(stream, position, t.offset - position)
            if t.dtype == OPAQUE:
                yield from self._opaque(stream, t.offset, t.length)
            for offset, length, width, key in self.tensor_pieces(t):
                stream.seek(offset)
                yield Piece(stream.read(length), width, key)
            position = t.offset + t.length
        if size > position:
            yield from self._opaque(stream, position, size - position)

    def _opaque(self, stream: BinaryIO, offset: int, length: int) -> Iterator[Piece]:
        """The bytes between tensors, cut by CDC as they are read: a gap of gigabytes (a model that names
        one small tensor at the end of a large file) never sits in memory whole."""
        stream.seek(offset)
        for chunk in self._cdc().cut_stream(_Span(stream, length)):
            yield Piece(bytes(chunk.data))


class _Span:
    """The next `length` bytes of a stream, read in the reader's own windows."""

    def __init__(self, stream: BinaryIO, length: int) -> None:
        self.stream, self.left = stream, length

    def read(self, n: int) -> bytes:
        data = self.stream.read(min(n, self.left))
        self.left -= len(data)
        return data


def _fingerprint(stream: BinaryIO) -> Fingerprint | None:
    try:
        return fingerprint(os.fstat(stream.fileno()))
    except (OSError, ValueError):  # not a file (BytesIO), or closed
        return None


def _sample(read: Callable[[int, int], bytes], t: Tensor) -> bytes:
    """Whole elements from the start, middle and end of a tensor (all of it when small)."""
    width, k = ITEMSIZE[t.dtype], JOBLIB_SAMPLE
    if t.length <= 3 * k:
        return read(t.offset, t.length)
    mid = (t.length // 2) // width * width
    return b"".join(read(t.offset + start, k) for start in (0, mid, t.length - k))


def planes_win(sample: bytes, width: int) -> bool:
    """Whether byte planes (each plane compressed on its own, or kept raw) store `sample` clearly smaller
    than zstd of its bytes as they are.

    Float arrays of dense, unique values (an SGD `coef_`) shrink 8-10% more in planes: their mantissa
    bytes are noise wherever they stand, and the exponent planes compress far better alone. Arrays with
    few distinct values (TF-IDF `idf_`, the coefficients of features seen once) are the opposite: zstd
    finds whole repeated 8-byte values, which planes take apart (2-4x larger). Those stay in the
    CDC-cut stream, compressed as before."""
    import zstandard

    if width < 2 or len(sample) < width or len(sample) % width:
        return False
    raw = len(zstandard.ZstdCompressor(level=3).compress(sample))
    grouped, m = group(sample, width), len(sample) // width
    plane = zstandard.ZstdCompressor(level=1)
    planes = sum(min(m, len(plane.compress(grouped[i * m : (i + 1) * m]))) for i in range(width))
    return planes < JOBLIB_GAIN * raw


def context_helps(read: Callable[[int, int], bytes], t: Tensor) -> bool:
    """Whether zstd compresses the start of an array clearly better after the bytes before it than alone.

    A logistic regression's `coef_` shrinks ~20% more after its pipeline's vocabulary and `idf_` than
    alone: such an array stays in the CDC stream. Otherwise it is cut out on its own (compressed like
    the pickle bytes), so that the bytes around it, often unchanged (the vocabulary of a model retrained
    on more data), dedup across versions although the array changed."""
    import zstandard

    start = max(0, t.offset - JOBLIB_SAMPLE)
    context, head = read(start, t.offset - start), read(t.offset, min(t.length, JOBLIB_SAMPLE))
    if not context:
        return False
    z = zstandard.ZstdCompressor(level=3)
    after = len(z.compress(context + head)) - len(z.compress(context))
    return after < JOBLIB_GAIN * len(z.compress(head))


def chunker_from_config(config: dict[str, Any]) -> Chunker:
    name = config.get("name")
    if name == "fixed":
        size = config.get("size")
        if not isinstance(size, int) or isinstance(size, bool):
            raise ValueError("fixed chunker needs an integer size")
        return FixedSizeChunker(size)
    if name == "model-aware":
        cdc, piece = config.get("cdc"), config.get("tensor_piece")
        if not (isinstance(cdc, list) and len(cdc) == 3 and all(isinstance(x, int) for x in cdc)):
            raise ValueError("model-aware chunker needs cdc [min, avg, max]")
        if not isinstance(piece, int):
            raise ValueError("model-aware chunker needs tensor_piece")
        joblib_min = config.get("joblib_min", 0)
        if not isinstance(joblib_min, int) or isinstance(joblib_min, bool):
            raise ValueError("model-aware chunker's joblib_min must be an integer")
        return ModelAwareChunker((cdc[0], cdc[1], cdc[2]), piece, joblib_min)
    raise ValueError(f"unknown chunker {name!r}")
