"""Print the (module, qualname) pairs that real scikit-learn / numpy / scipy / joblib pickles import.

Fits every scikit-learn estimator that fits on a tiny data set in about a second, plus pipelines, numpy and
scipy values, and dumps each with pickle (protocols 2-5) and joblib (with and without compress=), recording
what `find_class` is asked for (an Unpickler subclass that records and then resolves). The output is the raw
material for mstore/formats/allowlist.py, which is reviewed by hand: run

    .venv/bin/python scripts/build_allowlist.py > /tmp/pairs.txt

and diff against the table. Nothing here is imported by mstore.
"""

from __future__ import annotations

import io
import pickle
import sys
import warnings

import joblib
import numpy as np


class Recorder(pickle._Unpickler):  # type: ignore[name-defined,misc]
    seen: set[tuple[str, str]] = set()

    def find_class(self, module: str, name: str) -> object:
        Recorder.seen.add((module, name))
        return super().find_class(module, name)


def record(obj: object) -> None:
    for protocol in (2, 3, 4, 5):
        Recorder(io.BytesIO(pickle.dumps(obj, protocol=protocol))).load()
    for compress in (0, 3):
        buf = io.BytesIO()
        joblib.dump(obj, buf, compress=compress)
        buf.seek(0)
        joblib.load(buf)


def _joblib_find_class(self: object, module: str, name: str) -> object:
    Recorder.seen.add((module, name))
    return pickle._Unpickler.find_class(self, module, name)  # type: ignore[attr-defined]


joblib.numpy_pickle.NumpyUnpickler.find_class = _joblib_find_class  # type: ignore[method-assign]


def main() -> None:
    import collections

    import scipy.sparse
    from sklearn.utils import all_estimators

    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(int)
    yr = X[:, 1]
    objs: list[object] = [
        np.arange(10.0),
        np.array(["a"]),
        np.array([1, "x"], dtype=object),
        np.float64(1.0),
        np.int64(3),
        np.zeros(3, dtype=[("x", "<f4")]),
        np.random.RandomState(0),
        np.random.default_rng(0),
        scipy.sparse.csr_matrix(np.eye(3)),
        scipy.sparse.csc_matrix(np.eye(3)),
        scipy.sparse.coo_matrix(np.eye(3)),
        collections.OrderedDict(a=1),
        collections.defaultdict(list),
        collections.Counter("ab"),
        {1, 2},
        frozenset([1]),
        slice(1, 2),
        range(3),
        complex(1, 2),
        bytearray(b"x"),
        np.dtype("f8"),
        np.ma.masked_array([1, 2], mask=[0, 1]),
    ]
    fitted = set()
    for kind in (
        "classifier",
        "regressor",
        "transformer",
        "cluster",
        None,
    ):  # None: outlier detectors, covariance, mixtures
        for name, cls in all_estimators(type_filter=kind):
            if name in fitted:
                continue
            fitted.add(name)
            try:
                est = cls()
            except Exception:
                continue
            target = y if kind == "classifier" else yr if kind == "regressor" else None
            for data, t in ((X, target), (np.abs(X), target), (X, y), (np.abs(X), y)):
                try:
                    est.fit(data, t)
                    break
                except Exception:
                    continue
            else:
                continue
            objs.append(est)
            print(f"# fitted {name}", file=sys.stderr)
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_union
    from sklearn.preprocessing import StandardScaler

    texts = [f"w{i % 7} v{i % 3}" for i in range(30)]
    labels = [i % 2 for i in range(30)]
    objs.append(Pipeline([("t", TfidfVectorizer()), ("c", LogisticRegression())]).fit(texts, labels))
    objs.append(CountVectorizer().fit(texts))
    union = make_union(StandardScaler(), StandardScaler())
    objs.append(Pipeline([("u", union), ("c", LogisticRegression())]).fit(X, y))
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    columns = ColumnTransformer([("num", StandardScaler(), [0, 1]), ("cat", OneHotEncoder(), [2])])
    objs.append(columns.fit(np.column_stack([X[:, :2], (X[:, 2] > 0).astype(int)])))
    for obj in objs:
        try:
            record(obj)
        except Exception as exc:
            print(f"# skipped {type(obj).__name__}: {exc}", file=sys.stderr)
    for module, name in sorted(Recorder.seen):
        print(f"{module} {name}")


if __name__ == "__main__":
    main()
