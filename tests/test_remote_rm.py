"""`rm --remote` and `prune --remote` from the command line, on the S3 server and on a directory remote:
what they remove, what they always keep (tags, the remote's latest), that a following `gc --remote` frees
the space and leaves every remaining version restorable bit-exact, and that the local store is untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mstore import Repository

from helpers import cli, head_model


@pytest.fixture(params=["s3", "directory"])
def remote_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(request.getfixturevalue("s3_url")) if request.param == "s3" else str(tmp_path / "remote")


def _pushed(tmp_path: Path, url: str, n: int) -> tuple[Repository, list[bytes]]:
    repo = Repository.init(tmp_path / "store")
    src = tmp_path / "m.safetensors"
    models = []
    for head in range(n):
        models.append(head_model(head + 1, backbone=1 << 14, head=4096))
        src.write_bytes(models[-1])
        repo.save(src)
    repo.tag("prod", repo.ids()[0])
    repo.remote_add("origin", url)
    repo.push("origin")
    return repo, models


def test_rm_remote_moves_refs_first_and_says_how_to_free_the_space(tmp_path: Path, remote_url: str) -> None:
    repo, models = _pushed(tmp_path, remote_url, 3)
    ids = repo.ids()
    origin = repo.remote("origin")

    result = cli(repo.root, "rm", "prod", "--remote", "origin", code=2)

    out, err = result.stdout, result.stderr  # tagged: refused, nothing changed
    assert "--force" in err and origin.version_ids() == ids

    result = cli(repo.root, "rm", "latest", "--remote", "origin")

    out, err = result.stdout, result.stderr
    assert f"removed version {ids[2]} from origin" in out and "mstore gc --remote origin" in err
    assert origin.version_ids() == ids[:2] and origin.get_ref("latest")[0] == ids[1]  # latest moved back

    done = json.loads(cli(repo.root, "rm", ids[0], "--remote", "origin", "--force", "--json").stdout)
    assert done == {"removed": ids[0], "remote": "origin", "tags_removed": ["prod"]}
    assert origin.version_ids() == [ids[1]] and origin.tag_names() == []
    cli(repo.root, "rm", "prod", "--remote", "origin", code=2)  # the tag went with it

    assert repo.ids() == ids and repo.tags() == {"prod": ids[0]}  # the local store is untouched
    freed = json.loads(cli(repo.root, "gc", "--remote", "origin", "--grace", "0", "--json").stdout)
    assert len(freed["object_ids"]) >= 2 and freed["deleted"]  # the removed versions' heads
    assert json.loads(cli(repo.root, "fsck", "--remote", "origin", "--verify-data", "--json").stdout)["ok"]
    clone = tmp_path / "clone"
    cli(tmp_path, "clone", remote_url, str(clone))
    back = Repository.open(clone)
    assert back.ids() == [ids[1]] and back.checkout("latest", tmp_path / "o").read_bytes() == models[1]


def test_prune_remote_keeps_tags_and_latest_and_gc_frees_the_rest(tmp_path: Path, remote_url: str) -> None:
    repo, models = _pushed(tmp_path, remote_url, 5)
    ids = repo.ids()
    origin = repo.remote("origin")

    dry = json.loads(cli(repo.root, "prune", "--remote", "origin", "--keep-last", "2", "--dry-run", "--json").stdout)
    assert dry["remove"] == ids[1:3] and dry["keep"] == [ids[0], *ids[3:]] and dry["remote"] == "origin"
    assert origin.version_ids() == ids  # a dry run removes nothing

    result = cli(repo.root, "prune", "--remote", "origin", "--keep-last", "2")

    out, err = result.stdout, result.stderr
    assert "removed 2 version(s), kept 3 on origin" in out and "mstore gc --remote origin" in err
    assert f"keep {ids[0]} (tag:prod)" in err and f"keep {ids[4]} (newest, latest, last)" in err
    assert origin.version_ids() == [ids[0], *ids[3:]] and origin.get_ref("tags/prod")[0] == ids[0]
    assert origin.get_ref("latest")[0] == ids[4]
    origin.set_ref("latest", ids[3], origin.get_ref("latest")[1])  # the remote's latest, not its newest
    held = json.loads(cli(repo.root, "prune", "--remote", "origin", "--keep-last", "0", "--json").stdout)
    assert held["remove"] == [] and held["keep"] == [ids[0], ids[3], ids[4]]  # tag, latest, newest: always
    origin.set_ref("latest", ids[4], origin.get_ref("latest")[1])
    again = json.loads(cli(repo.root, "prune", "--remote", "origin", "--keep-last", "0", "--json").stdout)
    assert again["remove"] == [ids[3]] and again["keep"] == [ids[0], ids[4]]

    assert repo.ids() == ids  # the local store is untouched
    cli(repo.root, "gc", "--remote", "origin", "--grace", "0")
    assert json.loads(cli(repo.root, "fsck", "--remote", "origin", "--verify-data", "--json").stdout)["ok"]
    clone = tmp_path / "clone"
    cli(tmp_path, "clone", remote_url, str(clone))
    back = Repository.open(clone)
    assert back.ids() == [ids[0], ids[4]] and back.tags() == {"prod": ids[0]}
    assert back.checkout("prod", tmp_path / "a").read_bytes() == models[0]
    assert back.checkout("latest", tmp_path / "b").read_bytes() == models[4]


def test_prune_remote_needs_a_rule_and_a_store_there(tmp_path: Path, remote_url: str) -> None:
    repo = Repository.init(tmp_path / "store")
    repo.remote_add("origin", remote_url)
    err = cli(repo.root, "prune", "--remote", "origin", "--keep-last", "1", code=2).stderr
    assert "no mstore store there" in err
    err = cli(repo.root, "rm", "latest", "--remote", "origin", code=2).stderr
    assert "no mstore store there" in err
