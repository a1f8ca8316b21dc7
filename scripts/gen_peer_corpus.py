"""Regenerate tests/data/peer_corpus/: the malicious pickles of picklescan's, modelscan's and fickling's own tests.

picklescan ships its corpus as files (tests/data, tests/data2): the ones its tests expect flagged are copied.
modelscan builds its files in pytest fixtures (tests/test_modelscan.py, tests/test_utils.py): the fixture
bodies and the classes they pickle are taken out of the source with `ast` and run (pickling a class whose
`__reduce__` names `os.system` runs nothing; only loading would). fickling writes its bypasses as opcode
lists in tests (test/test_bypasses.py): each test is run with `check_safety` wrapped to keep the bytes of
the pickle it is given. Nothing is ever unpickled here.

Run it with a Python that has fickling, dill, requests and aiohttp installed (the peers' venv), and the
three repositories checked out or as bare git directories:

    /tmp/scanners-venv/bin/python scripts/gen_peer_corpus.py \\
        --picklescan PICKLESCAN_GIT --modelscan MODELSCAN_GIT --fickling FICKLING_GIT

Writes the files and MANIFEST.json (file -> source repository, commit, path, test, loader) and prints a count.
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
import zipfile
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "peer_corpus"

# picklescan files its tests expect to pass (benign, broken, not a pickle): not part of the attack corpus
PICKLESCAN_BENIGN = {
    "bad_pytorch.pt",  # a PNG named .pt: "scanned, no threats" in picklescan's own test
    "benign0_v0.pkl",
    "benign0_v3.pkl",
    "benign0_v4.pkl",
    "benign_password_protected.zip",
    "broken_model.pkl",
    "not_a_pickle.bin",
    "pytorch_model.bin",
    "new_pytorch_model.bin",
    "int_array.npy",
    "int_arrays.npz",
    "int_arrays_compressed.npz",
    "object_array.npy",
    "object_arrays.npz",
    "object_arrays_compressed.npz",
}
# fickling tests that check a pickle is *not* flagged: only the one they expect flagged is kept (the
# anti-widening case of test_private_stdlib_allowlist, a dotted name under `__future__`)
FICKLING_BENIGN_TESTS = {
    "test_safe_builtins_not_flagged",
    "test_safe_builtin_dict_not_flagged",
    "test_private_stdlib_allowlist",
    "test_well_formed_frames_are_not_flagged",
}
FICKLING_KEEP = b"_ssl.RAND_bytes"


def git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={_gitdir(repo)}", *args], capture_output=True, check=True).stdout


def _gitdir(repo: Path) -> Path:
    return repo / ".git" if (repo / ".git").exists() else repo


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").decode().strip()


def picklescan(repo: Path, manifest: list[dict[str, Any]]) -> None:
    commit = head(repo)
    names = git(repo, "ls-tree", "-r", "--name-only", "HEAD", "tests/data", "tests/data2").decode().split()
    for name in sorted(names):
        base = name.rsplit("/", 1)[1]
        if base in PICKLESCAN_BENIGN:
            continue
        target = OUT / "picklescan" / base
        target.write_bytes(git(repo, "show", f"HEAD:{name}"))
        manifest.append(_entry("picklescan", "mmaitre314/picklescan", commit, name, "scan_file_path", target))


def _entry(tool: str, repo: str, commit: str, path: str, test: str, target: Path) -> dict[str, Any]:
    return {
        "file": target.relative_to(OUT).as_posix(),
        "corpus": tool,
        "repo": repo,
        "commit": commit,
        "source": path,
        "test": test,
    }


def _nodes(source: str, wanted: Any) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    for node in ast.parse(source).body:
        if wanted(node):
            if isinstance(node, ast.FunctionDef):
                node.decorator_list = []
            out.append(node)
    return out


class _FixedTime:
    @staticmethod
    def time() -> float:
        return 315532800.0

    @staticmethod
    def localtime(*_args: object) -> tuple[int, ...]:
        return (1980, 1, 1, 0, 0, 0, 1, 1, 0)


def modelscan(repo: Path, manifest: list[dict[str, Any]]) -> None:
    commit = head(repo)
    tests = git(repo, "show", "HEAD:tests/test_modelscan.py").decode()
    utils = git(repo, "show", "HEAD:tests/test_utils.py").decode()
    fixtures = {"file_path", "zip_file_path", "numpy_file_path"}

    def from_tests(node: ast.stmt) -> bool:
        if isinstance(node, ast.ClassDef):
            return node.name.startswith("Malicious")
        if isinstance(node, ast.FunctionDef):
            return node.name.startswith(("malicious", "initialize_")) or node.name in fixtures
        return isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "malicious3_pickle_bytes" for t in node.targets
        )

    def from_utils(node: ast.stmt) -> bool:
        names = {"PickleInject", "get_pickle_payload", "generate_unsafe_pickle_file"}
        return isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name in names

    module = ast.Module(body=_nodes(utils, from_utils) + _nodes(tests, from_tests), type_ignores=[])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        (root / "data" / "password_protected.zip").write_bytes(
            git(repo, "show", "HEAD:tests/data/password_protected.zip")
        )

        class Factory:
            def mktemp(self, name: str) -> Path:
                path = root / "out" / name
                path.mkdir(parents=True)
                return path

        import bdb  # noqa: F401
        import http.client  # noqa: F401

        import aiohttp  # noqa: F401  (the classes modelscan pickles)
        import dill  # noqa: F401
        import requests  # noqa: F401

        namespace: dict[str, Any] = {"__file__": str(root / "test_modelscan.py"), "__name__": "modelscan_tests"}
        exec(  # noqa: S102 - the peer's own fixture code; it pickles, it never unpickles
            "import bdb, http.client, io, os, pickle, shutil, socket, struct, subprocess, sys, zipfile\n"
            "import aiohttp, dill, requests\nimport numpy as np\nfrom typing import Any, List, Tuple\n",
            namespace,
        )
        exec(compile(module, "modelscan-fixtures", "exec"), namespace)  # noqa: S102
        real_time = zipfile.time
        zipfile.time = _FixedTime  # type: ignore[assignment]  # the zips' member dates: reproducible files
        try:
            for fixture in sorted(fixtures):
                namespace[fixture](Factory())
        finally:
            zipfile.time = real_time
        for path in sorted((root / "out").rglob("*")):
            if not path.is_file() or path.name.startswith(("benign", "safe_", "password_protected")):
                continue
            target = OUT / "modelscan" / path.name
            shutil.copyfile(path, target)
            manifest.append(
                _entry("modelscan", "protectai/modelscan", commit, "tests/test_modelscan.py", path.parent.name, target)
            )
    target = OUT / "modelscan" / "unsafe_zip_pytorch.pt"
    target.write_bytes(git(repo, "show", "HEAD:tests/data/unsafe_zip_pytorch.pt"))
    manifest.append(
        _entry(
            "modelscan", "protectai/modelscan", commit, "tests/data/unsafe_zip_pytorch.pt", "test_scan_pytorch", target
        )
    )


def _arg(kind: str, arg: Any) -> bytes:
    """An operand as the unpickler reads it (fickling's released encoder lacks some of the opcodes its tests use)."""
    if kind in ("uint1", "uint2", "uint4", "uint8", "int4"):
        return struct.pack({"uint1": "<B", "uint2": "<H", "uint4": "<I", "uint8": "<Q", "int4": "<i"}[kind], arg)
    data = arg.encode("utf-8") if isinstance(arg, str) else bytes(arg) if not isinstance(arg, int) else b""
    if kind in ("unicodestring1", "bytes1", "string1"):
        return bytes([len(data)]) + data
    if kind in ("unicodestring4", "bytes4", "string4"):
        return struct.pack("<I", len(data)) + data
    if kind in ("unicodestring8", "bytes8", "bytearray8"):
        return struct.pack("<Q", len(data)) + data
    if kind == "stringnl":
        return repr(arg).encode() + b"\n"
    if kind == "stringnl_noescape":
        return data + b"\n"
    if kind == "stringnl_noescape_pair":
        return b"\n".join(data.split(b" ", 1)) + b"\n"
    if kind == "unicodestringnl":
        return data + b"\n"
    if kind in ("decimalnl_short", "decimalnl_long"):
        return str(arg).encode() + (b"L" if kind == "decimalnl_long" else b"") + b"\n"
    raise NotImplementedError(kind)


def encode(pickled: Any) -> bytes:
    out = bytearray()
    for opcode in pickled:
        try:
            out += opcode.data
        except NotImplementedError:
            out += opcode.info.code.encode("latin-1") + _arg(opcode.info.arg.name, opcode.arg)
    return bytes(out)


def fickling(repo: Path, manifest: list[dict[str, Any]]) -> None:
    import fickling.analysis as analysis
    from fickling.fickle import Pickled

    commit = head(repo)
    source = git(repo, "show", "HEAD:test/test_bypasses.py").decode()
    captured: list[tuple[str, bytes]] = []
    current = [""]
    real_check = analysis.check_safety
    real_load = Pickled.load

    def load(data: Any, *args: Any, **kwargs: Any) -> Any:
        pickled = real_load(data, *args, **kwargs)
        if isinstance(data, bytes | bytearray):
            pickled._mstore_raw = bytes(data)
        return pickled

    def check(pickled: Any, *args: Any, **kwargs: Any) -> Any:
        result = real_check(pickled, *args, **kwargs)
        raw = getattr(pickled, "_mstore_raw", None) or encode(pickled)
        captured.append((current[0], raw))
        return result

    Pickled.load = staticmethod(load)  # type: ignore[method-assign]
    namespace: dict[str, Any] = {"__name__": "fickling_bypasses"}
    exec(compile(source, "test_bypasses.py", "exec"), namespace)  # noqa: S102 - builds opcode lists
    namespace["check_safety"] = check
    for cls in [v for v in namespace.values() if isinstance(v, type) and issubclass(v, unittest.TestCase)]:
        for name in sorted(n for n in dir(cls) if n.startswith("test_")):
            current[0] = name
            unittest.TextTestRunner(stream=open("/dev/null", "w"), verbosity=0).run(cls(name))  # noqa: SIM115
    Pickled.load = real_load  # type: ignore[method-assign]
    counts: dict[str, int] = {}
    seen: set[bytes] = set()
    for test, raw in captured:
        if (test in FICKLING_BENIGN_TESTS and FICKLING_KEEP not in raw) or raw in seen:
            continue
        seen.add(raw)
        counts[test] = counts.get(test, 0) + 1
        target = OUT / "fickling" / f"{test.removeprefix('test_')}_{counts[test]}.pkl"
        target.write_bytes(raw)
        manifest.append(_entry("fickling", "trailofbits/fickling", commit, "test/test_bypasses.py", test, target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--picklescan", type=Path, required=True)
    parser.add_argument("--modelscan", type=Path, required=True)
    parser.add_argument("--fickling", type=Path, required=True)
    args = parser.parse_args()
    for tool in ("picklescan", "modelscan", "fickling"):  # README.md (sources, licenses) is kept
        if (OUT / tool).exists():
            shutil.rmtree(OUT / tool)
        (OUT / tool).mkdir(parents=True)
    manifest: list[dict[str, Any]] = []
    picklescan(args.picklescan, manifest)
    modelscan(args.modelscan, manifest)
    fickling(args.fickling, manifest)
    (OUT / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    for tool in ("picklescan", "modelscan", "fickling"):
        print(tool, sum(1 for m in manifest if m["corpus"] == tool), file=sys.stderr)


if __name__ == "__main__":
    main()
