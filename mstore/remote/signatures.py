"""Signature bundles on the move: push sends a version's bundles, pull and clone fetch them.

A bundle travels as opaque bytes, bounded in size and kept only when well-formed (store/signatures.py);
nothing received is ever trusted: it is verified at use, against keys configured locally (ops/trust.py).
Bundles go after their version's record and before any ref moves, so whoever sees a tag move to a
version finds its signatures there already.
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from ..errors import IntegrityError
from ..store import signatures as stored
from ..store.layout import Store, manifest_id
from ..store.manifest import Manifest
from ..store.objects import ObjectStore, hash_bytes
from .bucket import RemoteError
from .remotes import Remote

if TYPE_CHECKING:  # cryptography loads only when trust is asked for
    from ..ops import trust
    from ..ops.trust import Keys


def push(store: Store, remote: Remote, version_ids: list[str], keys: Keys | None = None) -> int:
    """Send the bundles of `version_ids` the remote lacks (one listing tells which, and none when there is
    nothing to send); returns how many. A bundle file name is not authenticated, so one planted on the
    remote under this key's name must not hold the genuine one off forever: with trusted keys (`keys`,
    else MSTORE_TRUSTED_KEYS), a remote bundle whose bytes differ from a local one of the same name that
    verifies is replaced by it. That costs one read of each such remote bundle per push (a few KiB each);
    without a trust setting nothing is read and nothing replaced."""
    local = {vid: bundles for vid in version_ids if (bundles := stored.bundles(store.root, vid))}
    if not local:
        return 0
    index = remote.signature_index()
    sent = 0
    trusted: list[Keys | None] = []  # resolved once, at the first name both sides hold
    for vid, bundles in local.items():
        there = set(index.get(vid, ()))
        for keyid, data in bundles:
            if stored.well_formed(data) is not None:
                continue
            if keyid not in there:
                remote.put_signature(vid, keyid, data)
                sent += 1
                continue
            if not trusted:
                from ..ops import trust

                trusted.append(keys if keys is not None else trust.trusted_keys())
            if trusted[0] is not None and _replaces(store, remote, vid, keyid, data, trusted[0]):
                remote.put_signature(vid, keyid, data, replace=True)
                sent += 1
    return sent


def _replaces(store: Store, remote: Remote, vid: str, keyid: str, data: bytes, keys: Keys) -> bool:
    """Whether push should replace the remote's bundle `keyid` of `vid` by the local `data`: it verifies
    under `keys` and the remote's bytes differ."""
    from ..ops import trust

    try:
        manifest, meta_raw = store.version_manifest(vid), store.versions.raw_metadata(vid)
        trust.check(vid, manifest, meta_raw, [(keyid, data)], keys)
    except trust.Untrusted:
        return False
    try:
        return remote.get_signature(vid, keyid) != data
    except (IntegrityError, RemoteError):
        return True  # unreadable there (oversized, a link, gone): the verified one replaces it


def fetch(remote: Remote, version_id: str, index: dict[str, list[str]] | None = None) -> list[tuple[str, bytes]]:
    """The remote's well-formed bundles of one version (at most MAX_BUNDLES_PER_VERSION), unverified."""
    keyids = (remote.signature_index(version_id) if index is None else index).get(version_id, [])
    out = []
    for keyid in sorted(set(keyids))[: stored.MAX_BUNDLES_PER_VERSION]:
        with suppress(IntegrityError, RemoteError):  # a bundle that cannot be read is not received
            data = remote.get_signature(version_id, keyid)
            if stored.well_formed(data) is None:
                out.append((keyid, data))
    return out


def pull(remote: Remote, store: Store, version_ids: list[str]) -> int:
    """Keep the remote's bundles of `version_ids` (versions here) that this store lacks; returns how many."""
    index = remote.signature_index()
    kept = 0
    for vid in version_ids:
        have = set(stored.keyids(store.root, vid))
        if not store.versions.exists(vid) or not set(index.get(vid, ())) - have:
            continue
        for keyid, data in fetch(remote, vid, index):
            if keyid not in have and stored.keep(store.root, vid, keyid, data):
                kept += 1
    return kept


def admit(
    remote: Remote, store: Store, version_ids: list[str], plan: list[tuple[str, bytes, Manifest]], keys: Keys
) -> tuple[list[tuple[str, bytes, Manifest]], dict[str, str]]:
    """Of a pull's versions (those in `plan`, still to fetch, and those here already), the ones a trusted
    key signed, checked before any of their chunks is fetched, with the remote's bundles and this store's;
    returns the plan to carry out and, per refused version, why (one line)."""
    from ..ops import trust

    index = remote.signature_index()
    pieces = {vid: (meta, manifest) for vid, meta, manifest in plan}
    refused: dict[str, str] = {}
    for vid in version_ids:
        here = store.versions.exists(vid)
        mine = stored.bundles(store.root, vid) if here else []
        # a bundle's file name is not authenticated: every bundle is tried, the remote's as well as ours
        # when the bytes differ (a junk one kept here under a key's name must not shadow the genuine one)
        seen = {data for _, data in mine}
        theirs = [(k, data) for k, data in fetch(remote, vid, index) if data not in seen]
        try:
            if vid in pieces:
                trust.check(vid, pieces[vid][1], pieces[vid][0], mine + theirs, keys)
            elif here:
                manifest, meta_raw = store.version_manifest(vid), store.versions.raw_metadata(vid)
                found = trust.check(vid, manifest, meta_raw, mine + theirs, keys)
                _repair(store, vid, found, manifest, meta_raw, mine, theirs, keys)
        except trust.Untrusted as exc:
            refused[vid] = str(exc)
    return [p for p in plan if p[0] not in refused], refused


def _repair(
    store: Store,
    vid: str,
    found: str,
    manifest: Manifest,
    meta_raw: bytes,
    mine: list[tuple[str, bytes]],
    theirs: list[tuple[str, bytes]],
    keys: Keys,
) -> None:
    """A remote bundle named `found` verified: it replaces the local one of that name if that one does not
    verify (so that a later check here, offline or without the remote, passes too)."""
    from ..ops import trust

    received = dict(theirs).get(found)
    if received is None:
        return  # the one that verified is ours
    local = dict(mine).get(found)
    if local is not None:
        try:
            trust.check(vid, manifest, meta_raw, [(found, local)], keys)
            return  # ours verifies as well: keep it
        except trust.Untrusted:
            pass
    stored.keep(store.root, vid, found, received, replace=True)


def refusal(refused: dict[str, str], pulled: int) -> trust.Untrusted:
    """One line for every version a pull refused (nothing of them was stored)."""
    from ..ops import trust

    if len(refused) == 1:
        (why,) = refused.values()
        return trust.Untrusted(f"{why}; nothing of it was pulled" + (f" (pulled {pulled} other)" if pulled else ""))
    whys = "; ".join(why.removeprefix("refused ") for why in refused.values())
    return trust.Untrusted(
        f"refused {len(refused)} versions not signed by a trusted key (nothing of them was pulled): {whys}"
    )


def check_remote(
    remote: Remote, version_id: str, manifest: Manifest, meta_raw: bytes, keys: Keys, objects: ObjectStore
) -> dict[str, Any]:
    """`model_path(remote=...)` with trusted keys: the remote's bundles of the version, verified here
    against the local keys only (Untrusted otherwise). Returns what the cache's resolution record keeps
    so that an offline answer checks the same again: the ids of the metadata and the bundles, kept in
    the cache's objects (content-addressed: read back verified)."""
    from ..ops import trust

    bundles = fetch(remote, version_id)
    trust.check(version_id, manifest, meta_raw, bundles, keys)
    meta_oid, kept = hash_bytes(meta_raw), {keyid: hash_bytes(data) for keyid, data in bundles}
    objects.put(meta_raw, meta_oid)
    for keyid, data in bundles:
        objects.put(data, kept[keyid])
    objects.sync()
    return {"metadata": meta_oid, "signatures": kept}


def check_cached(
    version_id: str,
    manifest: Manifest,
    kept: Any,
    keys: Keys,
    objects: ObjectStore,
    *,
    key: str | None = None,
    model_hash: str | None = None,
) -> dict[str, Any]:
    """An offline answer with trusted keys: the signature the last trusted resolution kept, verified
    again against today's keys; Untrusted when none was kept (a record made without trust, or evicted),
    or when the kept metadata names another manifest (`key`) or model hash than the answer's."""
    from ..ops import trust

    why = "offline, and the cache kept no signature of it (run it once online with the trusted keys)"
    try:
        meta_raw = objects.read(kept["metadata"])
        bundles = [(k, objects.read(oid)) for k, oid in sorted(kept["signatures"].items()) if stored.is_keyid(k)]
        meta = json.loads(meta_raw)
        if key is not None and manifest_id(meta, version_id) != key:
            raise KeyError(key)
        if model_hash is not None and meta.get("model_hash") != model_hash:
            raise KeyError(model_hash)
    except (TypeError, KeyError, AttributeError, ValueError, RecursionError, IntegrityError):
        raise trust.Untrusted(f"refused {version_id}: not signed by a trusted key: {why}") from None
    trust.check(version_id, manifest, meta_raw, bundles, keys)
    return dict(kept)
