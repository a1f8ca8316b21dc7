"""Issue 21: one crafted file per attack class that beat the scanner on main (950477e). Each one is first
proved to be a real exploit: a child process loads it with `pickle.load` or `joblib.load` and the payload
writes a marker file. Then the scanner must not call it safe, and `save --refuse-unsafe` must refuse it.

The files are written opcode by opcode here (the wrappers via pickle.dumps of joblib's own class, which is
data); they are only ever loaded in the child process, never by the test or by mstore."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mstore import Repository
from mstore.errors import UnsafeModel
from mstore.formats import pickles as P

np = pytest.importorskip("numpy")
joblib = pytest.importorskip("joblib")


def sbu(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def system_call(marker: Path) -> bytes:
    """Opcodes (no PROTO, no STOP) that call os.system('touch MARKER') and leave its result on the stack."""
    cmd = f"touch {marker}".encode()
    return b"cos\nsystem\nX" + struct.pack("<I", len(cmd)) + cmd + b"\x85R"


def wrapper(dtype: str, shape: tuple[int, ...]) -> bytes:
    """A real joblib NumpyArrayWrapper record, built and BUILT (protocol 2, no frame), without its STOP."""
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
