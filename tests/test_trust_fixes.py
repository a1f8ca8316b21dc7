"""Review findings of the trust code (issue 22): the Python checkout honours trusted keys, a junk bundle
filed under a trusted key's name cannot hold the genuine one off, nothing is written through a symlinked
signatures/<vid>, an empty trust path is refused, and `--signature DIR/` is refused before any write."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_trusted_keys import World, _refused, _save
from typer.testing import CliRunner

import mstore
from mstore import Repository
from mstore.api import ModelVersioning
from mstore.cli import app
from mstore.errors import BadInput, UnsafeLayout
from mstore.ops import signing
from mstore.ops.trust import TRUSTED_KEYS_ENV, Untrusted
from mstore.store import signatures as stored

from helpers import cli

runner = CliRunner()


@pytest.fixture
def w(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)
    monkeypatch.setenv("MSTORE_CACHE", str(tmp_path / "cache"))
    return World(tmp_path, str(tmp_path / "remote"))


def test_python_checkout_refuses_what_no_trusted_key_signed(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    other = _save(w.alice, w.tmp, 3)
    cli(w.alice, "sign", other, "--key", str(w.tmp / "mallory-key.pem"))  # signed, by another key only
    repo, out = Repository.open(w.alice), w.tmp / "out"
    with pytest.raises(Untrusted, match=f"refused {other}: .*signed by other keys only"):
        repo.checkout(other, out, trusted_keys=w.trust)
    assert not out.exists()
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(w.trust))
    for checkout in (repo.checkout, ModelVersioning(w.alice).checkout):
        with pytest.raises(Untrusted, match="signed by other keys only"):
            checkout(other, out)
        assert not out.exists()
    assert repo.checkout(w.good, out).exists()  # the one alice signed passes
    monkeypatch.delenv(TRUSTED_KEYS_ENV)
    assert repo.checkout(other, w.tmp / "o2").exists()  # without trust: as before


def _plant_junk(w: World) -> tuple[str, str]:
    """A version alice pushed unsigned; the bucket writer files her own signature of it under alice's key
    name on the remote. Returns (version, alice's key id)."""
    vid = _save(w.alice, w.tmp, 7)
    cli(w.alice, "push")
    mallory = w.tmp / "mallory"
    cli(w.tmp, "clone", w.remote, str(mallory))
    cli(mallory, "sign", vid, "--key", str(w.tmp / "mallory-key.pem"))
    alice_id = signing.fingerprint(signing.load_public_key(w.tmp / "alice-key.pub.pem"))
    (junk,) = (mallory / stored.SIGNATURES / vid).iterdir()
    where = Path(w.remote) / stored.SIGNATURES / vid
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(junk, where / f"{alice_id}.json")
    return vid, alice_id


def test_a_junk_bundle_under_a_trusted_keys_name_does_not_block_the_genuine_one(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    vid, alice_id = _plant_junk(w)
    bob = w.tmp / "bob"
    cli(bob, "init")
    cli(bob, "remote", "add", "origin", w.remote)
    cli(bob, "pull")  # untrusted: the junk is kept under alice's name
    junk = stored.read(bob, vid, alice_id)
    assert "signed by other keys only" in _refused(bob, "path", vid, "--trusted-keys", str(w.trust))
    # alice signs and pushes: without trust push cannot tell which is genuine; with it, hers replaces the junk
    cli(w.alice, "sign", vid, "--key", str(w.tmp / "alice-key.pem"))
    genuine = stored.read(w.alice, vid, alice_id)
    cli(w.alice, "push")
    assert stored.read(Path(w.remote), vid, alice_id) == junk
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(w.tmp / "alice-key.pub.pem"))
    cli(w.alice, "push")
    monkeypatch.delenv(TRUSTED_KEYS_ENV)
    assert stored.read(Path(w.remote), vid, alice_id) == genuine
    # checkout --remote with trust finds the genuine one although bob holds the junk under its name
    out = w.tmp / "out"
    cli(bob, "checkout", vid, "--remote", "origin", "-o", str(out), "--trusted-keys", str(w.trust))
    assert out.exists() and stored.read(bob, vid, alice_id) == genuine  # and it replaced the junk here
    # a pull with trust repairs the same way (another consumer, the junk put back)
    carol = w.tmp / "carol"
    cli(carol, "init")
    cli(carol, "remote", "add", "origin", w.remote)
    (Path(w.remote) / stored.SIGNATURES / vid / f"{alice_id}.json").write_bytes(junk)
    cli(carol, "pull")
    (Path(w.remote) / stored.SIGNATURES / vid / f"{alice_id}.json").write_bytes(genuine)  # fixed by hand
    assert "signed by other keys only" in _refused(carol, "path", vid, "--trusted-keys", str(w.trust))
    cli(carol, "pull", "--trusted-keys", str(w.trust))
    assert stored.read(carol, vid, alice_id) == genuine
    assert cli(carol, "path", vid, "--trusted-keys", str(w.trust)).stdout.strip()


def test_nothing_is_written_or_read_through_a_symlinked_signature_directory(w: World) -> None:
    vid = _save(w.alice, w.tmp, 8)
    cli(w.alice, "sign", vid, "--key", str(w.tmp / "alice-key.pem"))
    outside = w.tmp / "outside"
    outside.mkdir()
    (Path(w.remote) / stored.SIGNATURES / vid).symlink_to(outside)
    result = runner.invoke(app, ["--store", str(w.alice), "push"])
    assert result.exit_code != 0 and "symbolic link" in result.stderr and "Traceback" not in result.stderr
    assert list(outside.iterdir()) == []
    with pytest.raises(UnsafeLayout):
        stored.keyids(Path(w.remote), vid)
    with pytest.raises(UnsafeLayout):
        stored.keep(Path(w.remote), vid, "a" * 64, stored.read(w.alice, vid, stored.keyids(w.alice, vid)[0]))
    assert list(outside.iterdir()) == []


def test_an_empty_trust_path_is_refused_and_an_empty_variable_is_unset(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    unsigned = _save(w.alice, w.tmp, 9)
    monkeypatch.chdir(w.tmp)  # holds alice-key.pub.pem: "." would trust it
    result = runner.invoke(app, ["--store", str(w.alice), "path", w.good, "--trusted-keys", ""])
    assert result.exit_code == 2 and result.stdout == "" and "empty path" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(BadInput, match="empty path"):
        mstore.model_path(w.good, store=w.alice, trusted_keys="")
    with pytest.raises(BadInput, match="empty path"):
        Repository.open(w.alice).checkout(w.good, w.tmp / "o", trusted_keys=[w.trust, ""])
    monkeypatch.setenv(TRUSTED_KEYS_ENV, "")
    assert cli(w.alice, "path", unsigned).stdout.strip()  # empty = unset: nothing is checked


@pytest.mark.parametrize("how", ["slash", "existing"])
def test_checkout_signature_naming_a_directory_is_refused_before_any_write(w: World, how: str) -> None:
    out, sig = w.tmp / "out", w.tmp / "sigdir"
    if how == "existing":
        sig.mkdir()
    name = str(sig) + "/" if how == "slash" else str(sig)
    result = runner.invoke(app, ["--store", str(w.alice), "checkout", w.good, "-o", str(out), "--signature", name])
    assert result.exit_code == 2 and "names a directory" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert (how == "existing") == sig.exists() and (not sig.exists() or sig.is_dir())


def test_an_offline_trust_record_is_carried_over_only_for_the_same_manifest(tmp_path: Path) -> None:
    from mstore.cache.entries import Cache

    cache = Cache.open(tmp_path / "cache")
    vid, k1, k2 = "20260101_120000", "1" * 64, "2" * 64
    kept = {"metadata": "1" * 64, "signatures": {"a" * 64: "2" * 64}}
    cache.record("src", "prod", vid, k1, "h1", trust=kept)
    cache.record("src", "prod", vid, k1, "h1")  # an untrusted call of the same thing keeps it
    assert (cache.resolution("src", "prod") or {}).get("trust") == kept
    cache.record("src", "prod", vid, k2, "h1")  # same version ID, another manifest: dropped
    assert "trust" not in (cache.resolution("src", "prod") or {})
    cache.record("src", "prod", vid, k2, "h2", trust=kept)
    cache.record("src", "prod", vid, k2, "h3")  # another model hash: dropped
    assert "trust" not in (cache.resolution("src", "prod") or {})


def test_sign_does_not_write_through_a_symlinked_signature_directory(w: World) -> None:
    vid = _save(w.alice, w.tmp, 10)
    outside = w.tmp / "outside"
    outside.mkdir()
    (w.alice / stored.SIGNATURES / vid).symlink_to(outside)
    result = runner.invoke(app, ["--store", str(w.alice), "sign", vid, "--key", str(w.tmp / "alice-key.pem")])
    assert result.exit_code != 0 and "symbolic link" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and list(outside.iterdir()) == []


def test_an_offline_check_refuses_kept_metadata_of_another_manifest(w: World) -> None:
    from mstore.cache.entries import Cache
    from mstore.remote.signatures import check_cached

    online = mstore.model_path("prod", remote=w.remote, trusted_keys=w.trust)
    cache = Cache.open(w.tmp / "cache")
    (record,) = [r for r in cache.resolutions() if r["ref"] == "prod"]
    repo = Repository.open(w.alice)
    manifest, keys = repo.manifest(w.good), [signing.load_public_key(w.tmp / "alice-key.pub.pem")]
    args = (w.good, manifest, record["trust"], keys, cache.objects)
    assert check_cached(*args, key=record["manifest"], model_hash=record["model_hash"]) == record["trust"]
    with pytest.raises(Untrusted, match="offline, and the cache kept no signature"):
        check_cached(*args, key="0" * 64, model_hash=record["model_hash"])
    with pytest.raises(Untrusted, match="offline, and the cache kept no signature"):
        check_cached(*args, key=record["manifest"], model_hash="0" * 64)
    assert mstore.model_path("prod", remote=w.remote, offline=True, trusted_keys=w.trust) == online
