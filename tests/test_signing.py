"""mstore keygen / sign / verify: OpenSSF model-signing bundles (a DSSE envelope of an in-toto statement)
built from the manifest; mstore's first format (a bare envelope) still verifies."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from mstore.ops import modelsig, signing
from mstore.repository import Repository

from helpers import cli as cli_result
from helpers import cli_stderr as cli


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Repository, str, str, Path]:
    repo = Repository.init(tmp_path / "store")
    model = tmp_path / "m"
    model.mkdir()
    (model / "a.bin").write_bytes(b"a" * 100)
    (model / "b.txt").write_text("b")
    v1 = repo.save(model, message="one")["timestamp"]
    (model / "a.bin").write_bytes(b"c" * 100)
    v2 = repo.save(model, message="two")["timestamp"]
    cli(repo.root, "keygen", "-o", str(tmp_path / "k"))
    cli(repo.root, "keygen", "-o", str(tmp_path / "other"), "--p384")
    return repo, v1, v2, tmp_path


def bundle_of(repo: Repository, version: str) -> Path:
    (path,) = (repo.root / signing.SIGNATURES / version).iterdir()
    return path


def resign(path: Path, key_path: Path, edit, *, rehash: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the statement with `edit` and sign it properly with the real key: only the content is wrong
    (`rehash`: the subject's digest is recomputed over the edited resources, as a careful forger would)."""
    doc = json.loads(path.read_bytes())
    env = doc.get("dsseEnvelope", doc)
    statement = json.loads(base64.b64decode(env["payload"]))
    edit(statement)
    if rehash and "resources" in statement["predicate"]:
        statement["subject"][0]["digest"]["sha256"] = modelsig.root_digest(statement["predicate"]["resources"])
    payload = json.dumps(statement).encode()
    key = signing.load_private_key(key_path)
    sig = key.sign(signing.pae(signing.PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    env["payload"] = base64.b64encode(payload).decode()
    env["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    path.write_text(json.dumps(doc))


def statement_of(path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(base64.b64decode(json.loads(path.read_bytes())["dsseEnvelope"]["payload"]))


def test_keygen_writes_a_private_key_0600_and_refuses_to_overwrite(setup) -> None:  # type: ignore[no-untyped-def]
    repo, _, _, tmp = setup
    assert stat.S_IMODE((tmp / "k.pem").stat().st_mode) == 0o600
    before = (tmp / "k.pem").read_bytes()
    assert "already exists" in cli(repo.root, "keygen", "-o", str(tmp / "k"), code=2)
    assert (tmp / "k.pem").read_bytes() == before
    assert isinstance(signing.load_public_key(tmp / "other.pub.pem").curve, ec.SECP384R1)


def test_sign_then_verify_round_trip_and_json(setup) -> None:  # type: ignore[no-untyped-def]
    repo, v1, _, tmp = setup
    cli(repo.root, "sign", v1, "--key", str(tmp / "k.pem"))
    path = bundle_of(repo, v1)
    assert path.stem == signing.fingerprint(signing.load_public_key(tmp / "k.pub.pem"))
    doc = json.loads(path.read_bytes())
    assert doc["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert doc["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"
    statement = statement_of(path)
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    digests = {f.path: f.digest for f in repo.manifest(v1).files}
    resources = statement["predicate"]["resources"]
    assert {r["name"]: r["digest"] for r in resources} == digests
    assert {r["algorithm"] for r in resources} == {"blake3"}
    serialization = {"method": "files", "hash_type": "blake3", "allow_symlinks": False}
    assert statement["predicate"]["serialization"] == serialization
    assert statement["subject"][0]["digest"]["sha256"] == modelsig.root_digest(resources)
    assert statement["predicate"]["mstore"]["version"] == v1
    assert "verified" in cli(repo.root, "verify", v1, "--key", str(tmp / "k.pub.pem"))
    result = cli_result(repo.root, "verify", v1, "--key", str(tmp / "k.pub.pem"), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["verified"] is True
    # P-384 keys sign and verify too
    cli(repo.root, "sign", v1, "--key", str(tmp / "other.pem"))
    cli(repo.root, "verify", v1, "--key", str(tmp / "other.pub.pem"))


def test_unsigned_and_wrong_key_are_refused_in_one_line(setup) -> None:  # type: ignore[no-untyped-def]
    repo, v1, v2, tmp = setup
    msg = cli(repo.root, "verify", v1, "--key", str(tmp / "k.pub.pem"), code=1)
    assert "unsigned" in msg and "\n" not in msg
    cli(repo.root, "sign", v1, "--key", str(tmp / "k.pem"))
    msg = cli(repo.root, "verify", v1, "--key", str(tmp / "other.pub.pem"), code=1)
    assert "not signed by any given key" in msg and "\n" not in msg


def test_a_signature_copied_to_another_version_does_not_verify(setup) -> None:  # type: ignore[no-untyped-def]
    repo, v1, v2, tmp = setup
    cli(repo.root, "sign", v1, "--key", str(tmp / "k.pem"))
    src = bundle_of(repo, v1)
    (repo.root / signing.SIGNATURES / v2).mkdir()
    (repo.root / signing.SIGNATURES / v2 / src.name).write_bytes(src.read_bytes())
    msg = cli(repo.root, "verify", v2, "--key", str(tmp / "k.pub.pem"), code=1)
    assert "another version" in msg and "\n" not in msg


EVIL = {"name": "evil.bin", "algorithm": "blake3", "digest": "0" * 64}


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda d: d["predicate"]["resources"].append(EVIL), "lacks: evil.bin"),
        (lambda d: d["predicate"]["resources"].pop(), "not covered"),
        (lambda d: d["predicate"]["resources"][0].update(digest="1" * 64), "digests differ"),
        (lambda d: d["predicate"]["resources"].append(dict(d["predicate"]["resources"][0])), "listed twice"),
        (lambda d: d["predicate"]["resources"][0].update(algorithm="sha256"), "algorithm"),
        (lambda d: d["predicate"]["mstore"].update(metadata_blake3="2" * 64), "metadata changed"),
        (lambda d: d["predicate"]["mstore"].update(version="20200101_000000"), "another version"),
        (lambda d: d["predicate"].pop("mstore"), "not made by mstore"),
        (lambda d: d.update(predicateType="https://example.com/x"), "unknown predicate type"),
    ],
)
def test_a_statement_that_does_not_match_the_version_is_refused(setup, edit, words) -> None:  # type: ignore[no-untyped-def]
    repo, v1, _, tmp = setup
    cli(repo.root, "sign", v1, "--key", str(tmp / "k.pem"))
    resign(bundle_of(repo, v1), tmp / "k.pem", edit)
    msg = cli(repo.root, "verify", v1, "--key", str(tmp / "k.pub.pem"), code=1)
    assert words in msg and "\n" not in msg


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) // 2],
        lambda raw: raw + b" " * (signing.MAX_BUNDLE_BYTES + 1),
        lambda raw: b"[[[[" * 100000,
        lambda raw: json.dumps({"payloadType": signing.PAYLOAD_TYPE, "payload": "!!", "signatures": []}).encode(),
        lambda raw: raw.replace(b'"sig": "', b'"sig": "AAAA'),
    ],
    ids=["truncated", "oversized", "deep", "bad-base64", "bad-sig"],
)
def test_crafted_bundles_are_refused_in_one_line(setup, damage) -> None:  # type: ignore[no-untyped-def]
    repo, v1, _, tmp = setup
    cli(repo.root, "sign", v1, "--key", str(tmp / "k.pem"))
    path = bundle_of(repo, v1)
    path.write_bytes(damage(path.read_bytes()))
    msg = cli(repo.root, "verify", v1, "--key", str(tmp / "k.pub.pem"), code=1)
    assert "not verified" in msg and "\n" not in msg


def test_of_several_failing_bundles_the_most_specific_reason_is_reported(setup) -> None:  # type: ignore[no-untyped-def]
    repo, v1, _, tmp = setup
    cli(repo.root, "sign", v1, "--key", str(tmp / "k.pem"))
    mine = bundle_of(repo, v1)
    resign(mine, tmp / "k.pem", lambda d: d["predicate"]["resources"].append(EVIL))
    cli(repo.root, "sign", v1, "--key", str(tmp / "other.pem"))
    theirs = next(p for p in mine.parent.iterdir() if p != mine)
    (mine.parent / ("f" * 64 + ".json")).write_bytes(theirs.read_bytes())  # sorts last: checked last
    msg = cli(repo.root, "verify", v1, "--key", str(tmp / "k.pub.pem"), code=1)
    assert "lacks: evil.bin" in msg and "\n" not in msg


def test_a_subject_digest_that_is_not_the_resources_is_refused(setup) -> None:  # type: ignore[no-untyped-def]
    repo, v1, _, tmp = setup
    cli(repo.root, "sign", v1, "--key", str(tmp / "k.pem"))
    resign(bundle_of(repo, v1), tmp / "k.pem", lambda d: d["predicate"]["resources"].pop(), rehash=False)
    msg = cli(repo.root, "verify", v1, "--key", str(tmp / "k.pub.pem"), code=1)
    assert "subject's digest" in msg and "\n" not in msg


def test_mstores_first_format_a_bare_envelope_still_verifies(setup) -> None:  # type: ignore[no-untyped-def]
    """Signatures made before the model-signing layout (a DSSE envelope of mstore's own predicate)."""
    import blake3

    repo, v1, v2, tmp = setup
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": f.path, "digest": {"blake3": f.digest}} for f in repo.manifest(v1).files],
        "predicateType": "https://mstore.dev/signature/v1",
        "predicate": {
            "version": v1,
            "metadata_blake3": blake3.blake3(repo.store.versions.raw_metadata(v1)).hexdigest(),
        },
    }
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    key = signing.load_private_key(tmp / "k.pem")
    sig = key.sign(signing.pae(signing.PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    keyid = signing.fingerprint(key.public_key())
    env = {
        "payloadType": signing.PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode()}],
    }
    (repo.root / signing.SIGNATURES / v1).mkdir(parents=True)
    (repo.root / signing.SIGNATURES / v1 / f"{keyid}.json").write_text(json.dumps(env))
    assert "verified" in cli(repo.root, "verify", v1, "--key", str(tmp / "k.pub.pem"))
    resign(bundle_of(repo, v1), tmp / "k.pem", lambda d: d["subject"][0]["digest"].update(blake3="1" * 64))
    assert "digests differ" in cli(repo.root, "verify", v1, "--key", str(tmp / "k.pub.pem"), code=1)
    # checkout --signature wants a bundle model_signing can read: the old format is refused in one line
    msg = cli(repo.root, "checkout", v1, "-o", str(tmp / "out"), "--signature", str(tmp / "s.sig"), code=2)
    assert "re-sign" in msg and not (tmp / "out").exists()


def test_sign_digest_sha256_reads_the_bytes_and_still_verifies_without_reading_them(setup) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    repo, v1, _, tmp = setup
    cli(repo.root, "sign", v1, "--key", str(tmp / "k.pem"), "--digest", "sha256")
    statement = statement_of(bundle_of(repo, v1))
    assert {r["name"]: r["digest"] for r in statement["predicate"]["resources"]} == {
        "a.bin": hashlib.sha256(b"a" * 100).hexdigest(),
        "b.txt": hashlib.sha256(b"b").hexdigest(),
    }
    assert "verified" in cli(repo.root, "verify", v1, "--key", str(tmp / "k.pub.pem"))
    resign(bundle_of(repo, v1), tmp / "k.pem", lambda d: d["predicate"]["mstore"]["blake3"].update({"a.bin": "3" * 64}))
    assert "digests differ: a.bin" in cli(repo.root, "verify", v1, "--key", str(tmp / "k.pub.pem"), code=1)
    msg = cli(repo.root, "sign", v1, "--key", str(tmp / "k.pem"), "--digest", "md5", code=2)
    assert "blake3 (no bytes read) or sha256" in msg
