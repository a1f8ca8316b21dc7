"""Trusted keys: a consumer that sets MSTORE_TRUSTED_KEYS / trusted_keys= / --trusted-keys never receives a
version none of those keys signed, from model_path, path, checkout or pull; one line, exit 1, nothing
written, nothing on stdout. Without a trust setting nothing changes."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

import mstore
from mstore import Repository
from mstore.cache.entries import Cache
from mstore.cli import app
from mstore.modelpath import locate
from mstore.ops import signing
from mstore.ops.trust import TRUSTED_KEYS_ENV, Untrusted
from mstore.store import signatures as stored

from helpers import cli, clock_at, head_model

runner = CliRunner()


def _save(store: Path, tmp: Path, seed: int, when: datetime | None = None) -> str:
    src = tmp / f"model-{seed}.safetensors"
    src.write_bytes(head_model(seed, backbone=1 << 12))
    if when is None:
        cli(store, "save", str(src))
    else:
        with clock_at(when):
            cli(store, "save", str(src))
    return str(json.loads(cli(store, "log", "--json").stdout)[0]["timestamp"])


def _refused(store: Path, *args: str) -> str:
    """The command exits 1 with one line on stderr and nothing on stdout; returns that line."""
    result = runner.invoke(app, ["--store", str(store), *args])
    assert result.exit_code == 1, (args, result.exit_code, result.stdout, result.stderr)
    assert result.stdout == "", result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


class World:
    """alice publishes signed versions to a shared remote; `keys/` holds the consumer's trust roots."""

    def __init__(self, tmp: Path, remote: str) -> None:
        self.tmp, self.remote = tmp, remote
        self.alice = tmp / "alice"
        cli(self.alice, "init")
        cli(self.alice, "remote", "add", "origin", remote)
        cli(self.alice, "keygen", "-o", str(tmp / "alice-key"))
        cli(self.alice, "keygen", "-o", str(tmp / "mallory-key"))
        (tmp / "keys").mkdir()
        shutil.copy(tmp / "alice-key.pub.pem", tmp / "keys" / "alice.pem")
        self.trust = tmp / "keys"
        self.old = _save(self.alice, tmp, 1, datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc))
        self.good = _save(self.alice, tmp, 2, datetime(2026, 1, 2, 12, 0, 0, tzinfo=timezone.utc))
        for vid in (self.old, self.good):
            cli(self.alice, "sign", vid, "--key", str(tmp / "alice-key.pem"))
        cli(self.alice, "tag", "prod", self.good)
        cli(self.alice, "push", "--all")

    def bucket_writer(self) -> tuple[str, set[str]]:
        """mallory can write the bucket but holds no trusted key: she saves her own self-consistent version,
        signs it with her own key, and moves prod onto it. Returns its ID and the chunks only it has."""
        mallory = self.tmp / "mallory"
        cli(self.tmp, "clone", self.remote, str(mallory))
        evil = _save(mallory, self.tmp, 666, datetime(2026, 1, 3, 12, 0, 0, tzinfo=timezone.utc))
        cli(mallory, "sign", evil, "--key", str(self.tmp / "mallory-key.pem"))
        cli(mallory, "tag", "-f", "prod", evil)
        cli(mallory, "push", "--all", "--force")
        repo = Repository.open(mallory)
        chunks = {c.oid for f in repo.manifest(evil).files for c in f.chunks}
        theirs = {c.oid for v in (self.old, self.good) for f in repo.manifest(v).files for c in f.chunks}
        assert chunks - theirs
        return evil, chunks - theirs  # the chunks only the bucket writer's model has


@pytest.fixture(params=["dir", "s3"])
def world(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)
    monkeypatch.setenv("MSTORE_CACHE", str(tmp_path / "cache"))
    remote = str(tmp_path / "remote") if request.param == "dir" else str(request.getfixturevalue("s3_url"))
    return World(tmp_path, remote)


@pytest.fixture
def dir_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)
    monkeypatch.setenv("MSTORE_CACHE", str(tmp_path / "cache"))
    return World(tmp_path, str(tmp_path / "remote"))


def _cached_objects(tmp: Path) -> set[str]:
    return set(Cache.open(tmp / "cache").objects)


def test_a_bucket_writer_cannot_make_model_path_return_their_bytes(world: World) -> None:
    before = mstore.model_path("prod", remote=world.remote, trusted_keys=world.trust)
    evil, chunks = world.bucket_writer()
    with pytest.raises(Untrusted) as refused:
        mstore.model_path("prod", remote=world.remote, trusted_keys=world.trust)
    assert f"refused {evil}" in str(refused.value) and "signed by other keys only" in str(refused.value)
    assert not chunks & _cached_objects(world.tmp)  # not one byte of the model was fetched
    # the same from the shell, and with the trust root in the environment
    line = _refused(world.tmp, "path", "prod", "--remote", world.remote, "--trusted-keys", str(world.trust))
    assert evil in line and "signed by other keys only" in line
    # without a trust setting, the consumer gets the bucket writer's model: the documented difference
    assert mstore.model_path("prod", remote=world.remote) != before
    assert chunks <= _cached_objects(world.tmp)


def test_a_bucket_writer_can_roll_prod_back_to_an_older_signed_version(dir_world: World) -> None:
    """What trust does not stop (docs/guarantees.md): prod moved back onto a version that a trusted key
    did sign is accepted; tag signatures are not required by consumers."""
    w = dir_world
    mallory = w.tmp / "mallory"
    cli(w.tmp, "clone", w.remote, str(mallory))
    cli(mallory, "tag", "-f", "prod", w.old)
    cli(mallory, "push", "--force")
    assert locate("prod", remote=w.remote, trusted_keys=w.trust).version == w.old


def test_a_bucket_writer_who_deletes_signatures_gets_a_refusal_not_other_bytes(world: World) -> None:
    """What trust does not stop: deletion. The consumer is refused, never handed unsigned bytes."""
    from mstore.remote.remotes import BucketRemote, open_remote

    remote = open_remote(world.remote)
    if isinstance(remote, BucketRemote):
        for entry in list(remote.bucket.list(f"{stored.SIGNATURES}/")):
            remote.bucket.delete(entry.key)
    else:
        shutil.rmtree(Path(world.remote) / stored.SIGNATURES)
    with pytest.raises(Untrusted, match=f"refused {world.good}: .* unsigned"):
        mstore.model_path("prod", remote=world.remote, trusted_keys=world.trust)
    assert not (world.tmp / "cache").exists() or not Cache.open(world.tmp / "cache").keys()


def _change_a_digest(doc: dict) -> None:  # type: ignore[type-arg]
    """Change the first file's digest in a statement, keeping it otherwise self-consistent: mstore's first
    layout lists files as subjects; the model-signing one as resources under one subject over their digests."""
    resources = doc["predicate"].get("resources")
    if resources is None:
        doc["subject"][0]["digest"]["blake3"] = "1" * 64
        return
    resources[0]["digest"] = "1" * 64
    raw = b"".join(bytes.fromhex(r["digest"]) for r in resources)
    doc["subject"][0]["digest"]["sha256"] = hashlib.sha256(raw).hexdigest()


def test_unsigned_other_key_moved_and_changed_signatures_are_each_refused(dir_world: World) -> None:
    w = dir_world
    store = w.alice
    unsigned = _save(store, w.tmp, 3)
    line = _refused(store, "path", unsigned, "--trusted-keys", str(w.trust))
    assert line.endswith(f"refused {unsigned}: not signed by a trusted key: unsigned (no signature is stored for it)")
    cli(store, "sign", unsigned, "--key", str(w.tmp / "mallory-key.pem"))
    assert "signed by other keys only" in _refused(store, "path", unsigned, "--trusted-keys", str(w.trust))
    # alice's genuine signature of another version, copied beside this one under its own name
    (src,) = (store / stored.SIGNATURES / w.good).iterdir()
    shutil.copy(src, store / stored.SIGNATURES / unsigned / src.name)
    line = _refused(store, "path", unsigned, "--trusted-keys", str(w.trust))
    assert "does not match it" in line and "another version" in line
    # a statement alice's key signed whose digests are not this version's
    bundle = json.loads(src.read_bytes())
    env = bundle.get("dsseEnvelope", bundle)  # a Sigstore bundle holds the envelope, a bare envelope is it
    doc = signing.statement(Repository.open(store).store, unsigned)
    _change_a_digest(doc)
    payload = json.dumps(doc).encode()
    key = signing.load_private_key(w.tmp / "alice-key.pem")
    env["payload"] = base64.b64encode(payload).decode()
    sig = key.sign(signing.pae(signing.PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    env["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    (store / stored.SIGNATURES / unsigned / src.name).write_text(json.dumps(bundle))
    line = _refused(store, "path", unsigned, "--trusted-keys", str(w.trust))
    assert "does not match it" in line and "digests differ" in line
    # the signed one passes, and without trust the unsigned one is handed over as before
    assert cli(store, "path", w.good, "--trusted-keys", str(w.trust)).stdout.strip()
    assert cli(store, "path", unsigned).stdout.strip()


def test_a_bundle_by_another_key_filed_under_the_trusted_keys_name_is_refused(dir_world: World) -> None:
    """Trust roots are local: a name on the remote is no key; only a valid signature by a trusted key counts."""
    w = dir_world
    evil, _ = w.bucket_writer()
    alice_id = signing.fingerprint(signing.load_public_key(w.tmp / "alice-key.pub.pem"))
    where = Path(w.remote) / stored.SIGNATURES / evil
    (theirs,) = where.iterdir()
    theirs.rename(where / f"{alice_id}.json")
    line = _refused(w.tmp, "path", "prod", "--remote", w.remote, "--trusted-keys", str(w.trust))
    assert evil in line and "signed by other keys only" in line


def test_the_environment_variable_as_a_file_or_a_directory(dir_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = dir_world
    unsigned = _save(w.alice, w.tmp, 4)
    for setting in (w.tmp / "alice-key.pub.pem", w.trust):
        monkeypatch.setenv(TRUSTED_KEYS_ENV, str(setting))
        assert cli(w.alice, "path", w.good).stdout.strip()
        assert unsigned in _refused(w.alice, "path", unsigned)
        with pytest.raises(Untrusted):
            mstore.model_path(unsigned, store=w.alice)
    # a directory of other keys only: the signed version is refused too
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(w.tmp / "mallory-key.pub.pem"))
    assert "signed by other keys only" in _refused(w.alice, "path", w.good)


def test_a_bad_trust_setting_is_one_line_and_refuses_everything(dir_world: World) -> None:
    w = dir_world
    (w.tmp / "empty").mkdir()
    for setting, words in [
        ("missing.pem", "does not exist"),
        ("empty", "holds no *.pem"),
        ("alice-key.pem", "not a PEM public key"),
    ]:
        result = runner.invoke(app, ["--store", str(w.alice), "path", w.good, "--trusted-keys", str(w.tmp / setting)])
        assert result.exit_code == 2 and result.stdout == "" and words in result.stderr, (setting, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


def test_checkout_refuses_and_writes_nothing(dir_world: World) -> None:
    w = dir_world
    unsigned = _save(w.alice, w.tmp, 5)
    out = w.tmp / "out"
    line = _refused(w.alice, "checkout", unsigned, "-o", str(out) + "/", "--trusted-keys", str(w.trust))
    assert unsigned in line and "unsigned" in line and not out.exists()
    cli(w.alice, "checkout", w.good, "-o", str(out) + "/", "--trusted-keys", str(w.trust))
    assert any(out.iterdir())
    # checkout --remote: the version is not fetched either
    evil, chunks = w.bucket_writer()
    consumer = w.tmp / "consumer"
    cli(consumer, "init")
    cli(consumer, "remote", "add", "origin", w.remote)
    line = _refused(
        consumer, "checkout", "prod", "--remote", "origin", "-o", str(w.tmp / "o2"), "--trusted-keys", str(w.trust)
    )
    assert evil in line and not (w.tmp / "o2").exists()
    assert not Repository.open(consumer).store.versions.exists(evil)


def test_checkout_reads_the_verdict_and_verifies_the_signature_once(
    dir_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mstore checkout --trusted-keys` decides once (Repository.check_loadable) and checks out what it
    let through: one verdict read, one ECDSA verification (before: the CLI and Repository.checkout each
    made both). The Python checkout of a ref makes them once too."""
    from mstore.content import verdict

    w = dir_world
    calls = {"verdict": 0, "verify": 0}
    real_local, real_verify = verdict.local, signing.verify_bundles

    def local(*args: object, **kw: object) -> object:
        calls["verdict"] += 1
        return real_local(*args, **kw)  # type: ignore[arg-type]

    def verify(*args: object, **kw: object) -> object:
        calls["verify"] += 1
        return real_verify(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(verdict, "local", local)
    monkeypatch.setattr(signing, "verify_bundles", verify)
    out = w.tmp / "out"
    cli(w.alice, "checkout", w.good, "-o", str(out) + "/", "--trusted-keys", str(w.trust))
    assert any(out.iterdir()) and calls == {"verdict": 1, "verify": 1}, calls
    calls.update(verdict=0, verify=0)
    Repository.open(w.alice).checkout(w.good, str(w.tmp / "py") + "/", trusted_keys=w.trust)
    assert calls == {"verdict": 1, "verify": 1}, calls
    repo = Repository.open(w.alice)
    checked = repo.check_loadable(w.good, trusted_keys=w.trust)
    with pytest.raises(ValueError):  # a Loadable's checks are made: no switches to contradict them
        repo.checkout(checked, str(w.tmp / "py2") + "/", trusted_keys=w.trust)


def test_pull_with_trusted_keys_refuses_what_no_trusted_key_signed(world: World) -> None:
    evil, chunks = world.bucket_writer()
    consumer = world.tmp / "consumer"
    cli(consumer, "init")
    cli(consumer, "remote", "add", "origin", world.remote)
    line = _refused(consumer, "pull", "--all", "--trusted-keys", str(world.trust))
    assert evil in line and "signed by other keys only" in line and "nothing of it was pulled" in line
    repo = Repository.open(consumer)
    assert repo.store.versions.ids() == sorted([world.old, world.good])  # the signed ones came
    assert not chunks & set(repo.store.objects)  # nothing of the refused one did
    assert repo.store.refs.tags().get("prod") != evil
    assert "verified" in cli(consumer, "verify", world.good, "--key", str(world.tmp / "alice-key.pub.pem")).stderr
    # without trust, pull takes it (behaviour as before)
    cli(consumer, "pull", "--all")
    assert repo.store.versions.exists(evil)


def test_offline_answers_are_checked_too(dir_world: World) -> None:
    w = dir_world
    # resolved online without trust: offline with trust cannot tell, so it refuses
    mstore.model_path("prod", remote=w.remote)
    with pytest.raises(Untrusted, match="offline, and the cache kept no signature"):
        mstore.model_path("prod", remote=w.remote, offline=True, trusted_keys=w.trust)
    # resolved online with trust: offline with the same trust passes, with another key it is refused
    online = mstore.model_path("prod", remote=w.remote, trusted_keys=w.trust)
    assert mstore.model_path("prod", remote=w.remote, offline=True, trusted_keys=w.trust) == online
    with pytest.raises(Untrusted, match="signed by other keys only"):
        mstore.model_path("prod", remote=w.remote, offline=True, trusted_keys=w.tmp / "mallory-key.pub.pem")
    # the record names cache objects, not a verdict: tampering with what it names is refused
    cache = Cache.open(w.tmp / "cache")
    (record,) = [r for r in cache.resolutions() if r["ref"] == "prod"]
    (oid,) = record["trust"]["signatures"].values()
    cache.objects.delete(oid)
    with pytest.raises(Untrusted, match="offline"):
        mstore.model_path("prod", remote=w.remote, offline=True, trusted_keys=w.trust)
    # trusted_keys= takes a list of paths as well
    assert mstore.model_path("prod", remote=w.remote, trusted_keys=[w.tmp / "mallory-key.pub.pem", w.trust]) == online


def test_pull_and_checkout_honour_the_environment_variable(dir_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = dir_world
    evil, _ = w.bucket_writer()
    consumer = w.tmp / "consumer"
    cli(consumer, "init")
    cli(consumer, "remote", "add", "origin", w.remote)
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(w.trust))
    assert evil in _refused(consumer, "pull", "--all")
    assert evil in _refused(consumer, "checkout", "prod", "--remote", "origin", "-o", str(w.tmp / "out"))
    assert not Repository.open(consumer).store.versions.exists(evil) and not (w.tmp / "out").exists()
    # a version pulled earlier without trust is still refused at use, and pull does not move a tag onto it
    monkeypatch.delenv(TRUSTED_KEYS_ENV)
    cli(consumer, "pull", "--all")
    cli(consumer, "tag", "-f", "prod", w.good)
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(w.trust))
    assert evil in _refused(consumer, "checkout", evil, "-o", str(w.tmp / "out"))
    assert evil in _refused(consumer, "path", evil)


def test_crafted_bundles_on_a_remote_are_refused_in_one_line(dir_world: World) -> None:
    w = dir_world
    (bundle,) = (Path(w.remote) / stored.SIGNATURES / w.good).iterdir()
    good = bundle.read_bytes()
    damages = {
        "truncated": good[: len(good) // 2],
        "oversized": good + b" " * (stored.MAX_BUNDLE_BYTES + 1),
        "deep": b"[" * 100_000,
        "bad-sig": good.replace(b'"sig": "', b'"sig": "AAAA'),
        "empty": b"",
    }
    for name, damaged in damages.items():
        bundle.write_bytes(damaged)
        line = _refused(w.tmp, "path", "prod", "--remote", w.remote, "--trusted-keys", str(w.trust))
        assert f"refused {w.good}: not signed by a trusted key" in line, name
    bundle.write_bytes(good)  # and the genuine one passes again: the refusals were the damage
    assert cli(w.tmp, "path", "prod", "--remote", w.remote, "--trusted-keys", str(w.trust)).stdout.strip()
