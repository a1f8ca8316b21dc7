"""The `mstore` command line: parses arguments, calls the Repository API, renders results.

Data goes to stdout (exactly one JSON document with --json); messages, progress and errors go to
stderr. Exit codes: 0 success, 1 a problem was found, 2 bad usage or bad input.

`shared.py` holds the Typer application (`app`) and what every command shares (global options, one-line errors,
JSON, progress bars); each other module registers one family of commands on it, in the order `mstore
--help` lists them; `render.py` turns results into lines of text and knows nothing of Typer.
"""

# Importing a family registers its commands; this order is the order of `mstore --help`.
from . import versions, history, sharing, maintenance, models  # noqa: F401, I001
from .shared import app, run  # noqa: I001

__all__ = ["app", "run"]
