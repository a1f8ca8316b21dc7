"""What a newcomer trips on first: help that fits, global options anywhere, one-line typos, Ctrl-C in a save."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mstore import Repository
from mstore.cli import app
from mstore.store import fsutil

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
        for noise in ("<list", "<path>", "<str>", "[[", "]]"):
            assert noise not in out, (name, noise, out)
        usage = [line for line in out.splitlines() if line.startswith("Usage:") or line.lstrip().startswith("-")]
        assert not any("{" in line for line in usage), (name, out)  # the text may show `prod@{1}`
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
    assert Repository.open(store).ids() == [out.strip()] and err == ""  # -q after the command: the bare ID
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


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["save"], "mstore: error: missing argument 'PATH' (see `mstore save --help`)"),
        (["log", "--bogus"], "mstore: error: no such option: --bogus (see `mstore log --help`)"),
        (["--bogus", "log"], "mstore: error: no such option: --bogus (see `mstore --help`)"),
        (["remote", "add", "x"], "mstore: error: missing argument 'URL' (see `mstore remote add --help`)"),
    ],
)
def test_bad_usage_is_one_line(args: list[str], line: str) -> None:
    code, out, err = invoke(*args)
    assert code == 2
    assert out == ""
    assert err == line + "\n"


def save_ops(tmp_path: Path, model: Path) -> int:
    """How many filesystem steps one save of `model` into a fresh store takes."""
    ops: list[str] = []
    fsutil.set_fault_hook(lambda op, path: ops.append(op))
    try:
        code, _, err = invoke("--store", str(tmp_path / "count"), "save", str(model))
    finally:
        fsutil.set_fault_hook(None)
    assert code == 0, err
    return len(ops)


@pytest.fixture
def no_hook() -> Iterator[None]:
    yield
    fsutil.set_fault_hook(None)


@pytest.mark.slow
def test_an_interrupted_save_says_what_it_left_and_how_to_free_it(tmp_path: Path, model: Path, no_hook: None) -> None:
    total = save_ops(tmp_path, model)
    store = tmp_path / "store"
    assert invoke("--store", str(store), "init")[0] == 0
    seen_nothing = seen_published = False
    for k in range(1, total + 1):
        steps = [0]

        def interrupt(op: str, path: Path, k: int = k, steps: list[int] = steps) -> None:
            steps[0] += 1
            if steps[0] == k:
                raise KeyboardInterrupt

        before = Repository.open(store).ids()
        fsutil.set_fault_hook(interrupt)
        code, out, err = invoke("--store", str(store), "save", str(model))
        fsutil.set_fault_hook(None)
        if steps[0] < k:  # this save took fewer steps (objects already stored): not interrupted
            assert code == 0, err
            continue
        assert code == 130, (k, err)
        assert err.count("\n") == 1, err
        after = Repository.open(store).ids()
        if after == before:
            seen_nothing = True
            assert err.startswith("mstore: error: interrupted: nothing was published;"), err
            assert "`mstore gc` frees them once they are older than the grace period (1h)" in err
        else:  # interrupted after the commit point
            seen_published = True
            assert err.startswith(f"mstore: error: interrupted after version {after[-1]} was published;"), err
    assert seen_nothing and seen_published
    # what the message promises: after the grace period gc frees what the interrupted saves left
    code, out, _ = invoke("--store", str(store), "gc", "--grace", "0", "-q")
    assert code == 0
    code, out, _ = invoke("--store", str(store), "fsck")
    assert code == 0 and "not used by any version" not in out
