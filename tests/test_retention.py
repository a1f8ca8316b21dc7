"""prune: the retention rules as a property, and the command end to end."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from mstore import Repository
from mstore.cli import app
from mstore.errors import BadInput
from mstore.ops.retention import plan_prune
from mstore.store.versions import ID_FORMAT

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
ages = st.lists(st.integers(0, 90 * 86400), min_size=0, max_size=30, unique=True)


@given(
    ages=ages,
    keep_last=st.none() | st.integers(0, 10),
    within_days=st.none() | st.integers(0, 60),
    tagged=st.sets(st.integers(0, 29), max_size=4),
)
def test_prune_keeps_exactly_what_the_rules_say(
    ages: list[int], keep_last: int | None, within_days: int | None, tagged: set[int]
) -> None:
    if keep_last is None and within_days is None:
        with pytest.raises(BadInput):
            plan_prune([], {}, NOW)
        return
    ids = sorted((NOW - timedelta(seconds=a)).strftime(ID_FORMAT) for a in ages)
    ids = sorted(set(ids))
    tags = {f"t{i}": ids[i] for i in tagged if i < len(ids)}
    within = None if within_days is None else within_days * 86400.0
    plan = plan_prune(ids, tags, NOW, keep_last=keep_last, keep_within=within)
    assert sorted(plan.keep + plan.remove) == ids and not set(plan.keep) & set(plan.remove)
    for i, vid in enumerate(ids):
        age = (NOW - datetime.strptime(vid, ID_FORMAT).replace(tzinfo=timezone.utc)).total_seconds()
        should_keep = (
            i == len(ids) - 1
            or (keep_last is not None and i >= len(ids) - keep_last)
            or (within is not None and age <= within)
            or vid in tags.values()
        )
        assert (vid in plan.keep) == should_keep


def test_prune_command(tmp_path: Path) -> None:
    store = tmp_path / "store"
    repo = Repository.init(store)
    ids = []
    for i in range(6):
        src = tmp_path / f"m{i}"
        src.write_bytes(bytes([i]) * 5000)
        ids.append(repo.save(src)["timestamp"])
    repo.tag("golden", ids[0])
    runner = CliRunner()
    dry = runner.invoke(app, ["--store", str(store), "prune", "--keep-last", "2", "--dry-run", "--json"])
    assert dry.exit_code == 0
    plan = json.loads(dry.stdout)
    assert plan["remove"] == ids[1:4] and plan["keep"] == [ids[0], *ids[4:]] and repo.ids() == ids
    done = runner.invoke(app, ["--store", str(store), "prune", "--keep-last", "2", "--grace", "0"])
    assert done.exit_code == 0 and "removed 3 version(s)" in done.stdout and "freed" in done.stdout
    assert repo.ids() == [ids[0], *ids[4:]]
    assert repo.fsck().problems == []
    nothing = runner.invoke(app, ["--store", str(store), "prune"])
    assert nothing.exit_code == 2 and "--keep-last" in nothing.stderr


def test_fsck_repair_quarantines_and_a_resave_heals(tmp_path: Path) -> None:
    store = tmp_path / "store"
    repo = Repository.init(store)
    src = tmp_path / "model.bin"
    src.write_bytes(b"weights" * 1000)
    vid = repo.save(src)["timestamp"]
    manifest = repo.manifest(vid)
    bad = repo.store.objects.path(manifest.files[0].chunks[0].oid)
    bad.chmod(0o644)
    bad.write_bytes(b"x" + bad.read_bytes()[1:])
    runner = CliRunner()
    result = runner.invoke(app, ["--store", str(store), "fsck", "--repair"])
    assert result.exit_code == 1 and "quarantine" in result.stdout and vid in result.stdout
    assert not bad.exists() and (store / "quarantine").is_dir()
    repo.save(src)  # the same bytes again put the object back, healing the old version
    assert repo.fsck().ok
    assert repo.checkout(vid, tmp_path / "out").read_bytes() == src.read_bytes()
