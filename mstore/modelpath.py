"""`model_path(ref)`: where a version's model lies in the cache, from a local store or straight from a remote.

Online, the ref is resolved on its source (the local store, or the remote: one listing, no model bytes),
then the cache answers with a stamp check, or materialises the model once (cache.py). From a remote,
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
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from .cache.entries import Cache
from .content.restore import restore
from .errors import BadInput, IntegrityError, MStoreWarning, NotCached, StoreNotFound
from .ops.revparse import resolve, resolve_in
from .remote import config as remote_config
from .remote.bucket import RemoteError
from .remote.remotes import Remote, open_remote, tag_of
from .remote.transfer import Fetcher, TransferStats
from .store.layout import Store, check_model_hash, manifest_id
from .store.manifest import Manifest
from .store.metadata import loads as load_metadata
from .store.objects import ObjectStore
from .store.refs import check_ref_syntax
from .workers import remote_workers, run_all

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
) -> Path:
    """The path of `ref`'s model (the file, or the folder of a directory model) inside the cache.

    Materialised once, verified bit-exact while written, then read-only; later calls check a small
    stamp instead of reading the model. `store` defaults to $MSTORE_DIR, else data/models; `remote` is
    a remote name of that store or a URL (s3://bucket/prefix, a directory), used without any local store.
    """
    return locate(ref, store=store, remote=remote, cache_dir=cache_dir, offline=offline).path


def locate(
    ref: str = "latest",
    *,
    store: str | os.PathLike[str] | None = None,
    remote: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | str | None = None,
) -> Located:
    """`model_path` with everything `mstore path --json` reports."""
    check_ref_syntax(ref)
    mode = offline_mode(offline)
    cache = Cache.open(cache_dir)
    if remote is None:
        return _from_store(Store.open(Path(store if store is not None else default_store())), ref, cache)
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


def _from_store(store: Store, ref: str, cache: Cache) -> Located:
    vid = resolve(store, ref)
    meta = store.versions.read(vid)
    key = manifest_id(meta, vid)
    model_hash = str(meta.get("model_hash"))
    source = f"store {store.root.resolve()}"

    def write(tmp: Path) -> Manifest:
        data = store.objects.read(key)
        manifest = Manifest.decode(data)
        check_model_hash(meta, manifest, vid)
        cache.objects.put(data, key)  # the cache keeps every entry's manifest: `cache verify` needs it
        cache.objects.sync()
        restore(manifest, store.objects, tmp)
        return manifest

    path, wrote = cache.materialise(key, model_hash, write)
    cache.record(source, ref, vid, key, model_hash)
    return Located(path, vid, model_hash, key, source, ref, cached=not wrote, offline=False)


def _from_remote(remote: Remote, source: str, ref: str, cache: Cache) -> Located:
    config = remote.config()
    if config is None:
        raise StoreNotFound(f"{remote.url}: no mstore store there (nothing was pushed yet)")
    vid = resolve_in(ref, remote.version_ids(), partial(tag_of, remote))
    meta = load_metadata(remote.raw_version(vid), f"version_{vid}")
    key = manifest_id(meta, vid)
    model_hash = str(meta.get("model_hash"))
    stats = TransferStats()

    def write(tmp: Path) -> Manifest:
        fetch = Fetcher(remote, config, cache.objects, stats, None)
        manifest = Manifest.decode(fetch.content(key, None))
        check_model_hash(meta, manifest, vid)
        chunks = sorted({c.oid: c.size for f in manifest.files for c in f.chunks}.items())
        run_all(chunks, lambda item: _ensure(cache.objects, fetch, *item), remote_workers())
        cache.objects.sync()
        restore(manifest, cache.objects, tmp)
        return manifest

    path, wrote = cache.materialise(key, model_hash, write)
    cache.record(source, ref, vid, key, model_hash)
    located = Located(path, vid, model_hash, key, source, ref, cached=not wrote, offline=False)
    located.bytes_fetched, located.objects_fetched = stats.bytes_sent, stats.objects_sent
    return located


def _ensure(objects: ObjectStore, fetch: Fetcher, oid: str, size: int) -> None:
    """Have a verified copy of the object in the cache: a damaged cached copy is dropped and fetched again."""
    if objects.claimed_size(oid) is not None and objects.verify(oid, size) is not None:
        objects.delete(oid)
    fetch.ensure(oid, size)


def _from_resolution(cache: Cache, source: str, ref: str, error: Exception | None) -> Located:
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
    key, model_hash = found["manifest"], found["model_hash"]

    def write(tmp: Path) -> Manifest:  # the entry was changed or removed: rebuild it from the cache's objects
        try:
            manifest = Manifest.decode(cache.objects.read(key))
            restore(manifest, cache.objects, tmp)
        except IntegrityError as exc:
            raise NotCached(f"{ref!r} from {source} is no longer in the cache ({exc}); run it once online") from None
        return manifest

    path, wrote = cache.materialise(key, model_hash, write)
    return Located(path, found["version"], model_hash, key, source, ref, cached=not wrote, offline=True)


__all__ = ["Located", "locate", "model_path", "offline_mode"]
