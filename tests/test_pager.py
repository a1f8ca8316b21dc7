"""`log`, `show` and `diff` page long output as git does: only on a terminal, only when it does not fit,
through $MSTORE_PAGER, else $PAGER, else `less -FRX`; never with --no-pager, --json or a pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mstore.cli import pager

from uihelpers import build_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo, _ = build_store(tmp_path_factory.mktemp("pager"))
    return repo.root


def _cli(store: Path, *args: str) -> str:
    from mstore.cli import app

    result = CliRunner().invoke(app, ["--store", str(store), *args])
    assert result.exit_code == 0, result.stderr
    return result.stdout


def _aged(text: str) -> str:
    """The text with its ages ("3s ago") blanked: a second may pass between two runs."""
    return re.sub(r"\b\d+[smhdw] ago\b", "AGO", text)


@pytest.fixture
def paged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A terminal of 5 rows (the isatty decision injected) whose pager writes what it got to a file."""
    out = tmp_path / "paged.txt"
    monkeypatch.setattr(pager, "stdout_is_terminal", lambda: True)
    monkeypatch.setenv("LINES", "5")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("MSTORE_PAGER", f"cat > '{out}'")
    return out


def test_long_output_on_a_terminal_goes_to_the_pager(store: Path, paged: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = _cli(store, "log", "--no-pager")
    assert len(plain.splitlines()) > 5 and not paged.exists()
    assert _cli(store, "log") == ""  # it all went to the pager
    assert _aged(paged.read_text()) == _aged(plain)
    for args in (["show", "latest"], ["diff", "latest~2", "latest~1"], ["log", "--format", "{id} {message}"]):
        paged.unlink()
        assert _cli(store, *args) == "" and _aged(paged.read_text()) == _aged(_cli(store, *args, "--no-pager"))


def test_no_pager_for_json_short_output_or_a_pipe(store: Path, paged: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _cli(store, "log", "--json").startswith("[") and not paged.exists()
    assert _cli(store, "log", "-n", "1", "--oneline").strip() and not paged.exists()  # fits on the screen
    monkeypatch.setattr(pager, "stdout_is_terminal", lambda: False)
    assert _cli(store, "log").strip() and not paged.exists()


def test_the_pager_is_mstore_pager_then_pager_then_less(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSTORE_PAGER", raising=False)
    monkeypatch.delenv("PAGER", raising=False)
    monkeypatch.setattr(pager.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert pager.pager_command() == "less -FRX"
    monkeypatch.setattr(pager.shutil, "which", lambda name: None)
    assert pager.pager_command() is None  # no less here: print, rather than lose the output
    monkeypatch.setenv("PAGER", "more")
    assert pager.pager_command() == "more"
    monkeypatch.setenv("MSTORE_PAGER", "most")
    assert pager.pager_command() == "most"
    monkeypatch.setenv("MSTORE_PAGER", "cat")
    assert pager.pager_command() is None


def _in_pty(store: Path, out: Path, *args: str, rows: int = 5) -> bytes:
    """`mstore ARGS` with its stdout on a pseudo-terminal of `rows` rows; what the terminal received."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", rows, 200, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("LINES", "COLUMNS", "PAGER", "NO_COLOR")}
    env["MSTORE_PAGER"] = f"cat > '{out}'"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mstore", "--store", str(store), *args], stdout=side, stderr=side, env=env
    )
    os.close(side)
    got = b""
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:  # the other side closed
            break
        if not data:
            break
        got += data
    assert proc.wait(timeout=60) == 0, got
    os.close(main)
    return got


def test_a_real_terminal_pages_and_a_pipe_does_not(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "paged.txt"
    assert b"nightly retrain" not in _in_pty(store, out, "log")
    assert "nightly retrain 5" in out.read_text()
    out.unlink()
    assert b"nightly retrain" in _in_pty(store, out, "log", "--no-pager") and not out.exists()
    assert b"nightly retrain" in _in_pty(store, out, "log", rows=500) and not out.exists()  # it fits
    env = {**os.environ, "MSTORE_PAGER": f"cat > '{out}'"}
    piped = subprocess.run(
        [sys.executable, "-m", "mstore", "--store", str(store), "log"], capture_output=True, env=env, check=True
    )
    assert b"nightly retrain 5" in piped.stdout and not out.exists()
