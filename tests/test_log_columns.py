"""Issue 24: `log --oneline` lines up its columns (metrics, params, stored bytes, tags, message), whatever
each version has, and with colours on."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from mstore import Repository
from mstore.cli.render import aligned, log_lines

from helpers import cli


def _save(repo: Repository, tmp_path: Path, data: bytes, meta: dict, **kw: object) -> str:
    model = tmp_path / "model.bin"
    model.write_bytes(data)
    return repo.save(model, meta, **kw)["timestamp"]  # type: ignore[arg-type]


def test_oneline_columns_line_up(repo: Repository, tmp_path: Path) -> None:
    _save(repo, tmp_path, b"a", {"metrics": {"accuracy": 0.5}}, message="first")
    _save(repo, tmp_path, b"bb", {"metrics": {"accuracy": 0.91234, "loss": 0.2}}, message="second", tag="candidate")
    _save(repo, tmp_path, b"ccc", {"metrics": {"loss": 0.1}, "params": {"C": 0.3}}, message="third")
    repo.tag("release-2026-11-long-name", "latest~1")
    lines = cli(repo.root, "log", "--oneline").stdout.splitlines()
    assert len(lines) == 3
    third, second, first = lines
    assert third.index("third") == second.index("second") == first.index("first")  # the message column
    assert second.index("(tag: ") == third.index("(latest)")  # the tags column too, however long the tags
    assert first.index("accuracy=") == second.index("accuracy=")  # each metric its own column
    assert second.index("loss=") == third.index("loss=")
    assert all(line == line.rstrip() for line in lines)


def test_padding_ignores_colours() -> None:
    rows = [[("a", "id"), ("x", ""), ("end", "")], [("abcd", "id"), ("", ""), ("end", "")]]
    coloured = aligned(rows, lambda text, role: f"\x1b[1m{text}\x1b[0m")
    plain = [re.sub(r"\x1b\[\d+m", "", line) for line in coloured]
    assert plain == ["a     x  end", "abcd     end"]
    assert aligned([[("a", ""), ("", "")], [("b", ""), ("", "")]]) == ["a", "b"]  # an empty column: left out


def test_log_lines_oneline_without_entries() -> None:
    assert log_lines([], [], None, datetime.now(timezone.utc), oneline=True) == []
