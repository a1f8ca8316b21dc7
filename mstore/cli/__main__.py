"""`python -m mstore.cli`: the same as the `mstore` command."""

from . import run

run()
