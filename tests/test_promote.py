"""Promotions that travel: push and pull move tags under a lease, `--force` overrides it, `tag --remote`
moves a remote's tag directly, and each tag's history merges across stores (directory and S3 remotes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mstore import Repository
from mstore.remote.bucket import MemoryBucket
from mstore.remote.promote import pull_tags, push_tags
from mstore.remote.remotes import BucketRemote

from helpers import cli, clock_at, three_versions

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["directory", "s3"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "shared") if request.param == "directory" else str(request.getfixturevalue("s3_url"))


def _save(store: Path, tmp_path: Path, n: int, *extra: str) -> str:
    src = tmp_path / f"m{n}.bin"
    src.write_bytes(f"model {n}".encode() * 50)
    with clock_at(T0 + timedelta(minutes=n)):  # two stores never make the same version ID
        return str(json.loads(cli(store, "save", str(src), "--json", *extra).stdout)["timestamp"])


@pytest.fixture
def team(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path, list[str]]]:
    """alice saved v1 (prod) and v2 and pushed; bob cloned."""
    monkeypatch.setenv("MSTORE_USER", "alice")
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    v1 = _save(alice, tmp_path, 1, "--tag", "prod")
    v2 = _save(alice, tmp_path, 2)
    cli(alice, "remote", "add", "origin", url)
    cli(alice, "push")
    cli(tmp_path, "clone", url, str(bob))
    yield alice, bob, [v1, v2]


def _tags(store: Path) -> dict[str, str]:
    return dict(json.loads(cli(store, "tag", "--json").stdout))


def _remote_tag(store: Path, name: str) -> str | None:
    moves = json.loads(cli(store, "tag", "--history", name, "--remote", "origin", "--json").stdout)
    return moves[0]["to"] if moves else None


def test_a_promotion_travels_both_ways_and_keeps_its_history(
    team: tuple[Path, Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, (v1, v2) = team
    cli(alice, "tag", "-f", "prod", v2, "-m", "better on the holdout set")
    assert "tags set or moved: prod" in cli(alice, "push").stdout
    assert _remote_tag(alice, "prod") == v2

    monkeypatch.setenv("MSTORE_USER", "bob")
    assert "tags set or moved: prod" in cli(bob, "pull").stdout  # bob never moved it: his follows
    assert _tags(bob) == {"prod": v2}
    moves = json.loads(cli(bob, "tag", "--history", "prod", "--json").stdout)
    assert [(m["from"], m["to"], m["who"], m["message"]) for m in moves] == [
        (v1, v2, "alice", "better on the holdout set"),
        (None, v1, "alice", None),
    ]
    assert "alice  better on the holdout set" in cli(bob, "tag", "--history", "prod").stdout

    cli(bob, "tag", "-f", "prod", "prod@{1}", "-m", "rollback")  # a rollback is one move back
    assert _tags(bob) == {"prod": v1}
    cli(bob, "push")
    monkeypatch.setenv("MSTORE_USER", "alice")
    cli(alice, "pull")
    assert _tags(alice) == {"prod": v1}
    assert [m["message"] for m in json.loads(cli(alice, "tag", "--history", "prod", "--json").stdout)] == [
        "rollback",
        "better on the holdout set",
        None,
    ]
    assert Repository.open(alice).fsck().ok and Repository.open(bob).fsck().ok


def test_push_refuses_to_overwrite_a_tag_moved_there_since_and_force_does(
    team: tuple[Path, Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, (v1, v2) = team
    monkeypatch.setenv("MSTORE_USER", "bob")
    v3 = _save(bob, tmp_path, 3)
    cli(bob, "tag", "-f", "prod", v3)
    cli(bob, "push")
    monkeypatch.setenv("MSTORE_USER", "alice")
    cli(alice, "tag", "-f", "prod", v2)
    refused = cli(alice, "push", code=1)
    assert "prod" in refused.stderr and v3 in refused.stderr and v2 in refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert _remote_tag(alice, "prod") == v3  # the remote's tag was left as it was

    both = cli(alice, "pull", code=1)  # both moved: alice keeps hers
    assert "prod" in both.stderr and v3 in both.stderr
    assert _tags(alice) == {"prod": v2}

    cli(alice, "push", "--force")
    assert _remote_tag(alice, "prod") == v2
    remote_moves = json.loads(cli(alice, "tag", "--history", "prod", "--remote", "origin", "--json").stdout)
    assert remote_moves[0]["from"] == v3 and "--force" in remote_moves[0]["message"]

    monkeypatch.setenv("MSTORE_USER", "bob")
    cli(bob, "pull")  # bob did not move it since his push: he follows the forced move
    assert _tags(bob) == {"prod": v2}
    assert v1  # (the first promotion, still in the history)


def test_a_tag_moved_only_here_is_kept_by_pull_and_sent_by_push(team: tuple[Path, Path, list[str]]) -> None:
    alice, bob, (v1, v2) = team
    cli(bob, "tag", "-f", "prod", v2)
    cli(bob, "pull")  # the remote did not move: nothing to take, no conflict
    assert _tags(bob) == {"prod": v2}
    cli(alice, "push")  # alice did not move it either: her push leaves the remote's alone
    assert _remote_tag(alice, "prod") == v1
    cli(bob, "push")
    assert _remote_tag(bob, "prod") == v2
    cli(alice, "pull")
    assert _tags(alice) == {"prod": v2}


def test_tag_on_the_remote_directly(team: tuple[Path, Path, list[str]], url: str) -> None:
    alice, bob, (v1, v2) = team
    refused = cli(alice, "tag", "prod", v2, "--remote", "origin", code=2)
    assert "already names" in refused.stderr and "--force" in refused.stderr
    assert "tagged" in cli(alice, "tag", "prod", v2, "--remote", "origin", "-f", "-m", "ship it").stdout
    assert _tags(alice) == {"prod": v1}  # the local tag is not moved...
    cli(alice, "pull")
    assert _tags(alice) == {"prod": v2}  # ...until a pull: nobody moved it here
    cli(bob, "tag", "staging", v1, "--remote", url)  # by URL too
    cli(bob, "pull")
    assert _tags(bob) == {"prod": v2, "staging": v1}
    cli(bob, "tag", "-d", "staging", "--remote", "origin")
    moves = json.loads(cli(bob, "tag", "--history", "staging", "--remote", "origin", "--json").stdout)
    assert [(m["from"], m["to"]) for m in moves] == [(v1, None), (None, v1)]
    assert "no tag named" in cli(bob, "tag", "-d", "staging", "--remote", "origin", code=2).stderr


def test_the_lease_is_per_remote(tmp_path: Path) -> None:
    """What one remote named says nothing about another: each remote's tag moves under its own lease."""
    repo, ids = three_versions(tmp_path, T0)
    repo.tag("prod", ids[0])
    a, b = BucketRemote(MemoryBucket("memory://a/")), BucketRemote(MemoryBucket("memory://b/"))
    for remote in (a, b):
        assert push_tags(repo.store, remote, set(ids)) == (["prod"], [])
    b.set_ref("tags/prod", ids[1], b.get_ref("tags/prod")[1])  # someone else moved it on b
    repo.tag("prod", ids[2], force=True)
    assert push_tags(repo.store, a, set(ids)) == (["prod"], [])
    moved, conflicts = push_tags(repo.store, b, set(ids))
    assert moved == [] and [(c.tag, c.ours, c.theirs, c.seen) for c in conflicts] == [("prod", ids[2], ids[1], ids[0])]
    assert b.get_ref("tags/prod")[0] == ids[1]
    moved, conflicts = pull_tags(repo.store, b, set(ids))  # moved here and there: kept here
    assert moved == [] and len(conflicts) == 1 and repo.tags() == {"prod": ids[2]}
    assert push_tags(repo.store, b, set(ids), force=True) == (["prod"], [])
    assert b.get_ref("tags/prod")[0] == ids[2]


def test_a_remote_resolves_tag_history_refs_too(team: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    alice, bob, (v1, v2) = team
    cli(alice, "tag", "-f", "prod", v2)
    cli(alice, "push")
    carol = tmp_path / "carol"
    cli(carol, "init")
    cli(carol, "remote", "add", "origin", str(json.loads(cli(alice, "remote", "list", "--json").stdout)["origin"]))
    cli(carol, "pull", "prod@{1}")  # the version prod named before its last move on the remote
    assert Repository.open(carol).ids() == [v1]
