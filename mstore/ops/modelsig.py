"""OpenSSF model-signing bundles: the statement mstore signs, the Sigstore bundle around it, and their checks.

The layout is `model_signing` 1.x's (PyPI `model-signing`, "files" serialization, key signing): a Sigstore
bundle (v0.3 JSON) holding a DSSE envelope of an in-toto v1 statement whose predicate lists every file with
its digest, so `model_signing`'s own verifier accepts a checkout. mstore adds one predicate field,
`mstore` (the version ID and the blake3 of its metadata), which model_signing ignores and mstore requires,
so a signature moved to another version or over changed metadata does not verify. Pure functions on
dicts and bytes; signing.py reads the store and holds the keys. docs/format.md "Signatures" is the spec.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import PurePosixPath
from typing import Any

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"  # model_signing 1.x
LEGACY_PREDICATE_TYPE = "https://mstore.dev/signature/v1"  # mstore's first envelope (verify still reads it)
DIGESTS = ("blake3", "sha256")
SINGLE_FILE = "."  # model_signing names the one file of a single-file model "." (its path relative to itself)


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def order(names: list[str]) -> list[str]:
    """model_signing's resource order: by path components (PurePosixPath order), not by string."""
    return sorted(names, key=lambda n: PurePosixPath(n).parts)


def root_digest(resources: list[dict[str, Any]]) -> str:
    """The subject's sha256: over the raw digests of the resources, in the order they are listed."""
    hasher = hashlib.sha256()
    for r in resources:
        hasher.update(bytes.fromhex(r["digest"]))
    return hasher.hexdigest()


def statement(
    name: str,
    digests: dict[str, str],
    *,
    version: str,
    metadata_blake3: str,
    hash_type: str = "blake3",
    blake3s: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The in-toto statement of a model whose files (resource name -> hex digest of `hash_type`) are
    `digests`. With sha256, `blake3s` (same names) is recorded in the mstore field, for `mstore verify`."""
    resources = [{"name": n, "algorithm": hash_type, "digest": digests[n]} for n in order(list(digests))]
    binding: dict[str, Any] = {"version": version, "metadata_blake3": metadata_blake3}
    if hash_type != "blake3":
        binding["blake3"] = dict(sorted((blake3s or {}).items()))
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": root_digest(resources)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {"method": "files", "hash_type": hash_type, "allow_symlinks": False},
            "resources": resources,
            "mstore": binding,
        },
    }


def bundle(payload: bytes, sig: bytes, keyid: str, key_hint: str) -> dict[str, Any]:
    """A Sigstore bundle (v0.3) around the DSSE envelope, as model_signing's key signer writes it;
    `key_hint` is the sha256 hex of the public key's PEM, which its verifier compares."""
    return {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": keyid}],
        },
    }


def b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{what} is not a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not base64") from None


def envelope(doc: Any) -> tuple[bytes, list[bytes], bool]:
    """(payload, signatures, is_bundle) of a bundle or of a bare DSSE envelope (mstore's first format);
    ValueError says what is wrong."""
    is_bundle = isinstance(doc, dict) and "dsseEnvelope" in doc
    if is_bundle:
        if doc.get("mediaType") != BUNDLE_MEDIA_TYPE:
            raise ValueError(f"not a Sigstore bundle of media type {BUNDLE_MEDIA_TYPE}")
        doc = doc["dsseEnvelope"]
    if not isinstance(doc, dict) or doc.get("payloadType") != PAYLOAD_TYPE:
        raise ValueError("not a DSSE envelope of an in-toto statement")
    payload = b64(doc.get("payload"), "payload")
    sigs = doc.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise ValueError("no signatures")
    out = []
    for s in sigs:
        if not isinstance(s, dict):
            raise ValueError("a signature is not an object")
        out.append(b64(s.get("sig"), "sig"))
    return payload, out, is_bundle


def _files_of(pred: dict[str, Any]) -> dict[str, Any] | str:
    """name -> blake3 the predicate signs, or why it cannot be read ('malformed: ...')."""
    ser, resources, binding = pred.get("serialization"), pred.get("resources"), pred.get("mstore")
    if not isinstance(ser, dict) or ser.get("method") != "files" or ser.get("hash_type") not in DIGESTS:
        return "malformed: the serialization is not files with blake3 or sha256"
    if not isinstance(resources, list):
        return "malformed: the predicate lists no resources"
    names: dict[str, Any] = {}
    for r in resources:
        if not isinstance(r, dict) or not isinstance(r.get("name"), str) or not isinstance(r.get("digest"), str):
            return "malformed: a resource is not {name, algorithm, digest}"
        if r.get("algorithm") != ser["hash_type"]:
            return "malformed: a resource's algorithm is not the serialization's"
        if r["name"] in names:
            return f"differs: the file {r['name'][:100]} is listed twice"
        names[r["name"]] = r["digest"]
    if ser["hash_type"] == "blake3":
        return names
    blake3s = binding.get("blake3") if isinstance(binding, dict) else None
    if not isinstance(blake3s, dict) or set(blake3s) != set(names):
        return "malformed: a sha256 statement whose mstore.blake3 does not name its resources"
    return blake3s


def resource_names(files: dict[str, str], single_file: bool) -> dict[str, str]:
    """path -> digest keyed as model_signing names the files: the one file of a single-file model is "."."""
    return {SINGLE_FILE: next(iter(files.values()))} if single_file else files


def compare(got: Any, files: dict[str, str], version: str, metadata_blake3: str, single_file: bool) -> str | None:
    """None when the statement `got` signs exactly these files (path -> blake3), this version ID and this
    metadata digest; else why not, prefixed by a kind ('malformed' or 'differs')."""
    want = files
    if not isinstance(got, dict) or got.get("_type") != STATEMENT_TYPE or not isinstance(got.get("subject"), list):
        return "malformed: the payload is not an in-toto statement"
    pred = got.get("predicate")
    if not isinstance(pred, dict):
        return "malformed: the statement has no predicate"
    if got.get("predicateType") == PREDICATE_TYPE:
        binding = pred.get("mstore")
        if not isinstance(binding, dict):
            return "malformed: a model-signing statement without mstore's version binding (not made by mstore)"
        want = resource_names(files, single_file)
        have = _files_of(pred)
        if isinstance(have, str):
            return have
        try:
            subject = got["subject"]
            ok = len(subject) == 1 and subject[0]["digest"]["sha256"] == root_digest(pred["resources"])
        except (KeyError, TypeError, ValueError, IndexError):
            ok = False
        if not ok:
            return "malformed: the subject's digest is not the resources' (model_signing would refuse it)"
    elif got.get("predicateType") == LEGACY_PREDICATE_TYPE:
        binding, have = pred, {}
        for s in got["subject"]:
            if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not isinstance(s.get("digest"), dict):
                return "malformed: a subject is not {name, digest}"
            if s["name"] in have:
                return f"differs: the file {s['name'][:100]} is listed twice"
            have[s["name"]] = s["digest"].get("blake3")
    else:
        return f"malformed: an unknown predicate type {str(got.get('predicateType'))[:80]}"
    if binding.get("version") != version:
        return f"differs: signed for another version ({str(binding.get('version'))[:40]})"
    if binding.get("metadata_blake3") != metadata_blake3:
        return "differs: the version's metadata changed since it was signed"
    extra, missing = order(list(set(have) - set(want))), order(list(set(want) - set(have)))
    if extra:
        return f"differs: the signature names files the version lacks: {', '.join(extra[:5])}"
    if missing:
        return f"differs: files not covered by the signature: {', '.join(missing[:5])}"
    changed = order([n for n in want if have[n] != want[n]])
    if changed:
        return f"differs: digests differ: {', '.join(changed[:5])}"
    return None
