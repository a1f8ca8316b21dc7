"""Find the initializers of an ONNX model by walking the protobuf wire format: no onnx or protobuf import,
nothing of the model is ever run.

Only the path ModelProto.graph (field 7) -> GraphProto.initializer (field 5) -> TensorProto is descended
into; every other field, at every level, is skipped by its length without being read, so nesting depth is
fixed (3) whatever the file holds. A TensorProto's data is reported where it lies:

- `raw_data` (field 9): little-endian element bytes inside the .onnx file (what `numpy_helper.from_array`
  and exporters write);
- packed `float_data` (field 4) of a FLOAT tensor or `double_data` (field 10) of a DOUBLE tensor: also
  little-endian element bytes, so reported like raw_data;
- packed `int32_data` / `int64_data` / `uint64_data` (varints) and `float_data` of other types: reported
  with `encoding="opaque"` (callers treat them as bytes of unknown type);
- `data_location = EXTERNAL` (field 14) with `external_data` (field 13) entries `location`, `offset`,
  `length`: bytes in another file, whose path is checked here (relative, no `..`, no `\\`, no NUL).

Not reported (left to plain chunking): string tensors, segmented tensors, unpacked repeated fields,
initializers of subgraphs and sparse initializers. Any deviation from the wire format, a duplicated
singular field, or a limit exceeded raises `Malformed`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .binread import Budget, Cursor, Malformed, Read

MAX_STEPS = 1_000_000  # fields visited in one file (a large graph has a few hundred thousand); ~2 s at most
MAX_INITIALIZERS = 1_000_000
MAX_DIMS = 64
MAX_NAME = 1 << 16
MAX_ENTRIES = 64  # external_data key/value entries per tensor
MAX_LOCATION = 4096

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5
# TensorProto fields
_DIMS, _DATA_TYPE, _SEGMENT, _FLOAT, _INT32, _STRING, _INT64 = 1, 2, 3, 4, 5, 6, 7
_NAME, _RAW, _DOUBLE, _UINT64, _EXTERNAL, _LOCATION = 8, 9, 10, 11, 13, 14
FLOAT, DOUBLE, EXTERNAL = 1, 11, 1


@dataclass(frozen=True)
class Initializer:
    name: str
    data_type: int  # TensorProto.DataType
    dims: tuple[int, ...]
    offset: int  # of the data bytes: in the .onnx file, or in `location`
    length: int | None  # None: external data to the end of its file
    encoding: str = "raw"  # "raw": little-endian elements; "opaque": varints or a type mismatch
    location: str | None = None  # external data file, relative to the .onnx file's directory


def _fields(cur: Cursor, budget: Budget) -> Iterator[tuple[int, int, int | Cursor]]:
    """(field number, wire type, value) of each field of one message in turn: varints and fixed values as
    ints, length-delimited values as sub-cursors (not read). One at a time: a message of millions of
    empty fields costs steps, never memory."""
    while cur.left():
        budget.spend()
        key = cur.varint()
        number, wire = key >> 3, key & 7
        if number == 0 or number >= 1 << 29:
            raise Malformed("bad field number")
        value: int | Cursor
        if wire == VARINT:
            value = cur.varint()
        elif wire == FIXED64:
            value = cur.u64()
        elif wire == FIXED32:
            value = cur.u32()
        elif wire == LEN:
            value = cur.sub(cur.varint())
        else:  # groups (3, 4) are not used by onnx.proto; 6, 7 do not exist
            raise Malformed(f"wire type {wire}")
        yield number, wire, value


def initializers(read: Read, size: int) -> list[Initializer]:
    """The initializers of the main graph of the ONNX model in `read` (file of `size` bytes), in file order."""
    budget = Budget(MAX_STEPS)
    graphs = [v for n, w, v in _fields(Cursor(read, 0, size), budget) if n == _MODEL_GRAPH]
    if len(graphs) != 1 or not isinstance(graphs[0], Cursor):
        raise Malformed("not one graph")
    out: list[Initializer] = []
    for number, wire, value in _fields(graphs[0], budget):
        if number == _GRAPH_INITIALIZER and wire == LEN and isinstance(value, Cursor):
            if len(out) >= MAX_INITIALIZERS:
                raise Malformed("too many initializers")
            tensor = _tensor(value, budget)
            if tensor is not None:
                out.append(tensor)
    return out


def _tensor(cur: Cursor, budget: Budget) -> Initializer | None:
    dims: list[int] = []
    singles: dict[int, int | Cursor] = {}
    data: list[tuple[int, Cursor | None]] = []
    entries: list[Cursor] = []
    for number, wire, value in _fields(cur, budget):
        if number == _DIMS:
            if wire == VARINT and isinstance(value, int):
                dims.append(value)
            elif wire == LEN and isinstance(value, Cursor):
                while value.left():
                    budget.spend()
                    dims.append(value.varint())
                    if len(dims) > MAX_DIMS:
                        raise Malformed("too many dims")
            else:
                raise Malformed("bad dims")
            if len(dims) > MAX_DIMS:
                raise Malformed("too many dims")
        elif number in (_DATA_TYPE, _LOCATION):
            if wire != VARINT or number in singles:
                raise Malformed("bad or repeated scalar field")
            singles[number] = value
        elif number in (_NAME, _RAW):
            if wire != LEN or number in singles:
                raise Malformed("bad or repeated bytes field")
            singles[number] = value
        elif number == _EXTERNAL:
            if wire != LEN or not isinstance(value, Cursor) or len(entries) >= MAX_ENTRIES:
                raise Malformed("bad external_data")
            entries.append(value)
        elif number in (_FLOAT, _INT32, _INT64, _DOUBLE, _UINT64, _STRING, _SEGMENT):
            data.append((number, value if isinstance(value, Cursor) else None))  # None: unpacked, not reported
    if any(d >= 1 << 62 for d in dims):
        raise Malformed("bad dimension")  # negative int64 dims arrive as huge varints
    name_value = singles.get(_NAME)
    name = ""
    if isinstance(name_value, Cursor):
        if name_value.left() > MAX_NAME:
            raise Malformed("name too long")
        name = name_value.take(name_value.left()).decode("utf-8", "replace")
    dtype = singles.get(_DATA_TYPE, 0)
    if not isinstance(dtype, int):  # cannot happen: checked as a varint above
        raise Malformed("bad data_type")
    shape = tuple(dims)
    if singles.get(_LOCATION, 0) == EXTERNAL:
        location, offset, length = _external(entries, budget)
        return Initializer(name, dtype, shape, offset, length, "raw", location)
    raw = singles.get(_RAW)
    if isinstance(raw, Cursor):
        return None if data else Initializer(name, dtype, shape, raw.pos, raw.left())
    if len(data) != 1:
        return None  # no data, several typed fields, or a packed field split in parts
    number, cursor = data[0]
    if cursor is None or number in (_STRING, _SEGMENT):
        return None
    encoding = "raw" if (number, dtype) in ((_FLOAT, FLOAT), (_DOUBLE, DOUBLE)) else "opaque"
    return Initializer(name, dtype, shape, cursor.pos, cursor.left(), encoding)


def _external(entries: list[Cursor], budget: Budget) -> tuple[str, int, int | None]:
    values: dict[str, str] = {}
    for entry in entries:
        key = value = ""
        for number, wire, field in _fields(entry, budget):
            if wire != LEN or not isinstance(field, Cursor) or field.left() > MAX_LOCATION:
                raise Malformed("bad external_data entry")
            text = field.take(field.left()).decode("utf-8", "strict")
            if number == 1:
                key = text
            elif number == 2:
                value = text
        values[key] = value
    location = check_location(values.get("location", ""))
    offset = _decimal(values.get("offset", "0"))
    length = _decimal(values["length"]) if "length" in values else None
    return location, offset, length


def _decimal(text: str) -> int:
    if not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
        raise Malformed(f"bad external offset or length {text[:40]!r}")
    return int(text)


def check_location(location: str) -> str:
    """An external data path as stored in the model, checked: relative, inside the model's directory
    (no `..`, no absolute path, no backslash or NUL), `.` parts dropped. Returns it with `/` separators."""
    if not location or "\\" in location or "\x00" in location or location.startswith("/"):
        raise Malformed(f"bad external data location {location[:80]!r}")
    parts = [p for p in location.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or ":" in parts[0]:
        raise Malformed(f"bad external data location {location[:80]!r}")
    return "/".join(parts)
