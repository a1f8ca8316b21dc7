"""Find the tensors inside a model file by parsing headers only: safetensors' JSON header, the zip
central directory of `.npz` archives and `torch.save` checkpoints, `.npy` headers, the initializers of
ONNX models (mstore.onnxfile walks the protobuf wire format) and the tensor table of GGUF files
(mstore.gguffile).

Nothing here unpickles, imports or executes model content. In a `torch.save` zip the tensor names
live in a pickle, which is not read: each storage (`<archive>/data/<key>`) is reported as one tensor
of bytes instead.
"""

from __future__ import annotations

import ast
import json
import posixpath
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .binread import Malformed
from .gguf import gguf_tensors
from .onnx import Initializer, initializers
from .pickles import joblib_arrays, looks_like_pickle

Read = Callable[[int, int], bytes]

MAX_HEADER = 100 << 20
ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip
_NPY_DTYPES = {
    "f8": "F64", "f4": "F32", "f2": "F16", "i8": "I64", "i4": "I32", "i2": "I16", "i1": "I8",
    "u8": "U64", "u4": "U32", "u2": "U16", "u1": "U8", "b1": "BOOL",
}  # fmt: skip
BYTES = "BYTES"  # a blob of unknown element type (a torch storage, a compressed zip entry)
# ONNX TensorProto.DataType -> dtype (the others: complex, FNUZ floats, 4-bit types, strings -> BYTES)
_ONNX_DTYPES = {
    1: "F32", 2: "U8", 3: "I8", 4: "U16", 5: "I16", 6: "I32", 7: "I64", 9: "BOOL", 10: "F16", 11: "F64",
    12: "U32", 13: "U64", 16: "BF16", 17: "F8_E4M3", 19: "F8_E5M2",
}  # fmt: skip


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # safetensors names: F32, BF16, ...; BYTES when unknown; a ggml block type (Q8_0) for GGUF
    shape: tuple[int, ...]
    offset: int  # byte offset of the data in the file
    length: int  # bytes
    fortran: bool = False  # elements in column-major order (an .npy written with fortran_order=True)
    inflated: int = 0  # a deflate-compressed zip entry (np.savez_compressed): its size once inflated

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


class NotTensors(Exception):
    """The file is not (or not validly) a tensor container."""


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _safetensors_header(read: Read, size: int) -> tuple[dict[str, Any], int]:
    """The JSON header and where the data starts."""
    if size < 8:
        raise NotTensors("too small")
    (n,) = struct.unpack("<Q", read(0, 8))
    if n == 0 or n > MAX_HEADER or 8 + n > size:
        raise NotTensors("bad header length")
    try:
        header = json.loads(read(8, n))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise NotTensors("header is not JSON") from None
    if not isinstance(header, dict):
        raise NotTensors("header is not an object")
    return header, 8 + n


def safetensors_metadata(read: Read, size: int) -> dict[str, str]:
    """The header's `__metadata__` (free-form text pairs, as `safe_open(...).metadata()` gives them);
    {} when there is none or it is not a map of strings."""
    found = _safetensors_header(read, size)[0].get("__metadata__")
    if not isinstance(found, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
        return {}
    return dict(found)


def safetensors_index(read: Read, size: int) -> list[Tensor]:
    header, base = _safetensors_header(read, size)
    out = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise NotTensors(f"bad entry {name!r}") from None
        if not (isinstance(dtype, str) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise NotTensors(f"bad entry {name!r}")
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= size - base):
            raise NotTensors(f"bad offsets for {name!r}")
        if dtype in ITEMSIZE and _numel(shape) * ITEMSIZE[dtype] != end - begin:
            raise NotTensors(f"size mismatch for {name!r}")
        out.append(Tensor(name, dtype, shape, base + begin, end - begin))
    return sorted(out, key=lambda t: t.name)


def _zip_entries(read: Read, size: int) -> list[tuple[str, int, int, int, int]]:
    """(name, method, data offset, compressed size, uncompressed size) of every entry, from the central
    directory."""
    tail_len = min(size, 65557)
    tail = read(size - tail_len, tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        raise NotTensors("no zip directory")
    count, cd_size, cd_offset = struct.unpack("<HII", tail[at + 10 : at + 20])
    if cd_offset == 0xFFFFFFFF or count == 0xFFFF:  # zip64
        loc = tail.rfind(b"PK\x06\x07", 0, at)
        if loc < 0:
            raise NotTensors("no zip64 locator")
        (eocd64,) = struct.unpack("<Q", tail[loc + 8 : loc + 16])
        rec = read(eocd64, 56)
        if rec[:4] != b"PK\x06\x06":
            raise NotTensors("bad zip64 record")
        count, cd_size, cd_offset = struct.unpack("<QQQ", rec[32:56])
    if cd_offset + cd_size > size or count > 1_000_000:
        raise NotTensors("bad zip directory")
    cd, pos, out = read(cd_offset, cd_size), 0, []
    for _ in range(count):
        if cd[pos : pos + 4] != b"PK\x01\x02":
            raise NotTensors("bad central directory entry")
        (method,) = struct.unpack("<H", cd[pos + 10 : pos + 12])
        csize, usize = struct.unpack("<II", cd[pos + 20 : pos + 28])
        nlen, elen, clen = struct.unpack("<HHH", cd[pos + 28 : pos + 34])
        (lho,) = struct.unpack("<I", cd[pos + 42 : pos + 46])
        name = cd[pos + 46 : pos + 46 + nlen].decode("utf-8", "replace")
        extra = cd[pos + 46 + nlen : pos + 46 + nlen + elen]
        usize, csize, lho = _zip64_sizes(extra, usize, csize, lho)
        pos += 46 + nlen + elen + clen
        local = read(lho, 30)
        if local[:4] != b"PK\x03\x04":
            raise NotTensors("bad local header")
        lnlen, lelen = struct.unpack("<HH", local[26:30])
        data = lho + 30 + lnlen + lelen
        if data + csize > size:
            raise NotTensors("entry outside the file")
        out.append((name, method, data, csize, usize))
    return out


def _zip64_sizes(extra: bytes, usize: int, csize: int, lho: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack("<HH", extra[pos : pos + 4])
        if tag == 1:
            fields, p = extra[pos + 4 : pos + 4 + length], 0
            if usize == 0xFFFFFFFF:
                (usize,) = struct.unpack("<Q", fields[p : p + 8])
                p += 8
            if csize == 0xFFFFFFFF:
                (csize,) = struct.unpack("<Q", fields[p : p + 8])
                p += 8
            if lho == 0xFFFFFFFF:
                (lho,) = struct.unpack("<Q", fields[p : p + 8])
        pos += 4 + length
    return usize, csize, lho


_NPY_HEADER = re.compile(r"\{.*\}", re.S)


def _npy_tensor(name: str, read: Read, offset: int, length: int) -> Tensor:
    head = read(offset, min(length, 10))
    if head[:6] != b"\x93NUMPY" or len(head) < 10:
        raise NotTensors("not an npy entry")
    major = head[6]
    if major == 1:
        (hlen,) = struct.unpack("<H", head[8:10])
        start = 10
    else:
        (hlen,) = struct.unpack("<I", read(offset + 8, 4))
        start = 12
    if hlen > 1 << 20 or start + hlen > length:
        raise NotTensors("bad npy header")
    text = read(offset + start, hlen).decode("latin-1")
    match = _NPY_HEADER.search(text)
    if match is None:
        raise NotTensors("bad npy header")
    try:  # literal_eval evaluates literals only: no names, calls or attributes
        header = ast.literal_eval(match.group(0))
        descr, shape, fortran = header["descr"], tuple(header["shape"]), header.get("fortran_order") is True
    except (ValueError, SyntaxError, TypeError, KeyError, MemoryError, RecursionError):
        raise NotTensors("bad npy header") from None
    data_offset, data_len = offset + start + hlen, length - start - hlen
    # Crafted headers: every value is checked before it is used (a string "dimension" times 10**9 would
    # allocate gigabytes), and the shape must fit in the bytes actually present.
    if not isinstance(descr, str) or len(shape) > 64:
        raise NotTensors("bad npy header")
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= data_len for d in shape):
        raise NotTensors("bad npy shape")
    dtype = _NPY_DTYPES.get(descr[1:], BYTES) if isinstance(descr, str) and len(descr) >= 2 else BYTES
    if str(descr)[:1] == ">" and dtype != BYTES and ITEMSIZE[dtype] > 1:
        dtype = BYTES  # big-endian: compare as bytes
    if dtype != BYTES and _numel(shape) * ITEMSIZE[dtype] != data_len:
        dtype = BYTES  # object arrays and the like: bytes only, never unpickled
    return Tensor(
        name, dtype, shape if dtype != BYTES else (data_len,), data_offset, data_len, fortran and dtype != BYTES
    )


def inflated_npy(name: str, data: bytes) -> Tensor:
    """The array inside an inflated npz entry (`data`: the whole .npy), located within `data`."""

    def read(offset: int, length: int) -> bytes:
        return data[offset : offset + length]

    return _npy_tensor(name, read, 0, len(data))


def zip_index(read: Read, size: int) -> list[Tensor]:
    out = []
    for name, method, offset, length, inflated in _zip_entries(read, size):
        if name.endswith("/"):
            continue
        if method == 0 and name.endswith(".npy"):
            try:
                out.append(_npy_tensor(name[:-4], read, offset, length))
                continue
            except NotTensors:
                pass
        if method == 0 and re.search(r"(^|/)data/[^/]+$", name):  # a torch.save storage
            out.append(Tensor(name, BYTES, (length,), offset, length))
        elif name.endswith(".npy"):  # compressed npz entry: compared as a whole
            out.append(Tensor(name[:-4], BYTES, (length,), offset, length, inflated=inflated if method == 8 else 0))
    if not out:
        raise NotTensors("no tensors in zip")
    return sorted(out, key=lambda t: t.name)


def joblib_index(read: Read, size: int, fingerprint: tuple[int, ...] | None = None) -> list[Tensor]:
    """The arrays joblib wrote raw into its pickle stream (mstore.pickles walks the opcodes; nothing is
    unpickled), named by where they sit (`steps[1][1].coef_`)."""
    out = []
    for a in joblib_arrays(read, size, fingerprint):
        dtype = _NPY_DTYPES.get(a.dtype[1:], BYTES) if a.dtype[:1] in ("<", "|") else BYTES
        out.append(Tensor(a.name, dtype, a.shape, a.offset, a.length))
    if not out:
        raise NotTensors("no joblib arrays")
    return out


def _unique(tensors: list[Tensor]) -> list[Tensor]:
    """Sorted by name, a repeated name made unique with `#<n>` (diffs and deltas pair tensors by name)."""
    seen: set[str] = set()
    taken = {t.name for t in tensors}  # a made-up name must not be one the file uses itself
    out = []
    for i, t in enumerate(tensors):
        name, n = t.name, i
        while name in seen or (name != t.name and name in taken):
            name, n = f"{t.name}#{n}", n + 1
        seen.add(name)
        out.append(t if name == t.name else Tensor(name, t.dtype, t.shape, t.offset, t.length))
    return sorted(out, key=lambda t: t.name)


def _onnx_tensor(init: Initializer, index: int, length: int) -> Tensor:
    dtype = _ONNX_DTYPES.get(init.data_type, BYTES) if init.encoding == "raw" else BYTES
    if dtype != BYTES and _numel(init.dims) * ITEMSIZE[dtype] != length:
        dtype = BYTES
    shape = init.dims if dtype != BYTES else (length,)
    return Tensor(init.name or f"initializer{index}", dtype, shape, init.offset, length)


def onnx_index(read: Read, size: int) -> list[Tensor]:
    """The initializers whose bytes lie inside the .onnx file itself (raw_data, packed float_data ...)."""
    try:
        found = initializers(read, size)
    except Malformed as exc:
        raise NotTensors(str(exc)) from None
    out = [
        _onnx_tensor(init, i, init.length)
        for i, init in enumerate(found)
        if init.location is None and init.length  # inline data always has a length
    ]
    if not out:
        raise NotTensors("no initializers stored in the file")
    return _unique(out)


def onnx_external_tensors(models: Iterable[tuple[str, Read, int]], sizes: Mapping[str, int]) -> dict[str, list[Tensor]]:
    """For a directory model: the tensors its `.onnx` files place in other files of the directory (ONNX
    external data), by that file's path. `models` are (path, read, size) of the .onnx files, `sizes` the
    size of every file of the directory (paths relative to it, `/`-separated). A location must name one of
    those files (relative to its .onnx file's folder, checked by onnxfile.check_location: never outside
    the directory) and each range must lie inside it; anything else is left out, and a model file that
    does not parse contributes nothing."""
    found: dict[str, list[Tensor]] = {}
    for rel, read, size in models:
        try:
            inits = initializers(read, size)
        except (Malformed, struct.error, ValueError):
            continue
        folder = posixpath.dirname(rel)
        for i, init in enumerate(inits):
            if init.location is None:
                continue
            target = posixpath.join(folder, init.location) if folder else init.location
            total = sizes.get(target)
            if total is None or target == rel:
                continue
            length = total - init.offset if init.length is None else init.length
            if length > 0 and init.offset + length <= total:
                found.setdefault(target, []).append(_onnx_tensor(init, i, length))
    return {target: _unique(sorted(set(ts), key=lambda t: (t.name, t.offset))) for target, ts in found.items()}


def gguf_index(read: Read, size: int) -> list[Tensor]:
    """The tensors of a GGUF file; shapes in numpy order (GGUF lists dims fastest first). The ggml type
    names of plain types are the dtype names used here (F32, F16, BF16, F64, I8 ... I64); a block type's
    name (Q4_0, Q8_0, Q4_K, ...) becomes the dtype as it is: not in ITEMSIZE, so its pieces are stored
    whole per tensor and never byte-grouped, and diff compares its bytes."""
    try:
        found = gguf_tensors(read, size)
    except Malformed as exc:
        raise NotTensors(str(exc)) from None
    if not found:
        raise NotTensors("no tensors")
    return _unique([Tensor(t.name, t.type_name, t.dims[::-1], t.offset, t.length) for t in found])


def index_tensors(path: str, read: Read, size: int, *, joblib: bool = False) -> list[Tensor] | None:
    """The tensors of a safetensors / npz / torch zip / GGUF file or of the initializers stored inside an
    `.onnx` file (with `joblib`, also the arrays of a joblib file), or None for any other file.

    Every joblib array is reported to `diff`; the chunker cuts out only those where it pays
    (chunking.ModelAwareChunker.joblib_regions): cutting every array as a tensor stored a retrained
    TF-IDF pipeline in 1.7x the bytes, because arrays of few distinct values compress far better whole."""
    try:
        if path.endswith(".safetensors"):
            return safetensors_index(read, size)
        head = read(0, 4) if size >= 4 else b""
        if head == b"PK\x03\x04":
            return zip_index(read, size)
        if head == b"GGUF":
            return gguf_index(read, size)
        if path.endswith(".onnx"):  # ONNX has no magic number: any parse failure means opaque bytes
            return onnx_index(read, size)
        if joblib and looks_like_pickle(head):
            return joblib_index(read, size)
    except (NotTensors, struct.error, ValueError):
        return None
    return None


def safetensors_bytes(tensors: dict[str, tuple[str, Any]]) -> bytes:
    """Serialise `{name: (dtype, array)}` as a safetensors file (8-byte header length, JSON header,
    then each array's bytes in order). For tests and benchmarks; `array` is anything with `.tobytes()`
    and `.shape` (a numpy array)."""
    header: dict[str, object] = {}
    blobs, offset = [], 0
    for name, (dtype, array) in tensors.items():
        raw = array.tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + b"".join(blobs)
