"""Where the disk went: logical vs stored bytes, what each version alone holds, what it shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..store.layout import Store, manifest_id
from ..store.manifest import Manifest


@dataclass
class VersionUsage:
    version: str
    logical_bytes: int  # the model's size
    exclusive_bytes: int  # object bytes no other version uses: what `rm` + `gc` would free


def shared_bytes(manifest: Manifest, other: Manifest | None) -> int:
    """Bytes of `manifest`'s content held in chunks that `other` also uses."""
    if other is None:
        return 0
    theirs = set(other.chunk_ids())
    return sum(c.size for e in manifest.files for c in e.chunks if c.oid in theirs)


def disk_usage(store: Store, largest: int = 10) -> dict[str, Any]:
    """Logical size of all versions, bytes on disk, savings, and the versions that hold the most alone."""
    users: dict[str, set[str]] = {}
    logical: dict[str, int] = {}
    for vid in store.versions.ids():
        meta = store.versions.read(vid)
        moid = manifest_id(meta, vid)
        manifest = store.read_manifest(moid)
        logical[vid] = manifest.size
        for oid in store.objects.closure({moid, *manifest.chunk_ids()}):
            users.setdefault(oid, set()).add(vid)
    sizes = {oid: store.objects.size(oid) for oid in store.objects}
    exclusive = dict.fromkeys(logical, 0)
    for oid, versions in users.items():
        if len(versions) == 1 and oid in sizes:
            exclusive[next(iter(versions))] += sizes[oid]
    stored = sum(sizes.values())
    unreachable = sum(size for oid, size in sizes.items() if oid not in users)
    total_logical = sum(logical.values())
    rows = sorted(
        (VersionUsage(v, logical[v], exclusive[v]) for v in logical), key=lambda u: (-u.exclusive_bytes, u.version)
    )
    return {
        "versions": len(logical),
        "logical_bytes": total_logical,
        "stored_bytes": stored,
        "unreachable_bytes": unreachable,
        "savings_ratio": total_logical / stored if stored else None,
        "largest": [
            {"version": u.version, "logical_bytes": u.logical_bytes, "exclusive_bytes": u.exclusive_bytes}
            for u in rows[:largest]
        ],
    }
