"""mstore's stored signature is an OpenSSF model-signing bundle: the real `model_signing` verifier accepts a
checkout written with `--signature`, and rejects it after a one-bit change."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mstore.repository import Repository

from helpers import cli_stderr as cli

verifying = pytest.importorskip("model_signing.verifying")


def model_signing_verifies(model: Path, signature: Path, public_key: Path) -> None:
    verifying.Config().use_elliptic_key_verifier(public_key=public_key).verify(model, signature)


def flip_one_bit(path: Path, at: int = 7) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    cli(tmp_path / "store", "keygen", "-o", str(tmp_path / "k"))
    return tmp_path


@pytest.mark.parametrize("p384", [False, True], ids=["P-256", "P-384"])
def test_model_signing_verifies_a_single_file_checkout_and_rejects_one_flipped_bit(tmp_path: Path, p384) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "store"
    repo = Repository.init(store)
    (tmp_path / "model.bin").write_bytes(bytes(range(256)) * 40)
    vid = repo.save(tmp_path / "model.bin")["timestamp"]
    cli(store, "keygen", "-o", str(tmp_path / "k"), *(["--p384"] if p384 else []))
    cli(store, "sign", vid, "--key", str(tmp_path / "k.pem"))
    out, sig = tmp_path / "out" / "model.bin", tmp_path / "model.sig"
    (tmp_path / "out").mkdir()
    cli(store, "checkout", vid, "-o", str(out), "--signature", str(sig))
    model_signing_verifies(out, sig, tmp_path / "k.pub.pem")
    flip_one_bit(out)
    with pytest.raises(ValueError, match="Signature mismatch"):
        model_signing_verifies(out, sig, tmp_path / "k.pub.pem")


def folder_model(root: Path) -> Path:
    model = root / "checkpoint"
    (model / "tokenizer").mkdir(parents=True)
    (model / "config.json").write_text('{"layers": 2}')
    (model / "weights.bin").write_bytes(b"\x00\x01" * 5000)
    (model / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    (model / "a-b.txt").write_text("sorts between a/ and b/ as a string, not as a path")
    (model / "a").mkdir()
    (model / "a" / "b.txt").write_text("x")
    (model / "empty.txt").write_bytes(b"")
    (model / "empty-dir").mkdir()
    (model / "données.txt").write_text("non-ASCII names are escaped in the canonical JSON")
    return model


def test_model_signing_verifies_a_folder_checkout_and_rejects_a_changed_or_extra_file(keys: Path) -> None:
    tmp = keys
    repo = Repository.init(tmp / "store")
    vid = repo.save(folder_model(tmp))["timestamp"]
    cli(repo.root, "sign", vid, "--key", str(tmp / "k.pem"))
    out, sig = tmp / "served", tmp / "served.sig"
    cli(repo.root, "checkout", vid, "-o", str(out), "--signature", str(sig))
    model_signing_verifies(out, sig, tmp / "k.pub.pem")
    assert "verified" in cli(repo.root, "verify", vid, "--key", str(tmp / "k.pub.pem"))
    flip_one_bit(out / "tokenizer" / "vocab.txt", at=0)
    with pytest.raises(ValueError, match="vocab.txt"):
        model_signing_verifies(out, sig, tmp / "k.pub.pem")
    flip_one_bit(out / "tokenizer" / "vocab.txt", at=0)  # restored
    model_signing_verifies(out, sig, tmp / "k.pub.pem")
    (out / "extra.bin").write_bytes(b"planted")
    with pytest.raises(ValueError, match="extra.bin"):
        model_signing_verifies(out, sig, tmp / "k.pub.pem")


def test_model_signing_refuses_the_bundle_under_another_key(keys: Path) -> None:
    tmp = keys
    repo = Repository.init(tmp / "store")
    vid = repo.save(folder_model(tmp))["timestamp"]
    cli(repo.root, "sign", vid, "--key", str(tmp / "k.pem"))
    cli(repo.root, "keygen", "-o", str(tmp / "other"))
    cli(repo.root, "checkout", vid, "-o", str(tmp / "served"), "--signature", str(tmp / "s.sig"))
    with pytest.raises(ValueError, match="Key mismatch"):
        model_signing_verifies(tmp / "served", tmp / "s.sig", tmp / "other.pub.pem")


@pytest.mark.slow  # runs model_signing's CLI three times (~2 s each)
def test_sha256_bundles_verify_with_model_signings_cli_and_with_mstore(keys: Path) -> None:
    tmp = keys
    repo = Repository.init(tmp / "store")
    vid = repo.save(folder_model(tmp))["timestamp"]
    cli(repo.root, "sign", vid, "--key", str(tmp / "k.pem"), "--digest", "sha256")
    assert "verified" in cli(repo.root, "verify", vid, "--key", str(tmp / "k.pub.pem"))
    cli(repo.root, "checkout", vid, "-o", str(tmp / "served"), "--signature", str(tmp / "s.sig"))
    model_signing_verifies(tmp / "served", tmp / "s.sig", tmp / "k.pub.pem")
    command = [sys.executable, "-m", "model_signing", "verify", "key", str(tmp / "served")]
    command += ["--signature", str(tmp / "s.sig"), "--public_key", str(tmp / "k.pub.pem")]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    flip_one_bit(tmp / "served" / "weights.bin")
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 1 and "weights.bin" in done.stderr
    # what docs/format.md says: its CLI hashes with sha256 whatever the bundle says, so a blake3 bundle fails
    flip_one_bit(tmp / "served" / "weights.bin")
    cli(repo.root, "sign", vid, "--key", str(tmp / "k.pem"))  # the default: blake3 (replaces the bundle)
    cli(repo.root, "checkout", vid, "-o", str(tmp / "b3"), "--signature", str(tmp / "s.sig"), "--force")
    model_signing_verifies(tmp / "b3", tmp / "s.sig", tmp / "k.pub.pem")  # its Python API reads the hash type
    command[5] = str(tmp / "b3")
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 1 and "Hash mismatch" in done.stderr


def test_checkout_signature_refuses_a_path_inside_the_checkout_and_an_unsigned_version(keys: Path) -> None:
    tmp = keys
    repo = Repository.init(tmp / "store")
    vid = repo.save(folder_model(tmp))["timestamp"]
    msg = cli(repo.root, "checkout", vid, "-o", str(tmp / "a"), "--signature", str(tmp / "a.sig"), code=1)
    assert "unsigned" in msg and "\n" not in msg
    assert not (tmp / "a").exists() and not (tmp / "a.sig").exists()
    cli(repo.root, "sign", vid, "--key", str(tmp / "k.pem"))
    msg = cli(repo.root, "checkout", vid, "-o", str(tmp / "b"), "--signature", str(tmp / "b" / "m.sig"), code=2)
    assert "outside the checked-out directory" in msg and not (tmp / "b").exists()
    msg = cli(repo.root, "checkout", vid, "-o", str(tmp / "b"), "--signature", str(tmp / "no" / "m.sig"), code=2)
    assert "does not exist" in msg and not (tmp / "b").exists()
    (tmp / "taken.sig").write_text("mine")
    msg = cli(repo.root, "checkout", vid, "-o", str(tmp / "b"), "--signature", str(tmp / "taken.sig"), code=2)
    assert "already exists" in msg and not (tmp / "b").exists() and (tmp / "taken.sig").read_text() == "mine"
    # with two signatures, --signature-key picks (and verifies) one
    cli(repo.root, "keygen", "-o", str(tmp / "other"))
    cli(repo.root, "sign", vid, "--key", str(tmp / "other.pem"))
    assert "--signature-key" in cli(repo.root, "checkout", vid, "-o", str(tmp / "c"), "--signature", "c.sig", code=2)
    args = ["-o", str(tmp / "c"), "--signature", str(tmp / "c.sig"), "--signature-key", str(tmp / "other.pub.pem")]
    cli(repo.root, "checkout", vid, *args)
    assert json.loads((tmp / "c.sig").read_text())["verificationMaterial"]["publicKey"]["hint"]
    model_signing_verifies(tmp / "c", tmp / "c.sig", tmp / "other.pub.pem")
