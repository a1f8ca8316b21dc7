"""`python -m mstore`: the same as the `mstore` command."""

from .cli import run

run()
