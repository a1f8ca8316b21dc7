"""The docs run as written: docs/getting-started.md top to bottom, and the README's usage snippets.

Fenced blocks say what they are: `sh` blocks run in bash, `console` blocks run their `$ ` lines (the other
lines are the output a real run printed), `python` blocks run with python (or, when the first line is
`# NAME.py: ...`, are written to NAME.py for a later block to run), `text` blocks are not run. Every block
runs in one temp directory, in order, with exports and `cd` carried from one shell block to the next.
The package is already installed in this test's venv, so the install line is checked, not run, and
`.venv/bin/` means this interpreter's bin directory.

The outputs shown in console blocks come from a real run:

    python tests/test_docs_run.py          # rerun getting-started and write the outputs it printed
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves this suite out of the quick loop

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "getting-started.md"
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[demo]'"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
FILE_BLOCK = re.compile(r"^# ([\w./-]+\.py)(?::|$)")


@dataclass
class Block:
    lang: str
    body: str
    start: int  # offsets of the body in the page, for rewriting outputs
    end: int


def blocks(text: str) -> list[Block]:
    return [Block(m[1], m[2], m.start(2), m.end(2)) for m in FENCE.finditer(text)]


class Session:
    """One temp directory and one shell state (exports, cwd) shared by every block of a page."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.state = workdir / ".docrun-env"
        self.cwd = workdir
        self.env = {
            **os.environ,
            "TMPDIR": str(workdir),
            "HOME": str(workdir),
            "NO_COLOR": "1",
            "COLUMNS": "100",
            "PYTHONWARNINGS": "ignore",
        }
        self.env.pop("MSTORE_DIR", None)
        self.env.pop("MSTORE_DEBUG", None)
        self.state.write_text("")

    def shell(self, script: str) -> str:
        """Run `script` in bash (failing on the first failing command); return what it printed."""
        script = script.replace("source .venv/bin/activate", f'export PATH="{BIN}:$PATH"')
        script = script.replace(".venv/bin/", f"{BIN}/")
        wrapped = (
            f'source "{self.state}"\nset -e -o pipefail\n{script}\n'
            f'export -p > "{self.state}.new"; mv "{self.state}.new" "{self.state}"; pwd > "{self.state}.cwd"\n'
        )
        done = subprocess.run(
            ["bash", "-c", wrapped],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"exit {done.returncode} from:\n{script}\n--- output:\n{done.stdout}"
        self.cwd = Path((self.state.parent / f"{self.state.name}.cwd").read_text().strip())
        return done.stdout

    def python(self, code: str) -> str:
        target = FILE_BLOCK.match(code)
        if target:
            (self.cwd / target[1]).write_text(code)
            return ""
        (self.workdir / ".docrun-block.py").write_text(code)
        return self.shell(f'python "{self.workdir / ".docrun-block.py"}"')


def run_page(text: str, workdir: Path) -> str:
    """Run every block of a page in order; return the page with each console block's output as printed now."""
    session = Session(workdir)
    session.env["PATH"] = f"{BIN}:{session.env['PATH']}"  # `python` in a block is this interpreter until activated
    pieces, last = [], 0
    for block in blocks(text):
        if block.lang == "sh":
            lines = [line for line in block.body.splitlines() if not line.startswith(INSTALL)]
            session.shell("\n".join(lines))
        elif block.lang == "python":
            session.python(block.body)
        elif block.lang == "console":
            shown = block.body.splitlines()
            out: list[str] = []
            i = 0
            while i < len(shown):
                assert shown[i].startswith("$ "), f"console block output without a command: {shown[i]!r}"
                command = shown[i]
                i += 1
                old = []
                while i < len(shown) and not shown[i].startswith("$ "):
                    old.append(shown[i])
                    i += 1
                new = session.shell(command[2:]).rstrip("\n").splitlines()
                if old and old[-1] == "..." and len(new) > len(old) - 1:  # the page shows only the start
                    new = [*new[: len(old) - 1], "..."]
                out += [command, *new]
            pieces += [text[last : block.start], "\n".join(out) + "\n"]
            last = block.end
        else:
            assert block.lang == "text", f"a fenced block needs a language (sh, console, python, text): {block.body!r}"
    pieces.append(text[last:])
    return "".join(pieces)


def indented_code(text: str) -> list[str]:
    """Indented code blocks would escape the test: every runnable line belongs in a fenced block."""
    outside = FENCE.sub("", text)
    lines = outside.splitlines()
    return [
        b for a, b in zip(["", *lines[:-1]], lines, strict=True) if not a.strip() and b.startswith("    ") and b.strip()
    ]


VARYING = [
    (re.compile(r"/tmp/\S*"), "TMP"),  # scratch paths
    (re.compile(r"\b[0-9a-f]{7,64}\b"), "HASH"),  # ids, hashes, commits
    (re.compile(r"\d+(?:[.,:_]\d+)*"), "N"),  # version IDs, sizes, times, rates, percentages
    (re.compile(r"\b[KMG]?i?B(?:/s)?\b"), "UNIT"),  # a size may cross a unit boundary
    (re.compile(r"\s+"), " "),  # columns align to the widths of the numbers
]


def shape(text: str) -> list[str]:
    """A console output without what differs from run to run: IDs, hashes, numbers, temp paths."""
    lines = []
    for line in text.splitlines():
        for pattern, replacement in VARYING:
            line = pattern.sub(replacement, line)
        lines.append(line.strip())
    return lines


def test_getting_started_runs_as_written(tmp_path: Path) -> None:
    text = GUIDE.read_text()
    assert INSTALL in text, "the guide installs what it uses (.[demo]) into a venv"
    assert not indented_code(text), indented_code(text)
    assert {b.lang for b in blocks(text)} >= {"sh", "console", "python"}
    printed = run_page(text, tmp_path)
    stale = [
        (old, new)
        for old, new in zip(blocks(text), blocks(printed), strict=True)
        if old.lang == "console" and shape(old.body) != shape(new.body)
    ]
    assert not stale, "outputs shown on the page are stale; rerun `python tests/test_docs_run.py`:\n" + "\n".join(
        "\n".join(difflib.unified_diff(old.body.splitlines(), new.body.splitlines(), lineterm="")) for old, new in stale
    )


# -- README -------------------------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"\[|\||\b(?:REF|NAME|DIR|OLD|NEW|URL)\b")
NEEDS_A_BUCKET = ("s3://", "--remote origin")


def runnable(line: str) -> bool:
    """A line of the README's synopsis that is a real command (no placeholders, no bucket)."""
    return not PLACEHOLDER.search(line) and not any(b in line for b in NEEDS_A_BUCKET)


def test_readme_snippets_run(tmp_path: Path) -> None:
    text = README.read_text()
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e '.[demo]' && .venv/bin/python scripts/demo.py" in text
    python = [b for b in blocks(text) if b.lang == "python"]
    shell = [b for b in blocks(text) if b.lang == "sh" and b.body.startswith("mstore ")]  # the usage synopsis
    assert len(python) == 1 and len(shell) == 1
    # the README's premise: a model file and its training data, and a checkpoint folder
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tickets.csv").write_text("text,category\nrefund please,billing\n")
    import joblib
    from sklearn.linear_model import LogisticRegression

    # a real fitted model: the README saves it with --refuse-unsafe, which refuses a pickle it cannot read
    clf = LogisticRegression().fit(np.random.default_rng(0).standard_normal((40, 5)), [0, 1] * 20)
    joblib.dump(clf, tmp_path / "model.joblib")
    checkpoint = tmp_path / "out" / "checkpoint"
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.json").write_text('{"num_labels": 3}')
    np.savez(checkpoint / "weights.npz", w=np.arange(1000, dtype=np.float32))
    session = Session(tmp_path)
    session.env["PATH"] = f"{BIN}:{session.env['PATH']}"
    session.python(python[0].body)
    lines = [line.split("  #")[0].strip() for line in shell[0].body.splitlines()]
    commands = [line for line in lines if line.startswith("mstore ") and runnable(line)]
    assert len(commands) >= 4, commands
    for command in commands:
        session.shell(command)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        GUIDE.write_text(run_page(GUIDE.read_text(), Path(scratch)))
    print(f"wrote {GUIDE}")


def test_ci_runs_the_readmes_two_quick_start_commands_as_printed() -> None:
    """The README's Quick start is two commands; CI must run the test one exactly as printed (a newcomer
    copies it), and the demo one must name a script that exists."""
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    quick = readme[readme.index("## Quick start") : readme.index("## Using it")]
    commands = re.findall(r"```sh\n(.*?)\n```", quick, re.S)
    assert len(commands) == 2, commands
    prose = re.sub(r"```.*?```", "", quick, flags=re.S)
    assert re.findall(r"^(?: {4}|\t)\S.*$", prose, re.M) == []  # an indented block is a third command
    demo, tests = commands
    assert (root / demo.rsplit(" ", 1)[-1]).is_file(), demo
    ci = (root / ".ci" / "run").read_text().splitlines()
    assert tests in ci, f"{tests!r} is not a line of .ci/run"
