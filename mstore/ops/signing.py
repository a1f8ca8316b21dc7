"""Signed versions: an OpenSSF model-signing bundle (modelsig.py) built from the manifest's blake3 digests.

Signing reads no weight bytes: every file's digest is already in the manifest (`--digest sha256`, for
model_signing's CLI, reads them once). The statement also binds the version ID and the blake3 of its
metadata, so a signature moved to another version does not verify.
Stored at `signatures/<version-id>/<key-fingerprint>.json` (see docs/format.md).
"""

from __future__ import annotations

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
from ..store.manifest import KIND_FILE, Manifest
from . import modelsig

PAYLOAD_TYPE = modelsig.PAYLOAD_TYPE
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


def key_hint(key: ec.EllipticCurvePublicKey) -> str:
    """What model_signing records in the bundle to name the key: sha256 hex of its PEM SubjectPublicKeyInfo."""
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def _files(manifest: Manifest, version_id: str) -> dict[str, str]:
    files = {}
    for entry in manifest.files:
        if not entry.digest:
            raise BadInput(f"{version_id}: the manifest holds no blake3 digest for {entry.path}; cannot sign")
        files[entry.path] = entry.digest
    return files


def _sha256s(store: Store, manifest: Manifest) -> dict[str, str]:
    """Each file's sha256, from its chunks, each decoded and verified against its id (one read of the bytes)."""
    out = {}
    for entry in manifest.files:
        hasher = hashlib.sha256()
        for chunk in entry.chunks:
            hasher.update(store.objects.read(chunk.oid, chunk.size, buffer=True))
        out[entry.path] = hasher.hexdigest()
    return out


def statement(store: Store, version_id: str, *, digest: str = "blake3") -> dict[str, Any]:
    """The in-toto statement of a version (an OpenSSF model-signing one), from its manifest and metadata;
    with digest="sha256" each file's bytes are read once (verified) to compute it."""
    if digest not in modelsig.DIGESTS:
        raise BadInput(f"--digest {digest}: mstore signs with blake3 (no bytes read) or sha256")
    meta_raw = store.versions.raw_metadata(version_id)
    manifest = store.version_manifest(version_id)
    files = _files(manifest, version_id)
    single = manifest.kind == KIND_FILE
    digests = files if digest == "blake3" else _sha256s(store, manifest)
    return modelsig.statement(
        version_id,
        modelsig.resource_names(digests, single),
        version=version_id,
        metadata_blake3=blake3.blake3(meta_raw).hexdigest(),
        hash_type=digest,
        blake3s=modelsig.resource_names(files, single),
    )


def _canonical(doc: Any) -> bytes:
    return modelsig.canonical(doc)


def _hash_for(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    return hashes.SHA384() if isinstance(key.curve, ec.SECP384R1) else hashes.SHA256()


def sign(store: Store, version_id: str, key: ec.EllipticCurvePrivateKey, *, digest: str = "blake3") -> Path:
    """Write the version's OpenSSF model-signing bundle signed by `key`; returns its path."""
    payload = _canonical(statement(store, version_id, digest=digest))
    sig = key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(_hash_for(key)))
    keyid = fingerprint(key.public_key())
    doc = modelsig.bundle(payload, sig, keyid, key_hint(key.public_key()))
    directory = store.root / SIGNATURES / version_id
    stored.real_directory(store.root, version_id)  # never written through a link (UnsafeLayout)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{keyid}.json"
    fsutil.atomic_write(path, json.dumps(doc, indent=1).encode() + b"\n")
    return path


def _check_one(
    name: str,
    raw: bytes,
    keys: dict[str, ec.EllipticCurvePublicKey],
    files: dict[str, str],
    version_id: str,
    meta: str,
    single: bool,
) -> str | None:
    """None when bundle `name` (its bytes: `raw`) verifies under one of `keys` and signs this version; else
    why not (prefixed by a kind)."""
    path = Path(f"{name}.json")  # for messages only
    try:
        if len(raw) > MAX_BUNDLE_BYTES:
            raise ValueError(f"{len(raw)} bytes, more than {MAX_BUNDLE_BYTES}")
        payload, sigs, _ = modelsig.envelope(json.loads(raw))
    except (OSError, UnsafeStoreFile, ValueError, RecursionError) as exc:
        return f"malformed: {path.name}: {exc}"
    signed = any(_verifies(key, sig, payload) for sig in sigs for key in keys.values())
    if not signed:
        return f"other-key: {path.name} is not signed by any given key"
    try:
        got = json.loads(payload)
    except (ValueError, RecursionError):
        return f"malformed: {path.name}: the payload is not JSON"
    return modelsig.compare(got, files, version_id, meta, single)


def _verifies(key: ec.EllipticCurvePublicKey, sig: bytes, payload: bytes) -> bool:
    try:
        key.verify(sig, pae(PAYLOAD_TYPE, payload), ec.ECDSA(_hash_for(key)))
    except InvalidSignature:
        return False
    return True


_RANK = {"differs": 3, "malformed": 2, "other-key": 1}


def _stored(store: Store, version_id: str) -> list[Path]:
    directory = store.root / SIGNATURES / version_id
    try:
        return sorted(p for p in directory.iterdir() if p.suffix == ".json" and not fsutil.is_temp_name(p.name))
    except (FileNotFoundError, NotADirectoryError):
        return []


def verify(store: Store, version_id: str, keys: list[ec.EllipticCurvePublicKey]) -> Verified:
    """The first stored signature by one of `keys` that matches the version; else NotVerified (one line).
    Reads both the model-signing bundle and mstore's first format (a bare DSSE envelope)."""
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
    by_id = {fingerprint(k): k for k in keys}
    files = _files(manifest, version_id)
    meta = blake3.blake3(meta_raw).hexdigest()
    if not bundles:
        raise NotVerified.of(f"{version_id}: unsigned (no signature stored)", "unsigned", "no signature stored")
    worst: tuple[int, str] = (0, "")
    for name, raw in bundles:
        why = _check_one(name, raw, by_id, files, version_id, meta, manifest.kind == KIND_FILE)
        if why is None:
            return name
        kind, _, detail = why.partition(": ")
        rank = _RANK.get(kind, 0)
        if rank > worst[0]:
            worst = (rank, why)
    kind, _, detail = worst[1].partition(": ")
    raise NotVerified.of(f"{version_id}: not verified: {worst[1]}", kind, detail)


def bundle_for_checkout(store: Store, version_id: str, keys: list[ec.EllipticCurvePublicKey]) -> bytes:
    """The bytes of the version's model-signing bundle to write beside a checkout: the one stored, or with
    several the one by one of `keys` that verifies. BadInput (one line) when there is none to write."""
    if keys:
        found = verify(store, version_id, keys)
        path = Path(found.path)
    else:
        names = _stored(store, version_id)
        if not names:
            raise NotVerified(f"{version_id}: unsigned (no signature stored); sign it with `mstore sign`")
        if len(names) > 1:
            raise BadInput(f"{version_id} has {len(names)} signatures; choose one with --signature-key PUBLIC.pem")
        path = names[0]
    try:
        raw = fsutil.read_regular(path, MAX_BUNDLE_BYTES)
        _, _, is_bundle = modelsig.envelope(json.loads(raw))
    except (OSError, UnsafeStoreFile, ValueError, RecursionError) as exc:
        raise NotVerified(f"{version_id}: the stored signature is unreadable ({exc})") from None
    if not is_bundle:
        raise BadInput(f"{version_id}: signed in mstore's first format; re-sign it (`mstore sign`) to get a bundle")
    return raw


def write_bundle(path: Path, data: bytes, *, force: bool = False) -> None:
    """Write a bundle outside the store (beside a checkout), atomically; an existing file only with `force`."""
    if (path.exists() or path.is_symlink()) and not force:
        raise BadInput(f"{path} already exists (use --force to overwrite)")
    try:
        fsutil.atomic_write(path, data)
    except OSError as exc:
        raise BadInput(f"{path}: cannot write the signature ({exc.strerror or exc})") from None
