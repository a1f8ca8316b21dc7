"""GGUF files: mstore's own header reader finds the same tensors as the gguf package (names, ggml types,
shapes, offsets, sizes), float tensors are byte-grouped and delta'd while quantized blocks are kept whole,
`mstore diff` names exactly the changed tensors, and damaged or crafted files fall back to plain chunking."""

from __future__ import annotations

import io
import json
import struct
import tempfile
import tracemalloc
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import quantize
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mstore import Repository
from mstore.cli import app
from mstore.formats.gguf import GGML_TYPES
from mstore.formats.tensors import index_tensors
from mstore.store.chunking import ModelAwareChunker

from helpers import examples, lines_run, mutations, nudge

Q8, Q4, Q4K = GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_K


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "token_embd.weight": rng.standard_normal((256, 256)).astype(np.float32),
        "blk.0.attn_q.weight": rng.standard_normal((256, 256)).astype(np.float32),
        "blk.0.attn_norm.weight": rng.standard_normal(256).astype(np.float32),
        "blk.0.ffn_up.weight": rng.standard_normal((512, 256)).astype(np.float32),  # stored as Q8_0
        "blk.0.ffn_down.weight": rng.standard_normal((256, 512)).astype(np.float32),  # stored as Q4_0
        "output.weight": rng.standard_normal((64, 256)).astype(np.float16),
    }


QUANTIZED = {"blk.0.ffn_up.weight": Q8, "blk.0.ffn_down.weight": Q4}


def _write(path: Path, weights: dict[str, np.ndarray], *, alignment: int | None = None, extras: bool = True) -> bytes:
    w = gguf.GGUFWriter(str(path), "llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    if extras:  # metadata of every value type, arrays of numbers, strings and arrays
        w.add_block_count(1)
        w.add_uint8("t.u8", 7)
        w.add_int8("t.i8", -7)
        w.add_uint16("t.u16", 700)
        w.add_int16("t.i16", -700)
        w.add_int32("t.i32", -70000)
        w.add_float32("t.f32", 0.5)
        w.add_bool("t.bool", True)
        w.add_uint64("t.u64", 1 << 40)
        w.add_int64("t.i64", -(1 << 40))
        w.add_float64("t.f64", 0.25)
        w.add_string("t.str", "héllo")
        w.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(300)])
        w.add_array("tokenizer.ggml.scores", [float(i) for i in range(300)])
        w.add_array("t.nested", [[1, 2], [3, 4, 5]])
    for name, array in weights.items():
        if name in QUANTIZED:
            w.add_tensor(name, quantize(array, QUANTIZED[name]), raw_dtype=QUANTIZED[name])
        else:
            w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def _index(data: bytes, name: str = "model.gguf") -> list | None:  # type: ignore[type-arg]
    return index_tensors(name, lambda o, n: data[o : o + n], len(data))


# -- the index agrees with the gguf package ---------------------------------------------------------------


@pytest.mark.parametrize("alignment", [None, 64, 4096])
def test_index_matches_the_gguf_reader(tmp_path: Path, alignment: int | None) -> None:
    weights = dict(_weights(), **{"extra.i32": np.arange(64, dtype=np.int32)})
    data = _write(tmp_path / "m.gguf", weights, alignment=alignment)
    w = gguf.GGUFWriter(str(tmp_path / "k.gguf"), "llama")  # a K-quant and bf16, written as raw blocks
    rng = np.random.default_rng(3)
    w.add_tensor("q4k", rng.integers(0, 255, (8, 144), dtype=np.uint8), raw_dtype=Q4K)
    bf16 = GGMLQuantizationType.BF16
    w.add_tensor("bf16", quantize(rng.standard_normal((4, 32)).astype(np.float32), bf16), raw_dtype=bf16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    for path in (tmp_path / "m.gguf", tmp_path / "k.gguf"):
        data = path.read_bytes()
        ours = {t.name: t for t in _index(data, "anything.bin") or []}  # found by magic, not by name
        reader = gguf.GGUFReader(str(path))
        assert set(ours) == {t.name for t in reader.tensors}
        for t in reader.tensors:
            mine = ours[t.name]
            assert mine.dtype == t.tensor_type.name
            assert mine.shape == tuple(int(d) for d in reversed(t.shape))
            assert (mine.offset, mine.length) == (t.data_offset, t.n_bytes)
            assert data[mine.offset : mine.offset + mine.length] == t.data.tobytes()


def test_the_ggml_type_table_matches_the_gguf_package() -> None:
    for type_id, (name, block, size) in GGML_TYPES.items():
        kind = GGMLQuantizationType(type_id)
        assert (kind.name, GGML_QUANT_SIZES[kind]) == (name, (block, size))


# -- storage and diff ----------------------------------------------------------------------------------------


def test_float_tensors_are_grouped_and_quantized_blocks_kept_whole(tmp_path: Path) -> None:
    data = _write(tmp_path / "m.gguf", _weights())
    pieces = list(ModelAwareChunker().split(io.BytesIO(data), "m.gguf", len(data)))
    assert b"".join(p.data for p in pieces) == data
    widths = {p.key[0]: (p.key[2], p.width) for p in pieces if p.key is not None}
    assert widths == {
        "token_embd.weight": ("F32", 4),
        "blk.0.attn_q.weight": ("F32", 4),
        "blk.0.attn_norm.weight": ("F32", 4),
        "blk.0.ffn_up.weight": ("Q8_0", 1),  # width 1: never byte-grouped
        "blk.0.ffn_down.weight": ("Q4_0", 1),
        "output.weight": ("F16", 2),
    }


def test_round_trip_and_a_fine_tune_stores_far_less_than_a_copy(tmp_path: Path, repo: Repository) -> None:
    w1 = _weights()
    path = tmp_path / "model.gguf"
    v1 = _write(path, w1)
    m1 = repo.save(path)
    v2 = _write(path, nudge(w1, ["blk.0.attn_norm.weight", "output.weight"], scale=1e-2))
    m2 = repo.save(path)
    assert m2["mstore"]["delta_objects"] >= 1
    assert m2["mstore"]["new_bytes"] < 0.05 * m1["mstore"]["new_bytes"], (m2["mstore"], m1["mstore"])
    v3 = _write(path, nudge(w1, ["blk.0.ffn_up.weight"], scale=1e-2))  # requantized: its blocks change, others stay
    m3 = repo.save(path)
    assert m3["mstore"]["new_content_bytes"] < 256 * 512 + 64 * 1024, m3["mstore"]
    for meta, data in ((m1, v1), (m2, v2), (m3, v3)):
        assert repo.checkout(meta["timestamp"], tmp_path / "out.gguf", force=True).read_bytes() == data
    assert repo.fsck().ok


def test_cli_diff_names_exactly_the_changed_tensors(tmp_path: Path, repo: Repository) -> None:
    w1 = _weights()
    w2 = nudge(w1, ["blk.0.attn_q.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight"], scale=1e-2)
    ids = []
    for name, w in (("a", w1), ("b", w2)):
        (tmp_path / name).mkdir()
        _write(tmp_path / name / "model.gguf", w)
        ids.append(repo.save(tmp_path / name / "model.gguf")["timestamp"])
    result = CliRunner().invoke(app, ["--store", str(repo.root), "diff", *ids, "--json"])
    (changed,) = json.loads(result.stdout)["files"]["changed"]
    rows = {r["name"]: r for r in changed["tensors"]["changed"]}
    assert set(rows) == {"blk.0.attn_q.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight"}
    assert changed["tensors"]["unchanged"] == 3
    a, b = w1["blk.0.attn_q.weight"].astype(np.float64), w2["blk.0.attn_q.weight"].astype(np.float64)
    assert rows["blk.0.attn_q.weight"]["rel_l2"] == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a))
    assert "changed_unit" not in rows["blk.0.attn_q.weight"]
    readers = [gguf.GGUFReader(str(tmp_path / d / "model.gguf")) for d in ("a", "b")]
    for name, kind, block_bytes in (("blk.0.ffn_up.weight", Q8, 34), ("blk.0.ffn_down.weight", Q4, 18)):
        row = rows[name]
        qa, qb = (next(t for t in r.tensors if t.name == name) for r in readers)
        assert row["dtype_after"] == kind.name and row["changed_unit"] == "blocks"
        assert row["shape_after"] == list(w1[name].shape)
        blocks_a, blocks_b = (t.data.tobytes() for t in (qa, qb))
        differ = np.frombuffer(blocks_a, np.uint8) != np.frombuffer(blocks_b, np.uint8)
        assert row["changed_fraction"] == pytest.approx(differ.reshape(-1, block_bytes).any(axis=1).mean())
        da, db = (gguf.quants.dequantize(t.data, kind).astype(np.float64) for t in (qa, qb))  # the package's own
        assert row["rel_l2"] == pytest.approx(np.linalg.norm(db - da) / np.linalg.norm(da), rel=1e-6)
    text = CliRunner().invoke(app, ["--store", str(repo.root), "diff", *ids]).stdout
    assert "blk.0.ffn_up.weight" in text and "of blocks changed" in text and "token_embd.weight" not in text


# -- hostile and damaged files ------------------------------------------------------------------------------

with tempfile.TemporaryDirectory() as _tmp:
    SAMPLE = _write(Path(_tmp) / "s.gguf", {"a": np.arange(32, dtype=np.float32), "q": np.ones((1, 32), np.float32)})


def _valid_or_none(data: bytes, name: str = "m.gguf") -> list | None:  # type: ignore[type-arg]
    result, lines = lines_run(lambda: _index(data, name))  # must not raise
    assert lines < 1_000_000  # cheap on any input (a few thousand lines here): a bound no load can move
    assert result is None or all(0 <= t.offset <= t.offset + t.length <= len(data) for t in result)
    return result


@settings(max_examples=examples(200))
@given(mutations(SAMPLE))
def test_mutated_files_fall_back_cleanly(data: bytes) -> None:
    _valid_or_none(data)


@settings(max_examples=examples(200))
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_the_magic_fall_back_cleanly(data: bytes) -> None:
    _valid_or_none(b"GGUF" + data)


def _s(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def _file(tensors: list[bytes], kvs: list[bytes] = (), version: int = 3, n_tensors: int | None = None) -> bytes:  # type: ignore[assignment]
    n = len(tensors) if n_tensors is None else n_tensors
    head = b"GGUF" + struct.pack("<IQQ", version, n, len(kvs)) + b"".join(kvs) + b"".join(tensors)
    return head + b"\0" * (-len(head) % 32) + b"\0" * 256


def _info(name: bytes = b"w", dims: tuple[int, ...] = (32,), kind: int = 0, offset: int = 0) -> bytes:
    return (
        _s(name)
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", kind, offset)
    )


def _kv(key: bytes, kind: int, payload: bytes) -> bytes:
    return _s(key) + struct.pack("<I", kind) + payload


def test_a_crafted_file_that_is_valid_is_read() -> None:
    assert [(t.name, t.dtype, t.length) for t in _valid_or_none(_file([_info()])) or []] == [("w", "F32", 128)]


def _nested(depth: int) -> bytes:
    payload = struct.pack("<IQ", 0, 1) + b"\x01"
    for _ in range(depth):
        payload = struct.pack("<IQ", 9, 1) + payload
    return payload


@pytest.mark.parametrize(
    "data",
    [
        _file([_info()], version=1),  # 32-bit counts: not supported
        _file([_info()], version=1 << 24),  # a big-endian file
        _file([_info()], n_tensors=1 << 62),
        _file([_info(dims=(1 << 40,))]),  # larger than the file
        _file([_info(dims=(1 << 32, 1 << 32, 1 << 32, 1 << 32))]),  # an element count of 2**128
        _file([_info(dims=(16,), kind=8)]),  # not whole Q8_0 blocks
        _file([_info(kind=99)]),  # unknown type
        _file([_info(offset=1 << 63)]),
        _file([_info(dims=tuple([1] * 1000))]),  # 1000 dimensions
        _file([_info(), _info()]),  # the same name twice
        _file([_s(b"x" * 100) + b"\xff" * 8]),  # a name longer than the file
        _file([_info()], [_kv(b"k", 8, struct.pack("<Q", 1 << 63))]),  # a string of 8 EiB
        _file([_info()], [_kv(b"k", 9, struct.pack("<IQ", 0, 1 << 62))]),  # 2**62 bytes
        _file([_info()], [_kv(b"k", 9, struct.pack("<IQ", 8, 1 << 40))]),  # 2**40 strings
        _file([_info()], [_kv(b"k", 9, _nested(100))]),  # arrays nested 100 deep
        _file([_info()], [_kv(b"k", 13, b"")]),  # unknown value type
        _file([_info()], [_kv(b"general.alignment", 4, struct.pack("<I", 0))]),
        _file([_info()], [_kv(b"general.alignment", 4, struct.pack("<I", 24))]),
        _file([_info()], [_kv(b"general.alignment", 4, struct.pack("<I", 1 << 31))]),
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1 << 60),  # 2**60 key/values
    ],
)
def test_crafted_files_are_not_tensors_and_allocate_nothing(data: bytes) -> None:
    tracemalloc.start()
    try:
        assert _valid_or_none(data) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
