"""A pager for long output, as git has: only when stdout is a terminal and the lines do not fit on it.

The pager is `$MSTORE_PAGER`, else `$PAGER`, else `less -FRX` (run by the shell, as git runs it; `cat` or
an empty value means none). `--no-pager` turns it off; piped output and `--json` never see one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Annotated

import typer

NoPagerOpt = Annotated[
    bool,
    typer.Option(
        "--no-pager", help="Do not page (long output on a terminal goes to $MSTORE_PAGER, else $PAGER, else less)."
    ),
]
DEFAULT_PAGER = "less -FRX"
PAGER_ENV = "MSTORE_PAGER"


def stdout_is_terminal() -> bool:
    """The one decision point tests can replace (a pty also works)."""
    return sys.stdout.isatty()


def pager_command() -> str | None:
    """The pager to run, or None for none (also when no pager is set and less is not installed: the output
    must not vanish into a shell's "not found")."""
    for name in (PAGER_ENV, "PAGER"):
        value = os.environ.get(name)
        if value is not None:
            return None if value.strip() in ("", "cat") else value
    return DEFAULT_PAGER if shutil.which("less") else None


def screen_rows(lines: list[str]) -> tuple[int, int]:
    """(rows the lines take, rows the terminal has), long lines counted as they wrap."""
    size = shutil.get_terminal_size()
    columns = max(size.columns, 1)
    taken = sum(max(1, -(-len(line) // columns)) for line in lines)
    return taken, size.lines


def show(lines: list[str], *, pager: bool = True) -> None:
    """Print `lines` on stdout, through the pager when stdout is a terminal and they are longer than it."""
    command = pager_command() if pager and stdout_is_terminal() else None
    if command is not None:
        taken, rows = screen_rows(lines)
        if taken >= rows:
            _through(command, lines)
            return
    for line in lines:
        typer.echo(line)


def _through(command: str, lines: list[str]) -> None:
    env = dict(os.environ)
    env.setdefault("LESS", "FRX")  # as git: quit if one screen, keep colours, leave the screen as it was
    env.setdefault("LV", "-c")
    sys.stdout.flush()
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE, env=env)
    except OSError:
        for line in lines:
            typer.echo(line)
        return
    assert proc.stdin is not None
    try:
        proc.stdin.write(("\n".join(lines) + "\n").encode("utf-8", "replace"))
        proc.stdin.close()
    except BrokenPipeError:  # the user quit the pager before the end: fine
        pass
    while True:
        try:
            proc.wait()
            return
        except KeyboardInterrupt:  # Ctrl+C belongs to the pager (less uses it), as with git
            continue
