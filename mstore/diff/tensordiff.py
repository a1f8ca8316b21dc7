"""Tensor-level diff of two stored files: added, removed, unchanged and changed tensors, and for a
changed tensor the share of elements that differ and the relative L2 change. Quantized GGUF tensors are
compared block by block (`changed_unit: "blocks"`); Q8_0 and Q4_0 blocks are dequantized for the L2.

Tensors whose covering chunks are identical are skipped without reading a byte; others are compared
block by block straight from the store (bounded memory, whatever the tensor size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported when a tensor is actually compared: it costs CLI start-up time
    import numpy as np

from ..content.storedfile import StoredFile
from ..formats.gguf import GGML_TYPES
from ..formats.tensors import BYTES, ITEMSIZE, Tensor, index_tensors

BLOCK_BYTES = 8 << 20
_FLOAT = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}
_INT = {"I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1"}
_UINT_OF_SIZE = {1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}
_BLOCK_BYTES = {name: size for name, block, size in GGML_TYPES.values() if block > 1}  # quantized ggml types


def _is_numeric(dtype: str) -> bool:
    return dtype in _FLOAT or dtype == "BF16" or dtype in _INT or dtype in ("Q8_0", "Q4_0")


def _values(raw: bytes, dtype: str) -> np.ndarray | None:
    """Element values as float64 for the numeric dtypes, None for the rest."""
    import numpy as np

    if dtype in _FLOAT:
        return np.frombuffer(raw, _FLOAT[dtype]).astype(np.float64)
    if dtype == "BF16":  # bfloat16 is the top half of a float32
        return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view("<f4").astype(np.float64)
    if dtype in _INT:
        return np.frombuffer(raw, _INT[dtype]).astype(np.float64)
    if dtype == "Q8_0":  # blocks of an f16 scale and 32 int8 (ggml-common.h block_q8_0)
        blocks = np.frombuffer(raw, np.uint8).reshape(-1, 34)
        scale = blocks[:, :2].copy().view("<f2").astype(np.float64)
        values: np.ndarray = (scale * blocks[:, 2:].view(np.int8).astype(np.float64)).ravel()
        return values
    if dtype == "Q4_0":  # an f16 scale, then 16 bytes: low nibbles are elements 0-15, high ones 16-31, minus 8
        blocks = np.frombuffer(raw, np.uint8).reshape(-1, 18)
        scale = blocks[:, :2].copy().view("<f2").astype(np.float64)
        nibbles = np.concatenate([blocks[:, 2:] & 0x0F, blocks[:, 2:] >> 4], axis=1).astype(np.float64) - 8
        dequantized: np.ndarray = (scale * nibbles).ravel()
        return dequantized
    return None


def compare_tensor(a: Tensor, fa: StoredFile, b: Tensor, fb: StoredFile) -> dict[str, Any] | None:
    """None when the tensors are identical, else the description of the change."""
    row: dict[str, Any] = {
        "name": b.name,
        "dtype_before": a.dtype,
        "dtype_after": b.dtype,
        "shape_before": list(a.shape),
        "shape_after": list(b.shape),
        "changed_fraction": None,
        "rel_l2": None,
    }
    if a.dtype != b.dtype or a.shape != b.shape or a.length != b.length:
        return row
    if fa.chunk_ids(a.offset, a.length) == fb.chunk_ids(b.offset, b.length):
        return None
    import numpy as np

    dtype = a.dtype
    if dtype in _BLOCK_BYTES and a.length % _BLOCK_BYTES[dtype]:  # a ggml name on bytes that are no blocks
        dtype = BYTES
    itemsize = _BLOCK_BYTES.get(dtype) or (ITEMSIZE.get(dtype, 1) if dtype != BYTES else 1)
    if dtype in _BLOCK_BYTES:
        row["changed_unit"] = "blocks"
    block = BLOCK_BYTES - BLOCK_BYTES % itemsize
    with np.errstate(all="ignore"):  # inf or NaN weights (or block scales) are data, not warnings
        differing, sum_d2, sum_a2, identical = _compare_blocks(a, fa, b, fb, dtype, itemsize, block)
    if identical:
        return None
    row["changed_fraction"] = differing / max(a.length // itemsize, 1)
    if _is_numeric(dtype) and sum_a2 > 0:
        rel = math.sqrt(sum_d2) / math.sqrt(sum_a2)
        row["rel_l2"] = rel if math.isfinite(rel) else None
    return row


def _compare_blocks(
    a: Tensor, fa: StoredFile, b: Tensor, fb: StoredFile, dtype: str, itemsize: int, block: int
) -> tuple[int, float, float, bool]:
    """(elements or blocks that differ, sum of squared differences, sum of squares of `a`, identical)."""
    import numpy as np

    differing, sum_d2, sum_a2, identical = 0, 0.0, 0.0, True
    for start in range(0, a.length, block):
        n = min(block, a.length - start)
        ra, rb = fa.read(a.offset + start, n), fb.read(b.offset + start, n)
        va = _values(ra, dtype)
        if va is not None:
            sum_a2 += float(np.dot(va, va))
        if ra == rb:
            continue
        identical = False
        if itemsize in _UINT_OF_SIZE:
            ua, ub = np.frombuffer(ra, _UINT_OF_SIZE[itemsize]), np.frombuffer(rb, _UINT_OF_SIZE[itemsize])
            differing += int(np.count_nonzero(ua != ub))
        else:  # quantized blocks: a block differs when any of its bytes does
            ua, ub = (np.frombuffer(r, np.uint8).reshape(-1, itemsize) for r in (ra, rb))
            differing += int(np.count_nonzero((ua != ub).any(axis=1)))
        vb = _values(rb, dtype)
        if va is not None and vb is not None:
            d = vb - va
            sum_d2 += float(np.dot(d, d))
    return differing, sum_d2, sum_a2, identical


def diff_tensor_files(
    old: StoredFile,
    new: StoredFile,
    path: str,
    old_external: Sequence[Tensor] = (),
    new_external: Sequence[Tensor] = (),
) -> dict[str, Any] | None:
    """The tensor part of a changed file, or None when either side is not a tensor container.

    `old_external` / `new_external`: the tensors another file of each version places in this one (ONNX
    external data, reader.stored_external_tensors), used when the file is not a container itself."""
    a = index_tensors(path, old.read, old.size, joblib=True) or list(old_external) or None
    b = index_tensors(path, new.read, new.size, joblib=True) or list(new_external) or None
    if a is None or b is None:
        return None
    old_by_name, new_by_name = {t.name: t for t in a}, {t.name: t for t in b}
    changed, unchanged = [], 0
    for name in sorted(set(old_by_name) & set(new_by_name)):
        row = compare_tensor(old_by_name[name], old, new_by_name[name], new)
        if row is None:
            unchanged += 1
        else:
            changed.append(row)
    return {
        "added": [new_by_name[n].describe() for n in sorted(set(new_by_name) - set(old_by_name))],
        "removed": [old_by_name[n].describe() for n in sorted(set(old_by_name) - set(new_by_name))],
        "changed": changed,
        "unchanged": unchanged,
    }
