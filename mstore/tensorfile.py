"""`open_tensors(ref)`: the tensors of one stored file, read lazily, in the manner of `safetensors.safe_open`.

Nothing is materialised. The file's header is parsed through `StoredFile` (formats/tensors.py: headers
only, bounded, never executed), which reads only the chunks that hold the bytes asked for; the tensor-aware
chunker cut the file at tensor boundaries, so a header read fetches no weight bytes and one tensor is
its own chunks. Each chunk is verified against its id before a byte of it is used: from the local store,
from the cache's objects, or downloaded from a remote into them (so a later `model_path` or tensor read
does not download it again). Read: safetensors, `.npz` (stored, uncompressed entries), ONNX initializers
(inline, and in a folder model those in external-data files) and GGUF tensors of plain types; a
compressed npz entry (`np.savez_compressed`) is read whole, verified, then inflated under the size its zip
directory declares. Quantized GGUF blocks and torch storages are listed (dtype as stored) and given as
bytes.

No pickle refusal here, on purpose (issue 21): `open_tensors` never unpickles. A `torch.save` zip's
`data.pkl` is walked statically for tensor names and storage keys (formats/tensors.py), and what comes
back is raw bytes at offsets, as numpy arrays of plain dtypes or bytes; nothing a pickle names is ever
imported or called, so an "unsafe" verdict has nothing to guard. `model_path`, `path`, `checkout` and
`export --plain`, which hand the file itself to a loader, refuse it (see diff/compare.check_loadable).
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .cache.entries import Cache
from .content.storedfile import StoredFile
from .errors import BadInput, NotInModel, UnsupportedFormat
from .formats.tensors import (
    NotTensors,
    Tensor,
    index_tensors,
    inflated_npy,
    onnx_external_tensors,
    safetensors_metadata,
)
from .humanize import nearest
from .modelpath import Origin, find
from .store.manifest import KIND_FILE, Entry

TENSOR_SUFFIXES = (".safetensors", ".npz", ".onnx", ".gguf")
_NUMPY = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
    "BF16": "<u2",
}  # fmt: skip  BF16 is read as its 16-bit patterns, then widened to float32 (exactly: a bf16 is a float32's top half)


@dataclass(frozen=True)
class _Located:
    file: StoredFile | _Inflated
    tensor: Tensor


class _Inflated:
    """An inflated npz entry held in memory, read as a StoredFile is (`readinto`)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]

    def readinto(self, offset: int, out: memoryview, workers: int = 1) -> None:
        out[:] = self.data[offset : offset + len(out)]


def _inflate(file: StoredFile, tensor: Tensor, path: str) -> _Located:
    """Read a deflated npz entry (verified chunk by chunk), inflate it under its declared size, locate its
    array. A declared size that the stream does not match, or a header that is not an array, is refused."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        data = inflater.decompress(file.read(tensor.offset, tensor.length), tensor.inflated + 1)
    except zlib.error as e:
        raise UnsupportedFormat(f"{tensor.name!r} in {path!r}: its compressed bytes do not inflate ({e})") from None
    if len(data) != tensor.inflated or not inflater.eof:
        raise UnsupportedFormat(f"{tensor.name!r} in {path!r}: it does not inflate to the size its zip entry declares")
    try:
        inner = inflated_npy(tensor.name, data)
    except NotTensors as e:
        raise UnsupportedFormat(f"{tensor.name!r} in {path!r}: {e}") from None
    return _Located(_Inflated(data), inner)


def open_tensors(
    ref: str = "latest",
    file: str | None = None,
    *,
    remote: str | None = None,
    store: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | str | None = None,
) -> TensorFile:
    """The tensors of `file` in version `ref` (the model's one tensor file when None), read on demand.

    `ref`, `store`, `remote`, `cache_dir` and `offline` are `model_path`'s. Only the file's header is read
    here (from a remote: only the chunks that hold it); each `get_tensor` reads that tensor's chunks alone.
    """
    cache = Cache.open(cache_dir)
    origin = find(ref, store=store, remote=remote, cache=cache, offline=offline)
    return TensorFile(origin, _pick(origin, file))


def list_tensors(
    ref: str = "latest",
    *,
    remote: str | None = None,
    store: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | str | None = None,
) -> dict[str, Any]:
    """Every tensor of every tensor file of the version (name, dtype, shape, size), from headers alone:
    what `mstore show REF --tensors --json` prints, with the bytes that fetching the headers cost."""
    origin = find(ref, store=store, remote=remote, cache=Cache.open(cache_dir), offline=offline)
    manifest = origin.manifest()
    files = []
    for entry in manifest.files:
        if manifest.kind != KIND_FILE and not entry.path.endswith(TENSOR_SUFFIXES):
            continue
        try:
            found = TensorFile(origin, entry)
        except UnsupportedFormat:
            continue  # not a tensor container after all (a damaged or unusual file): nothing to list
        files.append({"path": entry.path, "size": entry.size, "tensors": found.tensors()})
    return {
        "version": origin.version,
        "files": files,
        "bytes_fetched": origin.stats.bytes_sent,
        "objects_fetched": origin.stats.objects_sent,
    }


def _pick(origin: Origin, file: str | None) -> Entry:
    manifest = origin.manifest()
    files = {e.path: e for e in manifest.files}
    if file is not None:
        if file not in files:
            raise NotInModel(f"version {origin.version} has no file {file!r}{nearest(file, files)}")
        return files[file]
    if manifest.kind == KIND_FILE:
        return manifest.files[0]
    candidates = [p for p in files if p.endswith(TENSOR_SUFFIXES)]
    if len(candidates) == 1:
        return files[candidates[0]]
    if not candidates:
        raise NotInModel(f"version {origin.version} has no tensor file (safetensors, npz, ONNX, GGUF)")
    shown = ", ".join(repr(p) for p in sorted(candidates)[:5]) + (", ..." if len(candidates) > 5 else "")
    raise BadInput(f"version {origin.version} has {len(candidates)} tensor files; choose one with file= ({shown})")


class TensorFile(Mapping[str, np.ndarray]):
    """A read-only mapping of tensor name -> numpy array, each read (and verified) when asked for.

    As `safetensors.safe_open`: `keys()`, `metadata()`, `get_tensor(name)`, `get_slice(name)[...]`; also
    `tensors()` (name, dtype, shape, size: headers only), `get_bytes(name)` (the stored bytes, any dtype)
    and `bytes_fetched` / `objects_fetched` (what came from a remote so far)."""

    def __init__(self, origin: Origin, entry: Entry) -> None:
        self.origin, self.path, self.version = origin, entry.path, origin.version
        main = StoredFile(entry, origin)
        found = index_tensors(entry.path, main.read, entry.size)
        if found is None:
            raise UnsupportedFormat(
                f"{entry.path!r} of version {origin.version} is not a tensor file mstore can read "
                "(safetensors, npz, ONNX, GGUF)"
            )
        inside = [t for t in found if t.offset + t.length <= entry.size]  # the index checks it; a second guard
        self._tensors = {t.name: _Located(main, t) for t in inside}
        if entry.path.endswith(".onnx"):
            self._tensors.update(self._external(entry, main))
        self._metadata = safetensors_metadata(main.read, entry.size) if entry.path.endswith(".safetensors") else {}

    def _external(self, entry: Entry, main: StoredFile) -> dict[str, _Located]:
        """The initializers an ONNX file of a folder model keeps in its other files (external data)."""
        files = {e.path: e for e in self.origin.manifest().files}
        found = onnx_external_tensors([(entry.path, main.read, entry.size)], {p: e.size for p, e in files.items()})
        out: dict[str, _Located] = {}
        for target, tensors in found.items():
            stored = StoredFile(files[target], self.origin)
            out.update((t.name, _Located(stored, t)) for t in tensors if t.name not in self._tensors)
        return out

    # -- the mapping -------------------------------------------------------------------------------------

    def __getitem__(self, name: str) -> np.ndarray:
        return self.get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tensors))

    def __len__(self) -> int:
        return len(self._tensors)

    def __enter__(self) -> TensorFile:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"<TensorFile {self.path!r} of version {self.version}: {len(self)} tensors>"

    # -- safe_open's surface -----------------------------------------------------------------------------

    def metadata(self) -> dict[str, str]:
        """The safetensors header's `__metadata__` ({} for other formats, or when there is none)."""
        return dict(self._metadata)

    def _find(self, name: str) -> _Located:
        found = self._tensors.get(name)
        if found is None:
            raise NotInModel(f"{self.path!r} has no tensor {name!r}{nearest(str(name), self._tensors)}")
        return found

    def get_bytes(self, name: str) -> bytes:
        """The tensor's bytes as stored (any dtype: quantized blocks, torch storages, a compressed npz
        entry's deflate stream), verified."""
        at = self._find(name)
        return at.file.read(at.tensor.offset, at.tensor.length)

    def get_tensor(self, name: str) -> np.ndarray:
        """The tensor as a numpy array of its dtype and shape (BF16 as float32, exactly), writable."""
        return self.get_slice(name)[...]

    def get_slice(self, name: str) -> TensorSlice:
        """A view to index (`[10:20]`, `[:, 3]`): only the rows the first index selects are read."""
        at = self._find(name)
        if at.tensor.inflated and isinstance(at.file, StoredFile):
            at = _inflate(at.file, at.tensor, self.path)
        return TensorSlice(at.file, at.tensor, self.path, self.origin.workers)

    def tensors(self) -> list[dict[str, Any]]:
        """Name, dtype, shape and size in bytes of every tensor, from the headers alone."""
        return [{**self._tensors[n].tensor.describe(), "size": self._tensors[n].tensor.length} for n in self]

    @property
    def bytes_fetched(self) -> int:
        return self.origin.stats.bytes_sent

    @property
    def objects_fetched(self) -> int:
        return self.origin.stats.objects_sent


class TensorSlice:
    """One tensor, indexable without reading it whole: `get_shape()`, `get_dtype()`, `[...]`."""

    def __init__(self, file: StoredFile | _Inflated, tensor: Tensor, path: str, workers: int = 1) -> None:
        self.file, self.tensor, self.path, self.workers = file, tensor, path, workers
        if tensor.dtype not in _NUMPY:
            raise UnsupportedFormat(
                f"{tensor.name!r} in {path!r} is {tensor.dtype}, which has no numpy dtype; get_bytes() gives its bytes"
            )
        self.dtype = np.dtype(_NUMPY[tensor.dtype])
        if math.prod(tensor.shape) * self.dtype.itemsize != tensor.length:  # the index checks it; a second guard
            raise UnsupportedFormat(f"{tensor.name!r} in {path!r}: its shape does not match its bytes")

    def get_shape(self) -> list[int]:
        return list(self.tensor.shape)

    def get_dtype(self) -> str:
        return self.tensor.dtype

    def _rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows [lo, hi) of the first axis (the whole tensor for a scalar), read and verified."""
        shape = self.tensor.shape
        row = math.prod(shape[1:]) * self.dtype.itemsize
        out = bytearray((hi - lo) * row if shape else self.tensor.length)
        self.file.readinto(self.tensor.offset + lo * row, memoryview(out), workers=self.workers)
        array = np.frombuffer(out, self.dtype).reshape((hi - lo, *shape[1:]) if shape else ())
        if self.tensor.dtype == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array

    def __getitem__(self, index: Any) -> np.ndarray:
        shape = self.tensor.shape
        key = index if isinstance(index, tuple) else (index,)
        first = key[0] if key else Ellipsis
        if not shape or self.tensor.fortran or not isinstance(first, (int, np.integer, slice)):
            whole = self._rows(0, shape[0] if shape else 1)
            if self.tensor.fortran:
                whole = np.frombuffer(whole.tobytes(), whole.dtype).reshape(shape, order="F")
            return np.array(whole[index]) if index is not Ellipsis else whole
        n, rest = shape[0], (slice(None), *key[1:])
        if isinstance(first, slice):
            picked = range(*first.indices(n))
            if not picked:
                return np.array(self._rows(0, 0)[rest])
            lo, hi = min(picked), max(picked) + 1
            rows = self._rows(lo, hi)  # only the rows the slice covers are read
            if picked.step != 1:  # rows holds picked's first and last rows at its two ends
                rows = rows[:: picked.step]
            return np.array(rows[rest]) if len(key) > 1 else rows
        i = int(first)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of bounds for axis 0 of {self.tensor.name!r} (size {n})")
        i %= n
        return np.array(self._rows(i, i + 1)[0][key[1:]])
