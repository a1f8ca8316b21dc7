"""Read the tensor table of a GGUF file (llama.cpp's format, versions 2 and 3) with a strict bounded reader.

Layout (little-endian): `GGUF` | version u32 | tensor count u64 | metadata count u64 | metadata key/values
(key: u64 length + UTF-8; value type u32; value) | tensor infos (name; n_dims u32; dims u64 each, ggml order,
fastest first; ggml type u32; offset u64 from the data section) | padding to `general.alignment` (default 32)
| data section. Metadata values are skipped by their sizes (arrays of fixed-size items in one step, arrays
of strings item by item against a step budget, nested arrays to a small depth); only `general.alignment` is
read. Each tensor's byte size follows from its ggml type's block size and block bytes (the table below, as
ggml.c defines it) and must lie inside the file. Nothing here depends on the `gguf` package.
"""

from __future__ import annotations

from dataclasses import dataclass

from .binread import Budget, Cursor, Malformed, Read

MAX_STEPS = 4_000_000  # a large vocabulary is a few hundred thousand strings (tokens, merges); ~5 s at most
MAX_TENSORS = 1_000_000
MAX_DIMS = 8  # ggml has 4
MAX_NAME = 1 << 16
MAX_ARRAY_DEPTH = 4
MAX_ALIGNMENT = 1 << 20
DEFAULT_ALIGNMENT = 32

# ggml type id -> (name, elements per block, bytes per block), from ggml.c's type traits
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8),
    28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}  # fmt: skip
# metadata value type -> size in bytes (8 STRING and 9 ARRAY are variable)
_VALUE_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY, _UINT32 = 8, 9, 4
_UINTS = {0: 1, 2: 2, 4: 4, 10: 8}


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    type_name: str  # ggml type: F32, F16, Q4_0, Q8_0, Q4_K, ...
    dims: tuple[int, ...]  # ggml order: dims[0] is the fastest-moving (numpy shape reversed)
    offset: int  # absolute byte offset of the data in the file
    length: int


def _string(cur: Cursor, keep: int) -> bytes | None:
    """A GGUF string: returned when at most `keep` bytes long, else skipped (None)."""
    n = cur.u64()
    if n > keep:
        cur.skip(n)
        return None
    return cur.take(n)


def _skip_value(cur: Cursor, kind: int, budget: Budget, depth: int = 0) -> None:
    budget.spend()
    if kind in _VALUE_SIZES:
        cur.skip(_VALUE_SIZES[kind])
    elif kind == _STRING:
        cur.skip(cur.u64())
    elif kind == _ARRAY:
        if depth >= MAX_ARRAY_DEPTH:
            raise Malformed("arrays nested too deep")
        item, count = cur.u32(), cur.u64()
        if item in _VALUE_SIZES:
            cur.skip(count * _VALUE_SIZES[item])  # checked against the bytes left before anything moves
        elif item in (_STRING, _ARRAY):
            if count > cur.left() // 8:  # every string or array item takes at least 8 bytes
                raise Malformed("array count larger than the file")
            if item == _STRING:  # a vocabulary: the hot loop, one step each, spent before the walk
                budget.spend(count)
                for _ in range(count):
                    cur.skip(cur.u64())
            else:
                for _ in range(count):
                    _skip_value(cur, item, budget, depth + 1)
        else:
            raise Malformed(f"bad array item type {item}")
    else:
        raise Malformed(f"bad value type {kind}")


def gguf_tensors(read: Read, size: int) -> list[GGUFTensor]:
    """The tensors of the GGUF file in `read` (`size` bytes), in the order of its tensor table."""
    budget = Budget(MAX_STEPS)
    cur = Cursor(read, 0, size)
    if cur.take(4) != b"GGUF":
        raise Malformed("no GGUF magic")
    version = cur.u32()
    if version not in (2, 3):  # 1 had 32-bit counts; a big-endian file reads as a huge version
        raise Malformed(f"GGUF version {version} is not supported")
    n_tensors, n_kv = cur.u64(), cur.u64()
    if n_tensors > MAX_TENSORS or n_tensors > size // 24 or n_kv > size // 12:
        raise Malformed("counts larger than the file")
    alignment = DEFAULT_ALIGNMENT
    for _ in range(n_kv):
        key = _string(cur, 64)
        kind = cur.u32()
        if key == b"general.alignment" and kind in _UINTS:
            alignment = int.from_bytes(cur.take(_UINTS[kind]), "little")
            if not 0 < alignment <= MAX_ALIGNMENT or alignment & (alignment - 1):
                raise Malformed(f"bad alignment {alignment}")
        else:
            _skip_value(cur, kind, budget)
    infos: list[tuple[str, tuple[int, ...], int, int]] = []
    for _ in range(n_tensors):
        budget.spend()
        raw_name = _string(cur, MAX_NAME)
        if raw_name is None:
            raise Malformed("tensor name too long")
        n_dims = cur.u32()
        if n_dims > MAX_DIMS:
            raise Malformed("too many dimensions")
        dims = tuple(cur.u64() for _ in range(n_dims))
        kind, offset = cur.u32(), cur.u64()
        infos.append((raw_name.decode("utf-8", "replace"), dims, kind, offset))
    data_start = -(-cur.pos // alignment) * alignment
    out, names = [], set()
    for name, dims, kind, offset in infos:
        if kind not in GGML_TYPES:
            raise Malformed(f"unknown ggml type {kind}")
        type_name, block, block_bytes = GGML_TYPES[kind]
        if name in names:
            raise Malformed(f"duplicate tensor {name!r}")
        names.add(name)
        numel = 1
        for d in dims:
            numel *= d
            if numel > size * 8:  # no ggml type packs more than 8 elements per byte: cannot fit
                raise Malformed(f"tensor {name!r} larger than the file")
        if dims and dims[0] % block:
            raise Malformed(f"tensor {name!r}: rows are not whole {type_name} blocks")
        length = numel // block * block_bytes
        if offset > size or data_start + offset + length > size:
            raise Malformed(f"tensor {name!r} outside the file")
        out.append(GGUFTensor(name, type_name, dims, data_start + offset, length))
    return out
