"""`model_path(ref)`: where a version's model lies in the cache, from a local store or straight from a remote.

Two steps: which version and which files, then the cache. Online, the ref is resolved on its source (the
local store, or the remote: one listing, no model bytes) into an `Origin`, which can read that version's
manifest and chunks; `files=` / `include=` / `exclude=` choose files by the manifest (content/select.py),
and the cache answers with a stamp check, or writes what it lacks of them (cache/entries.py). From a remote,
chunks go into the cache's own object store through the same verified fetcher a pull uses, so a version
that shares chunks with one fetched before downloads only what is new. Every resolution is recorded, so
offline (`MSTORE_OFFLINE=1` or `offline=True`) a ref resolved before is answered with no network call;
`MSTORE_OFFLINE=auto` falls back to the last resolution, with a warning on stderr, only when the remote
cannot be reached.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .cache.entries import Cache
from .content import verdict as _verdict
from .content.restore import restore
from .content.select import choose
from .diff.compare import check_loadable
from .errors import BadInput, IntegrityError, MStoreWarning, NotCached, StoreNotFound
from .ops.revparse import is_best, resolve, resolve_in
from .ops.trust import Keys, KeySpec, check_stored
from .ops.trust import trusted_keys as load_trusted_keys
from .remote import config as remote_config
from .remote import signatures
from .remote.bucket import RemoteError
from .remote.remotes import Remote, open_remote, tag_of
from .remote.transfer import Fetcher, TransferStats
from .store.layout import Store, check_model_hash, manifest_id
from .store.manifest import Manifest
from .store.metadata import loads as load_metadata
from .store.objects import ObjectStore
from .store.refs import check_ref_syntax
from .workers import WORKERS, remote_workers, run_all

OFFLINE_ENV = "MSTORE_OFFLINE"
DEFAULT_STORE = "data/models"


@dataclass
class Located:
    """What `mstore path --json` prints."""

    path: Path
    version: str
    model_hash: str
    manifest: str
    source: str
    ref: str
    cached: bool  # it was in the cache already: this call wrote nothing
    offline: bool  # answered from the last resolution, without asking the source
    bytes_fetched: int = 0
    objects_fetched: int = 0
    files: list[str] | None = None  # the files asked for (files=, include=, exclude=); None: the whole model
    complete: bool = True  # the cache entry holds every file of the model

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "version": self.version,
            "model_hash": self.model_hash,
            "manifest": self.manifest,
            "source": self.source,
            "ref": self.ref,
            "cached": self.cached,
            "offline": self.offline,
            "bytes_fetched": self.bytes_fetched,
            "objects_fetched": self.objects_fetched,
            "files": self.files,
            "complete": self.complete,
        }


def offline_mode(offline: bool | str | None) -> str:
    """ "off", "on" or "auto", from the argument, else MSTORE_OFFLINE (1/true/yes, 0/false/no, auto)."""
    value: Any = offline if offline is not None else os.environ.get(OFFLINE_ENV, "")
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value).strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return "off"
    if text in ("1", "true", "yes", "on"):
        return "on"
    if text == "auto":
        return "auto"
    raise BadInput(f"{OFFLINE_ENV}={value!r}: use 1 (offline), 0 (online) or auto (offline when unreachable)")


def default_store() -> str:
    return os.environ.get("MSTORE_DIR") or DEFAULT_STORE


def model_path(
    ref: str = "latest",
    *,
    store: str | os.PathLike[str] | None = None,
    remote: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | str | None = None,
    files: Sequence[str] | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    allow_unsafe: bool | None = None,
    trusted_keys: KeySpec = None,
) -> Path:
    """The path of `ref`'s model (the file, or the folder of a directory model) inside the cache.

    Materialised once, verified bit-exact while written, then read-only; later calls check a small
    stamp instead of reading the model. `store` defaults to $MSTORE_DIR, else data/models; `remote` is
    a remote name of that store or a URL (s3://bucket/prefix, a directory), used without any local store.
    `files` (exact paths), `include` and `exclude` (globs, as huggingface_hub's allow_patterns) write only
    those files of a directory model, fetching only their chunks; a later call for more adds them.
    A version whose pickles are unsafe or unknown (loading runs what they import) raises UnsafeModel,
    writing nothing, unless `allow_unsafe=True` or MSTORE_ALLOW_UNSAFE=1; a partial load that leaves out
    every such pickle passes. With trusted keys (`trusted_keys`: a PEM public key or a directory of
    `*.pem`, or a list of them; else MSTORE_TRUSTED_KEYS) a version no trusted key signed raises
    Untrusted, writing nothing: from a remote, its signature comes from the remote and is verified here;
    offline, from what the cache kept of the last trusted resolution.
    """
    found = locate(
        ref,
        store=store,
        remote=remote,
        cache_dir=cache_dir,
        offline=offline,
        files=files,
        include=include,
        exclude=exclude,
        allow_unsafe=allow_unsafe,
        trusted_keys=trusted_keys,
    )
    return found.path


def locate(
    ref: str = "latest",
    *,
    store: str | os.PathLike[str] | None = None,
    remote: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | str | None = None,
    files: Sequence[str] | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    allow_unsafe: bool | None = None,
    trusted_keys: KeySpec = None,
) -> Located:
    """`model_path` with everything `mstore path --json` reports."""
    keys = load_trusted_keys(trusted_keys)  # a bad trust setting fails before anything is asked
    cache = Cache.open(cache_dir)
    origin = find(ref, store=store, remote=remote, cache=cache, offline=offline)
    wanted = None
    if files is not None or include is not None or exclude:
        wanted = choose(origin.manifest(), files, include, exclude)  # the manifest is one small object
    trust = None if keys is None else origin.check_trust(keys)  # before any model byte is read
    if isinstance(origin, _RemoteOrigin):  # the remote's metadata claims a verdict: the bytes decide
        records = cache.root / "verdicts"
        origin.meta = _verdict.from_chunks(origin.meta, origin.key, origin.manifest(), origin, records, wanted)
    check_loadable(origin.meta, origin.version, allow_unsafe, wanted)  # before anything is written
    path, wrote = cache.materialise(origin.key, origin.model_hash, origin, wanted)
    if not origin.offline:
        cache.record(
            origin.source, ref, origin.version, origin.key, origin.model_hash, pickle_record(origin.meta), trust
        )
    located = Located(
        path, origin.version, origin.model_hash, origin.key, origin.source, ref, not wrote, origin.offline
    )
    located.bytes_fetched, located.objects_fetched = origin.stats.bytes_sent, origin.stats.objects_sent
    located.files = sorted(wanted) if wanted is not None else None
    stamp = cache.load_stamp(origin.key)
    located.complete = bool(stamp and stamp["complete"])
    return located


@dataclass
class Origin:
    """One version found on its source, before any model bytes are read: what the cache builds an entry
    from (`manifest`, `write`), and a verified reader of its chunks (`read`) for lazy tensors."""

    version: str
    key: str  # the manifest id
    model_hash: str
    source: str
    offline: bool
    stats: TransferStats = field(default_factory=TransferStats)  # what was downloaded (remotes only)
    workers: int = WORKERS  # threads for reading many chunks at once (a remote's: requests in flight)
    meta: dict[str, Any] = field(default_factory=dict)  # the version's metadata (offline: its pickle scan only)
    _manifest: Manifest | None = field(default=None, init=False, repr=False)

    def manifest(self) -> Manifest:
        """The version's manifest, verified against its metadata (read once)."""
        if self._manifest is None:
            self._manifest = self._load()
        return self._manifest

    def _load(self) -> Manifest:
        raise NotImplementedError

    def write(self, manifest: Manifest, dest: Path, only: frozenset[str] | None) -> None:
        raise NotImplementedError

    def read(self, oid: str, size: int | None = None) -> bytes:
        """A chunk's verified content."""
        raise NotImplementedError

    def check_trust(self, keys: Keys) -> dict[str, Any] | None:
        """Untrusted unless one of `keys` signed this version; returns what the resolution record keeps."""
        raise NotImplementedError


def find(
    ref: str = "latest",
    *,
    store: str | os.PathLike[str] | None = None,
    remote: str | None = None,
    cache: Cache,
    offline: bool | str | None = None,
) -> Origin:
    """Resolve `ref` on the local store, on a remote (no model bytes: one listing, one metadata record),
    or offline from the cache's last resolution, as `model_path` documents."""
    if not is_best(ref):  # best:METRIC is checked where it is resolved
        check_ref_syntax(ref)
    mode = offline_mode(offline)
    if remote is None:
        local = Store.open(Path(store if store is not None else default_store()), api_option="store=")
        return _from_store(local, ref, cache)
    url, endpoint = remote_config.locate(remote, store if store is not None else default_store())
    source = f"{url} (endpoint {endpoint})" if endpoint else url
    if mode == "on":
        return _from_resolution(cache, source, ref, None)
    try:
        return _from_remote(open_remote(url, endpoint_url=endpoint), source, ref, cache)
    except (RemoteError, StoreNotFound) as exc:
        if mode != "auto":
            raise
        return _from_resolution(cache, source, ref, exc)


@dataclass
class _StoreOrigin(Origin):
    store: Store | None = None
    cache: Cache | None = None

    def _load(self) -> Manifest:
        assert self.store is not None and self.cache is not None
        data = self.store.objects.read(self.key)
        manifest = Manifest.decode(data)
        check_model_hash(self.meta, manifest, self.version)
        self.cache.objects.put(data, self.key)  # the cache keeps every entry's manifest: `cache verify` needs it
        self.cache.objects.sync()
        return manifest

    def write(self, manifest: Manifest, dest: Path, only: frozenset[str] | None) -> None:
        assert self.store is not None
        restore(manifest, self.store.objects, dest, only=only)

    def read(self, oid: str, size: int | None = None) -> bytes:
        assert self.store is not None
        return self.store.objects.read(oid, size)

    def check_trust(self, keys: Keys) -> dict[str, Any] | None:
        assert self.store is not None
        check_stored(self.store, self.version, keys)
        return None  # a store is always asked again: no offline answer to prepare


def _from_store(store: Store, ref: str, cache: Cache) -> Origin:
    vid = resolve(store, ref)
    meta = _verdict.local(store, vid, store.versions.read(vid), strict=True)  # the verdict of the bytes
    key = manifest_id(meta, vid)
    model_hash = str(meta.get("model_hash"))
    source = f"store {store.root.resolve()}"
    return _StoreOrigin(vid, key, model_hash, source, False, store=store, meta=meta, cache=cache)


@dataclass
class _RemoteOrigin(Origin):
    fetch: Fetcher | None = None
    cache: Cache | None = None
    raw_meta: bytes = b""  # metadata.json's bytes, verified against metadata.b3 (a signature covers them)

    def _load(self) -> Manifest:
        assert self.fetch is not None
        manifest = Manifest.decode(self.fetch.content(self.key, None))  # the cache's copy when it has one
        check_model_hash(self.meta, manifest, self.version)
        return manifest

    def write(self, manifest: Manifest, dest: Path, only: frozenset[str] | None) -> None:
        assert self.fetch is not None and self.cache is not None
        fetch, objects = self.fetch, self.cache.objects
        wanted = [f for f in manifest.files if only is None or f.path in only]
        chunks = sorted({c.oid: c.size for f in wanted for c in f.chunks}.items())
        run_all(chunks, lambda item: _ensure(objects, fetch, *item), remote_workers())
        objects.sync()
        restore(manifest, objects, dest, only=only)

    def read(self, oid: str, size: int | None = None) -> bytes:
        assert self.fetch is not None
        return self.fetch.content(oid, size)  # verified; kept in the cache's objects for the next read

    def check_trust(self, keys: Keys) -> dict[str, Any] | None:
        assert self.fetch is not None and self.cache is not None
        manifest = self.manifest()
        return signatures.check_remote(
            self.fetch.remote, self.version, manifest, self.raw_meta, keys, self.cache.objects
        )


def _from_remote(remote: Remote, source: str, ref: str, cache: Cache) -> Origin:
    config = remote.config()
    if config is None:
        raise StoreNotFound(f"{remote.url}: no mstore store there (nothing was pushed yet)")
    vid = resolve_in(ref, remote.version_ids(), partial(tag_of, remote))
    raw = remote.raw_version(vid)
    meta = load_metadata(raw, f"version_{vid}")
    key = manifest_id(meta, vid)
    model_hash = str(meta.get("model_hash"))
    stats = TransferStats()
    fetch = Fetcher(remote, config, cache.objects, stats, None)
    return _RemoteOrigin(
        vid, key, model_hash, source, False, stats, remote_workers(), fetch=fetch, meta=meta, cache=cache, raw_meta=raw
    )


def _ensure(objects: ObjectStore, fetch: Fetcher, oid: str, size: int) -> None:
    """Have a verified copy of the object in the cache: a damaged cached copy is dropped and fetched again."""
    if objects.claimed_size(oid) is not None and objects.verify(oid, size) is not None:
        objects.delete(oid)
    fetch.ensure(oid, size)


@dataclass
class _CachedOrigin(Origin):
    """Offline: the entry is (re)built from the cache's own objects; none missing can be fetched."""

    cache: Cache | None = None
    ref: str = ""
    trust: Any = None  # what the last trusted resolution kept: ids of the metadata and bundles in the cache

    def _gone(self, exc: IntegrityError) -> NotCached:
        return NotCached(f"{self.ref!r} from {self.source} is no longer in the cache ({exc}); run it once online")

    def _load(self) -> Manifest:
        assert self.cache is not None
        try:
            return Manifest.decode(self.cache.objects.read(self.key))
        except IntegrityError as exc:
            raise self._gone(exc) from None

    def write(self, manifest: Manifest, dest: Path, only: frozenset[str] | None) -> None:
        assert self.cache is not None
        try:
            restore(manifest, self.cache.objects, dest, only=only)
        except IntegrityError as exc:
            raise self._gone(exc) from None

    def read(self, oid: str, size: int | None = None) -> bytes:
        assert self.cache is not None
        try:
            return self.cache.objects.read(oid, size)
        except IntegrityError as exc:
            raise self._gone(exc) from None

    def check_trust(self, keys: Keys) -> dict[str, Any] | None:
        assert self.cache is not None
        same = {"key": self.key, "model_hash": self.model_hash}  # the kept metadata must be of this answer
        return signatures.check_cached(self.version, self.manifest(), self.trust, keys, self.cache.objects, **same)


def _from_resolution(cache: Cache, source: str, ref: str, error: Exception | None) -> Origin:
    """Answer from the last resolution of `ref` on `source`, with no network call."""
    found = cache.resolution(source, ref)
    if found is None:
        why = f"{source} cannot be reached ({error}) and " if error is not None else "offline, and "
        raise NotCached(f"{why}{ref!r} from {source} is not in the cache (run it once online first)")
    if error is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(found["resolved_at"]))
        warnings.warn(
            f"{source} cannot be reached ({error}); using {ref} = {found['version']} as resolved at {when}",
            MStoreWarning,
            stacklevel=2,
        )
    meta = {"mstore": found["pickle"]} if isinstance(found.get("pickle"), dict) else _UNKNOWN_SCAN
    origin = _CachedOrigin(found["version"], found["manifest"], found["model_hash"], source, True, cache=cache, ref=ref)
    origin.meta = meta
    origin.trust = found.get("trust")
    return origin


# An offline resolution recorded before the pickle scan was kept with it: its verdict is not known.
_UNKNOWN_SCAN: dict[str, Any] = {
    "mstore": {"pickle_globals": {}, "pickle_incomplete": {"?": "no scan was kept offline; run it once online"}}
}
_PICKLE_KEYS = ("pickle_globals", "unsafe_globals", "pickle_incomplete", "pickle_verdict", "pickle_scope")


def pickle_record(meta: dict[str, Any]) -> dict[str, Any]:
    """The part of a version's metadata an offline answer needs to take the same load decision."""
    block = meta.get("mstore")
    return {k: block[k] for k in _PICKLE_KEYS if k in block} if isinstance(block, dict) else {}


__all__ = ["Located", "Origin", "find", "locate", "model_path", "offline_mode"]
