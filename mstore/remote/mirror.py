"""A read-only metadata mirror of a remote: `log`, `show`, `diff` and `ui` over a bucket without cloning it.

The mirror is a store-shaped directory in the user's cache (`<cache>/remotes/<key>/`, one per remote URL),
holding only metadata: the remote's config, every committed version record (verified against its
`metadata.b3`), each version's manifest (one small object, decoded and hashed as a pull does), `latest`,
the tags and their histories. Each call refreshes it incrementally (one listing; only records not seen
before are downloaded; versions and tags gone from the remote leave the mirror), under the mirror's own
write lock, every file written by the store's atomic machinery; then the normal read code runs over it.

Model bytes never enter the mirror. Its objects are a `LazyObjects`: a chunk that `diff` needs (a tensor
file's header, a config.json) is read from the cache's objects, or downloaded into them (verified) on
first use, so a later `model_path` of that version does not download it again.
"""

from __future__ import annotations

import os
import secrets
import shutil
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import blake3

from ..cache.upkeep import MIRRORS
from ..errors import BadInput, IntegrityError, MStoreWarning, NotCached, StoreNotFound
from ..store import fsutil, taglog
from ..store.commit import refresh_latest
from ..store.layout import CONFIG, Store, check_model_hash, manifest_id
from ..store.manifest import Manifest
from ..store.metadata import loads as load_metadata
from ..store.objects import ObjectStore
from ..store.refs import check_tag_name
from ..store.versions import is_future
from ..workers import map_all, remote_workers
from .bucket import RemoteError
from .remotes import Remote
from .transfer import Fetcher, TransferStats


def mirror_key(url: str, endpoint: str | None) -> str:
    """The mirror's directory name: one per (URL, endpoint)."""
    return blake3.blake3(f"{url}\n{endpoint or ''}".encode()).hexdigest()[:32]


class LazyObjects(ObjectStore):
    """The mirror's objects (its manifests), and every other object read through `fetch` on first use:
    from the cache's objects if they hold it intact, else downloaded and verified into them."""

    def __init__(self, root: Path, fetch: Fetcher | None, chunks: ObjectStore, *, envelopes: bool = True) -> None:
        super().__init__(root, envelopes=envelopes)
        self.fetch, self.chunks = fetch, chunks  # fetch None: offline, only what the cache holds

    def read(
        self, oid: str, expected_size: int | None = None, *, buffer: bool = False, in_planes: bool = False
    ) -> bytes:
        if self.claimed_size(oid) is not None:
            return super().read(oid, expected_size, buffer=buffer, in_planes=in_planes)
        if self.fetch is not None:
            return self.fetch.content(oid, expected_size)
        if self.chunks.claimed_size(oid) not in (None, -1):
            return self.chunks.read(oid, expected_size)
        raise NotCached(f"offline, and object {oid[:16]}... of this remote was never fetched into the cache")


class ReadOnlyStore(Store):
    """A mirror as the read code sees it: every write (they all take the write or gc lock) is refused."""

    metadata_only = True

    def __init__(self, root: Path, config: dict[str, Any], url: str) -> None:
        super().__init__(root, config)
        self.url = url

    def _refuse(self) -> BadInput:
        return BadInput(f"{self.url} is browsed read-only; clone or pull it to change its versions")

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        raise self._refuse()
        yield  # pragma: no cover

    @contextmanager
    def gc_lock(self, *, exclusive: bool = False) -> Iterator[None]:
        raise self._refuse()
        yield  # pragma: no cover


@dataclass
class Browsed:
    """A mirror brought up to date: the store to read, and what refreshing it downloaded."""

    store: Store
    url: str
    stats: TransferStats = field(default_factory=TransferStats)
    versions_fetched: int = 0
    again: Callable[[], Browsed] | None = None  # refresh once more (a long-running `ui --remote`)


def browse(
    remote: Remote, url: str, endpoint: str | None, cache_root: Path, chunks: ObjectStore, offline: str = "off"
) -> Browsed:
    """Refresh the mirror of `remote` under `cache_root` and open it; `chunks` is where lazily read model
    objects go (the cache's objects). StoreNotFound when nothing was ever pushed there. `offline` ("off",
    "on", "auto": see modelpath.offline_mode): "on" reads the mirror as the last call left it, with no
    network call; "auto" does so, with a warning, only when the remote cannot be reached."""
    root = cache_root / MIRRORS / mirror_key(url, endpoint)
    if offline == "on":
        return _as_left(root, url, chunks, None)
    try:
        config = remote.config()
        if config is None:
            raise StoreNotFound(f"{remote.url}: no mstore store there (nothing was pushed yet)")
    except (RemoteError, StoreNotFound) as exc:
        if offline != "auto":
            raise
        return _as_left(root, url, chunks, exc)
    if not fsutil.check_real_dir(cache_root / MIRRORS, f"the cache's {MIRRORS}/", "remove it"):  # never through a link
        fsutil.make_dir(cache_root / MIRRORS, parents=True)
    store = _open(root, config)
    stats = TransferStats()
    fetched = 0
    with store.write_lock():
        fetched = _refresh(store, remote, config, stats)
    view = ReadOnlyStore(root, store.config, url)
    lazy = Fetcher(remote, config, chunks, stats, None)
    view.objects = LazyObjects(root / "objects", lazy, chunks, envelopes=view.format >= 2)
    return Browsed(view, url, stats, fetched, lambda: browse(remote, url, endpoint, cache_root, chunks, offline))


def _as_left(root: Path, url: str, chunks: ObjectStore, error: Exception | None) -> Browsed:
    """The mirror as the last online call left it (offline), or NotCached when there is none."""
    if not os.path.lexists(root / CONFIG):
        why = f"{url} cannot be reached ({error}) and " if error is not None else "offline, and "
        raise NotCached(f"{why}it was never browsed from this cache (run it once online first)")
    if error is not None:
        warnings.warn(f"{url} cannot be reached ({error}); showing it as last browsed", MStoreWarning, stacklevel=3)
    found = Store.open(root)
    view = ReadOnlyStore(root, found.config, url)
    view.objects = LazyObjects(root / "objects", None, chunks, envelopes=view.format >= 2)
    return Browsed(view, url)


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in ("remotes", "b3")}


def _open(root: Path, config: dict[str, Any]) -> Store:
    """The mirror's store; one whose config no longer matches the remote's (a remote made anew) is
    replaced by an empty one."""
    if os.path.lexists(root / CONFIG):
        try:
            store = Store.open(root)
            if _settings(store.config) == _settings(config):
                return store
        except (IntegrityError, StoreNotFound, OSError):
            pass
        trash = root.with_name(f"{fsutil.TMP_PREFIX}{root.name}-{secrets.token_hex(4)}")
        fsutil.rename(root, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return Store.init(root, like=config)


def _refresh(store: Store, remote: Remote, config: dict[str, Any], stats: TransferStats) -> int:
    """Bring the mirror's versions, refs and tag histories to what the remote holds now; returns how many
    version records were downloaded. Caller holds the mirror's write lock."""
    now = datetime.now(timezone.utc)
    there = [vid for vid in remote.version_ids() if not is_future(vid, now)]  # as pull refuses them
    here = set(store.versions.ids())
    wanted = set(there)
    fetch = Fetcher(remote, config, store.objects, stats, None)

    def record(vid: str) -> tuple[str, bytes]:
        raw = remote.raw_version(vid)  # verified against its metadata.b3
        meta = load_metadata(raw, f"{remote.url}: version_{vid}")
        moid = manifest_id(meta, vid)
        check_model_hash(meta, Manifest.decode(fetch.content(moid, None)), vid)
        return vid, raw

    new = map_all([v for v in there if v not in here], record, remote_workers())
    store.objects.sync()
    for vid, raw in new:
        store.versions.publish(store.versions.stage(raw), vid)
    tags = _remote_tags(remote, wanted)
    for name in store.refs.tag_names():
        if name not in tags:
            store.refs.delete_tag(name, record=False)
    for name in store.refs.history_names():
        if name not in tags or tags[name][1] is None:  # gone there, or damaged there: none shown
            fsutil.remove_file(store.refs.history_dir / name)
    for name, (target, history) in sorted(tags.items()):
        if history is not None and store.refs.history_raw(name) != history:
            store.refs.write_history(name, history)
        if store.refs.tag(name) != target:
            store.refs.set_tag(name, target, record=False)
    for vid in sorted(here - wanted):
        store.versions.remove(vid)
    refresh_latest(store)
    return len(new)


def _remote_tags(remote: Remote, wanted: set[str]) -> dict[str, tuple[str, bytes | None]]:
    """name -> (version, history bytes) of the remote's tags naming versions the mirror holds, read on the
    transfer threads (two requests a tag). An unsafe name or a damaged tag is skipped (as pull skips it); a
    damaged history is left out, the tag kept."""

    def one(name: str) -> tuple[str, str, bytes | None] | None:
        try:
            target = remote.get_ref(f"tags/{check_tag_name(name)}")[0]
        except (BadInput, IntegrityError):
            return None
        if target not in wanted:
            return None
        try:
            raw, _ = remote.get_history(name)
            taglog.parse(raw, f"{remote.url}: refs/history/{name}")
        except IntegrityError:  # a damaged history file: the tag stands, its history is not shown
            raw = None
        return name, target, raw

    found = map_all(remote.tag_names(), one, remote_workers())
    return {name: (target, raw) for name, target, raw in (f for f in found if f is not None)}
