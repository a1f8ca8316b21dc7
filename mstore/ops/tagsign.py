"""Signed promotions: an EC signature over one tag-history record (taglog.signed_payload), and its check.

The signature is a DSSE PAE over the canonical JSON of {tag, record, prev} with its own payload type, so
it can never be taken for a version's signature (or one of those for it). Stored in the record's line
(`"sig"`, see taglog.py and docs/format.md "Tag history").
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from ..store import taglog
from .signing import _hash_for, fingerprint, pae

PAYLOAD_TYPE = "application/vnd.mstore.tag-move.v1+json"
SIGNED, UNSIGNED, BAD = "signed", "unsigned", "BAD SIGNATURE"


def signer(key: ec.EllipticCurvePrivateKey) -> taglog.Signer:
    keyid = fingerprint(key.public_key())

    def sign(tag: str, move: taglog.Move, prev: str | None) -> taglog.RecordSig:
        sig = key.sign(pae(PAYLOAD_TYPE, taglog.signed_payload(tag, move, prev)), ec.ECDSA(_hash_for(key)))
        return taglog.RecordSig(keyid, base64.b64encode(sig).decode(), prev)

    return sign


def status(tag: str, move: taglog.Move, keys: list[ec.EllipticCurvePublicKey]) -> str:
    """ "signed" when the record's signature verifies under one of `keys`, "unsigned" without one, else
    "BAD SIGNATURE" (the record, tag or key differs from what was signed)."""
    if move.signature is None:
        return UNSIGNED
    try:
        sig = base64.b64decode(move.signature.sig, validate=True)
    except (binascii.Error, ValueError):
        return BAD
    payload = pae(PAYLOAD_TYPE, taglog.signed_payload(tag, move, move.signature.prev))
    for key in keys:
        try:
            key.verify(sig, payload, ec.ECDSA(_hash_for(key)))
        except InvalidSignature:
            continue
        return SIGNED
    return BAD


def position(
    tag: str, moves: list[taglog.Move], current: str | None, keys: list[ec.EllipticCurvePublicKey]
) -> str | None:
    """None when the tag's present target `current` is where its newest record (in time order) moved it and
    that record verifies under one of `keys`; else why not, in one line. This is what stops a writer
    without the key from rolling the tag back to an older version that *was* signed: the tag file alone can
    be rewritten, a signed record of the move cannot be made."""
    if current is None:
        return f"there is no tag {tag!r}"
    if not moves:
        return f"tag {tag!r} has no recorded moves, so no signed promotion"
    newest = taglog.ordered(moves)[-1]
    if newest.target != current:
        return (
            f"tag {tag!r} names {current}, but its newest record moved it to {newest.target or '(deleted)'}: "
            "it was moved without a record"
        )
    verdict = status(tag, newest, keys)
    if verdict != SIGNED:
        return (
            f"the move of {tag!r} to {current} is {'unsigned' if verdict == UNSIGNED else 'not signed by a given key'}"
        )
    return None
