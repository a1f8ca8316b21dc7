"""What a newcomer trips on first: help that fits, global options anywhere, one-line typos, Ctrl-C in a save."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mstore import Repository
from mstore.cli import app

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), prog_name="mstore", env={"COLUMNS": "80", "NO_COLOR": "1", **(env or {})})
    assert "Traceback" not in result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.bin"
    path.write_bytes(os.urandom(200_000))
    return path


def commands_section(text: str) -> list[str]:
    return text.split("Commands:\n", 1)[1].splitlines()


@pytest.mark.parametrize("group", [[], ["remote"]])
def test_help_summaries_are_not_truncated(group: list[str]) -> None:
    code, out, _ = invoke(*group, "--help")
    assert code == 0
    lines = [line for line in commands_section(out) if line.strip()]
    assert lines
    for line in lines:
        assert not line.rstrip().endswith("..."), line
        assert len(line) <= 80, line
        assert re.match(r"^  \S+\s+\S", line), f"a summary wrapped onto its own line: {line!r}"


def test_usage_lines_carry_no_type_noise() -> None:
    names = ["init", "save", "log", "show", "diff", "du", "checkout", "tag", "rm", "fsck", "gc", "prune", "push"]
    names += ["pull", "clone"]
    for name in names:
        code, out, _ = invoke(name, "--help")
        assert code == 0, name
        for noise in ("{", "<list", "<path>", "<str>", "[[", "]]"):
            assert noise not in out, (name, noise, out)
    assert "Usage: mstore save [OPTIONS] PATH\n" in invoke("save", "--help")[1]
    assert "Usage: mstore clone [OPTIONS] URL DIR\n" in invoke("clone", "--help")[1]
    assert "Usage: mstore push [OPTIONS] [NAME|REF]...\n" in invoke("push", "--help")[1]


def test_log_help_says_which_metrics_are_shown_by_default() -> None:
    out = " ".join(invoke("log", "--help")[1].split())
    assert "Metrics shown by default: every top-level metric that holds a number" in out


def test_global_options_are_accepted_after_the_command(tmp_path: Path, model: Path) -> None:
    store = tmp_path / "elsewhere"
    code, out, err = invoke("save", "-q", str(model), "--store", str(store))
    assert code == 0, err
    assert out.startswith("saved version ") and err == ""  # -q after the command silences the summary
    assert Repository.open(store).ids()
    code, out, _ = invoke("log", "--oneline", "-s", str(store))
    assert code == 0 and "(latest)" in out
    code, out, _ = invoke("remote", "list", "--store", str(store))
    assert code == 0
    # after the command wins over before it, as the closer one
    code, out, _ = invoke("--store", str(tmp_path / "nothing"), "log", "--store", str(store), "--oneline")
    assert code == 0 and "(latest)" in out
    assert not (tmp_path / "nothing").exists()
    assert "-s, --store DIR" in invoke("save", "--help")[1]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["sav", "x"], "mstore: error: no such command 'sav' (did you mean 'save'?)"),
        (["lgo"], "mstore: error: no such command 'lgo' (did you mean 'log'?)"),
        (["remote", "ad", "x", "y"], "mstore: error: no such command 'ad' (did you mean 'add'?)"),
        (["frobnicate"], "mstore: error: no such command 'frobnicate' (see `mstore --help`)"),
    ],
)
def test_a_mistyped_command_is_one_line(args: list[str], line: str) -> None:
    code, out, err = invoke(*args)
    assert code == 2
    assert out == ""
    assert err == line + "\n"
