"""`mstore.open_tensors` and `mstore show --tensors`: tensors read lazily, each chunk verified.

Every format gives back exactly what its own reader gives (safetensors, npz with a Fortran-order array,
ONNX initializers inline and in external data, GGUF float tensors); slices equal numpy's and read only
the rows they cover; from a remote, listing fetches no weight bytes and one tensor fetches its own
chunks; unknown names are one line with the nearest ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mstore
from mstore import Repository
from mstore.errors import BadInput, NotInModel, UnsupportedFormat
from mstore.formats.tensors import safetensors_bytes

from helpers import cli, examples

RNG = np.random.default_rng(0)
BIG = RNG.standard_normal((512, 1024)).astype(np.float32)  # 2 MiB: many rows, several chunks' worth
WEIGHTS = {
    "big": ("F32", BIG),
    "half": ("F16", RNG.standard_normal((3, 5)).astype(np.float16)),
    "ids": ("I64", np.arange(-3, 9, dtype=np.int64).reshape(4, 3)),
    "mask": ("BOOL", np.array([True, False, True])),
    "scalar": ("F64", np.array(2.5)),
}
BF16_BITS = np.array([0x3F80, 0xC000, 0x7F80, 0x0001], dtype=np.uint16)  # 1.0, -2.0, inf, a subnormal


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MSTORE_CACHE", str(tmp_path / "cache"))
    repo = Repository.init(tmp_path / "store")
    blob = safetensors_bytes({**WEIGHTS, "bf16": ("BF16", BF16_BITS)})
    header_len = int.from_bytes(blob[:8], "little")  # add __metadata__ as safetensors writes it
    header = json.loads(blob[8 : 8 + header_len])
    header["__metadata__"] = {"format": "pt", "note": "tiny"}
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    (tmp_path / "m.safetensors").write_bytes(len(head).to_bytes(8, "little") + head + blob[8 + header_len :])
    repo.save(tmp_path / "m.safetensors")
    repo.tag("prod", "latest")
    return repo.root


def test_safetensors_tensors_metadata_and_the_mapping(store: Path) -> None:
    with mstore.open_tensors("prod", store=store) as f:
        assert list(f.keys()) == ["bf16", "big", "half", "ids", "mask", "scalar"] and len(f) == 6
        assert f.metadata() == {"format": "pt", "note": "tiny"}
        for name, (_, array) in WEIGHTS.items():
            got = f.get_tensor(name)
            assert got.dtype == array.dtype and got.shape == array.shape and np.array_equal(got, array), name
        bf16 = f["bf16"]  # widened exactly to float32: the bits are the float32's top half
        assert bf16.dtype == np.float32 and np.array_equal(bf16.view(np.uint32), BF16_BITS.astype(np.uint32) << 16)
        got = f["big"]
        got[0, 0] = 1.0  # writable, and a copy: the next read is unchanged
        assert f["big"][0, 0] == BIG[0, 0]
        assert f.get_slice("big").get_shape() == [512, 1024] and f.get_slice("big").get_dtype() == "F32"
        assert {"name": "big", "dtype": "F32", "shape": [512, 1024], "size": BIG.nbytes} in f.tensors()


_index = st.one_of(
    st.integers(-512, 511),
    st.builds(
        slice,
        st.none() | st.integers(-600, 600),
        st.none() | st.integers(-600, 600),
        st.sampled_from([None, 1, 2, 7, -1, -3]),
    ),
)


@settings(max_examples=examples(60), deadline=None)
@given(
    first=_index,
    second=st.none()
    | st.integers(-1024, 1023)
    | st.builds(slice, st.none() | st.integers(0, 1024), st.none() | st.integers(0, 1024)),
)
def test_a_slice_equals_numpy_indexing(store: Path, first: int | slice, second: int | slice | None) -> None:
    index = first if second is None else (first, second)
    got = mstore.open_tensors("prod", store=store).get_slice("big")[index]
    assert got.shape == BIG[index].shape and np.array_equal(got, BIG[index])


def test_npz_onnx_and_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    onnx = pytest.importorskip("onnx")
    gguf = pytest.importorskip("gguf")
    monkeypatch.setenv("MSTORE_CACHE", str(tmp_path / "cache"))
    repo = Repository.init(tmp_path / "store")
    arrays = {
        "a": RNG.standard_normal((6, 4)).astype(np.float32),
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    }
    np.savez(tmp_path / "w.npz", **arrays)
    packed = {"z": np.zeros(8), "r": RNG.standard_normal((5, 3)), "f": np.asfortranarray(arrays["fortran"])}
    np.savez_compressed(tmp_path / "c.npz", **packed)
    folder = tmp_path / "model"
    folder.mkdir()
    model = onnx.helper.make_model(
        onnx.helper.make_graph(
            [],
            "g",
            [],
            [],
            [onnx.numpy_helper.from_array(a, n) for n, a in {"w1": BIG[:64], "w2": BIG[:2, :8]}.items()],
        )
    )
    onnx.save(
        model, str(folder / "model.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=1024
    )
    writer = gguf.GGUFWriter(str(folder / "m.gguf"), "llama")
    writer.add_tensor("tok", BIG[:16])
    writer.add_tensor("out", BIG[:4, :32].astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    for path in ("w.npz", "c.npz"):
        (folder / path).write_bytes((tmp_path / path).read_bytes())
    repo.save(folder)

    npz = mstore.open_tensors(store=repo.root, file="w.npz")
    assert list(npz) == ["a", "fortran"] and all(np.array_equal(npz[n], a) for n, a in arrays.items())
    assert np.array_equal(npz.get_slice("fortran")[1:], arrays["fortran"][1:])
    compressed = mstore.open_tensors(store=repo.root, file="c.npz")
    assert sorted(compressed) == ["f", "r", "z"]  # inflated when read, exactly as numpy reads them
    assert all(np.array_equal(compressed[n], a) and compressed[n].dtype == a.dtype for n, a in packed.items())
    assert np.array_equal(compressed.get_slice("r")[1:3, 2], packed["r"][1:3, 2])
    sizes = {t["name"]: t["size"] for t in compressed.tensors()}
    assert len(compressed.get_bytes("z")) == sizes["z"]
    graph = mstore.open_tensors(store=repo.root, file="model.onnx")  # w1 in weights.bin, w2 inline
    assert np.array_equal(graph["w1"], BIG[:64]) and np.array_equal(graph["w2"], BIG[:2, :8])
    ggml = mstore.open_tensors(store=repo.root, file="m.gguf")
    assert np.array_equal(ggml["tok"], BIG[:16]) and np.array_equal(ggml["out"], BIG[:4, :32].astype(np.float16))

    with pytest.raises(BadInput, match=r"has 4 tensor files; choose one with file= \('c.npz', 'm.gguf'"):
        mstore.open_tensors(store=repo.root)
    with pytest.raises(NotInModel, match=r"has no file 'w.np' \(nearest: 'w.npz'"):
        mstore.open_tensors(store=repo.root, file="w.np")
    with pytest.raises(UnsupportedFormat, match="'weights.bin' of version .* is not a tensor file"):
        mstore.open_tensors(store=repo.root, file="weights.bin")
    listed = json.loads(cli(repo.root, "show", "--tensors", "--json").stdout)
    assert [f["path"] for f in listed["files"]] == ["c.npz", "m.gguf", "model.onnx", "w.npz"]


def test_a_compressed_npz_entry_that_lies_about_its_size_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inflated size comes from the zip directory (untrusted): a stream longer or shorter than declared
    is one line, never a partial array or an unbounded inflate."""
    monkeypatch.setenv("MSTORE_CACHE", str(tmp_path / "cache"))
    np.savez_compressed(tmp_path / "c.npz", z=np.arange(4096.0))
    data = bytearray((tmp_path / "c.npz").read_bytes())
    central = data.rindex(b"PK\x01\x02")
    usize = int.from_bytes(data[central + 24 : central + 28], "little")
    data[central + 24 : central + 28] = (usize // 2).to_bytes(4, "little")  # declares half of what it holds
    (tmp_path / "lie.npz").write_bytes(bytes(data))
    repo = Repository.init(tmp_path / "store")
    repo.save(tmp_path / "lie.npz")
    with pytest.raises(
        UnsupportedFormat, match=r"^'z' in 'lie.npz': it does not inflate to the size its zip entry declares$"
    ):
        mstore.open_tensors(store=repo.root)["z"]


def test_unknown_tensor_names_are_one_line_with_the_nearest(store: Path) -> None:
    with pytest.raises(NotInModel, match=r"^'m.safetensors' has no tensor 'bigg' \(nearest: 'big'\)$"):
        mstore.open_tensors("prod", store=store)["bigg"]
    with pytest.raises(IndexError):
        mstore.open_tensors("prod", store=store).get_slice("big")[512]
    shown = cli(store, "show", "prod", "--tensors").stdout
    assert "m.safetensors: 6 tensor(s)" in shown and "  big     F32     [512, 1024]" in shown
    (store.parent / "m.bin").write_bytes(b"x" * 10)
    Repository.open(store).save(store.parent / "m.bin")
    assert "has no tensor file" in cli(store, "show", "--tensors").stdout
    assert "no remote named 'x'" in cli(store, "show", "--remote", "x", code=2).stderr


def test_from_a_remote_the_list_fetches_no_weights_and_a_tensor_only_its_chunks(store: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    repo = Repository.open(store)
    repo.remote_add("origin", str(remote))
    repo.push("origin")
    listed = json.loads(cli(store, "show", "prod", "--tensors", "--remote", str(remote), "--json").stdout)
    assert len(listed["files"][0]["tensors"]) == 6
    assert 0 < listed["bytes_fetched"] < 4096  # the manifest and the header chunk: no weight bytes

    f = mstore.open_tensors("prod", remote=str(remote), cache_dir=tmp_path / "other-cache")
    before = f.bytes_fetched
    assert np.array_equal(f["ids"], WEIGHTS["ids"][1])
    small = f.bytes_fetched - before
    assert 0 < small < 4096  # the chunk of `ids` (with its small neighbours), not `big`
    assert np.array_equal(f["big"], BIG) and f.bytes_fetched - before - small > 1 << 20  # big came now
    again = mstore.open_tensors("prod", remote=str(remote), cache_dir=tmp_path / "other-cache")
    assert np.array_equal(again["big"], BIG) and again.bytes_fetched == 0  # kept in the cache's objects


def test_a_tensor_of_several_chunks_is_read_on_threads_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSTORE_CACHE", str(tmp_path / "cache"))
    long = np.arange(10 << 18, dtype=np.float32).reshape(-1, 1024)  # 10 MiB: three 4 MiB pieces
    (tmp_path / "long.safetensors").write_bytes(safetensors_bytes({"long": ("F32", long)}))
    repo = Repository.init(tmp_path / "store")
    repo.save(tmp_path / "long.safetensors")
    assert len(repo.manifest("latest").files[0].chunks) >= 3
    f = mstore.open_tensors(store=repo.root)
    assert np.array_equal(f["long"], long)
    rows = slice(1020, 1030)  # across the first piece boundary (1024 rows of 4 KiB)
    assert np.array_equal(f.get_slice("long")[rows], long[rows])
