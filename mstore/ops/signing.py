"""Signed versions: a DSSE envelope holding an in-toto statement built from the manifest's blake3 digests.

Signing reads no weight bytes: every file's digest is already in the manifest. The statement also binds
the version ID and the blake3 of its metadata, so a signature moved to another version does not verify.
Stored at `signatures/<version-id>/<key-fingerprint>.json` (see docs/format.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import EXIT_PROBLEM, BadInput, MStoreError, UnsafeStoreFile
from ..store import fsutil
from ..store import signatures as stored
from ..store.layout import Store
from ..store.manifest import Manifest

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://mstore.dev/signature/v1"
MAX_BUNDLE_BYTES = 8 << 20
MAX_KEY_BYTES = 64 << 10
CURVES = (ec.SECP256R1, ec.SECP384R1)
SIGNATURES = "signatures"


class NotVerified(MStoreError):
    """No stored signature by a given key verifies for this version (the message says why)."""

    exit_code = EXIT_PROBLEM
    kind = ""  # unsigned, other-key, differs or malformed
    detail = ""

    @classmethod
    def of(cls, message: str, kind: str, detail: str) -> NotVerified:
        exc = cls(message)
        exc.kind, exc.detail = kind, detail
        return exc


@dataclass(frozen=True)
class Verified:
    version: str
    keyid: str
    path: str


def _check_curve(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey, where: str) -> None:
    if not isinstance(key.curve, CURVES):
        raise BadInput(f"{where}: an EC key on {key.curve.name}; mstore accepts P-256 and P-384")


def _load_key(path: Path, private: bool) -> Any:
    """An EC key (P-256/P-384) from a PEM file: one-line BadInput for anything else."""
    kind, load = ("private", _load_private) if private else ("public", serialization.load_pem_public_key)
    try:
        key = load(fsutil.read_regular(path, MAX_KEY_BYTES))
    except (OSError, UnsafeStoreFile) as exc:
        raise BadInput(f"{path}: cannot read the key ({exc})") from None
    except (ValueError, TypeError) as exc:
        plain = "an unencrypted " if private else "a "
        raise BadInput(f"{path}: not {plain}PEM {kind} key ({exc})") from None
    want = ec.EllipticCurvePrivateKey if private else ec.EllipticCurvePublicKey
    if not isinstance(key, want):
        does = "signs with" if private else "verifies"
        raise BadInput(f"{path}: not an EC {kind} key (mstore {does} P-256 or P-384)")
    _check_curve(key, str(path))
    return key


def _load_private(data: bytes) -> Any:
    return serialization.load_pem_private_key(data, password=None)


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key: ec.EllipticCurvePrivateKey = _load_key(path, private=True)
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    key: ec.EllipticCurvePublicKey = _load_key(path, private=False)
    return key


def fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """sha256 of the key's DER SubjectPublicKeyInfo, hex."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def keygen(stem: Path, *, curve: str = "P-256") -> tuple[Path, Path]:
    """Write `stem.pem` (private, mode 0600) and `stem.pub.pem`; refuses to overwrite either."""
    priv_path, pub_path = Path(f"{stem}.pem"), Path(f"{stem}.pub.pem")
    for p in (priv_path, pub_path):
        if p.exists() or p.is_symlink():
            raise BadInput(f"{p} already exists; not overwriting a key")
    key = ec.generate_private_key(ec.SECP384R1() if curve == "P-384" else ec.SECP256R1())
    priv = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        fsutil.write_file(priv_path, priv, mode=0o600)
        fsutil.write_file(pub_path, pub, mode=0o644)
    except FileExistsError:
        raise BadInput(f"{pub_path} already exists; not overwriting a key") from None
    return priv_path, pub_path


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def statement(store: Store, version_id: str) -> dict[str, Any]:
    """The in-toto statement of a version, from its manifest and metadata only (no weight bytes)."""
    return _statement_of(version_id, store.version_manifest(version_id), store.versions.raw_metadata(version_id))


def _statement_of(version_id: str, manifest: Manifest, meta_raw: bytes) -> dict[str, Any]:
    subject = []
    for entry in manifest.files:
        if not entry.digest:
            raise BadInput(f"{version_id}: the manifest holds no blake3 digest for {entry.path}; cannot sign")
        subject.append({"name": entry.path, "digest": {"blake3": entry.digest}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": {"version": version_id, "metadata_blake3": blake3.blake3(meta_raw).hexdigest()},
    }


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(store: Store, version_id: str, key: ec.EllipticCurvePrivateKey) -> Path:
    payload = _canonical(statement(store, version_id))
    hash_alg = hashes.SHA384() if isinstance(key.curve, ec.SECP384R1) else hashes.SHA256()
    sig = key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(hash_alg))
    keyid = fingerprint(key.public_key())
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode()}],
    }
    directory = store.root / SIGNATURES / version_id
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{keyid}.json"
    fsutil.atomic_write(path, json.dumps(envelope, indent=1).encode() + b"\n")
    return path


def _b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{what} is not a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not base64") from None


def _check_one(
    name: str, raw: bytes, keys: dict[str, ec.EllipticCurvePublicKey], expected: dict[str, Any]
) -> str | None:
    """None when bundle `name` (its bytes: `raw`) verifies and matches `expected`; else why not (prefixed
    by a kind)."""
    path = Path(f"{name}.json")  # for messages only
    try:
        if len(raw) > MAX_BUNDLE_BYTES:
            raise ValueError(f"{len(raw)} bytes, more than {MAX_BUNDLE_BYTES}")
        env = json.loads(raw)
        if not isinstance(env, dict) or env.get("payloadType") != PAYLOAD_TYPE:
            raise ValueError("not a DSSE envelope of an in-toto statement")
        payload = _b64(env.get("payload"), "payload")
        sigs = env.get("signatures")
        if not isinstance(sigs, list) or not sigs:
            raise ValueError("no signatures")
    except (OSError, UnsafeStoreFile, ValueError, RecursionError) as exc:
        return f"malformed: {path.name}: {exc}"
    signed = False
    for s in sigs:
        if not isinstance(s, dict):
            return f"malformed: {path.name}: a signature is not an object"
        try:
            sig = _b64(s.get("sig"), "sig")
        except ValueError as exc:
            return f"malformed: {path.name}: {exc}"
        for key in keys.values():
            alg = hashes.SHA384() if isinstance(key.curve, ec.SECP384R1) else hashes.SHA256()
            try:
                key.verify(sig, pae(PAYLOAD_TYPE, payload), ec.ECDSA(alg))
            except InvalidSignature:
                continue
            signed = True
    if not signed:
        return f"other-key: {path.name} is not signed by any given key"
    try:
        got = json.loads(payload)
    except (ValueError, RecursionError):
        return f"malformed: {path.name}: the payload is not JSON"
    return _compare(got, expected)


def _compare(got: Any, expected: dict[str, Any]) -> str | None:
    if not isinstance(got, dict) or got.get("_type") != STATEMENT_TYPE or not isinstance(got.get("subject"), list):
        return "malformed: the payload is not an in-toto statement"
    pred = got.get("predicate")
    if not isinstance(pred, dict):
        return "malformed: the statement has no predicate"
    if pred.get("version") != expected["predicate"]["version"]:
        return f"differs: signed for another version ({str(pred.get('version'))[:40]})"
    if pred.get("metadata_blake3") != expected["predicate"]["metadata_blake3"]:
        return "differs: the version's metadata changed since it was signed"
    want = {s["name"]: s["digest"]["blake3"] for s in expected["subject"]}
    have: dict[str, Any] = {}
    for s in got["subject"]:
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not isinstance(s.get("digest"), dict):
            return "malformed: a subject is not {name, digest}"
        have[s["name"]] = s["digest"].get("blake3")
    extra, missing = sorted(set(have) - set(want)), sorted(set(want) - set(have))
    if extra:
        return f"differs: the signature names files the version lacks: {', '.join(extra[:5])}"
    if missing:
        return f"differs: files not covered by the signature: {', '.join(missing[:5])}"
    changed = sorted(n for n in want if have[n] != want[n])
    if changed or len(got["subject"]) != len(want):
        return f"differs: digests differ: {', '.join(changed[:5]) or 'duplicate subjects'}"
    return None


_RANK = {"differs": 3, "malformed": 2, "other-key": 1}


def verify(store: Store, version_id: str, keys: list[ec.EllipticCurvePublicKey]) -> Verified:
    """The first stored signature by one of `keys` that matches the version; else NotVerified (one line)."""
    if not keys:
        raise BadInput("verify needs at least one public key (--key PUB.pem)")
    manifest, meta_raw = store.version_manifest(version_id), store.versions.raw_metadata(version_id)
    found = verify_bundles(version_id, manifest, meta_raw, stored.bundles(store.root, version_id), keys)
    return Verified(version_id, found, str(stored.directory(store.root, version_id) / f"{found}.json"))


def verify_bundles(
    version_id: str,
    manifest: Manifest,
    meta_raw: bytes,
    bundles: list[tuple[str, bytes]],
    keys: list[ec.EllipticCurvePublicKey],
) -> str:
    """`verify` of a version known by its pieces (its manifest and metadata.json's bytes, verified by the
    caller: a store's, a remote's or the cache's) and its bundles ((keyid, bytes), unverified): the keyid
    of the first that one of `keys` signed over exactly this version; else NotVerified saying why the
    closest one failed (`kind`: unsigned / other-key / differs / malformed)."""
    expected = _statement_of(version_id, manifest, meta_raw)
    by_id = {fingerprint(k): k for k in keys}
    if not bundles:
        raise NotVerified.of(f"{version_id}: unsigned (no signature stored)", "unsigned", "no signature stored")
    worst: tuple[int, str] = (0, "")
    for name, raw in bundles:
        why = _check_one(name, raw, by_id, expected)
        if why is None:
            return name
        kind, _, detail = why.partition(": ")
        rank = _RANK.get(kind, 0)
        if rank > worst[0]:
            worst = (rank, why)
    kind, _, detail = worst[1].partition(": ")
    raise NotVerified.of(f"{version_id}: not verified: {worst[1]}", kind, detail)
