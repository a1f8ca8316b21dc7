"""The `mstore` command line: parses arguments, calls the Repository API, renders results.

Data goes to stdout (exactly one JSON document with --json); messages, progress and errors go to
stderr. Exit codes: 0 success, 1 a problem was found, 2 bad usage or bad input.

`shared.py` holds the Typer application (`app`) and what every command shares (global options, one-line
errors, JSON, progress bars); each other module registers one family of commands on it; `render.py`
turns results into lines of text and knows nothing of Typer.

Start-up: Typer builds a Click command for every registered command before it parses anything (about
3 ms each). `run` therefore registers only the family of the command being run; `mstore --help`, a
mistyped command or anything it cannot place loads every family. `mstore.cli.app` is always complete.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

# Each family and its commands, in the order `mstore --help` lists them.
FAMILIES: dict[str, tuple[str, ...]] = {
    "versions": ("init", "save", "checkout", "tag", "rm"),
    "history": ("log", "show", "diff", "du", "ui"),
    "sharing": ("push", "pull", "clone", "export", "import", "remote"),
    "maintenance": ("fsck", "gc", "prune"),
    "models": ("path", "cache"),
    "signing": ("keygen", "sign", "verify"),
}
_FAMILY_OF = {command: family for family, commands in FAMILIES.items() for command in commands}
_GLOBAL_FLAGS = {"-q", "--quiet"}
_GLOBAL_WITH_VALUE = {"-s", "--store"}


def _load(families: list[str]) -> None:
    for family in families:
        importlib.import_module(f"{__name__}.{family}")


def family_of(args: list[str]) -> str | None:
    """The family of the command `args` run, past the global options; None when it is not plain
    (help, --version, completion, an unknown word or option): then every family is needed."""
    i = 0
    while i < len(args):
        word = args[i]
        if word in _GLOBAL_FLAGS or word.startswith("--store="):
            i += 1
        elif word in _GLOBAL_WITH_VALUE:
            i += 2
        else:
            return None if word.startswith("-") else _FAMILY_OF.get(word)
    return None


def run() -> None:
    """Console-script entry point (`mstore`, `python -m mstore`)."""
    completing = any(key.endswith("_COMPLETE") for key in os.environ)
    family = None if completing else family_of(sys.argv[1:])
    _load([family] if family is not None else list(FAMILIES))
    from .shared import app

    app(prog_name="mstore")


def __getattr__(name: str) -> Any:
    """`mstore.cli.app`: the application with every command registered."""
    if name == "app":
        _load(list(FAMILIES))
        from .shared import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FAMILIES", "app", "family_of", "run"]
