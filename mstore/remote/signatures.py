"""Signature bundles on the move: push sends a version's bundles, pull and clone fetch them.

A bundle travels as opaque bytes, bounded in size and kept only when well-formed (store/signatures.py);
nothing received is ever trusted: it is verified at use, against keys configured locally (ops/trust.py).
Bundles go after their version's record and before any ref moves, so whoever sees a tag move to a
version finds its signatures there already.
"""

from __future__ import annotations

from contextlib import suppress

from ..errors import IntegrityError
from ..store import signatures as stored
from ..store.layout import Store
from .bucket import RemoteError
from .remotes import Remote


def push(store: Store, remote: Remote, version_ids: list[str]) -> int:
    """Send the bundles of `version_ids` the remote lacks (one listing tells which); returns how many."""
    index = remote.signature_index()
    sent = 0
    for vid in version_ids:
        there = set(index.get(vid, ()))
        for keyid, data in stored.bundles(store.root, vid):
            if keyid not in there and stored.well_formed(data) is None:
                remote.put_signature(vid, keyid, data)
                sent += 1
    return sent


def fetch(remote: Remote, version_id: str, index: dict[str, list[str]] | None = None) -> list[tuple[str, bytes]]:
    """The remote's well-formed bundles of one version (at most MAX_BUNDLES_PER_VERSION), unverified."""
    keyids = (remote.signature_index() if index is None else index).get(version_id, [])
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
