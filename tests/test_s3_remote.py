"""S3 remotes end to end, against a real S3 API on 127.0.0.1 (moto's server): what a team types.

Round trips are bit-exact, an incremental push sends only the changed chunks (counted in requests and
bytes), racing pushes lose nothing, a killed push resumes, a corrupt remote object is refused, and bad
credentials, a missing bucket or an unreachable endpoint fail with one clear line and leave the local
store as it was.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mstore import Repository
from mstore.cli import app
from mstore.remote.remotes import BucketRemote
from mstore.remote.s3 import S3Bucket
from mstore.remote.transfer import push

from helpers import cli, clock_at, head_model, safetensors_bytes
from s3helpers import authentication_on, moto_server, s3_client, split

runner = CliRunner()


def _tensors(n: int, seed: int) -> bytes:
    """A safetensors model of `n` random 4 MiB tensors."""
    rng = np.random.default_rng(seed)
    return safetensors_bytes({f"t{i}": ("F32", rng.standard_normal(1 << 20).astype(np.float32)) for i in range(n)})


def _error(store: Path, *args: str) -> str:
    result = runner.invoke(app, ["--store", str(store), *args])
    assert result.exit_code == 1, (args, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mstore: error: "), result.stderr
    return lines[0]


def test_two_stores_exchange_models_through_s3(tmp_path: Path, s3_url: str) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    src = tmp_path / "model.safetensors"
    src.write_bytes(head_model(1, seed=0))
    cli(alice, "save", str(src), "-M", "accuracy=0.9", "--tag", "prod")
    cli(alice, "remote", "add", "origin", s3_url)
    assert json.loads(cli(alice, "remote", "list", "--json").stdout) == {"origin": s3_url}
    first = json.loads(cli(alice, "push", "--json").stdout)
    assert first["versions_sent"] == 1 and first["objects_sent"] >= 2 and first["objects_skipped"] == 0
    assert first["latest"] is not None

    cloned = json.loads(cli(tmp_path, "clone", s3_url, str(bob), "--json").stdout)
    assert cloned["versions_sent"] == 1
    bob_repo = Repository.open(bob)
    assert bob_repo.remotes() == {"origin": s3_url} and bob_repo.tags() == {"prod": bob_repo.ids()[0]}
    assert bob_repo.checkout("prod", tmp_path / "bob.safetensors").read_bytes() == src.read_bytes()

    src.write_bytes(head_model(2, seed=0))  # bob fine-tunes the head and shares it
    cli(bob, "save", str(src), "-M", "accuracy=0.93")
    assert "pushed 1 version(s) (1 already there)" in cli(bob, "push").stdout
    pulled = json.loads(cli(alice, "pull", "--json").stdout)
    assert pulled["versions_sent"] == 1 and pulled["versions_skipped"] == 1
    assert Repository.open(alice).ids() == Repository.open(bob).ids()
    assert Repository.open(alice).checkout("latest", tmp_path / "a.safetensors").read_bytes() == src.read_bytes()
    assert "pulled 0 version(s)" in cli(alice, "pull").stdout
    assert Repository.open(alice).fsck().ok and Repository.open(bob).fsck().ok
    report = json.loads(cli(alice, "fsck", "--remote", "origin", "--verify-data", "--json").stdout)
    assert report["ok"] and report["versions"] == 2 and report["objects_verified"] >= 3


def test_checkout_remote_fetches_only_that_version(tmp_path: Path, s3_url: str) -> None:
    alice = Repository.init(tmp_path / "alice")
    src = tmp_path / "m.safetensors"
    for head in (1, 2, 3):
        src.write_bytes(head_model(head, seed=0))
        alice.save(src)
    alice.remote_add("origin", s3_url)
    alice.push("origin")
    carol = tmp_path / "carol"
    Repository.init(carol).remote_add("origin", s3_url)
    out = tmp_path / "restored.safetensors"
    cli(carol, "checkout", "latest~1", "--remote", "origin", "-o", str(out))
    src.write_bytes(head_model(2, seed=0))
    assert out.read_bytes() == src.read_bytes()
    assert Repository.open(carol).ids() == [alice.ids()[1]]  # fetched just what it needed
    cli(carol, "checkout", "nope", "--remote", "origin", code=2)


def test_incremental_push_sends_only_the_changed_chunks(tmp_path: Path, s3_url: str, s3_endpoint: str) -> None:
    repo = Repository.init(tmp_path / "store")
    src = tmp_path / "m.safetensors"
    src.write_bytes(head_model(1, seed=0, backbone=1 << 20))  # 4 MiB backbone, 4 KiB head
    repo.save(src)
    remote = BucketRemote(S3Bucket(s3_url, endpoint_url=s3_endpoint))
    push(repo.store, remote, repo.ids())

    src.write_bytes(head_model(2, seed=0, backbone=1 << 20))  # fine-tuned: only the head changed
    repo.save(src)
    counted = S3Bucket(s3_url, endpoint_url=s3_endpoint)
    stats = push(repo.store, BucketRemote(counted), repo.ids())  # the old version is checked, not re-sent
    assert stats.versions_skipped == 1
    assert stats.versions_sent == 1 and stats.objects_skipped >= 1
    assert stats.objects_sent <= 3  # the new head chunk and the manifest (a delta against the parent's head)
    assert stats.bytes_sent < 16 * 1024, stats  # of a 4 MiB model
    # PUTs: the new objects, metadata.json + metadata.b3, refs/latest, the lock key; nothing else.
    assert counted.requests["put"] == stats.objects_sent + 4, counted.requests
    assert counted.requests["list"] <= 4  # objects (one page), versions, locks, (a second page at most)
    assert counted.requests["get"] == 2  # mstore.json and refs/latest: the old record is matched by its ETag
    bucket, prefix = split(s3_url)
    listed = s3_client(s3_endpoint).list_objects_v2(Bucket=bucket, Prefix=prefix + "objects/")["Contents"]
    stored = sum(o["Size"] for o in listed)
    assert stored < len(src.read_bytes()) * 1.2  # two versions in roughly the space of one


def _save_at(store: Path, src: Path, when: datetime) -> str:
    """Save as if the clock said `when` (machines saving in one second would otherwise share an ID)."""
    with clock_at(when):
        repo = Repository.open(store) if store.exists() else Repository.init(store)
        return str(repo.save(src)["timestamp"])


def test_racing_pushes_lose_no_version_and_the_loser_is_told(tmp_path: Path, s3_url: str) -> None:
    src = tmp_path / "m.safetensors"
    stores = []
    for i in range(4):
        store = tmp_path / f"dev{i}"
        src.write_bytes(head_model(i, seed=i, backbone=1 << 16))
        _save_at(store, src, datetime(2026, 11, 26, 10, 0, i, tzinfo=timezone.utc))
        cli(store, "remote", "add", "origin", s3_url)
        stores.append(store)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mstore.cli", "--store", str(s), "push"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in stores
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    ids = sorted(Repository.open(s).ids()[0] for s in stores)
    viewer = tmp_path / "viewer"
    cli(tmp_path, "clone", s3_url, str(viewer))
    assert Repository.open(viewer).ids() == ids
    assert Repository.open(viewer).remote("origin").get_ref("latest")[0] == ids[-1]  # refs/latest on the bucket

    # The loser: a version older than the remote's latest lands, but does not move `latest`, and says so.
    early = tmp_path / "early"
    src.write_bytes(head_model(9, seed=9, backbone=1 << 16))
    early_id = _save_at(early, src, datetime(2026, 11, 26, 9, 0, 0, tzinfo=timezone.utc))
    cli(early, "remote", "add", "origin", s3_url)
    result = runner.invoke(app, ["--store", str(early), "push"])
    assert result.exit_code == 0 and f"the remote's latest stays {ids[-1]}" in result.stderr
    cli(viewer, "pull")
    assert Repository.open(viewer).ids() == [early_id, *ids]
    assert Repository.open(viewer).remote("origin").get_ref("latest")[0] == ids[-1]

    # Two machines that saved in the same second hold different versions under one ID: a clear refusal.
    clash = tmp_path / "clash"
    src.write_bytes(head_model(10, seed=10, backbone=1 << 16))
    _save_at(clash, src, datetime(2026, 11, 26, 10, 0, 0, tzinfo=timezone.utc))
    cli(clash, "remote", "add", "origin", s3_url)
    assert f"version {ids[0]} exists on both sides with different content" in _error(clash, "push")


def test_killed_push_leaves_nothing_visible_and_resumes(tmp_path: Path, s3_url: str, s3_endpoint: str) -> None:
    repo = Repository.init(tmp_path / "store")
    src = tmp_path / "big.safetensors"
    src.write_bytes(_tensors(12, seed=3))
    repo.save(src)
    repo.remote_add("origin", s3_url)
    bucket, prefix = split(s3_url)
    client = s3_client(s3_endpoint)

    def keys(under: str) -> list[str]:
        return [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix + under).get("Contents", [])]

    proc = subprocess.Popen(
        [sys.executable, "-m", "mstore.cli", "--store", str(repo.root), "push"],
        env=dict(os.environ, MSTORE_TRANSFER_WORKERS="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while len(keys("objects/")) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    landed = keys("objects/")
    assert 1 <= len(landed) < len(repo.manifest(repo.ids()[0]).files[0].chunks) + 1, "push was not killed mid-upload"
    assert keys("version_") == [] and keys("refs/") == []  # nothing visible that is incomplete

    stats = repo.push("origin")
    assert stats.versions_sent == 1 and stats.objects_skipped >= len(landed) - 1
    clone = tmp_path / "clone"
    cli(tmp_path, "clone", s3_url, str(clone))
    assert Repository.open(clone).checkout("latest", tmp_path / "out.safetensors").read_bytes() == src.read_bytes()
    assert json.loads(cli(repo.root, "fsck", "--remote", "origin", "--json").stdout)["ok"]


def test_a_corrupt_remote_object_is_reported_and_never_stored(tmp_path: Path, s3_url: str, s3_endpoint: str) -> None:
    repo = Repository.init(tmp_path / "store")
    src = tmp_path / "m.safetensors"
    src.write_bytes(head_model(4, seed=4))
    vid = repo.save(src)["timestamp"]
    repo.remote_add("origin", s3_url)
    repo.push("origin")
    oid = repo.manifest(vid).files[0].chunks[0].oid
    bucket, prefix = split(s3_url)
    client = s3_client(s3_endpoint)
    key = f"{prefix}objects/{oid[:2]}/{oid[2:]}"
    blob = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    blob[len(blob) // 2] ^= 0x10
    client.put_object(Bucket=bucket, Key=key, Body=bytes(blob))

    assert json.loads(cli(repo.root, "fsck", "--remote", "origin", "--json").stdout)["ok"]  # structure is fine…
    report = runner.invoke(app, ["--store", str(repo.root), "fsck", "--remote", "origin", "--verify-data"])
    assert report.exit_code == 1 and oid in report.stdout  # …the data check finds it

    other = tmp_path / "other"
    Repository.init(other).remote_add("origin", s3_url)
    line = _error(other, "pull")
    assert "corrupt" in line and oid in line
    after = Repository.open(other)
    assert after.ids() == [] and oid not in set(after.store.objects)

    # The store that has a good copy heals the remote; then the pull goes through.
    healed = runner.invoke(
        app, ["--store", str(repo.root), "fsck", "--remote", "origin", "--verify-data", "--repair", "--json"]
    )
    assert healed.exit_code == 1 and json.loads(healed.stdout)["repaired"] == [oid]
    assert json.loads(cli(repo.root, "fsck", "--remote", "origin", "--verify-data", "--json").stdout)["ok"]
    cli(other, "pull")
    assert Repository.open(other).checkout(vid, tmp_path / "o.safetensors").read_bytes() == src.read_bytes()


def test_wrong_credentials_missing_bucket_and_unreachable_endpoint(
    tmp_path: Path, s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    src = tmp_path / "m.bin"
    src.write_bytes(os.urandom(1 << 16))
    cli(store, "save", str(src), "--tag", "keep")
    before = Repository.open(store).ids()

    bucket, _ = split(s3_url)
    cli(store, "remote", "add", "missing", f"s3://{bucket}-missing/x")
    assert "does not exist" in _error(store, "push", "missing")
    cli(store, "remote", "add", "down", "s3://bucket/x", "--endpoint-url", "http://127.0.0.1:9")
    assert "cannot reach" in _error(store, "push", "down")
    assert "cannot reach" in _error(
        tmp_path, "clone", "s3://bucket/x", str(tmp_path / "c"), "--endpoint-url", "http://127.0.0.1:9"
    )
    with moto_server() as private:  # credentials are checked server-wide: a server of its own for this
        s3_client(private).create_bucket(Bucket=bucket)
        cli(store, "remote", "add", "guarded", f"s3://{bucket}/x", "--endpoint-url", private)
        with authentication_on(private) as (key, secret):
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
            assert "access denied" in _error(store, "push", "guarded")
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
            assert "access denied" in _error(store, "pull", "guarded")
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
            assert json.loads(cli(store, "push", "guarded", "--json").stdout)["versions_sent"] == 1  # the right ones
    after = Repository.open(store)
    assert after.ids() == before and after.tags() == {"keep": before[0]} and after.fsck().ok


def test_gc_remote_keeps_what_versions_need_and_respects_grace(tmp_path: Path, s3_url: str, s3_endpoint: str) -> None:
    repo = Repository.init(tmp_path / "store")
    src = tmp_path / "m.safetensors"
    for head in (1, 2):
        src.write_bytes(head_model(head, seed=5, backbone=1 << 16))
        repo.save(src)
    repo.remote_add("origin", s3_url)
    repo.push("origin")
    # Someone deletes the older version's record by hand: its head chunk becomes garbage on the remote.
    bucket, prefix = split(s3_url)
    client = s3_client(s3_endpoint)
    for leaf in ("metadata.b3", "metadata.json"):
        client.delete_object(Bucket=bucket, Key=f"{prefix}version_{repo.ids()[0]}/{leaf}")

    young = json.loads(cli(repo.root, "gc", "--remote", "origin", "--dry-run", "--json").stdout)
    assert young["object_ids"] == [] and young["kept_young"] >= 1  # within the default 1 h grace
    dry = json.loads(cli(repo.root, "gc", "--remote", "origin", "--grace", "0", "--dry-run", "--json").stdout)
    assert dry["object_ids"] and not dry["deleted"]
    before = len(client.list_objects_v2(Bucket=bucket, Prefix=prefix + "objects/")["Contents"])
    done = json.loads(cli(repo.root, "gc", "--remote", "origin", "--grace", "0", "--json").stdout)
    assert done["deleted"] and sorted(done["object_ids"]) == sorted(dry["object_ids"])
    after = len(client.list_objects_v2(Bucket=bucket, Prefix=prefix + "objects/")["Contents"])
    assert after == before - len(dry["object_ids"])
    clone = tmp_path / "clone"
    cli(tmp_path, "clone", s3_url, str(clone))
    assert Repository.open(clone).checkout("latest", tmp_path / "o.safetensors").read_bytes() == src.read_bytes()
    assert json.loads(cli(repo.root, "fsck", "--remote", "origin", "--verify-data", "--json").stdout)["ok"]

    # A push in progress (its lock key) stops gc cold.
    client.put_object(Bucket=bucket, Key=f"{prefix}locks/push-elsewhere-1-abc", Body=b"{}")
    assert "another mstore" in _error(repo.root, "gc", "--remote", "origin")


def test_progress_bar_on_a_terminal_and_silence_when_piped(tmp_path: Path, s3_url: str) -> None:
    repo = Repository.init(tmp_path / "store")
    src = tmp_path / "m.safetensors"
    src.write_bytes(_tensors(8, seed=11))
    repo.save(src)
    repo.remote_add("origin", s3_url)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mstore.cli", "--store", str(repo.root), "push"],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=terminal,
        env=dict(os.environ, COLUMNS="120", TERM="xterm"),
    )
    os.close(terminal)
    seen = b""
    while True:
        try:
            data = os.read(controller, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        seen += data
    assert proc.stdout is not None
    summary = proc.stdout.read().decode()
    assert proc.wait() == 0
    os.close(controller)
    assert b"pushing" in seen and b"MB" in seen  # the bar: label, bytes done / total, speed
    assert summary.startswith("pushed 1 version(s)") and "/s" in summary

    other = tmp_path / "other"
    piped = subprocess.run(
        [sys.executable, "-m", "mstore.cli", "clone", s3_url, str(other)], capture_output=True, text=True, check=True
    )
    assert piped.stderr == "" and piped.stdout.startswith(f"cloned into {other}: 1 version(s)")
