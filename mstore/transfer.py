"""Copy versions between two stores, in the order that keeps the receiving side consistent:
objects first (verified on the way, written as stored, fsynced), then the version records (one rename
each), then refs. A reader of the receiving store never sees a version whose objects are not all there,
and an interrupted transfer simply resumes: what already arrived is skipped.

Today the other store is a directory (a local or NFS path); S3-compatible remotes are issue #6.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import BadInput, MStoreError
from .store import Store, manifest_id


class VersionConflict(MStoreError):
    """Both stores hold a version with this ID, with different content."""


@dataclass
class TransferStats:
    versions_sent: int = 0
    versions_skipped: int = 0
    objects_sent: int = 0
    objects_skipped: int = 0
    bytes_sent: int = 0
    tag_conflicts: list[str] = field(default_factory=list)


def needed_objects(store: Store, version_id: str) -> set[str]:
    """The manifest, its chunks and every delta base they need."""
    meta = store.versions.read(version_id)
    moid = manifest_id(meta, version_id)
    return store.objects.closure({moid, *store.read_manifest(moid).chunk_ids()})


def transfer(src: Store, dst: Store, version_ids: list[str]) -> TransferStats:
    """Copy `version_ids` (and the tags naming them) from `src` to `dst`."""
    if src.config.get("chunker") != dst.config.get("chunker"):
        raise BadInput("the two stores cut models differently (chunker settings differ); clone instead")
    stats = TransferStats()
    with dst.gc_lock():  # the receiving gc must not sweep objects before their version lands
        for vid in version_ids:
            meta_bytes = src.versions.raw_metadata(vid)
            if dst.versions.exists(vid):
                if dst.versions.read(vid).get("model_hash") != src.versions.read(vid).get("model_hash"):
                    raise VersionConflict(f"version {vid} exists on both sides with different content")
                stats.versions_skipped += 1
                continue
            for oid in sorted(needed_objects(src, vid)):
                size = src.objects.claimed_size(oid)
                if size is not None and dst.objects.has_intact(oid, size):
                    stats.objects_skipped += 1
                    continue
                content, blob = src.objects.read_with_blob(oid)  # verified before it goes anywhere
                stored = blob if dst.objects.envelopes and src.objects.envelopes else None
                if dst.objects.put(content, oid, stored):
                    stats.objects_sent += 1
                    stats.bytes_sent += len(stored) if stored is not None else len(content)
            dst.objects.sync()
            with dst.write_lock():
                if not dst.versions.exists(vid):
                    dst.versions.publish(dst.versions.stage(meta_bytes), vid)
                    stats.versions_sent += 1
                dst.refs.set_latest(dst.versions.ids()[-1])
    with dst.write_lock():
        for name, target in sorted(src.refs.tags().items()):
            if target not in version_ids:
                continue
            current = dst.refs.tag(name)
            if current is None:
                dst.refs.set_tag(name, target)
            elif current != target:
                stats.tag_conflicts.append(name)
    return stats
