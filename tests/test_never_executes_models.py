"""mstore reads bytes and parses headers; it never unpickles, imports or executes model content."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mstore

FORBIDDEN_MODULES = {
    "pickle",
    "cPickle",
    "_pickle",
    "pickletools",  # imports pickle; mstore.formats.pickles walks opcodes with its own table
    "dill",
    "cloudpickle",
    "joblib",
    "torch",
    "marshal",
    "shelve",
    "onnx",  # mstore.formats.onnx walks the protobuf wire format itself
    "onnxruntime",
    "google",  # google.protobuf
    "gguf",  # mstore.formats.gguf reads the tensor table itself
}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
# The training-loop integrations are handed the caller's live objects and write them (a torch state_dict as
# safetensors, a scikit-learn estimator with joblib.dump): they may import those two writers, never a loader.
WRITERS = {"torch", "joblib"}
LOADERS = {"load", "loads", "Unpickler"}  # np.load & co. can unpickle; mstore parses headers itself


def _offences(tree: ast.AST, name: str, allowed: frozenset[str] = frozenset()) -> list[str]:
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:  # a relative import is mstore's own
            names = [(node.module or "").split(".")[0]]
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
                names = [node.func.id]
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in LOADERS:
                base = func.value
                if isinstance(base, ast.Name) and base.id in {"np", "numpy", "pickle", "torch", "joblib"}:
                    names = [f"{base.id}.{func.attr}"]
            names += [k.arg for k in node.keywords if k.arg == "allow_pickle"]
        else:
            continue
        found += [
            f"{name}:{node.lineno}: {n}"
            for n in names
            if (n in FORBIDDEN_MODULES | FORBIDDEN_CALLS and n not in allowed) or "." in n or n == "allow_pickle"
        ]
    return found


def test_package_never_imports_deserialisers_or_evaluates_code() -> None:
    package = Path(mstore.__file__).parent
    offences = []
    for path in sorted(package.rglob("*.py")):
        allowed = frozenset(WRITERS) if path.parent.name == "integrations" else frozenset()
        offences += _offences(ast.parse(path.read_text(), filename=str(path)), path.name, allowed)
    assert offences == []


def test_the_scanner_catches_what_it_should() -> None:
    bad = "import pickle\nfrom torch import load\nimport numpy as np\nnp.load(f, allow_pickle=True)\neval('1')\n"
    assert len(_offences(ast.parse(bad), "x")) == 5
    assert _offences(ast.parse("from .onnx import initializers\nfrom . import gguf\n"), "x") == []
    writer = "import torch\nimport joblib\njoblib.dump(m, p)\n"
    assert _offences(ast.parse(writer), "x", frozenset(WRITERS)) == []  # an integration writes the caller's model
    assert (
        len(_offences(ast.parse(writer + "torch.load(p)\njoblib.load(p)\nimport pickle\n"), "x", frozenset(WRITERS)))
        == 3
    )


@pytest.mark.slow
def test_a_pickle_that_would_run_code_is_saved_shown_diffed_and_restored_without_running(tmp_path: Path) -> None:
    """The pickle below calls os.system('touch PWNED') when loaded. Every command handles it as bytes."""
    from craft import mstore

    work = tmp_path / "work"
    work.mkdir()
    payload = b"\x80\x02cos\nsystem\nq\x00X\x0b\x00\x00\x00touch PWNED\x85R."
    (work / "model.pkl").write_bytes(payload)
    store = tmp_path / "store"
    for args in (
        ("save", "model.pkl"),
        ("save", "model.pkl", "--refuse-unsafe"),
        ("show",),
        ("log",),
        ("diff", "latest", "latest"),
        ("checkout", "latest", "-o", "refused.pkl"),  # refused: loading it would run os.system
        ("checkout", "latest", "-o", "restored.pkl", "--allow-unsafe"),
        ("fsck",),
    ):
        done = mstore(*args, cwd=work, store=store)
        assert "Traceback" not in done.stderr, (args, done.stderr)
    assert not (work / "refused.pkl").exists()
    assert (work / "restored.pkl").read_bytes() == payload
    assert not (work / "PWNED").exists() and not (tmp_path / "PWNED").exists()
