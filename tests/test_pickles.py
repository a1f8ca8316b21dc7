"""Pickle safety (issue 13): the globals a pickle or joblib file would import are found statically, unsafe
ones are flagged at save and shown by show / log / diff, `--refuse-unsafe` refuses them, and hostile or
truncated pickles are opaque bytes, never a crash. The hostile pickles here are written opcode by opcode
(never by pickling a real callable, and never loaded)."""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
from pathlib import Path

import pytest
from craft import mstore, snapshot
from hypothesis import given
from hypothesis import strategies as st

from mstore import Repository
from mstore.errors import UnsafeModel
from mstore.formats import pickles as P

np = pytest.importorskip("numpy")
joblib = pytest.importorskip("joblib")


# -- pickles built from opcodes --------------------------------------------------------------------------


def sbu(text: str) -> bytes:  # SHORT_BINUNICODE
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def os_system_global() -> bytes:
    """Protocol 2, GLOBAL opcode: os.system('true')."""
    return b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00true\x85R."


def popen_stack_global_via_memo() -> bytes:
    """Protocol 4: the strings are memoized first and fetched with BINGET, as scanners get evaded."""
    return (
        b"\x80\x04"
        + sbu("subprocess")
        + b"\x94"  # memo 0
        + sbu("Popen")
        + b"\x94"  # memo 1
        + b"0"  # POP
        + b"0"  # POP
        + b"h\x00h\x01"  # BINGET 0, BINGET 1
        + b"\x93"  # STACK_GLOBAL
        + b"]"
        + sbu("id")
        + b"a\x85R."
    )


def eval_inst() -> bytes:
    """Protocol 0, INST: builtins.eval('1+1')."""
    return b"(S'1+1'\nibuiltins\neval\n."


def computed_name() -> bytes:
    """STACK_GLOBAL whose module operand is computed (what builtins.str() returns): the name is not known."""
    return b"\x80\x04cbuiltins\nstr\n)R" + sbu("x") + b"\x93."


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (os_system_global(), ["os.system"]),
        (popen_stack_global_via_memo(), ["subprocess.Popen"]),
        (eval_inst(), ["builtins.eval"]),
        (computed_name(), [P.UNKNOWN_GLOBAL]),
    ],
)
def test_crafted_pickles_are_flagged(data: bytes, expected: list[str]) -> None:
    scan = P.scan_bytes(data)
    assert scan.unsafe == expected
    assert scan.verdict == "unsafe"


def test_the_allow_list() -> None:
    for name in [
        "numpy.ndarray",
        "numpy._core.multiarray._reconstruct",
        "scipy.sparse._csr.csr_matrix",
        "sklearn.pipeline.Pipeline",
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "collections.OrderedDict",
        "copyreg._reconstructor",
        "builtins.set",
        "_codecs.encode",
    ]:
        assert P.is_safe(name), name
    for name in [
        "os.system",
        "posix.system",
        "builtins.eval",
        "builtins.getattr",
        "__builtin__.exec",
        "numpy.testing._private.utils.runstring",
        "numpy.load",
        "numpyx.evil",
        "subprocess.Popen",
        "?",
        "torch.load",
        "system",
    ]:
        assert not P.is_safe(name), name


# -- real scikit-learn and joblib files ------------------------------------------------------------------


def _pipeline() -> object:
    sklearn = pytest.importorskip("sklearn")
    assert sklearn
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    texts = [f"word{i % 40} other{i % 7} thing{i % 13} x{i}" for i in range(400)]
    labels = [i % 4 for i in range(400)]
    return Pipeline([("tfidf", TfidfVectorizer()), ("clf", LogisticRegression(max_iter=50))]).fit(texts, labels)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_real_sklearn_pipelines_saved_by_joblib_are_never_flagged(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(_pipeline(), path, protocol=protocol)
    scan = P.scan_file(path)
    assert scan is not None and scan.complete, scan and scan.error
    assert "sklearn.pipeline.Pipeline" in scan.globals
    assert "joblib.numpy_pickle.NumpyArrayWrapper" in scan.globals
    assert scan.arrays >= 3  # idf_, coef_, intercept_, ... skipped by their size
    assert scan.unsafe == []


def test_joblib_arrays_of_every_kind_are_skipped_exactly(tmp_path: Path) -> None:
    """Object arrays are nested pickles; flexible and structured dtypes carry their own size; a global
    written after the arrays is still found (so the skipping landed on the next opcode)."""
    evil_looking = np.frombuffer(b"cos\nsystem\n" * 8, dtype=np.uint8)  # raw bytes that look like opcodes
    obj = {
        "objects": np.array([1, "x", None, {"k": 2}], dtype=object),
        "floats": np.arange(100.0).reshape(10, 10),
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "strings": np.array(["ab", "cde"]),
        "bytes": np.array([b"ab", b"cdef"]),
        "records": np.zeros(3, dtype=[("x", "<f4"), ("y", "<i8")]),
        "scalar": np.array(3.5),
        "empty": np.zeros((0, 5)),
        "bools": np.array([True, False]),
        "complex": np.arange(4, dtype=np.complex128),
        "dates": np.array(["2020-01-01"], dtype="M8[D]"),
        "half": np.float16([1, 2]),
        "big_endian": np.arange(3, dtype=">i4"),
        "opcodes": evil_looking,
        "last": __import__("collections").OrderedDict(a=1),
    }
    path = tmp_path / "mixed.joblib"
    joblib.dump(obj, path)
    scan = P.scan_file(path)
    assert scan is not None and scan.complete, scan and scan.error
    assert scan.arrays == 14
    assert "collections.OrderedDict" in scan.globals
    assert scan.unsafe == []


class _Evil:
    """Pickles as a call to os.system (the reduce value names the function; nothing is ever called)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("touch PWNED",))


def test_a_global_hidden_after_joblib_arrays_is_found(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump({"weights": np.arange(1000.0), "payload": _Evil()}, path)
    scan = P.scan_file(path)
    assert scan is not None and scan.complete, scan and scan.error
    assert [g for g in scan.unsafe if g.endswith(".system")], scan.globals


def test_plain_pickled_numpy_arrays_are_safe() -> None:
    import pickle

    for protocol in (2, 3, 4, 5):
        data = pickle.dumps({"a": np.arange(10.0), "b": np.array(["x"]), "c": [1, 2.5, "s", b"b"]}, protocol=protocol)
        scan = P.scan_bytes(data)
        assert scan.complete and scan.unsafe == [], (protocol, scan.globals, scan.error)


# -- hostile and truncated pickles -----------------------------------------------------------------------


def test_truncated_joblib_files_never_crash(tmp_path: Path) -> None:
    data = io.BytesIO()
    joblib.dump(_pipeline(), data)
    whole = data.getvalue()
    for cut in sorted({1, 2, 3, 10, 100, len(whole) // 3, len(whole) // 2, len(whole) - 100, len(whole) - 1}):
        scan = P.scan_bytes(whole[:cut])
        assert not scan.complete and scan.error


def test_size_bombs_are_skipped_without_allocation() -> None:
    tracemalloc.start()
    try:
        for data in [
            b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b".",  # BINBYTES8 of 4 EiB
            b"\x80\x04\x8d" + struct.pack("<Q", 1 << 40) + b"x" * 2000 + b".",  # BINUNICODE8 of 1 TiB
            b"\x80\x04\x95" + struct.pack("<Q", 1 << 50) + b".",  # a frame of 1 PiB
            b"\x80\x02\x8b" + struct.pack("<i", 1 << 30) + b".",  # LONG4 of 1 GiB
            b"\x80\x02" + b"(" * 100_000 + b".",  # deep marks
            b"\x80\x02I" + b"9" * 100_000 + b"\n.",  # a 100k-digit INT
        ]:
            scan = P.scan_bytes(data)
            assert not scan.complete and scan.error
        assert tracemalloc.get_traced_memory()[1] < 64 << 20
    finally:
        tracemalloc.stop()


def test_a_joblib_wrapper_declaring_a_huge_array_is_refused() -> None:
    data = io.BytesIO()
    joblib.dump(np.arange(10.0), data, protocol=2)  # no frames: the forgery below does not fix their lengths
    whole = data.getvalue()
    forged = whole.replace(b"K\n\x85", b"J\xff\xff\xff\x7f\x85")  # shape (10,) -> (2**31 - 1,)
    assert forged != whole
    scan = P.scan_bytes(forged)
    assert not scan.complete and "larger than the file" in (scan.error or "")


def test_the_opcode_limit_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    from mstore.formats import picklewalk

    monkeypatch.setattr(picklewalk, "MAX_OPS", 100)  # where the walker reads it
    scan = P.scan_bytes(b"\x80\x02" + b"N0" * 200 + b".")
    assert not scan.complete and "opcodes" in (scan.error or "")


@given(st.binary(max_size=400), st.sampled_from([b"", b"\x80\x02", b"\x80\x04", b"\x80\x05"]))
def test_the_walker_never_raises_on_arbitrary_bytes(data: bytes, prefix: bytes) -> None:
    scan = P.scan_bytes(prefix + data)
    assert isinstance(scan.globals, list)
    assert scan.complete or scan.error


@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_a_real_pickle_header_never_raise(data: bytes) -> None:
    scan = P.scan_bytes(os_system_global()[:-1] + data)
    assert "os.system" in scan.globals  # it was imported before whatever follows


# -- save, show, log, diff, --json, --refuse-unsafe -----------------------------------------------------


def test_save_records_globals_and_refuses_unsafe_on_request(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "store")
    model = tmp_path / "model.pkl"
    model.write_bytes(os_system_global())
    with pytest.raises(UnsafeModel, match="os.system"):
        repo.save(model, refuse_unsafe=True)
    assert repo.ids() == []
    meta = repo.save(model)
    assert meta["mstore"]["pickle_globals"] == {"model.pkl": ["os.system"]}
    assert meta["mstore"]["unsafe_globals"] == ["os.system"]
    other = tmp_path / "weights.bin"
    other.write_bytes(b"\x00" * 100)
    assert "pickle_globals" not in repo.save(other)["mstore"]  # not a pickle: nothing recorded


def test_a_directory_model_is_scanned_file_by_file(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "store")
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    joblib.dump({"w": np.arange(5.0)}, model / "ok.joblib")
    (model / "sub" / "bad.pkl").write_bytes(eval_inst())
    (model / "notes.txt").write_text("hello")
    meta = repo.save(model)
    assert set(meta["mstore"]["pickle_globals"]) == {"ok.joblib", "sub/bad.pkl"}
    assert meta["mstore"]["unsafe_globals"] == ["builtins.eval"]


@pytest.mark.slow
def test_cli_warns_marks_and_refuses(tmp_path: Path) -> None:
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    joblib.dump(_pipeline(), work / "model.joblib")
    (work / "evil.pkl").write_bytes(popen_stack_global_via_memo())

    good = mstore("save", "model.joblib", cwd=work, store=store)
    assert good.code == 0 and "warning" not in good.stderr, good.stderr
    before = snapshot(store)
    refused = mstore("save", "--refuse-unsafe", "evil.pkl", cwd=work, store=store)
    assert refused.one_line_error and refused.code == 2 and "subprocess.Popen" in refused.stderr
    assert snapshot(store).keys() == before.keys()  # nothing published (no version, no object)

    saved = mstore("save", "evil.pkl", cwd=work, store=store)
    assert saved.code == 0
    assert "warning: loading evil.pkl would import subprocess.Popen" in saved.stderr

    log = mstore("log", "--oneline", cwd=work, store=store)
    first, second = log.stdout.splitlines()
    assert "UNSAFE" in first and "UNSAFE" not in second
    assert "Unsafe:   loading it imports subprocess.Popen" in mstore("log", cwd=work, store=store).stdout
    assert "UNSAFE: loading it imports subprocess.Popen" in mstore("show", cwd=work, store=store).stdout
    assert "all known-safe" in mstore("show", "latest~1", cwd=work, store=store).stdout
    diff = mstore("diff", cwd=work, store=store)
    assert "is UNSAFE: loading it imports subprocess.Popen" in diff.stdout
    doc = json.loads(mstore("diff", "--json", cwd=work, store=store).stdout)
    assert doc["unsafe_globals"] == {"version1": [], "version2": ["subprocess.Popen"]}
    shown = json.loads(mstore("show", "--json", cwd=work, store=store).stdout)
    assert shown["metadata"]["mstore"]["unsafe_globals"] == ["subprocess.Popen"]


def test_escape_sequences_in_global_names_are_printed_escaped(tmp_path: Path) -> None:
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    (work / "m.pkl").write_bytes(b"\x80\x02c\x1b[31mos\nsystem\n.")
    saved = mstore("save", "m.pkl", cwd=work, store=store)
    assert "\x1b" not in saved.stderr and "\x1b" not in mstore("show", cwd=work, store=store).stdout


def test_long_values_are_skipped_not_read(tmp_path: Path) -> None:
    """A 20 MB bytes value (a plainly pickled array) costs the walker no memory: it seeks past it."""
    path = tmp_path / "big.pkl"
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 20 << 20) + b"\x00" * (20 << 20) + b".")
    tracemalloc.start()
    try:
        scan = P.scan_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert scan is not None and scan.complete and scan.globals == []
    assert peak < 2 << 20


# -- joblib arrays as tensors (item 1) -------------------------------------------------------------------


def test_joblib_arrays_are_tensors_named_by_their_place(tmp_path: Path) -> None:
    from mstore.formats.tensors import index_tensors

    pipeline = _pipeline()
    data = io.BytesIO()
    joblib.dump(pipeline, data)
    raw = data.getvalue()
    tensors = {
        t.name: t for t in index_tensors("model.joblib", lambda o, n: raw[o : o + n], len(raw), joblib=True) or []
    }
    coef = pipeline.steps[1][1].coef_  # type: ignore[attr-defined]
    assert tensors["steps[1][1].coef_"].shape == coef.shape and tensors["steps[1][1].coef_"].dtype == "F64"
    t = tensors["steps[1][1].coef_"]
    assert raw[t.offset : t.offset + t.length] == coef.tobytes("A")  # joblib keeps C or Fortran order
    assert "steps[0][1]._tfidf.idf_" in tensors and "steps[1][1].intercept_" in tensors
    data = io.BytesIO()
    joblib.dump({"w": np.arange(6.0).reshape(2, 3), "more": [np.ones(4, dtype=np.float32)]}, data)
    raw = data.getvalue()
    named = {
        t.name: (t.dtype, t.shape) for t in index_tensors("x", lambda o, n: raw[o : o + n], len(raw), joblib=True) or []
    }
    assert named == {"w": ("F64", (2, 3)), "more[0]": ("F32", (4,))}


def test_diff_of_two_retrained_pipelines_names_the_changed_arrays(tmp_path: Path) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import Pipeline

    repo = Repository.init(tmp_path / "store")
    path = tmp_path / "model.joblib"
    for n in (600, 800):
        texts = [f"word{i % 40} other{i % 7} x{i % 90}" for i in range(n)]
        model = Pipeline([("tfidf", TfidfVectorizer()), ("clf", SGDClassifier(max_iter=3, random_state=0))])
        with pytest.warns(Warning):
            model.fit(texts, [i % 4 for i in range(n)])
        joblib.dump(model, path)
        repo.save(path)
    (changed,) = repo.compare("latest~1", "latest")["files"]["changed"]
    rows = {row["name"]: row for row in changed["tensors"]["changed"]}
    assert {"steps[1][1].coef_", "steps[1][1].intercept_"} <= set(rows)
    assert rows["steps[1][1].coef_"]["shape_after"] == [4, 90 + 40 + 7]
    repo.checkout("latest", tmp_path / "back.joblib")
    assert (tmp_path / "back.joblib").read_bytes() == path.read_bytes()


def test_joblib_arrays_are_found_only_when_asked_for() -> None:
    """index_tensors reports joblib arrays to diff (`joblib=True`); the chunker picks the ones worth cutting
    out itself (ModelAwareChunker.joblib_regions, tests/test_joblib_chunking.py)."""
    from mstore.formats.tensors import index_tensors

    data = io.BytesIO()
    joblib.dump({"w": np.arange(1000.0)}, data)
    raw = data.getvalue()
    assert index_tensors("m.joblib", lambda o, n: raw[o : o + n], len(raw)) is None
    assert index_tensors("m.joblib", lambda o, n: raw[o : o + n], len(raw), joblib=True)


def test_a_damaged_joblib_file_is_plain_bytes_and_round_trips(tmp_path: Path) -> None:
    from mstore.formats.tensors import index_tensors

    data = io.BytesIO()
    joblib.dump({"w": np.arange(1000.0)}, data)
    raw = bytearray(data.getvalue())
    for damaged in (bytes(raw[: len(raw) // 2]), bytes(raw[:-1]) + b"X"):
        assert index_tensors("m.joblib", lambda o, n, d=damaged: d[o : o + n], len(damaged), joblib=True) is None
        repo = Repository.init(tmp_path / f"s{len(damaged)}")
        (tmp_path / "m.joblib").write_bytes(damaged)
        repo.save(tmp_path / "m.joblib")
        repo.checkout("latest", tmp_path / "out.joblib", force=True, allow_unsafe=True)  # "unknown": refused else
        assert (tmp_path / "out.joblib").read_bytes() == damaged


@given(st.binary(max_size=300))
def test_index_tensors_never_raises_on_pickle_like_bytes(data: bytes) -> None:
    from mstore.formats.tensors import index_tensors

    raw = b"\x80\x04" + data
    result = index_tensors("m.joblib", lambda o, n: raw[o : o + n], len(raw), joblib=True)
    assert result is None or all(t.offset >= 0 and t.offset + t.length <= len(raw) for t in result)
