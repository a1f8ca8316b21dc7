"""joblib files are cut at array boundaries where that pays (issue 13, item 1): a big float array of dense,
distinct values (an SGD `coef_`) becomes tensor pieces stored in byte planes (and as XOR deltas against
the parent's same array when that wins); everything else (the pickle stream, the vocabulary, arrays of
few distinct values such as TF-IDF `idf_`) stays in CDC-cut stretches. Hostile or damaged joblib files
are cut by CDC alone, and every file round-trips bit-exact."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstore import Repository
from mstore.formats.tensors import Tensor, index_tensors
from mstore.store import chunking, codec
from mstore.store.chunking import JOBLIB_MIN, ModelAwareChunker, chunker_from_config, planes_win
from mstore.store.layout import Store

from helpers import examples

np = pytest.importorskip("numpy")
joblib = pytest.importorskip("joblib")

CHUNKER = ModelAwareChunker(joblib_min=JOBLIB_MIN)


def _sgd_versions(tmp_path: Path, versions: int = 2) -> list[Path]:
    """A TF-IDF + SGD (log loss) pipeline warm-started on growing data: `coef_` is 8 x 4500 float64 of
    distinct values (288 KB), `idf_` 4500 values with few distinct ones, the vocabulary stable."""
    pytest.importorskip("sklearn")
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(4500)]
    texts = [" ".join(words[(i * 9 + j) % 4500] for j in range(9)) for i in range(500)]  # every word
    model = make_pipeline(
        TfidfVectorizer(), SGDClassifier(loss="log_loss", max_iter=2, tol=None, warm_start=True, random_state=0)
    )
    out = []
    for v in range(versions):
        texts += [" ".join(words[j] for j in rng.integers(4500, size=30)) for _ in range(1000)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(texts, [i % 8 for i in range(len(texts))])
        path = tmp_path / f"v{v}.joblib"
        joblib.dump(model, path)
        out.append(path)
    return out


def _boundaries(entry: object) -> list[int]:
    offsets, at = [0], 0
    for chunk in entry.chunks:  # type: ignore[attr-defined]
        at += chunk.size
        offsets.append(at)
    return offsets


@pytest.mark.slow
def test_a_retrained_pipelines_coef_is_stored_as_byte_plane_pieces(tmp_path: Path) -> None:
    files = _sgd_versions(tmp_path)
    model = tmp_path / "model.joblib"
    repo = Repository.init(tmp_path / "store")
    assert repo.store.config["chunker"]["joblib_min"] == JOBLIB_MIN
    for path in files:
        model.write_bytes(path.read_bytes())
        repo.save(model)
    raw = files[-1].read_bytes()
    arrays = {t.name: t for t in index_tensors("m", lambda o, n: raw[o : o + n], len(raw), joblib=True) or []}
    coef, idf = arrays["steps[1][1].coef_"], arrays["steps[0][1]._tfidf.idf_"]
    assert coef.dtype == "F64" and coef.length >= JOBLIB_MIN
    (entry,) = repo.manifest("latest").files
    cuts = _boundaries(entry)
    assert coef.offset in cuts and coef.offset + coef.length in cuts  # pieces at the array's boundaries
    assert idf.offset not in cuts  # few distinct values: left in the CDC stream, where zstd does better
    inside = [
        c for c, start in zip(entry.chunks, cuts[:-1], strict=True) if coef.offset <= start < coef.offset + coef.length
    ]
    assert inside
    for chunk in inside:
        header = codec.parse_header(repo.store.objects.stored(chunk.oid))
        assert header is not None and header.codec in codec.PLANE_CODECS and header.width == 8
    repo.checkout("latest", tmp_path / "back.joblib")
    assert (tmp_path / "back.joblib").read_bytes() == raw
    repo.checkout("latest~1", tmp_path / "first.joblib")
    assert (tmp_path / "first.joblib").read_bytes() == files[0].read_bytes()


def test_a_store_made_before_array_cutting_keeps_cutting_joblib_by_cdc(tmp_path: Path) -> None:
    """Its config has no joblib_min: unchanged content keeps deduplicating against its old chunks."""
    (path,) = _sgd_versions(tmp_path, 1)
    old = {**Store.init(tmp_path / "new").config}
    old["chunker"] = {k: v for k, v in old["chunker"].items() if k != "joblib_min"}
    repo = Repository(Store.init(tmp_path / "old", like=old))
    assert chunker_from_config(repo.store.config["chunker"]).joblib_min == 0  # type: ignore[attr-defined]
    repo.save(path)
    (entry,) = repo.manifest("latest").files
    assert len(entry.chunks) < 10 and all(
        codec.parse_header(repo.store.objects.stored(c.oid)).codec == codec.ZSTD  # type: ignore[union-attr]
        for c in entry.chunks
    )
    repo.checkout("latest", tmp_path / "back.joblib")
    assert (tmp_path / "back.joblib").read_bytes() == path.read_bytes()


def test_planes_are_chosen_only_for_dense_distinct_values() -> None:
    rng = np.random.default_rng(1)
    dense = rng.normal(0, 0.1, 40_000)
    few = rng.choice(rng.normal(0, 1, 300), 40_000)  # idf-like: a few hundred distinct values
    assert planes_win(dense.tobytes(), 8)
    assert not planes_win(few.tobytes(), 8)
    assert not planes_win(dense.tobytes()[:-1], 8)


def _dump(obj: object) -> bytes:
    data = io.BytesIO()
    joblib.dump(obj, data)
    return data.getvalue()


def _split(data: bytes) -> list[chunking.Piece]:
    return list(CHUNKER.split(io.BytesIO(data), "m.joblib", len(data)))


def test_a_dense_array_in_a_plain_joblib_dump_is_cut_out() -> None:
    data = _dump({"w": np.random.default_rng(2).normal(size=40_000), "b": np.zeros(3)})
    keys = [p.key for p in _split(data) if p.key is not None]
    assert keys == [("w", 0, "F64", (40_000,))]


_FULL = _dump({"w": np.random.default_rng(3).normal(size=40_000)})
_W = next(t for t in _split(_FULL) if t.key is not None)
_AT = _FULL.index(_W.data)
_CUT = _FULL[: _AT + 319_200]  # the file ends 100 elements into the array


@pytest.mark.parametrize(
    "bad",
    [
        [Tensor("a", "F64", (40_000,), _AT, 320_000)],  # the array runs past the end of the file
        [Tensor("a", "F64", (10**12, 10**12), 100, 1 << 40)],  # huge
        [Tensor("a", "F64", (100,), _AT, 800), Tensor("b", "F64", (39_000,), _AT + 400, 312_000)],  # overlap
        [Tensor("a", "F64", (40_000,), -8, 320_000)],
    ],
)
def test_array_headers_that_do_not_fit_the_file_fall_back_to_cdc(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bad: list[Tensor]
) -> None:
    monkeypatch.setattr(chunking, "joblib_index", lambda read, size, fingerprint=None: bad)
    pieces = _split(_CUT)
    assert all(p.key is None for p in pieces) and b"".join(p.data for p in pieces) == _CUT
    repo = Repository.init(tmp_path / "store")
    (tmp_path / "m.joblib").write_bytes(_CUT)
    repo.save(tmp_path / "m.joblib")
    repo.checkout("latest", tmp_path / "out.joblib", allow_unsafe=True)  # damaged: "unknown"
    assert (tmp_path / "out.joblib").read_bytes() == _CUT


_DENSE = _dump({"w": np.random.default_rng(4).normal(size=40_000), "n": np.arange(10)})


@settings(max_examples=examples(40), deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_DENSE)), st.binary(max_size=9), st.integers(0, 9)), max_size=4))
def test_mutated_joblib_files_are_cut_into_pieces_that_concatenate_back(edits: list[tuple[int, bytes, int]]) -> None:
    data = bytearray(_DENSE)
    for at, insert, remove in edits:
        data[at : at + remove] = insert
    pieces = _split(bytes(data))
    assert b"".join(p.data for p in pieces) == data
    assert all(len(p.data) % 8 == 0 for p in pieces if p.key is not None)


def test_damaged_joblib_files_round_trip(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "store")
    for i, damaged in enumerate((_DENSE[: len(_DENSE) // 2], _DENSE[:100] + b"\xff" + _DENSE[101:], _DENSE + _DENSE)):
        path = tmp_path / f"m{i}.joblib"
        path.write_bytes(damaged)
        repo.save(path)
        repo.checkout("latest", tmp_path / f"out{i}.joblib", allow_unsafe=True)  # damaged: "unknown"
        assert (tmp_path / f"out{i}.joblib").read_bytes() == damaged


@pytest.mark.slow
def test_arrays_that_planes_do_not_help_are_cut_out_only_to_isolate_the_bytes_between_them() -> None:
    """`idf`-like arrays (few distinct values) become plain pieces without a key when two cut arrays
    isolate the pickle bytes between them (a vocabulary that can dedup); a lone one is not cut at all."""
    rng = np.random.default_rng(5)
    few = rng.choice(rng.normal(0, 1, 300), 40_000)
    vocab = {f"word{i}": i for i in range(20_000)}
    data = _dump({"idf": few, "vocabulary": vocab, "again": few.copy(), "coef": rng.normal(size=40_000)})
    pieces, at, cuts = _split(data), 0, {}
    for p in pieces:
        cuts[at] = p
        at += len(p.data)
    idf = _named(data)["idf"]
    assert idf.offset in cuts and cuts[idf.offset].key is None and len(cuts[idf.offset].data) == idf.length
    assert [p.key[0] for p in pieces if p.key] == ["coef"]
    assert _named(data)["again"].offset not in cuts  # compresses better after `idf`: left with it
    alone = _dump({"idf": few, "vocabulary": vocab})
    assert [len(p.data) for p in _split(alone)] == [len(c.data) for c in CHUNKER._cdc().cut_buf(alone)]


def _named(data: bytes) -> dict[str, Tensor]:
    return {t.name: t for t in index_tensors("m", lambda o, n: data[o : o + n], len(data), joblib=True) or []}


def test_an_array_that_compresses_better_after_the_bytes_before_it_stays_with_them() -> None:
    rng = np.random.default_rng(6)
    data = rng.normal(size=40_000).tobytes() * 2  # the array repeats what comes before it
    read = lambda o, n: data[o : o + n]  # noqa: E731
    assert chunking.context_helps(read, Tensor("coef", "F64", (40_000,), 320_000, 320_000))
    assert not chunking.context_helps(read, Tensor("coef", "F64", (40_000,), 0, 320_000))


def test_a_save_walks_a_joblib_file_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The chunker reuses the walk of the safety scan (same open file: size, mtime, inode, device)."""
    from mstore.formats import picklefiles

    walks = []
    real = picklefiles.scan_stream  # where scan_file and joblib_arrays call it
    monkeypatch.setattr(picklefiles, "scan_stream", lambda f, size, *rest: walks.append(size) or real(f, size, *rest))
    (tmp_path / "m.joblib").write_bytes(_DENSE)
    repo = Repository.init(tmp_path / "store")
    repo.save(tmp_path / "m.joblib")
    assert walks == [len(_DENSE)]
    assert [c.size for c in repo.manifest("latest").files[0].chunks] == [len(p.data) for p in _split(_DENSE)]


@pytest.mark.parametrize("content", [b"", b"\x80", b"\x80\x04", b"x"])
def test_tiny_files_saved_after_each_other_round_trip(tmp_path: Path, content: bytes) -> None:
    """The parent's tiny file is indexed from the store too (delta bases): its reads stay inside it."""
    repo = Repository.init(tmp_path / "store")
    for data in (content, content + b"\x00"):
        (tmp_path / "m.joblib").write_bytes(data)
        repo.save(tmp_path / "m.joblib")
        repo.checkout("latest", tmp_path / "out.joblib", force=True, allow_unsafe=True)
        assert (tmp_path / "out.joblib").read_bytes() == data


def test_an_array_that_moved_a_little_is_stored_as_an_xor_delta_against_the_parents(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    weights = rng.normal(size=(8, 5000))
    vocab = {f"w{i}": i for i in range(5000)}
    repo = Repository.init(tmp_path / "store")
    path = tmp_path / "m.joblib"
    for step in (0.0, 1e-9, 2e-9):  # a few fine-tuning steps: only the low mantissa bits move
        joblib.dump({"vocabulary": vocab, "coef_": weights * (1 + step)}, path)
        repo.save(path)
    (entry,) = repo.manifest("latest").files
    codecs = [codec.parse_header(repo.store.objects.stored(c.oid)) for c in entry.chunks]
    assert [h.codec for h in codecs if h is not None and h.width == 8] == [codec.PLANES_XOR_DELTA]
    repo.checkout("latest~1", tmp_path / "back.joblib")
    joblib.dump({"vocabulary": vocab, "coef_": weights * (1 + 1e-9)}, tmp_path / "again.joblib")
    assert (tmp_path / "back.joblib").read_bytes() == (tmp_path / "again.joblib").read_bytes()
