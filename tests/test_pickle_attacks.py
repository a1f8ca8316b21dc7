"""Issue 21: one crafted file per attack class that beat the scanner on main (950477e). Each one is first
proved to be a real exploit: a child process loads it with `pickle.load` or `joblib.load` and the payload
writes a marker file. Then the scanner must not call it safe, and `save --refuse-unsafe` must refuse it.

The files are written opcode by opcode by tests/pickle_corpus.py (shared with scripts/compare_scanners.py);
they are only ever loaded in the child process, never by the test or by mstore."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pickle_corpus import (
    ATTACKS,
    base0_int_literal,
    dotted_name,
    elsize_from_state,
    escaped_string_operands,
    legacy_sidecar,
    nested_object_array,
    skipped_bytes_run_under_pickle_load,
    trusted_package_writer,
)

from mstore import Repository
from mstore.errors import UnsafeModel
from mstore.formats import pickles as P

np = pytest.importorskip("numpy")
joblib = pytest.importorskip("joblib")


CHILD = r"""
import json, os, pickle, sys
import joblib, numpy as np
cases = json.loads(sys.argv[1])
for path, loader, sidecar_marker in cases:
    if sidecar_marker:
        class Evil:
            def __reduce__(self):
                return (os.system, ("touch " + sidecar_marker,))
        np.save(os.path.join(os.path.dirname(path), "side.npy"), np.array([Evil()], dtype=object), allow_pickle=True)
    try:
        if loader == "pickle":
            with open(path, "rb") as f:
                pickle.load(f)
        else:
            joblib.load(path)
    except Exception:
        pass
"""


def _write_all(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    out = {}
    for name, (build, _loader) in ATTACKS.items():
        folder = tmp_path / name
        folder.mkdir()
        marker = folder / "PWNED"
        path = folder / "model.pkl"
        path.write_bytes(build(marker))
        out[name] = (path, marker)
    return out


@pytest.mark.slow
def test_every_attack_class_is_a_real_exploit_and_is_never_called_safe(tmp_path: Path) -> None:
    files = _write_all(tmp_path)
    cases = [
        [str(path), ATTACKS[name][1], str(marker) if name == "legacy_sidecar" else ""]
        for name, (path, marker) in files.items()
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run([sys.executable, "-c", CHILD, json.dumps(cases)], cwd=tmp_path, env=env, timeout=120, check=True)
    ran = {name for name, (_path, marker) in files.items() if marker.exists()}
    assert ran == set(ATTACKS), f"not real exploits: {set(ATTACKS) - ran}"
    for name, (path, _marker) in files.items():
        scan = P.scan_file(path)
        assert scan is not None, name
        assert scan.verdict != "safe", (name, scan.globals, scan.error)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_each_attack_class_is_flagged_and_refused(tmp_path: Path, name: str) -> None:
    build, _loader = ATTACKS[name]
    path = tmp_path / "model.pkl"
    path.write_bytes(build(tmp_path / "PWNED"))
    scan = P.scan_file(path)
    assert scan is not None and scan.verdict != "safe", (scan and scan.globals, scan and scan.error)
    repo = Repository.init(tmp_path / "store")
    with pytest.raises(UnsafeModel):
        repo.save(path, refuse_unsafe=True)
    assert repo.ids() == []
    meta = repo.save(path)
    assert meta["mstore"]["pickle_verdict"] in ("unsafe", "unknown")


def test_the_named_global_is_the_one_the_loader_imports(tmp_path: Path) -> None:
    marker = tmp_path / "M"
    assert P.scan_bytes(dotted_name(marker)).unsafe == ["joblib.numpy_pickle:os.popen"]
    assert P.scan_bytes(escaped_string_operands(marker)).unsafe == ["joblib.numpy_pickle:os.system"]
    assert P.scan_bytes(base0_int_literal(marker)).unsafe == ["os.system"]
    assert "os.system" in P.scan_bytes(skipped_bytes_run_under_pickle_load(marker)).unsafe
    assert "os.system" in P.scan_bytes(nested_object_array(marker)).unsafe
    assert "os.system" in P.scan_bytes(elsize_from_state(marker)).unsafe
    assert P.scan_bytes(trusted_package_writer(marker)).unsafe == ["joblib.dump"]
    assert P.scan_bytes(legacy_sidecar(marker)).unsafe == ["joblib.numpy_pickle_compat.NDArrayWrapper"]


def test_user_classes_are_allowed_only_by_name(tmp_path: Path) -> None:
    data = b"\x80\x02cmypkg.models\nMyModel\n)\x81."
    path = tmp_path / "model.pkl"
    path.write_bytes(data)
    repo = Repository.init(tmp_path / "store")
    assert repo.save(path)["mstore"]["pickle_verdict"] == "unsafe"
    meta = repo.save(path, allow=["mypkg.models.MyModel"], refuse_unsafe=True)
    assert meta["mstore"]["pickle_verdict"] == "safe"
    assert meta["mstore"]["pickle_allowed"] == ["mypkg.models.MyModel"]
    with pytest.raises(UnsafeModel):
        repo.save(path, allow=["mypkg.models.Other"], refuse_unsafe=True)


def test_a_same_size_rewrite_with_the_mtime_put_back_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x80\x02cbuiltins\nset\n)R.")
    scan = P.scan_file(path)
    assert scan is not None and P.unchanged(path, scan)
    st = os.stat(path)
    path.write_bytes(b"\x80\x02cos\nsystem\n)\x00R."[: st.st_size].ljust(st.st_size, b"."))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    assert not P.unchanged(path, scan)


def test_compressed_joblib_files_are_walked(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    for compress in (3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)):
        path = tmp_path / "m.joblib"
        joblib.dump(model, path, compress=compress)
        scan = P.scan_file(path)
        assert scan is not None and scan.verdict == "safe", (compress, scan and scan.error)
        assert "sklearn.linear_model._logistic.LogisticRegression" in scan.globals
    joblib.dump({"x": os_system_object()}, path, compress=3)
    scan = P.scan_file(path)
    assert scan is not None and "posix.system" in scan.unsafe


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


def os_system_object() -> object:
    return _Evil()
