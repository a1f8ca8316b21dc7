"""What CI's editable install cannot show: the built wheel holds every subpackage and imports on its own,
and the import contracts in pyproject.toml cover every module. The layers are packages, so a module saved
in a layer's folder is placed by that alone; a new top-level module must be placed by hand (a layers
contract ignores what it does not list), and these tests say which."""

from __future__ import annotations

import ast
import pkgutil
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

import mstore

ROOT = Path(__file__).resolve().parent.parent


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["importlinter"]["contracts"])


def _modules() -> set[str]:
    """Every module of the package that holds code (package __init__s that are only a docstring aside)."""
    found = set()
    for info in pkgutil.walk_packages(mstore.__path__, "mstore."):
        if info.ispkg:
            init = Path(mstore.__file__).parent.joinpath(*info.name.split(".")[1:], "__init__.py")
            body = ast.parse(init.read_text()).body
            if all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body):
                continue
        found.add(info.name)
    return found


def _layered(contract: dict[str, object]) -> list[set[str]]:
    return [{m.strip() for m in str(layer).split("|")} for layer in contract["layers"]]  # type: ignore[attr-defined]


def test_every_module_is_placed_in_the_layers_contract() -> None:
    layers = _layered(_contracts()[0])
    listed = set().union(*layers)
    missing = sorted(m for m in _modules() if not any(m == p or m.startswith(p + ".") for p in listed))
    assert not missing, f"place these modules in a layer of [tool.importlinter] in pyproject.toml: {missing}"


def test_the_layers_name_what_exists_and_the_top_level_holds_only_the_fronts_and_the_ground_floor() -> None:
    layers = _layered(_contracts()[0])
    listed = set().union(*layers)
    modules = {info.name for info in pkgutil.walk_packages(mstore.__path__, "mstore.")}
    assert sorted(listed - modules) == []  # a stale name in the contract guards nothing
    top = sorted(m for m in modules if m.count(".") == 1 and not _is_package(m))
    assert top == [
        "mstore.__main__",
        "mstore.api",
        "mstore.errors",
        "mstore.humanize",
        "mstore.modelpath",
        "mstore.repository",
        "mstore.tensorfile",
        "mstore.workers",
    ], "a new module belongs in the folder of its layer (mstore/store/, mstore/ops/, ...)"


def _is_package(name: str) -> bool:
    return Path(mstore.__file__).parent.joinpath(*name.split(".")[1:], "__init__.py").is_file()


def test_every_module_below_the_remote_side_is_forbidden_to_import_it() -> None:
    """Everything below `mstore.repository` that is not itself remote is the local store."""
    contracts = _contracts()
    layers = _layered(contracts[0])
    below = set().union(*layers[layers.index({"mstore.repository"}) + 1 :])
    local = {m for m in below if not m.startswith("mstore.remote")}
    forbidden = next(c for c in contracts if c["type"] == "forbidden")
    assert forbidden["forbidden_modules"] == ["mstore.remote"]
    assert set(forbidden["source_modules"]) == local  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_wheel_holds_every_subpackage_and_imports_on_its_own(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a clean copy: a build/ left in the work tree would hide a missing package
    src.mkdir()
    shutil.copytree(ROOT / "mstore", src / "mstore", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("mstore-*.whl")
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(unpacked)
    packages = {p.parent.relative_to(unpacked).as_posix() for p in unpacked.rglob("__init__.py")}
    source = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "mstore").rglob("__init__.py")}
    assert packages == source
    assert (unpacked / "mstore" / "ui" / "static").is_dir() and list(
        (unpacked / "mstore" / "ui" / "templates").glob("*.html")
    )
    probe = (
        "import mstore, mstore.cli as c, mstore.remote.transfer, mstore.ui.app;"
        "print(mstore.__file__); c.app(['--version'], prog_name='mstore')"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.stdout.startswith(str(unpacked)), (run.stdout, run.stderr[-2000:])
    assert "mstore " in run.stdout
