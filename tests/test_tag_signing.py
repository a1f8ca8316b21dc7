"""Signed promotions: `tag --sign --key PRIV` signs the move's history record; `tag --history --key PUB`
says "signed", "unsigned" or "BAD SIGNATURE"; the signature travels with push and survives a merge."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mstore import Repository
from mstore.store import taglog

from helpers import cli, three_versions

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def three(tmp_path: Path) -> tuple[Repository, list[str], Path]:
    repo, ids = three_versions(tmp_path, T0)
    cli(repo.root, "keygen", "-o", str(tmp_path / "k"))
    cli(repo.root, "keygen", "-o", str(tmp_path / "other"))
    return repo, ids, tmp_path


def history(repo: Repository, *keys: Path, remote: str | None = None) -> list[dict]:  # type: ignore[type-arg]
    args = ["tag", "--history", "prod", "--json", *(a for k in keys for a in ("--key", str(k)))]
    return json.loads(cli(repo.root, *args, *(["--remote", remote] if remote else [])).stdout)


def path_of(repo: Repository) -> Path:
    return repo.root / "refs" / "history" / "prod"


def test_a_signed_promotion_verifies_and_unsigned_records_still_read(three) -> None:  # type: ignore[no-untyped-def]
    repo, (v1, v2, _), tmp = three
    cli(repo.root, "tag", "prod", v1)  # unsigned, as every record before --sign existed
    out = cli(repo.root, "tag", "-f", "prod", v2, "-m", "passed eval", "--sign", "--key", str(tmp / "k.pem"))
    assert "(signed)" in out.stdout
    moves = history(repo, tmp / "k.pub.pem")
    assert [(m["to"], m["signature"]) for m in moves] == [(v2, "signed"), (v1, "unsigned")]
    assert moves[0]["signed_by"] and moves[1]["signed_by"] is None and moves[0]["message"] == "passed eval"
    text = cli(repo.root, "tag", "--history", "prod", "--key", str(tmp / "k.pub.pem")).stdout.splitlines()
    assert f"[signed by key {moves[0]['signed_by'][:16]}]" in text[0] and "[unsigned]" in text[1]
    # without --key: who signed, unverified; with another key: not signed by it
    plain = cli(repo.root, "tag", "--history", "prod").stdout.splitlines()
    assert plain[0].endswith(f"[unverified signature by key {moves[0]['signed_by'][:16]}]  passed eval")
    assert "[" not in plain[1]  # an unsigned record shows no mark without --key
    assert history(repo, tmp / "other.pub.pem")[0]["signature"] == "BAD SIGNATURE"
    # and `prod@{1}` still resolves through a signed record
    assert cli(repo.root, "tag", "-f", "prod", "prod@{1}").stdout.strip().endswith("as prod")
    assert repo.tags()["prod"] == v1


@pytest.mark.parametrize("field", ["to", "message", "who", "time"])
def test_an_edited_record_rechained_by_the_editor_is_reported_bad(three, field: str) -> None:  # type: ignore[no-untyped-def]
    """A bucket writer can recompute the blake3 chain (it holds no secret) but not the signature."""
    repo, (v1, v2, v3), tmp = three
    cli(repo.root, "tag", "prod", v1, "--sign", "--key", str(tmp / "k.pem"))
    cli(repo.root, "tag", "-f", "prod", v2, "-m", "ok", "--sign", "--key", str(tmp / "k.pem"))
    moves = taglog.parse(path_of(repo).read_bytes(), "h")
    edit = {"to": v3, "message": "evil", "who": "mallory", "time": "2099-01-01T00:00:00.000Z"}[field]
    forged = taglog.Move(**{**vars(moves[1]), {"to": "target"}.get(field, field): edit})
    path_of(repo).write_bytes(taglog.append(None, [moves[0], forged]))  # the chain verifies again
    assert [m["signature"] for m in history(repo, tmp / "k.pub.pem")] == ["BAD SIGNATURE", "signed"]
    text = cli(repo.root, "tag", "--history", "prod", "--key", str(tmp / "k.pub.pem")).stdout
    assert "[BAD SIGNATURE by key" in text


def test_a_signed_record_moved_to_another_tag_is_bad(three) -> None:  # type: ignore[no-untyped-def]
    repo, (v1, _, _), tmp = three
    cli(repo.root, "tag", "staging", v1, "--sign", "--key", str(tmp / "k.pem"))
    (repo.root / "refs" / "tags" / "prod").write_text(v1 + "\n")
    path_of(repo).write_bytes((repo.root / "refs" / "history" / "staging").read_bytes())
    assert history(repo, tmp / "k.pub.pem")[0]["signature"] == "BAD SIGNATURE"


def test_a_damaged_signature_field_is_refused_like_any_damaged_record(three) -> None:  # type: ignore[no-untyped-def]
    repo, (v1, _, _), tmp = three
    cli(repo.root, "tag", "prod", v1, "--sign", "--key", str(tmp / "k.pem"))
    line = json.loads(path_of(repo).read_bytes())
    line["sig"]["keyid"] = "not-hex"
    path_of(repo).write_bytes(taglog.canonical(line) + b"\n")
    result = cli(repo.root, "tag", "--history", "prod", code=1)
    assert "keyid is not a key fingerprint" in result.stderr and "Traceback" not in result.stderr


def test_sign_needs_one_private_key_and_a_move(three) -> None:  # type: ignore[no-untyped-def]
    repo, (v1, _, _), tmp = three
    assert "needs one --key" in cli(repo.root, "tag", "prod", v1, "--sign", code=2).stderr
    msg = cli(repo.root, "tag", "prod", v1, "--sign", "--key", str(tmp / "k.pub.pem"), code=2).stderr
    assert "not an unencrypted PEM private key" in msg and repo.tags() == {}
    assert "signs a move" in cli(repo.root, "tag", "-d", "prod", "--sign", "--key", str(tmp / "k.pem"), code=2).stderr
    cli(repo.root, "tag", "prod", v1)
    msg = cli(repo.root, "tag", "prod", v1, "--sign", "--key", str(tmp / "k.pem"), code=2).stderr
    assert "no move to sign" in msg
    assert "--key goes with" in cli(repo.root, "tag", "x", v1, "--key", str(tmp / "k.pem"), code=2).stderr


def test_a_signed_promotion_travels_with_push_and_survives_a_merge(three, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo, (v1, v2, v3), tmp = three
    shared = tmp_path / "shared"
    cli(repo.root, "tag", "prod", v1, "--sign", "--key", str(tmp / "k.pem"))
    cli(repo.root, "remote", "add", "team", str(shared))
    cli(repo.root, "push")
    cli(tmp_path, "clone", str(shared), str(tmp_path / "bob"))
    bob = Repository.open(tmp_path / "bob")
    # both move prod; alice's signed move is merged into the remote's history after bob's (re-chained)
    cli(bob.root, "tag", "-f", "prod", v3, "--sign", "--key", str(tmp / "other.pem"))
    cli(repo.root, "tag", "-f", "prod", v2, "--sign", "--key", str(tmp / "k.pem"))
    cli(bob.root, "push")
    cli(repo.root, "push", "--force")
    raw = (shared / "refs" / "history" / "prod").read_bytes() if (shared / "refs").is_dir() else None
    moves = history(repo, tmp / "k.pub.pem", tmp / "other.pub.pem", remote="team")
    assert sorted(m["to"] for m in moves if m["signed_by"]) == sorted([v1, v2, v3])
    assert [m["signature"] for m in moves if m["signed_by"]] == ["signed"] * 3
    if raw is not None:  # a directory remote: alice's record was re-chained after bob's and still verifies
        lines = [json.loads(line) for line in raw.splitlines()]
        assert any(line.get("sig") and line["sig"]["prev"] != line["prev"] for line in lines)


def test_a_move_made_on_the_remote_directly_is_signed_there(three, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo, (v1, v2, _), tmp = three
    cli(repo.root, "remote", "add", "team", str(tmp_path / "shared"))
    cli(repo.root, "tag", "prod", v1)
    cli(repo.root, "push")
    out = cli(
        repo.root, "tag", "-f", "prod", v2, "--remote", "team", "-m", "hotfix", "--sign", "--key", str(tmp / "k.pem")
    )
    assert "on team (signed)" in out.stdout
    moves = history(repo, tmp / "k.pub.pem", remote="team")
    assert [(m["to"], m["signature"]) for m in moves] == [(v2, "signed"), (v1, "unsigned")]
    cli(repo.root, "pull")  # the signed record comes home with the move
    assert [m["signature"] for m in history(repo, tmp / "k.pub.pem")] == ["signed", "unsigned"]


def test_a_rollback_to_an_older_signed_version_passes_verify_but_not_verify_promotion(three) -> None:  # type: ignore[no-untyped-def]
    """The threat: someone who can write the store (or the bucket) but holds no key moves prod back to an
    older version that *was* signed. Version signatures alone accept it; `verify --promotion` does not."""
    repo, (v1, v2, _), tmp = three
    sign, pub = ("--sign", "--key", str(tmp / "k.pem")), str(tmp / "k.pub.pem")
    for vid in (v1, v2):
        cli(repo.root, "sign", vid, "--key", str(tmp / "k.pem"))
    cli(repo.root, "tag", "prod", v1, *sign)
    cli(repo.root, "tag", "-f", "prod", v2, "-m", "promote", *sign)
    assert "verified" in cli(repo.root, "verify", "prod", "--key", pub, "--promotion").stderr
    # 1. the tag file rewritten, no record: the version is signed, the promotion is not
    repo.store.refs.set_tag("prod", v1, record=False)
    assert "verified" in cli(repo.root, "verify", "prod", "--key", pub).stderr
    msg = cli(repo.root, "verify", "prod", "--key", pub, "--promotion", code=1).stderr.strip()
    assert "moved without a record" in msg and "\n" not in msg
    # 2. with a record of the move, unsigned (or signed by another key)
    repo.store.refs.set_tag("prod", v2, record=False)
    repo.store.refs.set_tag("prod", v1, message="rollback")
    assert "unsigned" in cli(repo.root, "verify", "prod", "--key", pub, "--promotion", code=1).stderr
    cli(repo.root, "tag", "-f", "prod", v2, "--sign", "--key", str(tmp / "other.pem"))
    msg = cli(repo.root, "verify", "prod", "--key", pub, "--promotion", code=1).stderr
    assert "not signed by a given key" in msg
    # 3. the key holder rolls back: a signed move, accepted
    cli(repo.root, "tag", "-f", "prod", v1, "-m", "rollback", *sign)
    assert "verified" in cli(repo.root, "verify", "prod", "--key", pub, "--promotion").stderr
    assert "not a tag" in cli(repo.root, "verify", v1, "--key", pub, "--promotion", code=2).stderr


def test_a_history_cut_on_the_remote_is_refused_by_a_store_that_had_pulled_it(three, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """What docs/format.md claims of a writer who cuts the newest records and rolls the tag back: a store
    that had pulled them refuses `verify --promotion`; a fresh clone cannot tell."""
    repo, (v1, v2, _), tmp = three
    sign, pub = ("--sign", "--key", str(tmp / "k.pem")), str(tmp / "k.pub.pem")
    for vid in (v1, v2):
        cli(repo.root, "sign", vid, "--key", str(tmp / "k.pem"))
    shared, bob = tmp_path / "shared", tmp_path / "bob"
    cli(repo.root, "remote", "add", "team", str(shared))
    cli(repo.root, "tag", "prod", v1, *sign)
    cli(repo.root, "push")
    cli(tmp_path, "clone", str(shared), str(bob))
    cli(repo.root, "tag", "-f", "prod", v2, *sign)
    cli(repo.root, "push")
    cli(bob, "pull")
    copy_signatures(repo.root, bob)
    assert "verified" in cli(bob, "verify", "prod", "--key", pub, "--promotion").stderr
    # the bucket writer: cut the newest record (the rest still chains), point prod back at v1
    history = shared / "refs" / "history" / "prod"
    history.write_bytes(history.read_bytes().split(b"\n")[0] + b"\n")
    remote = Repository.open(repo.root).remote("team")
    remote.set_ref("tags/prod", v1, remote.get_ref("tags/prod")[1])
    cli(bob, "pull")
    assert Repository.open(bob).tags()["prod"] == v1  # bob follows the remote (he did not move prod)
    msg = cli(bob, "verify", "prod", "--key", pub, "--promotion", code=1).stderr
    assert "not a signed promotion" in msg and "\n" not in msg.strip()
    # a fresh clone sees a history whose newest (signed) record names v1: it cannot tell
    cli(tmp_path, "clone", str(shared), str(tmp_path / "fresh"))
    copy_signatures(repo.root, tmp_path / "fresh")
    assert "verified" in cli(tmp_path / "fresh", "verify", "prod", "--key", pub, "--promotion").stderr


def copy_signatures(src: Path, dst: Path) -> None:
    """(Version signatures travel with push and pull in another change; here they are copied by hand.)"""
    for directory in (src / "signatures").iterdir():
        (dst / "signatures" / directory.name).mkdir(parents=True, exist_ok=True)
        for f in directory.iterdir():
            (dst / "signatures" / directory.name / f.name).write_bytes(f.read_bytes())
