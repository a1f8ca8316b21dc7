"""Write docs/cli.md from the Typer app itself, so the CLI reference cannot drift from the code.

python scripts/gen_cli_docs.py            # rewrite docs/cli.md
python scripts/gen_cli_docs.py --check    # exit 1 if docs/cli.md is stale (tests run this)
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from mstore.cli import app

TARGET = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def render() -> str:
    runner = CliRunner()
    command = typer.main.get_command(app)
    names = list(getattr(command, "commands", {}))
    out = [
        "# mstore command reference",
        "",
        "Generated from the code by `python scripts/gen_cli_docs.py`; a test fails when it is stale.",
        "The global options `--store` / `-s` and `--quiet` / `-q` go before or after the command name "
        "(`mstore --store DIR log` or `mstore log --store DIR`).",
        "",
    ]
    for name in [None, *names]:
        args = [name, "--help"] if name else ["--help"]
        result = runner.invoke(app, args, prog_name="mstore", env={"COLUMNS": "100", "NO_COLOR": "1"})
        if result.exit_code != 0:
            raise SystemExit(f"--help failed for {name}: {result.stderr}")
        out += [f"## mstore {name}" if name else "## mstore", "", "```", result.stdout.rstrip(), "```", ""]
    return "\n".join(out)


def main() -> None:
    text = render()
    if "--check" in sys.argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print("docs/cli.md is stale: run python scripts/gen_cli_docs.py", file=sys.stderr)
            raise SystemExit(1)
        return
    TARGET.write_text(text)
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
