"""How an object's bytes are kept on disk: raw, or in a small envelope that says how to decode them.

    raw object        the bytes themselves (so `b3sum` of the file prints its name)
    encoded object    MAGIC | codec u8 | width u8 | size u64le | check 8B | [base id 32B | depth u8] | payload

`check` is the first 8 bytes of the blake3 of every other byte of the envelope: any damage to the file,
even to a bit the decompressor would ignore, is found before anything is decompressed.

codecs: 0 identity (raw content that happens to start with MAGIC), 1 zstd, 2 zstd of the bytes grouped
into `width` planes (byte 0 of every element, then byte 1, ...: float exponents compress, mantissas do
not), 3 the same of the XOR with a base object of equal size (a lossless delta against the parent
model's tensor), 4 the bytes grouped into `width` planes, each
plane stored raw or as its own zstd frame (chosen per plane from a sample: random mantissa planes are
kept raw, never fed to zstd), 5 the same of the XOR with a base object (4 and 5 are written by format-3
stores only). The object id is always the blake3 of the *decoded* bytes, so dedup is by content and
fsck verifies after decoding. Decoding never produces more than the declared size, and the declared
size must match what the caller (the manifest) expects.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import blake3
import zstandard

from ..errors import CorruptObject

MAGIC = b"MSZ\x01"
IDENTITY, ZSTD, GROUPED, XOR_DELTA, PLANES, PLANES_XOR_DELTA = 0, 1, 2, 3, 4, 5
DELTAS = (XOR_DELTA, PLANES_XOR_DELTA)
PLANE_CODECS = (PLANES, PLANES_XOR_DELTA)  # format 3 only: a format-2 reader does not know them
_HEAD = struct.Struct("<4sBBQ")
_PLANE = struct.Struct("<BI")  # per plane: how it is stored (PLANE_RAW / PLANE_ZSTD), stored length
PLANE_RAW, PLANE_ZSTD = 0, 1
SAMPLE = 8 << 10  # bytes per sample slice; three slices decide whether a plane is worth compressing
PLANES_MIN = 64 << 10  # smaller objects keep one zstd stream (codec 2): per-plane framing does not pay
CHECK = 8
MAX_DEPTH = 4  # a delta chain longer than this gets a full copy instead (a keyframe)
MAX_OBJECT = 256 << 20  # chunks are at most 64 MiB and manifests at most 256 MiB
HEADER_BYTES = 64  # enough for any envelope header (MAGIC, codec, width, size, check, base id, depth: 55)
DELTA_GAIN = 0.9  # a delta is kept only when it is this much smaller than the plain encoding
SURE_DELTA = 0.75  # a delta estimated below this share of the plain estimate is built alone (one encode)


@dataclass(frozen=True)
class Header:
    codec: int
    width: int
    size: int
    base: str | None
    depth: int
    payload_offset: int


def parse_header(blob: bytes) -> Header | None:
    """The envelope header, or None for a raw object."""
    if not blob.startswith(MAGIC):
        return None
    start = _HEAD.size + CHECK
    if len(blob) < start:
        raise CorruptObject("object envelope is truncated")
    _, codec, width, size = _HEAD.unpack_from(blob)
    if codec > PLANES_XOR_DELTA or width not in (1, 2, 4, 8) or size > MAX_OBJECT:
        raise CorruptObject("object envelope header is invalid")
    if codec in DELTAS:
        if len(blob) < start + 33:
            raise CorruptObject("delta object header is truncated")
        base = blob[start : start + 32].hex()
        return Header(codec, width, size, base, blob[start + 32], start + 33)
    return Header(codec, width, size, None, 0, start)


_contexts = threading.local()


def _decompressor() -> zstandard.ZstdDecompressor:
    """This thread's zstd decompression context, made once (not once per plane or object)."""
    context: zstandard.ZstdDecompressor | None = getattr(_contexts, "decompressor", None)
    if context is None:
        context = _contexts.decompressor = zstandard.ZstdDecompressor()
    return context


def verify_envelope(blob: bytes, expected_size: int | None, oid: str) -> Header | None:
    """The header of an encoded object after checking its envelope checksum and declared size (None: raw).

    Lets a chain walker reject a damaged top object before it reads any delta base."""
    try:
        return _checked_header(blob, expected_size)
    except CorruptObject as exc:
        raise CorruptObject(f"object {oid}: {exc}") from None


def _checked_header(blob: bytes, expected_size: int | None) -> Header | None:
    """parse_header, then the envelope checksum and the declared size (None: a raw object)."""
    header = parse_header(blob)
    if header is None:
        return None
    view = memoryview(blob)
    if view[_HEAD.size : _HEAD.size + CHECK] != _check(view[: _HEAD.size], view[_HEAD.size + CHECK :]):
        raise CorruptObject("object envelope fails its checksum")
    if expected_size is not None and header.size != expected_size:
        raise CorruptObject(f"object declares {header.size} bytes, the manifest expects {expected_size}")
    return header


def _check(head: bytes | memoryview, tail: bytes | memoryview) -> bytes:
    """The envelope checksum: blake3 of the fixed header and everything after the check field."""
    return blake3.blake3(head).update(tail).digest()[:CHECK]


_WORD = {2: "<u2", 4: "<u4", 8: "<u8"}  # an element as one little-endian integer: byte i is bits 8i..8i+7


def group(data: bytes, width: int) -> bytes:
    """Byte planes: every element's byte 0, then every element's byte 1, ..."""
    if width == 1 or len(data) % width:
        return data
    import numpy as np

    if width == 2:  # a strided gather is fastest for 2 bytes (3.2 GB/s; shifts need a widening cast)
        planes: bytes = np.frombuffer(data, np.uint8).reshape(-1, width).T.tobytes()
        return planes
    # wider elements: shift each plane out of the element read as one integer, a contiguous pass per
    # plane (4.5 against 3.2 GB/s for fp32, in one thread; docs/benchmarks.md)
    words = np.frombuffer(data, _WORD[width])
    out = np.empty((width, len(words)), np.uint8)
    for i in range(width):
        np.copyto(out[i], words >> np.uint8(8 * i), casting="unsafe")
    return out.tobytes()


def _split_planes(data: bytes, width: int, base: bytes | bytearray | None = None) -> memoryview:
    """`group(data, width)` (of `xor(data, base)` when a base is given) as one flat buffer, without the
    copies: the XOR is done on whole elements and each plane is shifted out of them in place, so the
    XORed bytes are never materialized and the planes are never copied into a `bytes`.

    Same bytes as `group(xor(data, base), width)` (tests/test_codec.py checks it); 4 MiB bf16: 1.5 ms
    against 3.8 ms, fp32 (8 MiB) 9 ms against 15 ms, in one thread (docs/benchmarks.md)."""
    import numpy as np

    word = _WORD.get(width)
    if word is None or len(data) % width:
        return memoryview(group(xor(data, base) if base is not None else data, width))
    words = np.frombuffer(data, word)
    if base is not None:
        words = words ^ np.frombuffer(base, word)
    elif width > 2:
        words = words.copy()  # shifted in place below
    out = np.empty((width, len(words)), np.uint8)
    np.copyto(out[0], words, casting="unsafe")
    for i in range(1, width):
        if width == 2:  # the last plane: shift into a fresh array when `words` is the caller's data
            np.copyto(out[i], words >> np.uint16(8), casting="unsafe")
        else:
            words >>= np.uint8(8)
            np.copyto(out[i], words, casting="unsafe")
    return out.reshape(-1).data  # a flat uint8 memoryview of the planes


def ungroup(data: bytes, width: int) -> bytes | bytearray:
    if width == 1 or len(data) % width:
        return data
    n = len(data) // width
    return _interleave([memoryview(data)[i * n : (i + 1) * n] for i in range(width)], width, len(data))


def _interleave(planes: list[bytes | memoryview], width: int, size: int) -> bytearray:
    """Elements from their byte planes, assembled in the bytearray that is returned (no second copy).

    2-byte elements (bf16, fp16): the high plane shifted into the element integer in one widening pass,
    then the low plane OR-ed in (two passes, no temporary: 6x faster than widening each plane into a
    temporary, shifting and OR-ing). Wider ones: one strided column write per plane, which measured
    1.5-1.8x faster here than shifts through a temporary (thread CPU time, 4 MiB; docs/benchmarks.md)."""
    import numpy as np

    elements = bytearray(size)
    if width == 2:
        words = np.frombuffer(elements, np.uint16)
        np.left_shift(np.frombuffer(planes[1], np.uint8), 8, out=words, dtype=np.uint16)
        np.bitwise_or(words, np.frombuffer(planes[0], np.uint8), out=words, casting="unsafe")
        return elements
    out = np.frombuffer(elements, np.uint8).reshape(-1, width)
    for i, part in enumerate(planes):  # one contiguous read per plane
        out[:, i] = np.frombuffer(part, np.uint8)
    return elements


def xor(a: bytes | bytearray, b: bytes | bytearray) -> bytes:
    import numpy as np

    return np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)).tobytes()


def _envelope(
    codec: int,
    width: int,
    size: int,
    payload: bytes | list[bytes | memoryview],
    base: str | None = None,
    depth: int = 0,
) -> bytes:
    head = _HEAD.pack(MAGIC, codec, width, size)
    prefix = bytes.fromhex(base) + bytes([depth]) if base is not None else b""
    parts = payload if isinstance(payload, list) else [payload]
    check = blake3.blake3(head).update(prefix)
    for part in parts:
        check.update(part)
    return b"".join((head, check.digest()[:CHECK], prefix, *parts))


@dataclass(frozen=True)
class DeltaBase:
    """The parent's same piece, tried as an XOR delta: its object id, its content (or a function that reads
    it, verified, and gives None when it cannot), and its depth in a delta chain."""

    oid: str
    content: bytes | Callable[[], bytes | None]
    depth: int

    def read(self) -> bytes | None:
        return self.content() if callable(self.content) else self.content


class Encoder:
    """Chooses the smallest encoding of one object. zstd contexts are per thread: make one per worker.

    Tensor pieces use a fast level (their entropy is in the exponent plane, which level 1 already
    captures); opaque chunks (pickles, headers) a stronger one, where it pays.
    """

    def __init__(self, level: int = 1, opaque_level: int | None = None, *, planes: bool = False) -> None:
        self._tensor = zstandard.ZstdCompressor(level=level)
        self._opaque = self._tensor if opaque_level in (None, level) else zstandard.ZstdCompressor(level=opaque_level)
        self.planes = planes  # codecs 4 and 5 (format-3 stores)
        # Byte planes of float tensors have few distinct values and few long repeats: a longer minimum
        # match and a tiny hash table find the same repeats, and the entropy coder does the rest. On
        # fp32, bf16 and XOR-delta planes this compresses 0.3-2% smaller than plain level 1 and runs
        # 1.5-2.5x faster (measured; docs/benchmarks.md).
        params = zstandard.ZstdCompressionParameters.from_level(level, min_match=7, hash_log=6)
        self._plane = zstandard.ZstdCompressor(compression_params=params)

    def _plan(self, data: bytes, width: int, base_sample: bytes | None = None) -> tuple[list[bool], float]:
        """Which byte planes are worth compressing, and the estimated payload bytes per content byte.

        Decided from a sample of whole elements (`sample_spans`: start, middle and end of `data`, XORed
        with `base_sample`, the base's bytes at the same spans, when planning a delta): random mantissa
        bytes never shrink, and skipping zstd on them is most of a save's speed.
        """
        sample = b"".join(data[a:b] for a, b in sample_spans(len(data), width))
        if base_sample is not None:
            sample = xor(sample, base_sample)
        grouped, m = group(sample, width), len(sample) // width
        decisions, estimate = [], 0
        for i in range(width):
            packed = len(self._plane.compress(grouped[i * m : (i + 1) * m]))
            decisions.append(packed < 0.97 * m)
            estimate += packed if decisions[-1] else m
        return decisions, estimate / max(len(sample), 1)

    def _planes(self, grouped: bytes | memoryview, width: int, decisions: list[bool]) -> list[bytes | memoryview]:
        """Payload parts of codecs 4/5: a (how, length) table, then each plane raw or as its own zstd frame."""
        view = memoryview(grouped)
        n = len(view) // width
        table, parts = [], []
        for i in range(width):
            stored: bytes | memoryview = view[i * n : (i + 1) * n]
            how = PLANE_RAW
            if decisions[i]:
                packed = self._plane.compress(stored)
                if len(packed) < n:
                    how, stored = PLANE_ZSTD, packed
            table.append(_PLANE.pack(how, len(stored)))
            parts.append(stored)
        return [b"".join(table), *parts]

    def encode(
        self,
        data: bytes,
        width: int = 1,
        base: DeltaBase | None = None,
        *,
        tensor: bool = True,
        base_sample: bytes | None = None,
    ) -> bytes:
        """Bytes to store for `data`: raw when nothing wins, else the smallest envelope.

        `width` > 1 groups bytes into planes (for float tensors); `base` is the parent's same tensor,
        tried as an XOR delta and kept only when clearly smaller; its content is read only when a delta is tried:
        with byte planes, `base_sample` (the base's bytes at `sample_spans`, from `sample_of`) first
        estimates the delta, so a base is not even read for all-new content.
        """
        compress = (self._tensor if tensor else self._opaque).compress
        n = len(data)
        if self.planes and width > 1 and n % width == 0 and n >= PLANES_MIN:
            return self._encode_planes(data, width, base, base_sample)
        candidates: list[bytes] = []
        if width > 1 and n % width == 0:
            candidates.append(_envelope(GROUPED, width, n, compress(group(data, width))))
        else:
            candidates.append(_envelope(ZSTD, 1, n, compress(data)))
        if base is not None and base.depth < MAX_DEPTH:
            w = width if width > 1 and n % width == 0 else 1
            content = base.read()
            if content is not None and len(content) == n:
                payload = compress(group(xor(data, content), w))
                if len(payload) < 0.9 * len(candidates[0]):
                    candidates.append(_envelope(XOR_DELTA, w, n, payload, base.oid, base.depth + 1))
        return _smallest(candidates, data)

    def _encode_planes(self, data: bytes, width: int, base: DeltaBase | None, base_sample: bytes | None) -> bytes:
        """Codec 4 or 5, building only the one the sample estimates to win (both when too close to call).

        A delta is kept only when it is clearly smaller (below DELTA_GAIN of the plain encoding), as when
        both were always built; the estimate only spares building the loser. A delta estimated below
        SURE_DELTA of the plain estimate is built alone; one estimated at DELTA_GAIN or more is not built."""
        n = len(data)
        plain_decisions, plain_estimate = self._plan(data, width)

        def plain() -> bytes:
            return _envelope(PLANES, width, n, self._planes(_split_planes(data, width), width, plain_decisions))

        if base is None or base.depth >= MAX_DEPTH:
            return _smallest([plain()], data)
        content: bytes | None = None
        if base_sample is None or len(base_sample) != sum(b - a for a, b in sample_spans(n, width)):
            content = base.read()  # read once: sampled here, XORed below
            if content is None or len(content) != n:
                return _smallest([plain()], data)
            base_sample = b"".join(content[a:b] for a, b in sample_spans(n, width))
        decisions, estimate = self._plan(data, width, base_sample)
        if estimate >= DELTA_GAIN * plain_estimate:  # cannot win (all-new content): the base is not read
            return _smallest([plain()], data)
        if content is None:
            content = base.read()
        if content is None or len(content) != n:
            return _smallest([plain()], data)
        parts = self._planes(_split_planes(data, width, content), width, decisions)
        delta = _envelope(PLANES_XOR_DELTA, width, n, parts, base.oid, base.depth + 1)
        # sure enough to skip the plain build: the delta must still beat the plain estimate clearly
        if estimate < SURE_DELTA * plain_estimate and len(delta) < DELTA_GAIN * plain_estimate * n:
            return _smallest([delta], data)
        first = plain()
        return _smallest([first, delta] if len(delta) < DELTA_GAIN * len(first) else [first], data)


@dataclass
class Compression:
    """How new objects are encoded; `None` keeps them raw (format-1 stores)."""

    level: int = 1  # tensor pieces
    opaque_level: int = 3  # everything else
    delta: bool = True
    planes: bool = False  # codecs 4/5: each byte plane raw or compressed on its own (format-3 stores)
    grouping: bool = True  # byte-group float tensors (mstore.json's `byte_grouping`)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def encoder(self) -> Encoder:
        enc: Encoder | None = getattr(self._local, "encoder", None)
        if enc is None:
            enc = self._local.encoder = Encoder(self.level, self.opaque_level, planes=self.planes)
        return enc


def _smallest(candidates: list[bytes], data: bytes) -> bytes:
    best = min(candidates, key=len)
    return best if len(best) < 0.97 * len(data) else as_raw(data)


def sample_spans(n: int, width: int) -> list[tuple[int, int]]:
    """Byte ranges of whole elements that the plane decisions sample: start, middle and end."""
    k = SAMPLE * width
    if n <= 3 * k:
        return [(0, n)]
    mid = (n // 2) // width * width
    return [(0, k), (mid, mid + k), (n - k, n)]


ReadAt = Callable[[int, int], bytes]  # (offset, length) -> at most that many bytes of a stored object


def sample_of(blob: bytes, size: int, width: int) -> bytes | None:
    """The content bytes at `sample_spans(size, width)` of a stored object, cheaply, or None if not cheap."""
    return sample_at(lambda offset, length: blob[offset : offset + length], len(blob), size, width)


def sample_at(read: ReadAt, stored_size: int, size: int, width: int) -> bytes | None:
    """`sample_of` for an object read by position: only the bytes the sample needs are read.

    Only raw objects and codec 4 are sampled (no hash is checked: a sample only steers which encoding
    is tried; the bytes a delta is actually made against are read in full and verified). Of a codec-4
    object of fp32 that is its header, plane table, the compressed exponent plane and three slices of
    each raw plane: about a sixth of the file, where reading it all cost a save a second read of the
    parent's every stored byte.
    """
    spans = sample_spans(size, width)
    head = read(0, HEADER_BYTES)
    if not head.startswith(MAGIC):
        return b"".join(read(a, b - a) for a, b in spans) if stored_size == size else None
    try:
        header = parse_header(head)
    except CorruptObject:
        return None
    if header is None or header.codec != PLANES or header.width != width or header.size != size or size % width:
        return None
    n, offset = size // width, header.payload_offset + width * _PLANE.size
    table = read(header.payload_offset, width * _PLANE.size)
    if len(table) != width * _PLANE.size:
        return None
    import numpy as np

    columns: list[list[np.ndarray]] = [[] for _ in spans]  # per span, each plane's bytes of it
    for i in range(width):
        how, length = _PLANE.unpack_from(table, i * _PLANE.size)
        if offset + length > stored_size:
            return None
        if how == PLANE_ZSTD:
            try:
                plane = _decompressor().decompress(read(offset, length), max_output_size=n)
            except (zstandard.ZstdError, MemoryError):
                return None
            if len(plane) != n:
                return None
            for column, (a, b) in zip(columns, spans, strict=True):
                column.append(np.frombuffer(plane, np.uint8, b // width - a // width, a // width))
        elif how == PLANE_RAW and length == n:
            for column, (a, b) in zip(columns, spans, strict=True):
                part = read(offset + a // width, b // width - a // width)
                if len(part) != b // width - a // width:
                    return None
                column.append(np.frombuffer(part, np.uint8))
        else:
            return None
        offset += length
    parts = []
    for column, (a, b) in zip(columns, spans, strict=True):
        out = np.empty((b // width - a // width, width), np.uint8)
        for i, plane_part in enumerate(column):
            out[:, i] = plane_part
        parts.append(out.tobytes())
    return b"".join(parts)


def is_delta(stored: bytes) -> bool:
    return stored[: len(MAGIC)] == MAGIC and len(stored) > len(MAGIC) and stored[len(MAGIC)] in DELTAS


def as_raw(data: bytes) -> bytes:
    """Raw storage for `data`: itself, unless it starts with MAGIC and would be mistaken for an envelope."""
    return _envelope(IDENTITY, 1, len(data), data) if data.startswith(MAGIC) else data


def stored_form(
    content: bytes, blob: bytes, source_envelopes: bool, target_envelopes: bool, target_planes: bool
) -> bytes:
    """The bytes to store on the receiving side: encodings travel as they are between stores that read
    them; a format-2 store (`target_planes` False) receives codec 4/5 objects as their raw content, so
    the mstore versions that wrote it can still read everything in it."""
    if not target_envelopes:
        return content
    if not source_envelopes:
        return as_raw(content)
    if not target_planes and blob.startswith(MAGIC) and blob[len(MAGIC)] in PLANE_CODECS:
        return as_raw(content)
    return blob


def decode(
    blob: bytes,
    expected_size: int | None,
    load_base: Callable[[str, int], bytes],
    *,
    buffer: bool = False,
    checked: Header | None = None,
) -> bytes:
    """The object's content; never larger than the declared (and expected) size.

    With `buffer`, byte-grouped content comes back as the bytearray it was assembled in (a bytes-like
    object, unhashable: for callers that only write, hash or XOR it), saving a copy of every byte.
    `checked`: the header `verify_envelope` returned for this very blob (its checksum and size were
    checked already: not hashed a second time).
    """
    data: bytes | bytearray
    header = checked if checked is not None else _checked_header(blob, expected_size)
    if header is None:
        return blob
    view = memoryview(blob)
    if header.codec == IDENTITY:
        data = blob[header.payload_offset :]
    elif header.codec in (PLANES, PLANES_XOR_DELTA):
        data = _unplanes(view[header.payload_offset :], header.width, header.size)
    else:
        try:
            data = _decompressor().decompress(view[header.payload_offset :], max_output_size=header.size)
        except (zstandard.ZstdError, MemoryError) as exc:
            raise CorruptObject(f"object does not decompress: {exc}") from None
        data = ungroup(data, header.width) if header.codec in (GROUPED, XOR_DELTA) else data
    if header.codec in DELTAS:
        assert header.base is not None
        if len(data) != header.size:
            raise CorruptObject("delta has the wrong size")
        base = load_base(header.base, header.size)
        if isinstance(data, bytearray) and len(base) == len(data):  # codec 5: XOR in place, no copy
            import numpy as np

            target = np.frombuffer(data, np.uint8)
            np.bitwise_xor(target, np.frombuffer(base, np.uint8), out=target)
        else:
            data = xor(data, base)
    if len(data) != header.size:
        raise CorruptObject(f"object decodes to {len(data)} bytes, not the declared {header.size}")
    if isinstance(data, bytearray):
        return cast(bytes, data) if buffer else bytes(data)
    return data


def _unplanes(payload: memoryview, width: int, size: int) -> bytes | bytearray:
    """Content of a codec 4/5 payload (before the XOR of codec 5): every plane exactly size/width bytes."""
    planes = _plane_parts(payload, width, size)
    if width == 1:
        return bytes(planes[0])
    return _interleave(planes, width, size)


def _plane_parts(payload: memoryview, width: int, size: int) -> list[bytes | memoryview]:
    """The byte planes of a codec 4/5 payload, each checked to be exactly size/width bytes."""
    if size % width:
        raise CorruptObject("planes do not divide the declared size")
    n = size // width
    table_end = width * _PLANE.size
    if len(payload) < table_end:
        raise CorruptObject("plane table is truncated")
    planes: list[bytes | memoryview] = []
    offset = table_end
    for i in range(width):
        how, length = _PLANE.unpack_from(payload, i * _PLANE.size)
        stored = payload[offset : offset + length]
        offset += length
        if len(stored) != length:
            raise CorruptObject("plane is truncated")
        if how == PLANE_RAW:
            if length != n:
                raise CorruptObject("raw plane has the wrong size")
            planes.append(stored)
        elif how == PLANE_ZSTD:
            try:
                plane = _decompressor().decompress(stored, max_output_size=n)
            except (zstandard.ZstdError, MemoryError) as exc:
                raise CorruptObject(f"plane does not decompress: {exc}") from None
            if len(plane) != n:
                raise CorruptObject("plane decodes to the wrong size")
            planes.append(plane)
        else:
            raise CorruptObject("plane table is invalid")
    if offset != len(payload):
        raise CorruptObject("planes do not fill the payload")
    return planes


class PlaneChain:
    """A codec-4 object and the codec-5 deltas above it, decoded in byte-plane space: XOR commutes with
    the byte transpose, so every level's planes are XORed together and the elements are interleaved
    once, for the top only (instead of interleaving and XORing every level in full).

    Each level is given with the header `verify_envelope` returned for it (its stored bytes checked);
    the caller hashes `content()` against the top's id, which covers every level (docs/guarantees.md)."""

    def __init__(self, width: int, size: int) -> None:
        if width not in _WORD or size % width:
            raise CorruptObject("planes do not divide the declared size")
        self.width, self.size = width, size
        self._first: list[bytes | memoryview] | None = None
        self._sum: object = None  # numpy (width, size/width) uint8, made at the second level

    def add(self, blob: bytes, header: Header) -> None:
        """XOR one level's planes in (the bottom first; it must be codec 4, every level above codec 5)."""
        import numpy as np

        want = PLANES if self._first is None and self._sum is None else PLANES_XOR_DELTA
        if header.codec != want or header.width != self.width or header.size != self.size:
            raise CorruptObject("delta chain level is not byte planes of the same shape")
        planes = _plane_parts(memoryview(blob)[header.payload_offset :], self.width, self.size)
        if self._first is not None:  # second level: the sum is made by the first XOR (no copy first)
            total = np.empty((self.width, self.size // self.width), np.uint8)
            for i in range(self.width):
                first, level = np.frombuffer(self._first[i], np.uint8), np.frombuffer(planes[i], np.uint8)
                np.bitwise_xor(first, level, out=total[i])
            self._sum, self._first = total, None
        elif self._sum is None:
            self._first = planes
        else:
            total = cast(np.ndarray, self._sum)
            for i in range(self.width):
                np.bitwise_xor(total[i], np.frombuffer(planes[i], np.uint8), out=total[i])

    def content(self) -> bytearray:
        """The top level's content (a bytearray: one buffer, assembled in place)."""
        import numpy as np

        if self._first is not None:
            return _interleave(self._first, self.width, self.size)
        if self._sum is None:
            raise CorruptObject("delta chain has no levels")
        total = cast(np.ndarray, self._sum)
        return _interleave([memoryview(total[i]) for i in range(self.width)], self.width, self.size)


# Verifying in plane space (fsck): a codec-5 object's content is its base's XOR its delta, and XOR
# commutes with the byte transpose, so a verifier that holds its base's planes XORs plane by plane and
# interleaves once, block by block, straight into the hash (no object-sized output buffer is made).


def payload_planes(payload: memoryview, width: int, size: int) -> list[bytes | memoryview]:
    """The byte planes of a codec 4/5 payload, checked, not interleaved (and before the XOR of codec 5):
    raw planes are views into `payload`."""
    return _plane_parts(payload, width, size)


def xor_planes(delta: list[bytes | memoryview], base: list[bytes | memoryview]) -> list[bytes | memoryview]:
    """The planes of a codec-5 object's content: each delta plane XOR the same plane of its base's content."""
    import numpy as np

    if len(delta) != len(base) or any(len(d) != len(b) for d, b in zip(delta, base, strict=True)):
        raise CorruptObject("delta planes do not match their base's")
    out: list[bytes | memoryview] = []
    for d, b in zip(delta, base, strict=True):
        plane = np.empty(len(d), np.uint8)
        np.bitwise_xor(np.frombuffer(d, np.uint8), np.frombuffer(b, np.uint8), out=plane)
        out.append(memoryview(plane.data).cast("B"))
    return out


HASH_BLOCK = 128 << 10  # content bytes interleaved at a time by hash_planes: stays in a core's L2 cache


def hash_planes(planes: list[bytes | memoryview], width: int) -> str:
    """blake3 hex of the elements whose byte planes these are (what `_interleave` would assemble), made
    block by block in two small reused buffers: the content is never assembled as a whole."""
    hasher = blake3.blake3()
    if width == 1:
        hasher.update(planes[0])
        return str(hasher.hexdigest())
    import numpy as np

    word = _WORD[width]
    arrays = [np.frombuffer(p, np.uint8) for p in planes]
    n = len(arrays[0])
    step = HASH_BLOCK // width
    words, wide = np.empty(min(step, n), word), np.empty(min(step, n), word)
    for start in range(0, n, step):
        stop = min(n, start + step)
        w, t = words[: stop - start], wide[: stop - start]
        np.copyto(w, arrays[0][start:stop], casting="unsafe")
        for i in range(1, width):
            np.copyto(t, arrays[i][start:stop], casting="unsafe")
            t <<= np.uint8(8 * i)
            w |= t
        hasher.update(w.view(np.uint8).data)
    return str(hasher.hexdigest())
