"""Issue 24: `rm`, `prune`, `du` (and `gc` itself) say when gc gives the space back. Within the grace period
a gc frees nothing of a just-removed version, so "run gc to free it" alone was false for an hour."""

from __future__ import annotations

import math
import os
import time
from datetime import datetime
from pathlib import Path

from mstore import Repository
from mstore.cli.render import gc_when_text
from mstore.humanize import format_bytes
from mstore.ops.gc import DEFAULT_GRACE_SECONDS

from helpers import cli


def _two_versions(repo: Repository, tmp_path: Path) -> tuple[str, str]:
    model = tmp_path / "model.bin"
    model.write_bytes(os.urandom(300_000))
    first = repo.save(model)["timestamp"]
    model.write_bytes(b"small")
    return first, repo.save(model)["timestamp"]


def _age_objects(repo: Repository, mtime: float) -> None:
    """Every object written at `mtime` (deterministic: no waiting out a grace period)."""
    for oid in repo.store.objects:
        os.utime(repo.store.objects.path(oid), (mtime, mtime))


def _minute_ago(minutes: int) -> float:
    """A whole minute, `minutes` ago: the time gc frees at is then a whole minute too (shown exactly)."""
    return math.floor(time.time() / 60) * 60 - minutes * 60


def test_rm_within_the_grace_period_says_when(repo: Repository, tmp_path: Path) -> None:
    first, _ = _two_versions(repo, tmp_path)
    written = _minute_ago(10)
    _age_objects(repo, written)
    err = cli(repo.root, "rm", first).stderr
    unreferenced = repo.du()["unreachable_bytes"]
    assert unreferenced > 300_000
    at = f"{datetime.fromtimestamp(written + DEFAULT_GRACE_SECONDS):%H:%M}"
    assert f"`mstore gc` frees {format_bytes(unreferenced)} after {at} (or now with --grace 0)\n" in err, err
    du = cli(repo.root, "du").stdout
    assert f"{format_bytes(unreferenced)} unreferenced; `mstore gc` frees {format_bytes(unreferenced)} after {at}" in du
    gc = cli(repo.root, "gc")  # it keeps its word: nothing now
    assert gc.stdout.startswith("freed 0 B in 0 objects") and f"after {at} (or now with --grace 0)" in gc.stderr
    assert f"freed {format_bytes(unreferenced)} in" in cli(repo.root, "gc", "--grace", "0").stdout


def test_rm_after_the_grace_period_says_now(repo: Repository, tmp_path: Path) -> None:
    first, _ = _two_versions(repo, tmp_path)
    _age_objects(repo, time.time() - 2 * DEFAULT_GRACE_SECONDS)
    err = cli(repo.root, "rm", first).stderr
    unreferenced = repo.du()["unreachable_bytes"]
    assert f"`mstore gc` frees {format_bytes(unreferenced)} now\n" in err, err
    assert "after" not in err
    assert f"freed {format_bytes(unreferenced)} in" in cli(repo.root, "gc").stdout


def test_prune_says_when_its_gc_could_not_free_yet(repo: Repository, tmp_path: Path) -> None:
    _two_versions(repo, tmp_path)
    written = _minute_ago(5)
    _age_objects(repo, written)
    result = cli(repo.root, "prune", "--keep-last", "1")
    assert "removed 1 version(s), kept 1, freed 0 B\n" in result.stdout
    at = f"{datetime.fromtimestamp(written + DEFAULT_GRACE_SECONDS):%H:%M}"
    unreferenced = repo.du()["unreachable_bytes"]
    assert f"`mstore gc` frees {format_bytes(unreferenced)} after {at} (or now with --grace 0)\n" in result.stderr


def test_prune_past_the_grace_period_frees_at_once_and_says_nothing_more(repo: Repository, tmp_path: Path) -> None:
    _two_versions(repo, tmp_path)
    _age_objects(repo, time.time() - 2 * DEFAULT_GRACE_SECONDS)
    result = cli(repo.root, "prune", "--keep-last", "1")
    assert "freed 0 B" not in result.stdout and "`mstore gc` frees" not in result.stderr
    assert repo.du()["unreachable_bytes"] == 0


def test_the_words_for_each_case() -> None:
    now = datetime(2026, 12, 3, 13, 40, 0).timestamp()
    later = datetime(2026, 12, 3, 14, 31, 20).timestamp()  # rounded up: "after" must hold
    mib = 3 << 20
    assert gc_when_text(mib, 0, None, now) == "`mstore gc` frees 3.0 MiB now"
    assert gc_when_text(0, mib, later, now) == "`mstore gc` frees 3.0 MiB after 14:32 (or now with --grace 0)"
    assert gc_when_text(1024, mib, later, now) == (
        "`mstore gc` frees 1.0 KiB now and 3.0 MiB more after 14:32 (all of it now with --grace 0)"
    )
    assert gc_when_text(0, mib, later, later + 1) == "`mstore gc` frees 3.0 MiB now"  # the time has passed
    assert gc_when_text(0, 0, None, now) == "nothing for `mstore gc` to free"
    tomorrow = datetime(2026, 12, 4, 0, 30, 0).timestamp()
    assert gc_when_text(0, mib, tomorrow, now) == (
        "`mstore gc` frees 3.0 MiB after 2026-12-04 00:30 (or now with --grace 0)"
    )
