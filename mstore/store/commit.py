"""The commit protocol: how a version enters and leaves a store, in the order that keeps every reader right.

In: the version's objects are durable (the caller wrote them; `commit` syncs once more) -> the version
directory is staged complete under tmp/ and renamed into place (the commit point) -> refs: `latest` by one
rule (`refresh_latest`), then tags. Out, the other way: refs first, then one rename takes the version out of
sight, so no ref ever names a missing version; its objects are freed by gc.

Save, pull, archive import and a directory remote all publish through here, under the store's write lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadInput, IntegrityError, VersionConflict, VersionIsTagged
from . import signatures
from .layout import Store
from .refs import check_tag_name
from .versions import newest

Record = Mapping[str, Any] | bytes  # a version's metadata: a dict to write, or metadata.json's exact bytes


@dataclass
class Committed:
    """What `commit` did: versions published or already here, where `latest` is, tags set or in conflict."""

    published: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # here already, with the very same record
    latest: str | None = None
    tags_set: list[str] = field(default_factory=list)
    tag_conflicts: list[str] = field(default_factory=list)  # here already, naming another version


def holds(store: Store, version_id: str, record: Record) -> bool:
    """True when the version is here with exactly this record; False when it is absent.
    Raises VersionConflict when it is here with another record (two stores saved in the same second)."""
    if not store.versions.exists(version_id):
        return False
    if isinstance(record, bytes) and store.versions.raw_metadata(version_id) == record:
        return True
    raise VersionConflict.of(version_id)


def publish(store: Store, version_id: str, record: Record) -> bool:
    """Stage the version and rename it into place: the moment it exists. False when it was here already
    with this record. The caller holds the write lock and has made every object it needs durable."""
    if holds(store, version_id, record):
        return False
    store.versions.publish(store.versions.stage(record), version_id)
    return True


def refresh_latest(store: Store) -> str | None:
    """Point `latest` at the newest version (not one from the far future: `versions.newest`), the one rule
    for what `latest` means. After a commit point this never fails the operation: `latest` is derived
    from the IDs, so a ref left stale by a full disk is reported by fsck and repaired by the next write."""
    target = newest(store.versions.ids())
    with suppress(OSError):
        store.refs.set_latest(target)
    return target


def adopt_tags(store: Store, tags: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Create the tags that are not here (a name that is not safe is skipped); one that names another
    version here is a conflict and stays as it is. Returns (set, conflicts). Caller holds the write lock."""
    created, conflicts = [], []
    for name, version_id in sorted(tags.items()):
        try:
            current = store.refs.tag(check_tag_name(name))
        except (BadInput, IntegrityError):  # an unsafe name, or a damaged tag file here (fsck reports it)
            continue
        if current is None:
            store.refs.set_tag(name, version_id)
            created.append(name)
        elif current != version_id:
            conflicts.append(name)
    return created, conflicts


def commit(store: Store, versions: Sequence[tuple[str, Record]], tags: Mapping[str, str] | None = None) -> Committed:
    """Publish `versions` (objects durable first), refresh `latest`, then adopt `tags`, under the write lock.

    All or nothing on conflicts: a version here with another record raises VersionConflict before any of
    them is published."""
    done = Committed()
    store.objects.sync()  # every object is durable before anything refers to it
    with store.write_lock():
        fresh = [(vid, record) for vid, record in versions if not holds(store, vid, record)]
        done.skipped = [vid for vid, _ in versions if vid not in {v for v, _ in fresh}]
        for vid, record in fresh:
            store.versions.publish(store.versions.stage(record), vid)
            done.published.append(vid)
        done.latest = refresh_latest(store)
        done.tags_set, done.tag_conflicts = adopt_tags(store, tags or {})
    return done


def remove(store: Store, version_id: str, *, force: bool = False) -> list[str]:
    """Take a published version out; returns the tags removed with it. Caller holds the write lock.

    Refs first (tags naming it need `force` and go with it; `latest` moves to the newest that remains),
    then one rename takes the version out of sight: a crash leaves it whole or gone. gc frees its objects.
    """
    tags = sorted(n for n, v in store.refs.tags().items() if v == version_id)
    if tags and not force:
        raise VersionIsTagged(
            f"version {version_id} is tagged {', '.join(tags)} (use {{force}} to remove it and its tags)",
            force=("--force", "force=True"),
        )
    for name in tags:
        store.refs.delete_tag(name)
    store.refs.set_latest(newest([i for i in store.versions.ids() if i != version_id]))
    store.versions.remove(version_id)
    signatures.drop(store.root, version_id)  # after the version: a crash between leaves an orphan gc removes
    return tags
