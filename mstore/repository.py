"""Repository: the operations a user asks for (save, checkout, tag, rm, compare, fsck, gc) on one store.

Every write follows one order: objects (fsynced) -> version directory (one rename) -> refs. Removal
runs the other way: refs first, then the version, and objects only through gc.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .content.ingest import IngestStats, ingest, inside, scan
from .content.parents import parent_pieces
from .content.restore import restore
from .content.statcache import StatCache
from .diff import compare as _compare
from .diff import lineage as _lineage
from .diff.ranking import check_metric_names, did_you_mean, sort_by_metric
from .errors import (
    BadInput,
    DestinationExists,
    RemoteExists,
    RemoteNotFound,
    SourceChanged,
    StoreNotFound,
    TagExists,
    TagNotFound,
    UnsafeModel,
    VersionNotFound,
)
from .formats import pickles as _pickles
from .ops import archive as _archive
from .ops import fsck as _fsck
from .ops import gc as _gc
from .ops.retention import PrunePlan, plan_prune
from .ops.revparse import resolve, resolve_in
from .ops.usage import disk_usage, shared_bytes
from .store import metadata as _metadata
from .store.layout import Store
from .store.manifest import Manifest
from .store.objects import hash_bytes
from .store.refs import check_tag_name
from .store.versions import is_future, newest, next_version_id, parse_id_time, saved_name

if TYPE_CHECKING:  # remote support is imported when a remote is used: local commands start faster
    from .remote import check as _remote_check
    from .remote.remotes import Remote
    from .remote.transfer import TransferProgress, TransferStats

Progress = Callable[[int], None]


@dataclass(frozen=True)
class _SavePlan:
    """What a save checked before writing anything."""

    user: dict[str, Any]  # the caller's metadata, normalized
    source: Path
    exclude: Path | None  # a store inside the source, left out
    pickles: dict[str, tuple[Path, _pickles.Scan]]
    safety: dict[str, Any]  # pickle globals, unsafe ones
    lineage: dict[str, Any]


@dataclass(frozen=True)
class _Written:
    """The objects a save wrote: its manifest and what they cost."""

    manifest: Manifest
    manifest_oid: str
    new_bytes: int  # stored bytes of new objects, manifest included
    stats: IngestStats


class Repository:
    """A model store on disk. `Repository(path)` opens one; `Repository.init(path)` creates one."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    def open(cls, root: str | os.PathLike[str], *, strict: bool = True) -> Repository:
        """Open a store; a linked layout or a damaged mstore.json is refused unless `strict` is False (fsck)."""
        return cls(Store.open(Path(root), strict=strict))

    @classmethod
    def init(cls, root: str | os.PathLike[str]) -> Repository:
        return cls(Store.init(Path(root)))

    @property
    def root(self) -> Path:
        return self.store.root

    # -- writing ---------------------------------------------------------------------------

    def save(
        self,
        source: str | os.PathLike[str],
        metadata: Mapping[str, Any] | None = None,
        *,
        message: str | None = None,
        parent: str | None = None,
        tag: str | None = None,
        progress: Progress | None = None,
        refuse_unsafe: bool = False,
    ) -> dict[str, Any]:
        """Store a model file or directory as a new version and return its metadata.

        Tensors are delta-encoded against `parent` (a version reference; default: the newest version)
        when that makes them clearly smaller. `tag` names the new version in the same operation: a tag
        that is taken is refused before anything is published.

        Every pickle / joblib file is read statically (never loaded) for the globals it would import:
        `mstore.pickle_globals` (per file) and `mstore.unsafe_globals` (outside the known-safe set) in
        the metadata. With `refuse_unsafe`, a model with unsafe globals, or a pickle that could not be
        read to its end, raises UnsafeModel before anything is written.
        """
        plan = self._plan_save(source, metadata, message=message, tag=tag, refuse_unsafe=refuse_unsafe)
        store = self.store
        with store.gc_lock():
            ids = store.versions.ids()
            parent_id = self.resolve(parent) if parent is not None else (ids[-1] if ids else None)
            cache = StatCache(store.root)
            written = self._write_objects(plan, parent_id, progress, cache)
            with store.write_lock():
                meta = self._publish(plan, written, parent_id, tag)
            cache.flush()  # only ever saves a re-read of unchanged files next time
        return meta

    def _plan_save(
        self,
        source: str | os.PathLike[str],
        metadata: Mapping[str, Any] | None,
        *,
        message: str | None,
        tag: str | None,
        refuse_unsafe: bool,
    ) -> _SavePlan:
        """Everything a save can refuse, checked before any object is written: a typo must not cost a
        whole save, and bad input must change nothing."""
        user = _metadata.normalize(metadata)
        if tag is not None:
            self._check_tag_free(tag)
        if message is not None:
            user["message"] = message
        source_path = Path(source)
        if inside(source_path, self.store.root):
            raise BadInput(
                f"cannot save {source_path}: it lies inside the store {self.store.root} it would be saved to"
            )
        exclude = self.store_inside(source_path)
        pickles = _pickles.scan_source(scan(source_path, exclude)[1])
        safety = pickle_safety({rel: sc for rel, (_, sc) in pickles.items()})
        if refuse_unsafe:
            refuse_if_unsafe(safety)
        lineage = _lineage.collect(user)  # before any lock: hashing a large training file takes a while
        return _SavePlan(user, source_path, exclude, pickles, safety, lineage)

    def _write_objects(
        self, plan: _SavePlan, parent_id: str | None, progress: Progress | None, cache: StatCache
    ) -> _Written:
        """The model's objects and manifest, durable before anything refers to them (under the gc lock)."""
        store = self.store
        bases = parent_pieces(store, parent_id) if store.compression and store.compression.delta else {}
        manifest, stats = ingest(
            plan.source,
            store.objects,
            store.chunker,
            progress,
            compression=store.compression,
            parent=bases,
            exclude=plan.exclude,
            cache=cache,
        )
        for full, sc in plan.pickles.values():
            if not _pickles.unchanged(full, sc):
                raise SourceChanged(f"{full} changed while it was being saved; nothing was published")
        manifest_bytes = manifest.encode()
        manifest_oid = hash_bytes(manifest_bytes)
        manifest_is_new = store.objects.put(manifest_bytes, manifest_oid)
        store.objects.sync()  # every object is durable before anything refers to it
        manifest_cost = len(manifest_bytes) if manifest_is_new else 0
        return _Written(manifest, manifest_oid, stats.stored_new + manifest_cost, stats)

    def _publish(self, plan: _SavePlan, written: _Written, parent_id: str | None, tag: str | None) -> dict[str, Any]:
        """Name the version and publish it by one rename, then move the refs (under the write lock)."""
        store = self.store
        if tag is not None:
            self._check_tag_free(tag)  # again under the lock: another process may have taken it
        now = datetime.now(timezone.utc)
        current = [i for i in store.versions.ids() if not is_future(i, now)]  # a forged future ID
        version_id = next_version_id(now, current[-1] if current else None)  # never blocks a save
        manifest, stats = written.manifest, written.stats
        meta = {
            **plan.user,
            "timestamp": version_id,
            "model_hash": manifest.model_hash,
            "original_path": os.path.abspath(plan.source),
            "mstore": {
                "format": store.format,
                "manifest": written.manifest_oid,
                "kind": manifest.kind,
                "size": manifest.size,
                "files": len(manifest.files),
                "parent": parent_id,
                "new_bytes": written.new_bytes,
                "new_content_bytes": stats.bytes_new,
                "reused_bytes": stats.bytes_reused,
                "delta_objects": stats.deltas,
                "lineage": plan.lineage,
                **plan.safety,
            },
        }
        staged = store.versions.stage(meta)
        store.versions.publish(staged, version_id)  # the commit point
        with suppress(OSError):  # the version is saved; `latest` is derived from IDs, and the
            store.refs.set_latest(version_id)  # next write repairs the ref (fsck: stale-ref)
        if tag is not None:
            store.refs.set_tag(tag, version_id)
        return meta

    def _check_tag_free(self, name: str) -> None:
        check_tag_name(name)
        current = self.store.refs.tag(name)
        if current is not None:
            raise TagExists(
                f"tag {name!r} already names version {current}; nothing was saved "
                "(choose another name, or move it afterwards with {move})",
                move=(f"`mstore tag --force {name} REF`", f"tag({name!r}, ref, force=True)"),
            )

    def store_inside(self, source: str | os.PathLike[str]) -> Path | None:
        """This store's directory when it lies inside the model directory `source` (a save leaves it out)."""
        source_path = Path(source)
        if source_path.is_dir() and not inside(source_path, self.root) and inside(self.root, source_path):
            return self.root
        return None

    def tag(self, name: str, ref: str = "latest", *, force: bool = False) -> str:
        """Point tag `name` at a version; moving an existing tag needs `force`."""
        check_tag_name(name)
        with self.store.write_lock():
            version_id = self.resolve(ref)
            current = self.store.refs.tag(name)
            if current is not None and current != version_id and not force:
                raise TagExists(
                    f"tag {name!r} already names version {current} (use {{force}} to move it)",
                    force=("--force", "force=True"),
                )
            self.store.refs.set_tag(name, version_id)
        return version_id

    def untag(self, name: str) -> str:
        with self.store.write_lock():
            current = self.store.refs.tag(name)
            if current is None:
                raise TagNotFound(f"no tag named {name!r}")
            self.store.refs.delete_tag(name)
        return current

    def remove(self, ref: str, *, force: bool = False) -> str:
        """Delete a version (its objects are freed by gc). A tagged version needs `force`, which drops its tags."""
        with self.store.write_lock():
            version_id = self.resolve(ref)
            self._remove_locked(version_id, force=force)
        return version_id

    def _remove_locked(self, version_id: str, *, force: bool) -> None:
        self.store.remove_version(version_id, force=force)

    def prune(
        self,
        *,
        keep_last: int | None = None,
        keep_within: float | None = None,
        dry_run: bool = False,
        grace_seconds: float = _gc.DEFAULT_GRACE_SECONDS,
    ) -> tuple[PrunePlan, _gc.GcPlan | None]:
        """Remove versions outside the retention rules (tagged ones are always kept), then gc."""
        now = datetime.now(timezone.utc)
        if dry_run:
            return plan_prune(self.ids(), self.tags(), now, keep_last=keep_last, keep_within=keep_within), None
        with self.store.write_lock():
            plan = plan_prune(self.ids(), self.tags(), now, keep_last=keep_last, keep_within=keep_within)
            for version_id in plan.remove:
                self._remove_locked(version_id, force=False)
        return plan, self.gc(grace_seconds=grace_seconds)

    # -- remotes ---------------------------------------------------------------------------------

    def remotes(self) -> dict[str, str]:
        return {name: str(info.get("url")) for name, info in self._remote_configs().items()}

    def remote_settings(self) -> dict[str, dict[str, Any]]:
        """name -> {"url": …, "endpoint_url": … (when one was given)}."""
        return {name: dict(info) for name, info in self._remote_configs().items()}

    def _remote_configs(self) -> dict[str, dict[str, Any]]:
        remotes = self.store.config.get("remotes") or {}
        return {name: info for name, info in sorted(remotes.items()) if isinstance(info, dict)}

    def remote_add(self, name: str, url: str, *, endpoint_url: str | None = None) -> None:
        check_tag_name(name)
        url = _normalise_remote_url(url)
        if endpoint_url and not url.startswith("s3://"):
            raise BadInput("{endpoint} only applies to s3:// remotes", endpoint=("--endpoint-url", "endpoint_url"))
        with self.store.write_lock():
            remotes = self.store.config.setdefault("remotes", {})
            if name in remotes:
                raise RemoteExists(f"remote {name!r} already exists")
            remotes[name] = {"url": url, **({"endpoint_url": endpoint_url} if endpoint_url else {})}
            self.store.save_config()

    def remote_remove(self, name: str) -> None:
        with self.store.write_lock():
            remotes = self.store.config.get("remotes") or {}
            if name not in remotes:
                raise RemoteNotFound(f"no remote named {name!r}")
            del remotes[name]
            self.store.save_config()

    def remote(self, name: str) -> Remote:
        from .remote.remotes import open_remote

        info = self._remote_configs().get(name)
        if info is None:
            raise RemoteNotFound(
                f"no remote named {name!r} (add one with {{add}})",
                add=(f"`mstore remote add {name} URL`", f"remote_add({name!r}, URL)"),
            )
        return open_remote(str(info["url"]), endpoint_url=info.get("endpoint_url"))

    def default_remote(self) -> str:
        """The remote push and pull use when none is named: the only one, else `origin` (as git does)."""
        names = list(self._remote_configs())
        if len(names) == 1:
            return names[0]
        if "origin" in names:
            return "origin"
        if not names:
            add = ("`mstore remote add NAME URL`", "remote_add(NAME, URL)")
            raise BadInput("no remote configured (add one with {add})", add=add)
        raise BadInput(f"{len(names)} remotes are configured ({', '.join(names)}): name the one to use")

    def remote_and_refs(self, args: list[str]) -> tuple[str, list[str]]:
        """Split `push`/`pull` arguments `[NAME] [REF]...`: a first word that names a remote is the remote
        (a remote wins over a tag of the same name); otherwise every word is a version and the remote is
        `default_remote()`, so with one remote `mstore push prod` needs no name."""
        if args and args[0] in self._remote_configs():
            return args[0], args[1:]
        return self.default_remote(), args

    def push(
        self, remote: str | None = None, refs: list[str] | None = None, *, progress: TransferProgress | None = None
    ) -> TransferStats:
        """Send versions (all by default) and their tags to a remote (default: `default_remote()`);
        only what it lacks travels."""
        from .remote import transfer as _transfer

        ids = [self.resolve(r) for r in refs] if refs else self.ids()
        target = self.remote(remote or self.default_remote())
        return _transfer.push(self.store, target, sorted(set(ids)), progress=progress)

    def pull(
        self, remote: str | None = None, refs: list[str] | None = None, *, progress: TransferProgress | None = None
    ) -> TransferStats:
        """Fetch versions (all by default) and their tags from a remote (default: `default_remote()`),
        verifying every object."""
        from .remote import transfer as _transfer

        other = self.remote(remote or self.default_remote())
        ids = _resolve_on(other, refs) if refs else other.version_ids()
        return _transfer.pull(other, self.store, sorted(set(ids)), progress=progress)

    def fetch(self, remote: str, ref: str) -> str:
        """Pull the one version `ref` names on the remote (if it is not here yet); returns its ID."""
        from .remote import transfer as _transfer

        other = self.remote(remote)
        vid = _resolve_on(other, [ref])[0]
        if not self.store.versions.exists(vid):
            _transfer.pull(other, self.store, [vid])
        return vid

    @classmethod
    def clone(
        cls,
        url: str,
        dest: str | os.PathLike[str],
        *,
        endpoint_url: str | None = None,
        progress: TransferProgress | None = None,
    ) -> tuple[Repository, TransferStats]:
        """A new store at `dest` with every version of `url`, which becomes its remote `origin`."""
        from .remote.remotes import open_remote

        url = _normalise_remote_url(url)
        if Path(dest).exists() and (not Path(dest).is_dir() or any(Path(dest).iterdir())):
            raise DestinationExists(f"{dest} exists and is not empty")
        source = open_remote(url, endpoint_url=endpoint_url)
        config = source.config()
        if config is None:
            raise StoreNotFound(f"{url}: no mstore store there (nothing was pushed yet)")
        repo = cls(Store.init(Path(dest), like=config))
        repo.remote_add("origin", url, endpoint_url=endpoint_url)
        return repo, repo.pull("origin", progress=progress)

    def fsck_remote(
        self, remote: str, *, verify_data: bool = False, progress: Progress | None = None
    ) -> _remote_check.RemoteReport:
        from .remote import check as _remote_check

        return _remote_check.check(self.remote(remote), verify_data=verify_data, progress=progress)

    def repair_remote(self, remote: str, report: _remote_check.RemoteReport) -> tuple[list[str], list[str]]:
        """Upload this store's good copies of the objects `report` found missing or corrupt on the remote."""
        from .remote import check as _remote_check

        return _remote_check.repair(self.remote(remote), self.store, report)

    def gc_remote(
        self, remote: str, *, dry_run: bool = False, grace_seconds: float = _gc.DEFAULT_GRACE_SECONDS
    ) -> _remote_check.RemoteGcPlan:
        from .remote import check as _remote_check

        return _remote_check.collect(self.remote(remote), grace_seconds=grace_seconds, dry_run=dry_run)

    def remove_remote(self, remote: str, ref: str, *, force: bool = False) -> tuple[str, list[str]]:
        """Delete a version from a remote (a tagged one needs `force`, which drops its tags there); returns
        (its ID, the tags removed). `gc_remote` frees the space only it used."""
        from .remote import prune as _remote_prune

        return _remote_prune.remove(self.remote(remote), ref, force=force)

    def prune_remote(
        self, remote: str, *, keep_last: int | None = None, keep_within: float | None = None, dry_run: bool = False
    ) -> PrunePlan:
        """Remove a remote's versions outside the retention rules (its tags, its `latest` and its newest
        version are always kept); `gc_remote` frees their space."""
        from .remote import prune as _remote_prune

        now = datetime.now(timezone.utc)
        return _remote_prune.prune(
            self.remote(remote), now, keep_last=keep_last, keep_within=keep_within, dry_run=dry_run
        )

    def gc(self, *, dry_run: bool = False, grace_seconds: float = _gc.DEFAULT_GRACE_SECONDS) -> _gc.GcPlan:
        return _gc.collect(self.store, grace_seconds=grace_seconds, dry_run=dry_run)

    # -- reading ---------------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        return resolve(self.store, ref)

    def get(self, ref: str) -> dict[str, Any]:
        return self.store.versions.read(self.resolve(ref))

    def ids(self) -> list[str]:
        """Version IDs, oldest first."""
        return self.store.versions.ids()

    def versions(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Metadata of the newest `limit` versions (all by default), newest first.

        A version removed while this runs is skipped, so readers never fail because of a concurrent rm.
        """
        out: list[dict[str, Any]] = []
        for version_id in reversed(self.ids()):
            if limit is not None and len(out) >= limit:
                break
            try:
                out.append(self.store.versions.read(version_id))
            except VersionNotFound:
                continue
        return out

    def log(
        self,
        *,
        limit: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        tags: list[str] | None = None,
        sort: str | None = None,
        descending: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Versions newest first, filtered by time (the ID is the save time) and tags, each with its
        metadata plus `tags` (names pointing at it). Reads only the versions it returns.

        With `sort` (a metric name), the best come first (see `ranking`); `descending` overrides the
        direction the metric's name implies. Ranking reads every version that passes the filters.
        """
        by_version: dict[str, list[str]] = {}
        all_tags = self.tags()
        for name, vid in all_tags.items():
            by_version.setdefault(vid, []).append(name)
        wanted = set(tags or [])
        for name in sorted(wanted - set(all_tags)):  # a typo must not look like "no versions match"
            raise TagNotFound(f"no tag named {name!r}{did_you_mean(name, all_tags)}")
        out: list[dict[str, Any]] = []
        for version_id in reversed(self.ids()):
            if sort is None and limit is not None and len(out) >= limit:
                break
            when = parse_id_time(version_id)
            if (since and when < since) or (until and when > until):
                continue
            if wanted and not wanted & set(by_version.get(version_id, [])):
                continue
            try:
                meta = self.store.versions.read(version_id)
            except VersionNotFound:  # removed while we listed
                continue
            out.append({**meta, "tags": sorted(by_version.get(version_id, []))})
        if sort is not None and out:
            self.check_metrics([sort], out)  # a typo first: its "did you mean" helps more than a direction
            out = sort_by_metric(out, sort, descending)[:limit]
        return out

    def check_metrics(self, names: list[str], shown: list[dict[str, Any]]) -> None:
        """Raise BadInput (with a "did you mean") for a metric name that no version has."""
        check_metric_names(names, shown, self.versions)

    def show(self, ref: str) -> dict[str, Any]:
        """A version's metadata, its files, and how much of its content it shares with its parent."""
        version_id = self.resolve(ref)
        meta = self.store.versions.read(version_id)
        manifest = self.store.version_manifest(version_id, meta)
        ids = self.ids()
        recorded = (meta.get("mstore") or {}).get("parent")
        parent = recorded if recorded in ids else (ids[ids.index(version_id) - 1] if ids.index(version_id) else None)
        parent_manifest = self.store.version_manifest(parent) if parent else None
        return {
            "metadata": meta,
            "files": [{"path": e.path, "size": e.size, "executable": e.executable} for e in manifest.files],
            "size": manifest.size,
            "parent": parent,
            "shared_with_parent_bytes": shared_bytes(manifest, parent_manifest),
        }

    def du(self, largest: int = 10) -> dict[str, Any]:
        """Logical size of all versions, bytes on disk, savings, and what each version alone holds."""
        return disk_usage(self.store, largest)

    def latest(self) -> dict[str, Any] | None:
        vid = newest(self.ids())
        return self.store.versions.read(vid) if vid else None

    def tags(self) -> dict[str, str]:
        return self.store.refs.tags()

    def manifest(self, ref: str) -> Manifest:
        return self.store.version_manifest(self.resolve(ref))

    def checkout(
        self, ref: str, dest: str | os.PathLike[str], *, force: bool = False, progress: Progress | None = None
    ) -> Path:
        """Write the version's model to `dest`, verified bit-exact; returns the path written."""
        return restore(self.manifest(ref), self.store.objects, Path(dest), force=force, progress=progress)

    # -- archives ------------------------------------------------------------------------------------

    def export(self, refs: list[str], dest: str | os.PathLike[str], *, force: bool = False) -> dict[str, Any]:
        """Write the versions `refs` name, their tags and every object they need into one `.mstore` file."""
        ids = [self.resolve(ref) for ref in refs]
        if not ids:
            raise BadInput("name at least one version to export")
        return _archive.export(self.store, ids, Path(dest), force=force)

    def export_plain(self, refs: list[str], dest: str | os.PathLike[str]) -> list[Path]:
        """Write `DEST/version_<ID>/<model file or folder>` and `metadata.json` for each version (the seed's
        layout, readable without mstore); every file is verified bit-exact. DEST must not exist or be empty."""
        ids = sorted({self.resolve(ref) for ref in refs})
        if not ids:
            raise BadInput("name at least one version to export")
        root = Path(dest)
        if root.is_symlink() or (root.exists() and (not root.is_dir() or any(root.iterdir()))):
            raise DestinationExists(f"{root} exists and is not an empty directory")
        written = []
        for vid in ids:
            raw = self.store.versions.raw_metadata(vid)
            meta = _metadata.loads(raw, f"version_{vid}")
            manifest = self.store.version_manifest(vid, meta)
            directory = root / f"version_{vid}"
            directory.mkdir(parents=True)
            name = manifest.entries[0].path if manifest.kind == "file" else saved_name(meta, vid)
            written.append(restore(manifest, self.store.objects, directory / name))
            (directory / "metadata.json").write_bytes(raw)
        return written

    def import_archive(self, path: str | os.PathLike[str]) -> _archive.ImportStats:
        """Import a `.mstore` archive: everything is verified before anything is stored; versions that
        exist here are skipped; a damaged archive imports nothing (BadArchive names the bad part)."""
        return _import(self.store, self.root, path)

    @classmethod
    def import_into(cls, root: str | os.PathLike[str], path: str | os.PathLike[str]) -> _archive.ImportStats:
        """`import_archive` into the store at `root`, which is created only once the archive has been
        verified: a damaged archive leaves no empty store behind."""
        try:
            store = Store.open(Path(root))
        except StoreNotFound:
            store = None
        return _import(store, Path(root), path)

    def compare(self, ref1: str, ref2: str) -> dict[str, Any]:
        return _compare.compare(self.store, self.resolve(ref1), self.resolve(ref2))

    def fsck(self, *, verify_data: bool = True, progress: Progress | None = None) -> _fsck.Report:
        return _fsck.fsck(self.store, verify_data=verify_data, progress=progress)

    def quarantine(self, report: _fsck.Report) -> list[str]:
        """Move the corrupt objects of an fsck report aside; returns their ids."""
        with self.store.write_lock():
            return _fsck.quarantine(self.store, report)


def _import(store: Store | None, root: Path, path: str | os.PathLike[str]) -> _archive.ImportStats:
    """Verify the whole archive against `store` (None: not created yet), then create the store if need be
    and apply it."""
    try:
        plan = _archive.plan_import(store, Path(path))
        return _archive.apply_import(store if store is not None else Store.init(root), plan)
    except _archive.BadArchive as exc:
        raise _archive.BadArchive(f"{exc}; nothing was imported") from None


def _resolve_on(other: Remote, refs: list[str]) -> list[str]:
    """The version IDs `refs` name on a remote (its tags, its `latest`), from one listing."""
    from .remote.remotes import tag_of

    ids = other.version_ids()
    return [resolve_in(ref, ids, partial(tag_of, other)) for ref in refs]


def _normalise_remote_url(url: str) -> str:
    """Validate a remote URL; a directory path is made absolute so the remote works from anywhere."""
    from .remote.bucket import parse_s3_url
    from .remote.remotes import remote_path

    if url.startswith("s3://"):
        parse_s3_url(url)
        return url
    return str(remote_path(url).resolve())


def pickle_safety(scans: Mapping[str, _pickles.Scan]) -> dict[str, Any]:
    """The metadata a save records about its pickles (nothing at all for a model without pickles)."""
    if not scans:
        return {}
    out: dict[str, Any] = {
        "pickle_globals": {rel: s.globals for rel, s in sorted(scans.items())},
        "unsafe_globals": sorted({g for s in scans.values() for g in s.unsafe}),
    }
    incomplete = {rel: s.error for rel, s in sorted(scans.items()) if not s.complete}
    if incomplete:
        out["pickle_incomplete"] = incomplete
    return out


def refuse_if_unsafe(safety: Mapping[str, Any]) -> None:
    unsafe = safety.get("unsafe_globals") or []
    incomplete = safety.get("pickle_incomplete") or {}
    if unsafe:
        shown = ", ".join(unsafe[:5]) + (f" and {len(unsafe) - 5} more" if len(unsafe) > 5 else "")
        raise UnsafeModel(
            f"refused: loading this model would import {shown} (outside the known-safe set); nothing was saved"
        )
    if incomplete:
        rel, why = next(iter(incomplete.items()))
        raise UnsafeModel(f"refused: pickle {rel!r} could not be read to its end ({why}); nothing was saved")
