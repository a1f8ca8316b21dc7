"""mstore reads bytes and parses headers; it never unpickles, imports or executes model content."""

from __future__ import annotations

import ast
from pathlib import Path

import mstore

FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "torch", "marshal", "shelve", "numpy"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def test_package_never_imports_deserialisers_or_evaluates_code() -> None:
    package = Path(mstore.__file__).parent
    offences = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                names = [node.func.id] if node.func.id in FORBIDDEN_CALLS else []
            else:
                continue
            offences += [f"{path.name}:{node.lineno}: {n}" for n in names if n in FORBIDDEN_MODULES | FORBIDDEN_CALLS]
    assert offences == []
