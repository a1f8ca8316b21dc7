"""Tag history: every move recorded, hash-chained, verified on read; `TAG@{N}` and `TAG@{DATE}`; fsck
reports a history that was edited, had a record removed, or was cut."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mstore import Repository
from mstore.errors import CorruptRef, VersionNotFound
from mstore.store import taglog

from helpers import cli, three_versions

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def three(tmp_path: Path) -> tuple[Repository, list[str]]:
    repo, ids = three_versions(tmp_path, T0)
    return repo, ids


def _history_path(repo: Repository, name: str) -> Path:
    return repo.root / "refs" / "history" / name


def test_every_move_is_recorded_and_tag_at_n_goes_back(three: tuple[Repository, list[str]]) -> None:
    repo, (v1, v2, v3) = three
    repo.tag("prod", v1)
    repo.tag("prod", v2, force=True, message="promote")
    repo.tag("prod", v2, force=True)  # no move: nothing recorded
    repo.tag("prod", v3, force=True)
    moves = repo.tag_history("prod")
    assert [(m["from"], m["to"]) for m in moves] == [(v2, v3), (v1, v2), (None, v1)]
    assert moves[1]["message"] == "promote" and all(m["who"] for m in moves)
    assert [repo.resolve(f"prod@{{{n}}}") for n in range(3)] == [v3, v2, v1]
    assert repo.resolve("prod@{1}~1") == v1
    with pytest.raises(VersionNotFound, match="3 recorded move"):
        repo.resolve("prod@{3}")
    repo.tag("prod", "prod@{1}", force=True)  # rollback
    assert repo.tags()["prod"] == v2
    repo.untag("prod")
    assert repo.tag_history("prod")[0]["to"] is None
    with pytest.raises(VersionNotFound, match="deleted"):
        repo.resolve("prod@{0}")
    assert repo.resolve("prod@{1}") == v2
    assert repo.fsck().ok


def test_tag_at_a_date_is_what_it_named_then(three: tuple[Repository, list[str]], tmp_path: Path) -> None:
    repo, (v1, v2, _) = three
    raw = taglog.append(
        None,
        [
            taglog.Move(None, v1, "2026-11-30T10:00:00.000Z", "alice"),
            taglog.Move(v1, v2, "2026-11-30T14:00:00.000Z", "bob"),
        ],
    )
    repo.store.refs.write_history("prod", raw)
    repo.store.refs.set_tag("prod", v2, record=False)
    assert repo.resolve("prod@{2026-11-30 12:00}") == v1
    assert repo.resolve("prod@{2026-11-30T14:00:00}") == v2
    assert repo.resolve("prod@{2026-12-01}") == v2
    with pytest.raises(VersionNotFound, match="did not exist"):
        repo.resolve("prod@{2026-11-29 12:00}")
    out = cli(repo.root, "show", "prod@{2026-11-30 12:00}", "--json").stdout
    assert v1 in out
    bad = cli(repo.root, "show", "prod@{2026-13-45}", code=2)
    assert bad.stderr.startswith("mstore: error:") and "Traceback" not in bad.stderr
    assert "only a tag has a history" in cli(repo.root, "show", "latest@{1}", code=2).stderr


def test_the_cli_shows_history_newest_first(three: tuple[Repository, list[str]]) -> None:
    repo, (v1, v2, _) = three
    cli(repo.root, "tag", "prod", v1, "-m", "first")
    cli(repo.root, "tag", "-f", "prod", v2)
    moves = json.loads(cli(repo.root, "tag", "--history", "prod", "--json").stdout)
    assert [m["to"] for m in moves] == [v2, v1]
    assert set(moves[0]) == {"from", "to", "time", "who", "message", "signed_by"}
    text = cli(repo.root, "tag", "--history", "prod").stdout.splitlines()
    assert text[0].endswith(f"{v1} -> {v2}  {moves[0]['who']}") and text[1].endswith("first")
    assert "no tag named" in cli(repo.root, "tag", "--history", "nope", code=2).stderr


@pytest.mark.parametrize("damage", ["edit", "drop-middle", "drop-first", "drop-last", "truncate", "garbage"])
def test_fsck_reports_a_history_that_was_rewritten_or_cut(three: tuple[Repository, list[str]], damage: str) -> None:
    repo, (v1, v2, v3) = three
    repo.tag("prod", v1)
    repo.tag("prod", v2, force=True)
    repo.tag("prod", v3, force=True)
    path = _history_path(repo, "prod")
    lines = path.read_bytes().splitlines(keepends=True)
    if damage == "edit":
        lines[1] = lines[1].replace(b'"who":"', b'"who":"mallory ')
    elif damage == "drop-middle":
        del lines[1]
    elif damage == "drop-first":
        del lines[0]
    elif damage == "drop-last":
        del lines[2]
    elif damage == "truncate":
        lines[2] = lines[2][:-5]
    else:
        lines[1] = b"not json\n"
    path.write_bytes(b"".join(lines))
    report = repo.fsck()
    assert [p.code for p in report.problems if p.severity == "error"] == ["bad-history"]
    if damage != "drop-last":  # a cut at the end still chains; fsck sees it by the tag's target
        with pytest.raises(CorruptRef):
            taglog.parse(path.read_bytes(), "h")
    out = cli(repo.root, "fsck", code=1).stdout
    assert "refs/history/prod" in out
    if damage != "drop-last":  # a damaged history is never chained onto, and `@{N}` says why in one line
        err = cli(repo.root, "show", "prod@{1}", code=1).stderr
        assert err.startswith("mstore: error:") and "Traceback" not in err


def test_records_are_strict(three: tuple[Repository, list[str]]) -> None:
    _, (v1, _, _) = three
    good = taglog.append(None, [taglog.new_move(None, v1, "alice", "x")])
    assert taglog.parse(good, "h")[0].target == v1
    doc = json.loads(good)
    for change in ({"to": "../../etc"}, {"extra": 1}, {"time": "yesterday"}, {"who": 5}, {"message": "m" * 5000}):
        record = {**doc["record"], **change}
        line = json.dumps({"prev": None, "record": record}, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        with pytest.raises(CorruptRef):
            taglog.parse(line, "h")
    with pytest.raises(CorruptRef, match="larger"):
        taglog.parse(b"x" * (taglog.MAX_HISTORY_BYTES + 1), "h")


def test_merge_appends_what_is_missing_and_never_rewrites(three: tuple[Repository, list[str]]) -> None:
    _, (v1, v2, v3) = three
    base = taglog.append(None, [taglog.Move(None, v1, "2026-11-30T10:00:00.000Z", "a")])
    ours = taglog.append(base, [taglog.Move(v1, v2, "2026-11-30T11:00:00.000Z", "a")])
    theirs = taglog.append(base, [taglog.Move(v1, v3, "2026-11-30T11:30:00.000Z", "b")])
    merged = taglog.merge(ours, theirs, "h")
    assert merged is not None and merged.startswith(ours)  # ours stays byte for byte
    assert [m.target for m in taglog.parse(merged, "h")] == [v1, v2, v3]
    assert taglog.merge(merged, theirs, "h") is None and taglog.merge(merged, ours, "h") is None
