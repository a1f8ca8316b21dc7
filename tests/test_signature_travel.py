"""Signatures travel: push sends them, pull and clone fetch them, export/import carry them; rm, gc and
fsck keep the signatures/ directory in step with the versions. Received bundles are bounded and kept only
when well-formed; a received bundle never replaces a local one unless trusted keys verified it
(tests/test_trust_fixes.py)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import blake3
import pytest

from mstore.errors import IntegrityError
from mstore.ops import archive
from mstore.remote.remotes import open_remote
from mstore.store import signatures as stored

from helpers import cli, head_model


@pytest.fixture(params=["dir", "s3"])
def remote_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "dir":
        return str(tmp_path / "remote")
    return str(request.getfixturevalue("s3_url"))


def _alice(tmp_path: Path, *, sign: bool = True) -> tuple[Path, str]:
    alice = tmp_path / "alice"
    src = tmp_path / "model.safetensors"
    src.write_bytes(head_model(1, backbone=1 << 12))
    cli(alice, "save", str(src), "--tag", "prod")
    vid = json.loads(cli(alice, "log", "--json").stdout)[0]["timestamp"]
    if not (tmp_path / "k.pem").exists():
        cli(alice, "keygen", "-o", str(tmp_path / "k"))
    if sign:
        cli(alice, "sign", vid, "--key", str(tmp_path / "k.pem"))
    return alice, vid


def _verifies(store: Path, vid: str, key: Path, code: int = 0) -> str:
    return cli(store, "verify", vid, "--key", str(key), code=code).stderr


def test_push_and_pull_carry_signatures_and_verify_passes_in_the_other_store(tmp_path: Path, remote_url: str) -> None:
    alice, vid = _alice(tmp_path)
    cli(alice, "remote", "add", "origin", remote_url)
    assert json.loads(cli(alice, "push", "--json").stdout)["versions_sent"] == 1
    assert open_remote(remote_url).signature_index() == {vid: stored.keyids(alice, vid)}
    bob = tmp_path / "bob"
    cli(bob, "init")
    cli(bob, "remote", "add", "origin", remote_url)
    _verifies(bob, vid, tmp_path / "k.pub.pem", code=2)  # not here yet
    cli(bob, "pull")
    assert "verified" in _verifies(bob, vid, tmp_path / "k.pub.pem")
    # a signature made after the version was pushed travels with the next push and pull
    cli(alice, "keygen", "-o", str(tmp_path / "second"))
    cli(alice, "sign", vid, "--key", str(tmp_path / "second.pem"))
    assert "unsigned" not in _verifies(bob, vid, tmp_path / "second.pub.pem", code=1)
    cli(alice, "push")
    cli(bob, "pull")
    assert "verified" in _verifies(bob, vid, tmp_path / "second.pub.pem")
    assert len(stored.keyids(bob, vid)) == 2


def test_clone_carries_signatures(tmp_path: Path, remote_url: str) -> None:
    alice, vid = _alice(tmp_path)
    cli(alice, "remote", "add", "origin", remote_url)
    cli(alice, "push")
    clone = tmp_path / "clone"
    cli(tmp_path, "clone", remote_url, str(clone))
    assert "verified" in _verifies(clone, vid, tmp_path / "k.pub.pem")


def test_malformed_or_oversized_bundles_on_a_remote_are_not_kept(tmp_path: Path) -> None:
    alice, vid = _alice(tmp_path, sign=False)
    remote = tmp_path / "remote"
    cli(alice, "remote", "add", "origin", str(remote))
    cli(alice, "push")
    where = remote / stored.SIGNATURES / vid
    where.mkdir(parents=True)
    (where / ("a" * 64 + ".json")).write_text('{"payloadType": "x"}')  # not a DSSE envelope
    (where / ("b" * 64 + ".json")).write_bytes(b"{" + b" " * (stored.MAX_BUNDLE_BYTES + 1) + b"}")
    (where / ("c" * 64 + ".json")).symlink_to("/etc/hostname")
    (where / "not-a-key.json").write_text("{}")
    bob = tmp_path / "bob"
    cli(tmp_path, "clone", str(remote), str(bob))
    assert stored.keyids(bob, vid) == []
    assert "unsigned" in _verifies(bob, vid, tmp_path / "k.pub.pem", code=1)


def test_a_received_bundle_never_replaces_a_local_one(tmp_path: Path) -> None:
    alice, vid = _alice(tmp_path)
    remote = tmp_path / "remote"
    cli(alice, "remote", "add", "origin", str(remote))
    cli(alice, "push")
    bob = tmp_path / "bob"
    cli(tmp_path, "clone", str(remote), str(bob))
    (keyid,) = stored.keyids(remote, vid)
    mine = stored.read(bob, vid, keyid)
    theirs = json.loads(mine)
    envelope = theirs.get("dsseEnvelope", theirs)  # a Sigstore bundle holds it, a bare envelope is it
    envelope["signatures"][0]["sig"] = "AAAA"  # well-formed, but not a valid signature
    (remote / stored.SIGNATURES / vid / f"{keyid}.json").write_text(json.dumps(theirs))
    cli(bob, "pull")
    assert stored.read(bob, vid, keyid) == mine


def test_export_and_import_carry_signatures(tmp_path: Path) -> None:
    alice, vid = _alice(tmp_path)
    out = tmp_path / "a.mstore"
    assert json.loads(cli(alice, "export", vid, "-o", str(out), "--json").stdout)["signatures"] == 1
    bob = tmp_path / "bob"
    cli(bob, "import", str(out))
    assert "verified" in _verifies(bob, vid, tmp_path / "k.pub.pem")
    assert stored.read(bob, vid, stored.keyids(bob, vid)[0]) == stored.read(alice, vid, stored.keyids(alice, vid)[0])


def _records(path: Path) -> list[tuple[bytes, bytes]]:
    data, pos, out = path.read_bytes(), len(archive.MAGIC), []
    while pos < len(data):
        kind, length, _ = archive._RECORD.unpack_from(data, pos)
        pos += archive._RECORD.size
        out.append((kind, data[pos : pos + length]))
        pos += length
    return out


def _write(path: Path, records: list[tuple[bytes, bytes]]) -> None:
    with path.open("wb") as f:
        f.write(archive.MAGIC)
        for kind, body in records:
            f.write(archive._RECORD.pack(kind, len(body), blake3.blake3(body).digest()) + body)


def test_an_archive_without_signatures_is_format_1_and_old_archives_import(tmp_path: Path) -> None:
    alice, vid = _alice(tmp_path, sign=False)
    out = tmp_path / "a.mstore"
    cli(alice, "export", vid, "-o", str(out))
    header = json.loads(_records(out)[0][1])
    assert header["format"] == 1  # readable by an mstore that predates signature records
    bob = tmp_path / "bob"
    cli(bob, "import", str(out))
    assert stored.keyids(bob, vid) == []


def test_a_malformed_signature_record_is_skipped_and_the_rest_imports(tmp_path: Path) -> None:
    alice, vid = _alice(tmp_path)
    out = tmp_path / "a.mstore"
    cli(alice, "export", vid, "-o", str(out))
    records = _records(out)
    sig = next(i for i, (kind, _) in enumerate(records) if kind == archive.SIGNATURE)
    bad = bytes([len(vid)]) + vid.encode() + b"\x01" * 32 + b'{"not": "a bundle"}'
    other = "20990101T000000Z"  # names a version the archive does not hold: dropped
    stray = bytes([len(other)]) + other.encode() + b"\x02" * 32 + records[sig][1][1 + len(vid) + 32 :]
    records[sig + 1 : sig + 1] = [(archive.SIGNATURE, bad), (archive.SIGNATURE, stray)]
    records[-1] = (archive.END, json.dumps({"records": len(records) - 1}).encode())
    _write(out, records)
    bob = tmp_path / "bob"
    cli(bob, "import", str(out))
    assert stored.keyids(bob, vid) == stored.keyids(alice, vid)
    assert stored.version_dirs(bob) == [vid]
    assert struct.calcsize("<cQ32s") == archive._RECORD.size


def test_rm_deletes_signatures_and_gc_and_fsck_handle_orphans(tmp_path: Path) -> None:
    alice, vid = _alice(tmp_path)
    cli(alice, "rm", vid, "--force")
    assert stored.version_dirs(alice) == []
    # an orphan (an rm killed between the version and its signatures): reported, not fatal; gc removes it
    orphan = alice / stored.SIGNATURES / vid
    orphan.mkdir(parents=True)
    (orphan / ("d" * 64 + ".json")).write_text("{}")
    report = json.loads(cli(alice, "fsck", "--json").stdout)
    problems = [p for p in report["problems"] if p["code"] == "orphan-signature"]
    assert [p["severity"] for p in problems] == ["info"] and problems[0]["subject"] == f"signatures/{vid}"
    cli(alice, "gc", "--grace", "0")
    assert stored.version_dirs(alice) == []
    after = json.loads(cli(alice, "fsck", "--json").stdout)["problems"]
    assert not [p for p in after if p["code"] == "orphan-signature"]


def test_remote_rm_deletes_the_versions_signatures(tmp_path: Path, remote_url: str) -> None:
    alice, vid = _alice(tmp_path)
    cli(alice, "remote", "add", "origin", remote_url)
    cli(alice, "push")
    assert vid in open_remote(remote_url).signature_index()
    cli(alice, "rm", vid, "--remote", "origin", "--force")
    assert open_remote(remote_url).signature_index() == {}


@pytest.mark.parametrize("kind", ["directory", "memory-bucket"])
def test_remote_signature_contract(tmp_path: Path, kind: str) -> None:
    from mstore.remote.bucket import MemoryBucket
    from mstore.remote.remotes import BucketRemote, DirectoryRemote
    from mstore.store.layout import Store

    alice, vid = _alice(tmp_path)
    if kind == "directory":
        remote: DirectoryRemote | BucketRemote = DirectoryRemote(tmp_path / "r")
    else:
        remote = BucketRemote(MemoryBucket())
    remote.initialise(dict(Store.open(alice).config))
    assert remote.signature_index() == {}
    (keyid,) = stored.keyids(alice, vid)
    first = stored.read(alice, vid, keyid)
    remote.put_signature(vid, keyid, first)
    assert remote.signature_index() == {vid: [keyid]}
    assert remote.get_signature(vid, keyid) == first
    remote.put_signature(vid, keyid, first.replace(b'"sig"', b'"sig" '))
    assert remote.get_signature(vid, keyid) == first  # not replaced unless asked
    other = first.replace(b'"sig"', b'"sig"  ')
    remote.put_signature(vid, keyid, other, replace=True)  # push, having verified it, asks
    assert remote.get_signature(vid, keyid) == other
    with pytest.raises(IntegrityError):
        remote.get_signature(vid, "e" * 64)  # missing
    with pytest.raises(IntegrityError):
        remote.get_signature("../../etc", keyid)  # names are validated before they become keys or paths


def test_fsck_remote_reports_orphan_signatures_and_gc_remote_removes_them(tmp_path: Path, remote_url: str) -> None:
    alice, vid = _alice(tmp_path)
    cli(alice, "remote", "add", "origin", remote_url)
    cli(alice, "push")
    remote = open_remote(remote_url)
    (keyid,) = stored.keyids(alice, vid)
    orphan = "20260101_000000"
    remote.put_signature(orphan, keyid, stored.read(alice, vid, keyid))  # as an rm killed in between leaves
    report = json.loads(cli(alice, "fsck", "--remote", "origin", "--json", code=0).stdout)
    found = [p for p in report["problems"] if p["code"] == "orphan-signature"]
    assert [(p["severity"], p["subject"]) for p in found] == [("info", f"signatures/{orphan}")]
    cli(alice, "gc", "--remote", "origin", "--grace", "0")
    assert open_remote(remote_url).signature_index() == {vid: [keyid]}  # the live version's stay
