"""Move versions between the local store and a remote, in the order that keeps the receiving side consistent.

Push: objects the remote lacks (one listing tells which; each verified before it leaves, a delta chain at
a time with its verified base handed down) -> the version records (committed last) -> refs by
compare-and-swap. Pull: every object decoded and hashed before it enters the local store (a corrupt
remote object is reported, never stored; each piece's chain across the versions is fetched in a row,
verified bases handed down) -> the versions (one rename each) -> refs. A reader on either side never
sees a version whose objects are not all there, and an interrupted transfer resumes: what already
arrived is skipped. Objects travel on a bounded pool of
threads with a bounded window, so memory stays at a few objects per worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..errors import BadInput, CorruptObject, DestinationExists, IntegrityError, MStoreError, StoreNotFound
from ..store import codec
from ..store.codec import stored_form
from ..store.commit import commit, holds
from ..store.layout import Store, check_model_hash, manifest_id
from ..store.manifest import Manifest
from ..store.metadata import loads as load_metadata
from ..store.objects import ObjectStore, decode_chain
from ..store.refs import LATEST
from ..store.versions import is_future
from ..workers import map_all, remote_workers, run_all
from . import config as remote_config
from . import promote, signatures
from .bucket import PreconditionFailed
from .remotes import CAS_ATTEMPTS, Remote, open_remote

if TYPE_CHECKING:
    from ..ops.trust import Keys

T = TypeVar("T")
R = TypeVar("R")
__all__ = ["Fetcher", "TransferStats", "clone", "needed_objects", "pull", "push"]


class TransferProgress(Protocol):
    def start(self, total_bytes: int) -> None: ...

    def advance(self, n: int) -> None: ...


@dataclass
class TransferStats:
    versions_sent: int = 0
    versions_skipped: int = 0
    objects_sent: int = 0
    objects_skipped: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    latest: str | None = None  # what `latest` names on the receiving side afterwards
    latest_newer_than_sent: bool = False  # the receiving side's `latest` stayed on a version newer than those sent
    tag_conflicts: list[str] = field(default_factory=list)  # tags left as they were: moved on both sides
    tags_moved: list[str] = field(default_factory=list)  # tags created or moved on the receiving side
    conflict_messages: list[str] = field(default_factory=list)  # one line per conflict: both versions, what to do
    refused: list[str] = field(default_factory=list)  # remote versions not taken: IDs from the future
    signatures_sent: int = 0  # signature bundles sent (push) or kept (pull), never trusted for that
    untrusted: dict[str, str] = field(default_factory=dict)  # pull with trusted keys: versions refused, why


def needed_objects(store: Store, version_id: str, meta: dict[str, Any] | None = None) -> set[str]:
    """The manifest, its chunks and every delta base they need (`meta`: the version's metadata, if read)."""
    moid = manifest_id(store.versions.read(version_id) if meta is None else meta, version_id)
    return store.objects.closure({moid, *store.read_manifest(moid).chunk_ids()})


def check_compatible(local: dict[str, Any], remote: dict[str, Any], url: str) -> None:
    if local.get("chunker") != remote.get("chunker"):
        raise BadInput(
            f"{url} cuts models differently (chunker settings differ), so nothing would dedup; "
            "use a new remote, or clone it into a new store"
        )


def compare_and_swap_ref(remote: Remote, name: str, decide: Callable[[str | None], str | None]) -> str | None:
    """Compare-and-swap `name`: `decide(current)` returns the new target or None to leave it."""
    for _ in range(CAS_ATTEMPTS):
        current, token = remote.get_ref(name)
        new = decide(current)
        if new is None or new == current:
            return current
        try:
            remote.set_ref(name, new, token)
            return new
        except PreconditionFailed:
            time.sleep(0.01)  # someone else moved it between our read and write: read again
    raise PreconditionFailed(f"{remote.url}: refs/{name} keeps changing under us; try again")


def push(
    store: Store,
    remote: Remote,
    version_ids: list[str],
    *,
    progress: TransferProgress | None = None,
    workers: int | None = None,
    force: bool = False,
) -> TransferStats:
    """Send `version_ids` (and the tags naming them) to `remote`; only the objects it lacks travel.

    Objects first, then each version's record (its commit point), then refs, under the remote's push lock.
    A remote tag moves only under its lease (see promote.py), or with `force`."""
    started, stats, workers = time.monotonic(), TransferStats(), workers or remote_workers()
    remote_config = remote.initialise(store.config)
    check_compatible(store.config, remote_config, remote.url)
    with remote.lock("push"):
        on_remote = set(remote.version_ids())
        plan = _plan_push(store, remote, version_ids, on_remote, stats, workers)
        if progress is not None:
            progress.start(sum(store.objects.size(oid) for _, _, todo in plan for oid in todo))
        send = _Sender(store, remote, int(remote_config["format"]), stats, progress)
        todo = [oid for _, _, todo in plan for oid in todo]
        # every version's objects first; then the records, oldest first: no record is there before its
        # objects. Stored bytes travel as they are once their envelope checksum holds (no decode); where
        # content is needed, a delta chain at a time with its verified bases handed down (no chain decoded twice)
        if send.as_stored:
            run_all(todo, send.stored, workers)
        else:
            run_all(delta_trees(store.objects, todo), send.tree, workers)
        for vid, meta, _ in plan:
            if remote.publish_version(vid, meta):
                stats.versions_sent += 1
            else:
                stats.versions_skipped += 1
        stats.signatures_sent = signatures.push(store, remote, version_ids)  # before any ref names them
        _push_refs(store, remote, version_ids, on_remote, stats, force)
    stats.seconds = time.monotonic() - started
    return stats


def _plan_push(
    store: Store, remote: Remote, version_ids: list[str], on_remote: set[str], stats: TransferStats, workers: int
) -> list[tuple[str, bytes, list[str]]]:
    """Per version still missing there: its record and the objects to send (each object once)."""
    present = set(remote.object_index())
    ours = {vid: store.versions.raw_metadata(vid) for vid in version_ids}
    there = map_all(version_ids, lambda v: v in on_remote and remote.holds_version(v, ours[v]), workers)
    plan: list[tuple[str, bytes, list[str]]] = []
    planned: set[str] = set()
    had: set[str] = set()
    for vid, already in zip(version_ids, there, strict=True):
        meta = ours[vid]
        if already:
            stats.versions_skipped += 1
            continue
        needed = needed_objects(store, vid, load_metadata(meta, f"version_{vid}"))
        todo = sorted(needed - present - planned)
        planned.update(todo)  # a later version sharing them needs them only once
        had.update(needed & present)
        plan.append((vid, meta, todo))
    stats.objects_skipped = len(had)  # objects these versions need that the remote already had
    return plan


class _Sender:
    """Sends one object, verified on the way out: a corrupt object never leaves the store."""

    def __init__(
        self, store: Store, remote: Remote, target_format: int, stats: TransferStats, progress: TransferProgress | None
    ) -> None:
        self.store, self.remote, self.stats, self.progress = store, remote, stats, progress
        self.target_envelopes, self.target_planes = target_format >= 2, target_format >= 3
        self._counting = threading.Lock()
        # a bucket stores the bytes as they are, and a remote of this store's format reads every codec it
        # has: objects go as stored, checked against their envelope checksum, never decoded (guarantee 14)
        self.as_stored = (
            not remote.wants_content and store.objects.envelopes and self.target_envelopes and self.target_planes
        )

    def _sent(self, sent: int, logical: int) -> None:
        with self._counting:
            self.stats.objects_sent += 1
            self.stats.bytes_sent += sent
        if self.progress is not None:
            self.progress.advance(logical)

    def stored(self, oid: str) -> None:
        """Send one object as stored, once every stored byte is proven to be what was written: an
        encoded object by its envelope checksum (blake3 of every byte of the file; its declared size and
        base are inside what it covers), a raw one by hashing its content. The receiving end decodes
        and hashes everything before it stores or returns it."""
        objects = self.store.objects
        blob = objects.stored(oid)
        if codec.verify_envelope(blob, None, oid) is None:  # raw: its bytes are its content
            objects.decode(oid, blob)  # hashed against its id
        self._sent(self.remote.put_object(oid, None, blob), len(blob))

    def __call__(self, oid: str, known: dict[str, bytes] | None = None) -> bytes:
        """Send one object (decoded and hash-verified first); returns its verified content.

        `known`: a delta base's content verified moments ago (so its chain is not decoded again)."""
        objects = self.store.objects
        content, blob = objects.read_with_blob(oid, known=known)
        stored = stored_form(content, blob, objects.envelopes, self.target_envelopes, self.target_planes)
        self._sent(self.remote.put_object(oid, content, stored), len(blob))
        return content

    def tree(self, root: tuple[str, dict[str, list[str]]]) -> None:
        """Send an object, then the deltas made against it (depth first), each verified against its id
        with the content of its base just verified: one decode per object, at most a chain's depth held."""
        oid, children = root
        stack: list[tuple[str, dict[str, bytes] | None]] = [(oid, None)]
        done: set[str] = set()  # headers may lie (a cycle): never send one twice, never loop
        while stack:
            current, known = stack.pop()
            if current in done:
                continue
            done.add(current)
            below = children.get(current)
            content = self(current, known)
            if below:
                stack.extend((child, {current: content}) for child in reversed(below))
            del content


def delta_trees(objects: ObjectStore, oids: list[str]) -> list[tuple[str, dict[str, list[str]]]]:
    """`oids` (each once) as trees of delta chains: (root, base -> deltas among `oids`), from headers only.

    A root's base, if any, is not among `oids` (it is on the remote already). Headers are not trusted:
    an unreadable one makes its object a root (the read that sends it reports the damage), and objects
    the walk does not reach (a cycle) become roots of their own, so every object is sent or refused."""
    wanted = dict.fromkeys(oids)
    base_of: dict[str, str] = {}
    for oid in wanted:
        try:
            header = codec.parse_header(objects.header(oid)) if objects.envelopes else None
        except (MStoreError, OSError):
            continue
        if header is not None and header.base is not None and header.base in wanted and header.base != oid:
            base_of[oid] = header.base
    children: dict[str, list[str]] = {}
    for oid, base in base_of.items():
        children.setdefault(base, []).append(oid)
    roots, reached = [], set()
    for start in [o for o in wanted if o not in base_of] + [o for o in wanted if o in base_of]:
        if start in reached:
            continue
        roots.append(start)
        stack = [start]
        while stack:
            current = stack.pop()
            if current in reached:
                continue
            reached.add(current)
            stack.extend(children.get(current, ()))
    # a tree's map covers only its own objects: one shared map, read-only from here on
    return [(root, children) for root in roots]


def _push_refs(
    store: Store, remote: Remote, version_ids: list[str], on_remote: set[str], stats: TransferStats, force: bool
) -> None:
    """`latest` moves forward to the newest version there (also when an interrupted push left it behind);
    tags naming sent versions are created, or moved under their lease (promote.push_tags)."""
    known = on_remote | set(version_ids)
    if known:
        newest = max(known)
        stats.latest = compare_and_swap_ref(remote, LATEST, lambda cur: newest if cur is None or cur < newest else None)
        stats.latest_newer_than_sent = bool(version_ids) and str(stats.latest) > max(version_ids)
    stats.tags_moved, conflicts = promote.push_tags(store, remote, set(version_ids), force=force)
    stats.tag_conflicts = [c.tag for c in conflicts]
    stats.conflict_messages = [c.message("push", remote.url) for c in conflicts]


class Fetcher:
    """Downloads objects into an object store (a store's, or the cache's), each decoded and hashed first;
    delta bases come first."""

    def __init__(
        self,
        remote: Remote,
        remote_config: dict[str, Any],
        objects: ObjectStore,
        stats: TransferStats,
        progress: TransferProgress | None,
        *,
        target_planes: bool = True,
    ) -> None:
        self.remote, self.objects, self.stats, self.progress = remote, objects, stats, progress
        self.source_envelopes = int(remote_config.get("format", 2)) >= 2
        self.target_planes = target_planes  # False: a format-2 store gets codec 4/5 objects as raw content
        self._counting = threading.Lock()
        self._seen: set[str] = set()  # objects this pull already fetched or found: counted once

    def _count(self, oid: str, sent: int, stored: int, logical: int) -> None:
        with self._counting:
            if oid not in self._seen:
                self._seen.add(oid)
                self.stats.objects_sent += sent
                self.stats.objects_skipped += 1 - sent
            self.stats.bytes_sent += stored
        if self.progress is not None:
            self.progress.advance(logical)

    def content(self, oid: str, size: int | None) -> bytes:
        """The object's verified content, from the local store if it is there and intact, else downloaded."""
        local = self._local(oid, size)
        return local if local is not None else self._download(oid, size)

    def _local(self, oid: str, size: int | None) -> bytes | None:
        if self.objects.claimed_size(oid) in (None, -1):
            return None
        try:
            return self.objects.read(oid, size)
        except IntegrityError:
            return None  # a damaged local copy: the remote's good one replaces it

    def ensure(self, oid: str, size: int) -> None:
        if self.objects.has_intact(oid, size):
            self._count(oid, 0, 0, size)
        else:
            self._download(oid, size)

    def ensure_row(self, row: list[tuple[str, int]]) -> None:
        """`ensure` each object of a row (one piece across versions, oldest first), handing the content
        just downloaded and verified to the next as its delta base, when it is."""
        below: tuple[str, bytes] | None = None
        for oid, size in row:
            if self.objects.has_intact(oid, size):
                self._count(oid, 0, 0, size)
                below = None
            else:
                below = (oid, self._download(oid, size, below))

    def _keep(self, oid: str, content: bytes, blob: bytes) -> None:
        """Store a verified object (a chunk, a manifest or a delta base on the way to one)."""
        stored = stored_form(content, blob, self.source_envelopes, self.objects.envelopes, self.target_planes)
        self.objects.put(content, oid, stored)
        self._count(oid, 1, len(blob), len(content))

    def _download(self, oid: str, size: int | None, below: tuple[str, bytes] | None = None) -> bytes:
        """Download, verify and keep `oid`; `below`: an object's verified content, used if it is the base."""

        def known(base: str, base_size: int) -> bytes | None:
            if below is not None and below[0] == base and len(below[1]) == base_size:
                return below[1]
            return self._local(base, base_size)

        try:
            content, blob = decode_chain(
                oid,
                size,
                self.remote.get_object,
                self.remote.object_header,
                envelopes=self.source_envelopes,
                known=known,
                keep=self._keep,
            )
        except CorruptObject as exc:
            raise CorruptObject(f"{self.remote.url}: corrupt object ({exc}); it was not stored") from None
        self._keep(oid, content, blob)
        return content


def pull(
    remote: Remote,
    store: Store,
    version_ids: list[str],
    *,
    progress: TransferProgress | None = None,
    workers: int | None = None,
    trusted_keys: Keys | None = None,
) -> TransferStats:
    """Fetch `version_ids` (and the tags naming them) from `remote`, verifying every object.

    Each version lands whole: its objects (verified, durable), then its record by one rename. With
    `trusted_keys`, versions no trusted key signed are refused before any of their chunks is fetched
    (signatures.admit) and listed in `stats.untrusted`; the rest is pulled (Repository.pull then raises
    Untrusted naming the refused ones)."""
    started, stats, workers = time.monotonic(), TransferStats(), workers or remote_workers()
    remote_config = remote.config()
    if remote_config is None:
        raise StoreNotFound(f"{remote.url}: no mstore store there (nothing was pushed yet)")
    check_compatible(store.config, remote_config, remote.url)
    now = datetime.now(timezone.utc)
    stats.refused = [vid for vid in version_ids if is_future(vid, now)]  # would stay `latest` forever
    version_ids = [vid for vid in version_ids if vid not in stats.refused]
    fetch = Fetcher(remote, remote_config, store.objects, stats, progress, target_planes=store.format >= 3)
    # the local gc must not sweep objects before their version lands; objects are made durable in
    # batches (ObjectStore.batch), each before any version that needs it is committed
    with store.gc_lock(), store.objects.batch():
        plan = _plan_pull(remote, store, version_ids, fetch, stats, workers)
        if trusted_keys is not None:
            plan, stats.untrusted = signatures.admit(remote, store, version_ids, plan, trusted_keys)
            version_ids = [vid for vid in version_ids if vid not in stats.untrusted]
        if progress is not None:
            progress.start(sum(f.size for _, _, m in plan for f in m.files))
        # every version's chunks first, the same piece of each version in a row (its delta chain, oldest
        # first: each delta verified with its base's content just verified), then the versions, oldest
        # first, each landing whole
        run_all(_piece_rows([manifest for _, _, manifest in plan]), fetch.ensure_row, workers)
        for vid, meta, _ in plan:
            stats.versions_sent += len(commit(store, [(vid, meta)]).published)
        stats.signatures_sent = signatures.pull(remote, store, version_ids)
        stats.latest = store.refs.latest()
        stats.tags_moved, conflicts = promote.pull_tags(store, remote, set(version_ids))
        stats.tag_conflicts = [c.tag for c in conflicts]
        stats.conflict_messages = [c.message("pull", remote.url) for c in conflicts]
    stats.seconds = time.monotonic() - started
    return stats


def _piece_rows(manifests: list[Manifest]) -> list[list[tuple[str, int]]]:
    """Each chunk once, in rows: the chunks at the same place (file, index) of each manifest in order,
    where a version's delta against its parent's same piece usually is (a hint only: any base not just
    decoded is read, verified, from the local store or the remote)."""
    rows: dict[tuple[str, int], list[tuple[str, int]]] = {}
    seen: set[str] = set()
    for manifest in manifests:
        for f in manifest.files:
            for i, c in enumerate(f.chunks):
                if c.oid not in seen:
                    seen.add(c.oid)
                    rows.setdefault((f.path, i), []).append((c.oid, c.size))
    return list(rows.values())


def _plan_pull(
    remote: Remote, store: Store, version_ids: list[str], fetch: Fetcher, stats: TransferStats, workers: int
) -> list[tuple[str, bytes, Manifest]]:
    """Per version not here yet: its record and manifest, the manifest checked against its model_hash.
    A version that is here with a different record is a conflict."""

    def record(vid: str) -> tuple[str, bytes, str | None]:
        """The version record (verified) and, if the version is not here yet, its manifest's id."""
        meta = remote.raw_version(vid)
        if store.versions.exists(vid):
            holds(store, vid, meta)  # here with another record: VersionConflict
            return vid, meta, None
        return vid, meta, manifest_id(load_metadata(meta, f"version_{vid}"), vid)

    records = map_all(version_ids, record, workers)
    wanted_manifests = sorted({moid for _, _, moid in records if moid is not None})  # re-saves share one
    fetched = map_all(wanted_manifests, lambda moid: Manifest.decode(fetch.content(moid, None)), workers)
    manifests = dict(zip(wanted_manifests, fetched, strict=True))
    plan: list[tuple[str, bytes, Manifest]] = []
    for vid, meta, moid in records:
        if moid is None:
            stats.versions_skipped += 1
        else:
            check_model_hash(load_metadata(meta, f"version_{vid}"), manifests[moid], vid)
            plan.append((vid, meta, manifests[moid]))
    return plan


def clone(
    url: str, dest: Path, *, endpoint_url: str | None = None, progress: TransferProgress | None = None
) -> tuple[Store, TransferStats]:
    """A new store at `dest` with every version of `url`, which becomes its remote `origin`."""
    url = remote_config.normalise_url(url)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DestinationExists(f"{dest} exists and is not empty")
    source = open_remote(url, endpoint_url=endpoint_url)
    config = source.config()
    if config is None:
        raise StoreNotFound(f"{url}: no mstore store there (nothing was pushed yet)")
    store = Store.init(dest, like=config)
    remote_config.add(store, "origin", url, endpoint_url=endpoint_url)
    return store, pull(source, store, sorted(set(source.version_ids())), progress=progress)
