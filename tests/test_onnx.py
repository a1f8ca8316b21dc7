"""ONNX models: mstore's own protobuf walker finds the same initializers as the onnx package (inline and
external data), a retrained model is stored as per-tensor deltas, `mstore diff` names exactly the changed
initializers, and damaged or crafted files only ever fall back to plain chunking."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from mstore import Repository
from mstore.cli import app
from mstore.formats.binread import Malformed
from mstore.formats.onnx import check_location, initializers
from mstore.formats.tensors import Tensor, index_tensors, onnx_external_tensors
from mstore.store.chunking import ModelAwareChunker

from helpers import examples, lines_run, mutations, nudge, read_tree

WEIGHTS = ["conv.weight", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "norm.scale"]


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv.weight": rng.standard_normal((32, 16, 3, 3)).astype(np.float32),
        "fc1.weight": rng.standard_normal((256, 512)).astype(np.float32),
        "fc1.bias": rng.standard_normal(512).astype(np.float32),
        "fc2.weight": rng.standard_normal((512, 256)).astype(np.float32),
        "fc2.bias": rng.standard_normal(256).astype(np.float16),
        "norm.scale": rng.standard_normal(256).astype(np.float64),
    }


def _model(weights: dict[str, np.ndarray], typed: bool = True) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(a, name) for name, a in weights.items()]
    if typed:  # typed repeated fields instead of raw_data: packed floats, varint ints, a string tensor
        inits += [
            helper.make_tensor("typed.float", TensorProto.FLOAT, [3], [1.0, -2.0, 3.5]),
            helper.make_tensor("typed.int64", TensorProto.INT64, [3], [1, -2, 300]),
            helper.make_tensor("typed.string", TensorProto.STRING, [1], [b"hello"]),
            numpy_helper.from_array(np.arange(6, dtype=np.int64).reshape(2, 3), "shape.const"),
        ]
    nodes = [
        helper.make_node("Flatten", ["x"], ["h0"]),
        helper.make_node("Gemm", ["h0", "fc1.weight", "fc1.bias"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "fc2.weight"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])],
        inits,
        doc_string="a small test network",
    )
    return helper.make_model(graph, producer_name="mstore-tests")


def _bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


def _index(data: bytes, name: str = "model.onnx") -> list | None:  # type: ignore[type-arg]
    return index_tensors(name, lambda o, n: data[o : o + n], len(data))


def _save_dir(model: onnx.ModelProto, folder: Path, location: str = "weights.bin") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(
        model,
        str(folder / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=1024,
    )
    (folder / "config.json").write_text('{"arch": "net"}')
    return folder


# -- the index agrees with the onnx package --------------------------------------------------------------


def test_inline_initializers_match_the_onnx_reader() -> None:
    data = _bytes(_model(_weights()))
    index = {t.name: t for t in _index(data) or []}
    loaded = onnx.load_from_string(data)
    dtypes = {TensorProto.FLOAT: "F32", TensorProto.FLOAT16: "F16", TensorProto.DOUBLE: "F64"}
    for init in loaded.graph.initializer:
        if init.data_type == TensorProto.STRING:
            assert init.name not in index  # strings are left to plain chunking
            continue
        t = index[init.name]
        if init.raw_data:
            assert data[t.offset : t.offset + t.length] == init.raw_data
            expected = numpy_helper.to_array(init)
            assert t.dtype == dtypes.get(init.data_type, "I64") and t.shape == expected.shape
        elif init.float_data:  # packed little-endian floats: an F32 tensor like raw_data
            assert (t.dtype, t.shape) == ("F32", (3,))
            assert data[t.offset : t.offset + t.length] == np.array(init.float_data, "<f4").tobytes()
        else:  # varint-encoded int64s: their bytes, of no element type
            assert t.dtype == "BYTES" and t.length == 1 + 10 + 2  # 1, -2 (ten bytes), 300
    assert set(index) == {i.name for i in loaded.graph.initializer} - {"typed.string"}


def test_external_data_matches_the_onnx_reader(tmp_path: Path) -> None:
    weights = _weights()
    folder = _save_dir(_model(weights), tmp_path / "m")
    graph_bytes = (folder / "model.onnx").read_bytes()
    data = (folder / "weights.bin").read_bytes()
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    external = onnx_external_tensors([("model.onnx", lambda o, n: graph_bytes[o : o + n], len(graph_bytes))], sizes)
    assert set(external) == {"weights.bin"}
    found = {t.name: t for t in external["weights.bin"]}
    loaded = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    expected = {}
    for init in loaded.graph.initializer:
        if init.data_location == TensorProto.EXTERNAL:
            info = {e.key: e.value for e in init.external_data}
            expected[init.name] = (int(info["offset"]), int(info["length"]))
    assert {n: (t.offset, t.length) for n, t in found.items()} == expected
    assert set(expected) == set(WEIGHTS) - {"fc2.bias"}  # fc2.bias (512 B) is under the threshold: inline
    for name, t in found.items():
        assert data[t.offset : t.offset + t.length] == weights[name].tobytes() and t.shape == weights[name].shape
    inline = {t.name for t in _index(graph_bytes) or []}
    assert "fc2.bias" in inline and not inline & set(expected)


@pytest.mark.parametrize(
    "location", ["../weights.bin", "/etc/passwd", "a/../../b", "C:\\w.bin", "w.bin\x00x", "", "./..", "c:w"]
)
def test_external_locations_outside_the_model_are_refused(location: str) -> None:
    with pytest.raises(Malformed):
        check_location(location)


def _external_model(location: str, offset: str | None = "0") -> bytes:
    model = _model({"w": np.ones(64, np.float32)}, typed=False)
    (init,) = model.graph.initializer
    init.data_location = TensorProto.EXTERNAL
    init.ClearField("raw_data")
    for key, value in [("location", location), ("offset", offset), ("length", "256")]:
        if value is not None:
            init.external_data.add(key=key, value=value)
    return _bytes(model)


def test_external_tensors_outside_their_file_or_the_model_are_left_out() -> None:
    def external(data: bytes, sizes: dict[str, int]) -> dict[str, list[Tensor]]:
        return onnx_external_tensors([("m/model.onnx", lambda o, n: data[o : o + n], len(data))], sizes)

    good = _external_model("sub/./w.bin", offset=None)  # relative to the .onnx file's folder; offset 0
    assert external(good, {"m/sub/w.bin": 256}) == {"m/sub/w.bin": [Tensor("w", "F32", (64,), 0, 256)]}
    assert external(good, {"m/sub/w.bin": 255}) == {}  # the range does not fit in the file
    assert external(good, {"sub/w.bin": 256}) == {}  # not a file of the model
    assert external(_external_model("../weights.bin"), {"weights.bin": 256}) == {}  # outside the model folder
    assert external(_external_model("w.bin", "1e3"), {"m/w.bin": 4096}) == {}  # not a decimal offset


# -- storage and diff ---------------------------------------------------------------------------------------


def test_single_file_model_round_trips_and_a_fine_tune_stores_deltas(tmp_path: Path, repo: Repository) -> None:
    w1 = _weights()
    v1_bytes = _bytes(_model(w1))
    (tmp_path / "model.onnx").write_bytes(v1_bytes)
    m1 = repo.save(tmp_path / "model.onnx")
    w2 = nudge(w1, ["conv.weight", "fc1.bias"])
    v2_bytes = _bytes(_model(w2))
    (tmp_path / "model.onnx").write_bytes(v2_bytes)
    m2 = repo.save(tmp_path / "model.onnx")
    info = m2["mstore"]
    assert info["delta_objects"] >= 1
    # two small tensors moved a little: a few percent of a fresh copy (plain chunking stores it all again)
    assert info["new_bytes"] < 0.05 * m1["mstore"]["new_bytes"], (info, m1["mstore"])
    assert repo.checkout(m1["timestamp"], tmp_path / "a.onnx").read_bytes() == v1_bytes
    assert repo.checkout(m2["timestamp"], tmp_path / "b.onnx").read_bytes() == v2_bytes
    assert repo.fsck().ok


def test_directory_model_with_external_data_round_trips_and_stores_deltas(tmp_path: Path, repo: Repository) -> None:
    w1 = _weights()
    a = _save_dir(_model(w1), tmp_path / "a")
    m1 = repo.save(a)
    b = _save_dir(_model(nudge(w1, ["conv.weight", "norm.scale"])), tmp_path / "b")
    m2 = repo.save(b)
    assert m2["mstore"]["delta_objects"] >= 1  # the parent's tensors were found inside its weights.bin
    assert m2["mstore"]["new_bytes"] < 0.05 * m1["mstore"]["new_bytes"], (m2["mstore"], m1["mstore"])
    for meta, folder in ((m1, a), (m2, b)):
        out = repo.checkout(meta["timestamp"], tmp_path / f"out-{folder.name}")
        assert read_tree(out) == read_tree(folder)
    assert repo.fsck().ok


def test_the_external_data_file_is_cut_at_tensor_boundaries(tmp_path: Path) -> None:
    folder = _save_dir(_model(_weights()), tmp_path / "m")
    graph_bytes = (folder / "model.onnx").read_bytes()
    data = (folder / "weights.bin").read_bytes()
    sizes = {"model.onnx": len(graph_bytes), "weights.bin": len(data)}
    external = onnx_external_tensors([("model.onnx", lambda o, n: graph_bytes[o : o + n], len(graph_bytes))], sizes)
    pieces = list(ModelAwareChunker().split(io.BytesIO(data), "weights.bin", len(data), external["weights.bin"]))
    assert b"".join(p.data for p in pieces) == data
    keyed = {p.key[0]: p.width for p in pieces if p.key is not None}
    assert keyed == {"conv.weight": 4, "fc1.weight": 4, "fc1.bias": 4, "fc2.weight": 4, "norm.scale": 8}
    assert all(p.key is None for p in ModelAwareChunker().split(io.BytesIO(data), "weights.bin", len(data)))


def _diff_json(repo: Repository, v1: str, v2: str) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(app, ["--store", str(repo.root), "diff", v1, v2, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_cli_diff_names_exactly_the_changed_initializers(tmp_path: Path, repo: Repository) -> None:
    w1 = _weights()
    w2 = nudge(w1, ["fc1.bias", "norm.scale"])
    paths = []
    for name, w in (("a", w1), ("b", w2)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.onnx").write_bytes(_bytes(_model(w)))
        paths.append(repo.save(tmp_path / name / "model.onnx")["timestamp"])
    (changed,) = _diff_json(repo, *paths)["files"]["changed"]
    rows = {r["name"]: r for r in changed["tensors"]["changed"]}
    assert set(rows) == {"fc1.bias", "norm.scale"} and changed["tensors"]["unchanged"] == 7
    a, b = w1["fc1.bias"].astype(np.float64), w2["fc1.bias"].astype(np.float64)
    assert rows["fc1.bias"]["changed_fraction"] == pytest.approx(np.mean(a != b))
    assert rows["fc1.bias"]["rel_l2"] == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a))
    assert rows["norm.scale"]["dtype_after"] == "F64" and rows["norm.scale"]["shape_after"] == [256]
    text = CliRunner().invoke(app, ["--store", str(repo.root), "diff", *paths]).stdout
    assert "fc1.bias" in text and "norm.scale" in text and "fc2.weight" not in text


def test_cli_diff_of_a_directory_model_names_the_changed_external_tensors(tmp_path: Path, repo: Repository) -> None:
    w1 = _weights()
    v1 = repo.save(_save_dir(_model(w1), tmp_path / "a"))["timestamp"]
    v2 = repo.save(_save_dir(_model(nudge(w1, ["conv.weight"])), tmp_path / "b"))["timestamp"]
    files = _diff_json(repo, v1, v2)["files"]
    assert [f["path"] for f in files["changed"]] == ["weights.bin"] and files["unchanged"] == 2
    tensors = files["changed"][0]["tensors"]
    assert [r["name"] for r in tensors["changed"]] == ["conv.weight"] and tensors["unchanged"] == 4
    assert tensors["changed"][0]["rel_l2"] == pytest.approx(1e-3, rel=0.5)


# -- hostile and damaged files ------------------------------------------------------------------------------

SAMPLE = _bytes(_model({"w": np.arange(40, dtype=np.float32), "b": np.ones(3, np.float16)}))


def _valid_or_none(data: bytes) -> None:
    result, lines = lines_run(lambda: _index(data))  # must not raise
    assert lines < 1_000_000  # cheap on any input (a few thousand lines here): a bound no load can move
    assert result is None or all(0 <= t.offset <= t.offset + t.length <= len(data) for t in result)


@settings(max_examples=examples(200))
@given(mutations(SAMPLE))
def test_mutated_models_fall_back_cleanly(data: bytes) -> None:
    _valid_or_none(data)


@settings(max_examples=examples(200))
@given(st.binary(max_size=400))
def test_arbitrary_bytes_fall_back_cleanly(data: bytes) -> None:
    _valid_or_none(data)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


@pytest.mark.parametrize(
    "data",
    [
        _varint(7 << 3 | 2) + _varint(1 << 62),  # a graph of 4 EiB
        _field(7, _varint(5 << 3 | 2) + _varint(1 << 40)),  # an initializer longer than its graph
        _field(7, _field(5, _field(9, b"x" * 16) + _varint(1 << 3 | 0) + b"\xff" * 11)),  # an 11-byte varint
        _field(7, _field(5, (_varint(1 << 3) + _varint(3)) * 100 + _field(9, b"x"))),  # 100 dims
        _field(7, _field(5, _field(8, b"n" * 70_000) + _field(9, b"x"))),  # a 70 kB name
        _field(7, _field(5, _field(9, b"x") + _field(9, b"y"))),  # raw_data twice
        _field(7, b"") + _field(7, b""),  # two graphs
        _field(7, _varint(5 << 3 | 3)),  # a group
        _field(7, _field(1, b"") * 200_000),  # 200,000 empty nodes: walked within the step budget
        _field(7, _field(5, _field(9, b"x" * 8) + _field(2, b""))),  # data_type as bytes
        _field(7, _field(5, _varint(14 << 3) + b"\x01" + _field(13, _field(1, b"location") + _field(2, b"/etc/x")))),
        _field(7, _field(5, _varint(14 << 3) + b"\x01" + _field(13, _field(1, b"offset") + _field(2, b"-1")))),
    ],
)
def test_crafted_models_are_not_tensors(data: bytes) -> None:
    start = time.thread_time()  # CPU time of this thread: a loaded machine cannot make it flaky
    assert _index(data) is None
    assert time.thread_time() - start < 2


def test_deeply_nested_messages_are_skipped_not_descended() -> None:
    """Only model -> graph -> initializer is entered: a 10,000-deep message elsewhere costs one skip."""
    deep = b""
    for _ in range(10_000):
        deep = _field(1, deep)
    data = _field(7, _field(1, deep) + _field(5, _field(8, b"w") + _varint(2 << 3) + b"\x01" + _field(9, b"\0" * 8)))
    (t,) = initializers(lambda o, n: data[o : o + n], len(data))
    assert (t.name, t.length) == ("w", 8)


@pytest.mark.slow
def test_a_message_of_many_empty_fields_costs_steps_not_memory() -> None:
    """300,000 empty unknown fields in the model (3 bytes each): the walk holds one field at a time (it
    held every field and a cursor for each: ~100 MB for this file, 1.3 GB at the step limit)."""
    import tracemalloc

    from mstore.formats.onnx import MAX_STEPS, initializers
    from mstore.formats.tensors import index_tensors

    assert MAX_STEPS <= 1_000_000
    data = b"\xa2\x01\x00" * 300_000  # field 20, length-delimited, empty
    tracemalloc.start()
    try:
        assert index_tensors("m.onnx", lambda o, n: data[o : o + n], len(data)) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak
    with pytest.raises(ValueError):
        initializers(lambda o, n: data[o : o + n], len(data))
