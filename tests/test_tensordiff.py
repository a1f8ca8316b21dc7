"""Tensor-level diff: exactly the tensors that changed are named, with correct statistics, read
straight from the store; headers of any shape or hostility never crash it."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from mstore import Repository
from mstore.cli import app
from mstore.formats.tensors import index_tensors, safetensors_index

from helpers import safetensors_bytes, write_tree

rng = np.random.default_rng(0)


def _model(**overrides: tuple[str, np.ndarray]) -> dict[str, tuple[str, np.ndarray]]:
    base = {
        "embed.weight": ("F32", rng.standard_normal((256, 64)).astype(np.float32)),
        "encoder.0.weight": ("F32", rng.standard_normal((64, 64)).astype(np.float32)),
        "encoder.0.bias": ("F32", np.zeros(64, np.float32)),
        "head.weight": ("F32", rng.standard_normal((4, 64)).astype(np.float32)),
    }
    base.update(overrides)
    return base


def _save(repo: Repository, tmp_path: Path, name: str, data: bytes, filename: str = "model.safetensors") -> str:
    d = tmp_path / name
    d.mkdir()
    (d / filename).write_bytes(data)
    return str(repo.save(d / filename)["timestamp"])


def test_diff_names_exactly_the_changed_tensor(tmp_path: Path, repo: Repository) -> None:
    old = _model()
    head = old["head.weight"][1].copy()
    head[:1, :16] += 0.5  # 16 of 256 elements move
    new = dict(old, **{"head.weight": ("F32", head)})
    v1 = _save(repo, tmp_path, "a", safetensors_bytes(old))
    v2 = _save(repo, tmp_path, "b", safetensors_bytes(new))
    files = repo.compare(v1, v2)["files"]
    (changed,) = files["changed"]
    tensors = changed["tensors"]
    assert [t["name"] for t in tensors["changed"]] == ["head.weight"]
    assert tensors["added"] == [] and tensors["removed"] == [] and tensors["unchanged"] == 3
    row = tensors["changed"][0]
    a, b = old["head.weight"][1].astype(np.float64), head.astype(np.float64)
    assert row["changed_fraction"] == pytest.approx(16 / 256)
    assert row["rel_l2"] == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a))
    assert row["dtype_before"] == row["dtype_after"] == "F32" and row["shape_after"] == [4, 64]


def test_added_removed_dtype_and_shape_changes(tmp_path: Path, repo: Repository) -> None:
    old = _model()
    new = {k: v for k, v in old.items() if k != "encoder.0.bias"}
    new["adapter.weight"] = ("F16", np.ones((8, 8), np.float16))
    new["head.weight"] = ("F32", rng.standard_normal((5, 64)).astype(np.float32))  # a new class
    new["embed.weight"] = ("F16", old["embed.weight"][1].astype(np.float16))
    v1 = _save(repo, tmp_path, "a", safetensors_bytes(old))
    v2 = _save(repo, tmp_path, "b", safetensors_bytes(new))
    t = repo.compare(v1, v2)["files"]["changed"][0]["tensors"]
    assert t["added"] == [{"name": "adapter.weight", "dtype": "F16", "shape": [8, 8]}]
    assert t["removed"] == [{"name": "encoder.0.bias", "dtype": "F32", "shape": [64]}]
    by_name = {r["name"]: r for r in t["changed"]}
    assert by_name["head.weight"]["shape_before"] == [4, 64] and by_name["head.weight"]["shape_after"] == [5, 64]
    assert by_name["embed.weight"]["dtype_before"] == "F32" and by_name["embed.weight"]["dtype_after"] == "F16"
    assert t["unchanged"] == 1


def test_bf16_values_are_compared_as_numbers(tmp_path: Path, repo: Repository) -> None:
    f32 = rng.standard_normal(1000).astype(np.float32)
    bf16 = (f32.view(np.uint32) >> 16).astype(np.uint16)
    moved = bf16.copy()
    moved[:10] ^= 1  # flip the lowest mantissa bit of 10 weights
    v1 = _save(repo, tmp_path, "a", safetensors_bytes({"w": ("BF16", bf16)}))
    v2 = _save(repo, tmp_path, "b", safetensors_bytes({"w": ("BF16", moved)}))
    row = repo.compare(v1, v2)["files"]["changed"][0]["tensors"]["changed"][0]
    assert row["changed_fraction"] == pytest.approx(0.01)
    assert 0 < row["rel_l2"] < 0.01


def test_npz_and_torch_style_zip(tmp_path: Path, repo: Repository) -> None:
    a, b = io.BytesIO(), io.BytesIO()
    np.savez(a, w=np.arange(100, dtype=np.float32), b=np.zeros(3))
    np.savez(b, w=np.arange(100, dtype=np.float32) * 2, b=np.zeros(3), extra=np.ones(2, np.int64))
    v1 = _save(repo, tmp_path, "a", a.getvalue(), "weights.npz")
    v2 = _save(repo, tmp_path, "b", b.getvalue(), "weights.npz")
    t = repo.compare(v1, v2)["files"]["changed"][0]["tensors"]
    assert [r["name"] for r in t["changed"]] == ["w"] and t["changed"][0]["rel_l2"] == pytest.approx(1.0)
    assert t["added"] == [{"name": "extra", "dtype": "I64", "shape": [2]}] and t["unchanged"] == 1

    def torch_zip(storages: list[bytes]) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")  # never read
            for i, s in enumerate(storages):
                z.writestr(f"archive/data/{i}", s)
        return out.getvalue()

    v3 = _save(repo, tmp_path, "c", torch_zip([b"\x00" * 64, b"\x01" * 64]), "model.pt")
    v4 = _save(repo, tmp_path, "d", torch_zip([b"\x00" * 64, b"\x01" * 60 + b"\x02" * 4]), "model.pt")
    t = repo.compare(v3, v4)["files"]["changed"][0]["tensors"]
    assert [r["name"] for r in t["changed"]] == ["archive/data/1"] and t["unchanged"] == 1
    assert t["changed"][0]["changed_fraction"] == pytest.approx(4 / 64)


def test_directory_models_get_per_file_tensor_diffs(tmp_path: Path, repo: Repository) -> None:
    old = _model()
    new = dict(old, **{"encoder.0.bias": ("F32", np.full(64, 0.1, np.float32))})
    v1 = repo.save(write_tree(tmp_path / "a", {"config.json": b"{}", "model.safetensors": safetensors_bytes(old)}))
    v2 = repo.save(write_tree(tmp_path / "b", {"config.json": b"{}", "model.safetensors": safetensors_bytes(new)}))
    result = CliRunner().invoke(app, ["--store", str(repo.root), "diff", v1["timestamp"], v2["timestamp"], "--json"])
    files = json.loads(result.stdout)["files"]
    assert files["unchanged"] == 1 and files["changed"][0]["path"] == "model.safetensors"
    assert [r["name"] for r in files["changed"][0]["tensors"]["changed"]] == ["encoder.0.bias"]
    text = CliRunner().invoke(app, ["--store", str(repo.root), "diff", v1["timestamp"], v2["timestamp"]]).stdout
    assert "encoder.0.bias" in text and "embed.weight" not in text


@given(
    shapes=st.dictionaries(
        st.text("abcdefgh.", min_size=1, max_size=8), st.lists(st.integers(0, 5), max_size=3), max_size=5
    )
)
def test_safetensors_index_round_trips(shapes: dict[str, list[int]]) -> None:
    tensors = {n: ("F32", np.ones(s, np.float32)) for n, s in shapes.items()}
    data = safetensors_bytes(tensors)
    index = safetensors_index(lambda o, n: data[o : o + n], len(data))
    assert {t.name: list(t.shape) for t in index} == shapes
    for t in index:
        assert data[t.offset : t.offset + t.length] == np.ones(shapes[t.name], np.float32).tobytes()


@given(data=st.binary(max_size=300))
def test_garbage_is_never_a_crash(data: bytes) -> None:
    for name in ("x.safetensors", "x.npz"):
        result = index_tensors(name, lambda o, n: data[o : o + n], len(data))  # must not raise
        assert result is None or all(0 <= t.offset <= t.offset + t.length <= len(data) for t in result)


@pytest.mark.parametrize(
    "header",
    [
        {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}},
        {"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 0]}},
        {"w": {"dtype": "F32", "shape": [5], "data_offsets": [0, 16]}},
        {"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}},
        {"w": "nope"},
        [1, 2],
    ],
)
def test_hostile_safetensors_headers_are_not_tensors(header: object) -> None:
    head = json.dumps(header).encode()
    data = len(head).to_bytes(8, "little") + head + b"\0" * 16
    assert index_tensors("m.safetensors", lambda o, n: data[o : o + n], len(data)) is None


def _raw_safetensors(dtype: str, data: bytes) -> bytes:
    header = json.dumps({"w": {"dtype": dtype, "shape": [len(data)], "data_offsets": [0, len(data)]}}).encode()
    return len(header).to_bytes(8, "little") + header + data


@pytest.mark.parametrize("length", [35, 34 * 4])  # not whole Q8_0 blocks; whole blocks with inf scales
def test_a_ggml_dtype_name_on_arbitrary_bytes_diffs_cleanly(tmp_path: Path, repo: Repository, length: int) -> None:
    """A safetensors header may name any dtype: `Q8_0` over bytes that are not whole blocks is compared as
    bytes (it raised a reshape error), and inf/NaN block scales give no numpy warnings."""
    import warnings

    model = tmp_path / "m.safetensors"
    old = bytearray(b"\x00\x7c" + bytes(range(1, length - 1)))  # an f16 scale of +inf first
    new = bytearray(old)
    new[-1] ^= 0xFF
    ids = []
    for data in (old, new):
        model.write_bytes(_raw_safetensors("Q8_0", bytes(data)))
        ids.append(repo.save(model)["timestamp"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = repo.compare(ids[0], ids[1])
    (changed,) = d["files"]["changed"]
    (row,) = changed["tensors"]["changed"]
    assert row["name"] == "w" and row["changed_fraction"] > 0


def test_repeated_tensor_names_stay_distinct_after_renaming() -> None:
    """Names made unique with `#n` never collide with a name the file itself uses (`a`, `a#2`, `a`)."""
    from mstore.formats.tensors import Tensor, _unique

    names = ["a", "a#2", "a", "a", "a#3"]
    out = _unique([Tensor(n, "F32", (1,), 4 * i, 4) for i, n in enumerate(names)])
    assert len({t.name for t in out}) == len(names)
    assert {t.offset for t in out} == {4 * i for i in range(len(names))}
