"""Repository: every operation on one store, as the API, the CLI and the web UI call it.

Delegation only: each method resolves what the user typed (version refs, remote names) and calls the
function that does the work, in `ops/` (local operations), `content/` (checkout), `diff/` (compare) or
`remote/` (push, pull, clone and the remote checks, imported only when a remote is used, so local
commands start faster). The order every write follows lives in store/commit.py.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .content import verdict as _verdict
from .content.restore import restore
from .diff import compare as _compare
from .errors import BadInput, MStoreError
from .ops import archive as _archive
from .ops import fsck as _fsck
from .ops import gc as _gc
from .ops import history as _history
from .ops import remove as _remove
from .ops import save as _save
from .ops import tags as _tags
from .ops import trust as _trust
from .ops.retention import PrunePlan
from .ops.revparse import resolve
from .ops.usage import disk_usage
from .store import taglog
from .store.layout import Store
from .store.manifest import KIND_FILE, Manifest

if TYPE_CHECKING:  # remote support is imported when a remote is used: local commands start faster
    from .ops import signing as _signing
    from .remote import check as _remote_check
    from .remote.remotes import Remote
    from .remote.transfer import TransferProgress, TransferStats

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Loadable:
    """A version `Repository.check_loadable` let through: its manifest and metadata (with the verdict of
    its bytes), each read once. `Repository.checkout` takes it instead of a ref and checks nothing again."""

    version: str
    manifest: Manifest
    meta: dict[str, Any]


class Repository:
    """A model store on disk. `Repository.open(path)` opens one; `Repository.init(path)` creates one."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    def open(cls, root: str | os.PathLike[str], *, strict: bool = True) -> Repository:
        """Open a store; a linked layout or a damaged mstore.json is refused unless `strict` is False (fsck)."""
        return cls(Store.open(Path(root), strict=strict))

    @classmethod
    def init(cls, root: str | os.PathLike[str]) -> Repository:
        return cls(Store.init(Path(root)))

    @classmethod
    def browse(
        cls,
        remote: str,
        *,
        store: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        refresh_seconds: float | None = None,
        offline: str = "off",
    ) -> Repository:
        """A read-only view of a remote (a remote NAME of the store at `store`, default $MSTORE_DIR or
        data/models, or a URL: no local store needed) for log, show, compare and the UI. Only metadata is
        fetched (version records, manifests, refs, tag histories), into a mirror in the cache refreshed on
        each call; model bytes a compare needs (tensor headers) are fetched lazily into the cache. With
        `refresh_seconds`, each `listed_once()` (one web request) refreshes it again once that much time has
        passed (an unreachable remote then leaves it as it was). `offline` "on" reads the mirror as the last
        call left it, with no network call; "auto" does so (with a warning) only when the remote cannot be
        reached (callers parse MSTORE_OFFLINE with modelpath.offline_mode)."""
        from .cache.entries import Cache
        from .remote import config
        from .remote.mirror import browse
        from .remote.remotes import open_remote

        root = store if store is not None else os.environ.get("MSTORE_DIR") or "data/models"
        url, endpoint = config.locate(remote, root)
        cache = Cache.open(cache_dir)
        found = browse(open_remote(url, endpoint_url=endpoint), url, endpoint, cache.root, cache.objects, offline)
        if refresh_seconds is None or found.again is None:
            return cls(found.store)
        return _Refreshing(found.store, found.again, refresh_seconds)

    @property
    def root(self) -> Path:
        return self.store.root

    def listed_once(self) -> Repository:
        """This repository with its versions listed at most once: one consistent view for one request."""
        return Repository(self.store.listed_once())

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
        allow: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Store a model file or directory as a new version and return its metadata.

        Tensors are delta-encoded against `parent` (a version reference; default: the newest version)
        when that makes them clearly smaller. `tag` names the new version in the same operation: a tag
        that is taken is refused before anything is published.

        Every pickle / joblib file is read statically (never loaded) for the globals it would import:
        `mstore.pickle_globals` (per file), `mstore.unsafe_globals` (not exact pairs of the allowlist,
        `mstore/formats/allowlist.py`) and `mstore.pickle_verdict` ("safe", "unsafe", or "unknown" when a
        walk stopped early: treated as unsafe) in the metadata. `allow` adds your own classes to the
        allowlist for this save (`"mypkg.models:MyModel"` or `"mypkg.models.MyModel"`; also one a line in
        the file `MSTORE_ALLOW_FILE` names); they are recorded as `mstore.pickle_allowed`. With
        `refuse_unsafe`, a model whose verdict is not "safe" raises UnsafeModel before anything is written.
        """
        return _save.save(
            self.store,
            source,
            metadata,
            message=message,
            parent=parent,
            tag=tag,
            progress=progress,
            refuse_unsafe=refuse_unsafe,
            allow=allow,
        )

    def store_inside(self, source: str | os.PathLike[str]) -> Path | None:
        """This store's directory when it lies inside the model directory `source` (a save leaves it out)."""
        return _save.store_inside(self.store, source)

    def tag(
        self,
        name: str,
        ref: str = "latest",
        *,
        force: bool = False,
        message: str | None = None,
        sign_key: str | os.PathLike[str] | None = None,
    ) -> str:
        """Point tag `name` at a version; moving an existing tag needs `force`. Recorded in its history,
        the record signed with the EC private key at `sign_key` when given."""
        return _tags.tag(self.store, name, ref, force=force, message=message, signer=self._signer(sign_key))

    def untag(self, name: str, *, message: str | None = None) -> str:
        return _tags.untag(self.store, name, message=message)

    def tag_history(
        self, name: str, *, remote: str | None = None, keys: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The tag's moves, newest first: {from, to, time, who, message, signed_by} (here, or on a remote:
        NAME|URL); with public `keys`, also `signature`: "signed", "unsigned" or "BAD SIGNATURE"."""
        from .remote import promote

        if remote is not None:
            moves = promote.remote_moves(self._remote_or_url(remote), name)
        else:
            moves = _tags.history(self.store, name)
        out = [{**m.as_dict(), "signed_by": m.signature.keyid if m.signature else None} for m in moves]
        if keys:
            from .ops import signing as _signing
            from .ops import tagsign

            loaded = [_signing.load_public_key(Path(k)) for k in keys]
            for doc, move in zip(out, moves, strict=True):
                doc["signature"] = tagsign.status(name, move, loaded)
        by_move = {id(m): d for m, d in zip(moves, out, strict=True)}
        return [by_move[id(m)] for m in reversed(taglog.ordered(moves))]

    def tag_remote(
        self,
        remote: str,
        name: str,
        ref: str = "latest",
        *,
        force: bool = False,
        message: str | None = None,
        sign_key: str | os.PathLike[str] | None = None,
    ) -> tuple[str, str | None]:
        """Point tag `name` on a remote (NAME|URL) at the version `ref` names there; moving one needs `force`.
        The history record is signed with the private key at `sign_key` when given. Returns (version ID,
        what it named before)."""
        from .remote import promote

        signer = self._signer(sign_key)
        return promote.set_remote_tag(
            self._remote_or_url(remote), name, ref, force=force, message=message, signer=signer
        )

    @staticmethod
    def _signer(sign_key: str | os.PathLike[str] | None) -> taglog.Signer | None:
        if sign_key is None:
            return None
        from .ops import signing as _signing
        from .ops import tagsign

        return tagsign.signer(_signing.load_private_key(Path(sign_key)))

    def untag_remote(self, remote: str, name: str, *, message: str | None = None) -> str:
        """Delete tag `name` on a remote (NAME|URL); returns the version it named."""
        from .remote import promote

        return promote.delete_remote_tag(self._remote_or_url(remote), name, message=message)

    def _remote_or_url(self, name_or_url: str) -> Remote:
        from .remote import config
        from .remote.remotes import open_remote

        url, endpoint = config.locate(name_or_url, self.root)
        return open_remote(url, endpoint_url=endpoint)

    def remove(self, ref: str, *, force: bool = False) -> tuple[str, list[str]]:
        """Delete a version (its objects are freed by gc); returns (its ID, the tags removed with it). A tagged
        version needs `force`, which drops its tags."""
        return _remove.remove(self.store, ref, force=force)

    def prune(
        self,
        *,
        keep_last: int | None = None,
        keep_within: float | None = None,
        dry_run: bool = False,
        grace_seconds: float = _gc.DEFAULT_GRACE_SECONDS,
    ) -> tuple[PrunePlan, _gc.GcPlan | None]:
        """Remove versions outside the retention rules (tagged ones are always kept), then gc."""
        return _remove.prune(
            self.store, keep_last=keep_last, keep_within=keep_within, dry_run=dry_run, grace_seconds=grace_seconds
        )

    def gc(self, *, dry_run: bool = False, grace_seconds: float = _gc.DEFAULT_GRACE_SECONDS) -> _gc.GcPlan:
        return _gc.collect(self.store, grace_seconds=grace_seconds, dry_run=dry_run)

    def gc_pending(self, grace_seconds: float = _gc.DEFAULT_GRACE_SECONDS) -> _gc.GcPlan:
        """What `gc` would free now (`bytes`) and later (`young_bytes` at `young_until`); deletes nothing."""
        return _gc.pending(self.store, grace_seconds)

    # -- remotes ---------------------------------------------------------------------------------

    def remotes(self) -> dict[str, str]:
        from .remote import config

        return config.urls(self.store)

    def remote_settings(self) -> dict[str, dict[str, Any]]:
        """name -> {"url": …, "endpoint_url": … (when one was given)}."""
        from .remote import config

        return config.settings(self.store)

    def remote_add(self, name: str, url: str, *, endpoint_url: str | None = None) -> None:
        from .remote import config

        config.add(self.store, name, url, endpoint_url=endpoint_url)

    def remote_remove(self, name: str) -> None:
        from .remote import config

        config.remove(self.store, name)

    def remote(self, name: str) -> Remote:
        from .remote import config

        return config.open_named(self.store, name)

    def default_remote(self) -> str:
        """The remote push and pull use when none is named: the only one, else `origin` (as git does)."""
        from .remote import config

        return config.default(self.store)

    def remote_and_refs(self, args: list[str]) -> tuple[str, list[str]]:
        """Split `push`/`pull` arguments `[NAME] [REF]...` (see remote.config.split_remote_and_refs)."""
        from .remote import config

        return config.split_remote_and_refs(self.store, args)

    def push(
        self,
        remote: str | None = None,
        refs: list[str] | None = None,
        *,
        progress: TransferProgress | None = None,
        force: bool = False,
    ) -> TransferStats:
        """Send versions (all by default) and their tags to a remote (default: `default_remote()`);
        only what it lacks travels. A tag moved here moves there too if nobody moved it there since this
        store last synced (its lease), else it is a conflict (`stats.tag_conflicts`) unless `force`."""
        from .remote import transfer

        ids = [self.resolve(r) for r in refs] if refs else self.ids()
        target = self.remote(remote or self.default_remote())
        return transfer.push(self.store, target, sorted(set(ids)), progress=progress, force=force)

    def pull(
        self,
        remote: str | None = None,
        refs: list[str] | None = None,
        *,
        progress: TransferProgress | None = None,
        trusted_keys: _trust.KeySpec = None,
    ) -> TransferStats:
        """Fetch versions (all by default) and their tags from a remote (default: `default_remote()`),
        verifying every object. With trusted keys (`trusted_keys`, else MSTORE_TRUSTED_KEYS), versions no
        trusted key signed are not pulled (Untrusted names them)."""
        from .remote import config, signatures, transfer

        keys = _trust.trusted_keys(trusted_keys)
        other = self.remote(remote or self.default_remote())
        ids = config.resolve_on(other, refs) if refs else other.version_ids()
        stats = transfer.pull(other, self.store, sorted(set(ids)), progress=progress, trusted_keys=keys)
        _verdict.recompute(self.store, [i for i in sorted(set(ids)) if self.store.versions.exists(i)])
        if stats.untrusted:  # the others were pulled; these were not (checked before their chunks travel)
            raise signatures.refusal(stats.untrusted, stats.versions_sent)
        return stats

    def fetch(self, remote: str, ref: str, *, trusted_keys: _trust.KeySpec = None) -> str:
        """Pull the one version `ref` names on the remote (if it is not here yet); returns its ID."""
        from .remote import config, signatures, transfer

        keys = _trust.trusted_keys(trusted_keys)
        other = self.remote(remote)
        vid = config.resolve_on(other, [ref])[0]
        if not self.store.versions.exists(vid):
            stats = transfer.pull(other, self.store, [vid], trusted_keys=keys)
            _verdict.recompute(self.store, [vid])
            if stats.untrusted:
                raise signatures.refusal(stats.untrusted, stats.versions_sent)
        elif keys is not None:
            try:
                _trust.check_stored(self.store, vid, keys)
            except _trust.Untrusted:  # the remote may hold the genuine bundle a junk one here shadows
                _, refused = signatures.admit(other, self.store, [vid], [], keys)
                if refused:
                    raise signatures.refusal(refused, 0) from None
        return vid

    def require_trusted(self, ref: str, trusted_keys: _trust.KeySpec = None) -> None:
        """Untrusted unless a trusted key (`trusted_keys`, else MSTORE_TRUSTED_KEYS) signed `ref`; nothing
        is checked when neither is set."""
        _trust.check_stored(self.store, self.resolve(ref), _trust.trusted_keys(trusted_keys))

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
        from .remote import transfer

        store, stats = transfer.clone(url, Path(dest), endpoint_url=endpoint_url, progress=progress)
        _verdict.recompute(store, store.versions.ids())  # never the remote's claim
        return cls(store), stats

    def fsck_remote(
        self, remote: str, *, verify_data: bool = False, progress: Progress | None = None
    ) -> _remote_check.RemoteReport:
        from .remote import check

        return check.check(self.remote(remote), verify_data=verify_data, progress=progress)

    def repair_remote(self, remote: str, report: _remote_check.RemoteReport) -> tuple[list[str], list[str]]:
        """Upload this store's good copies of the objects `report` found missing or corrupt on the remote."""
        from .remote import check

        return check.repair(self.remote(remote), self.store, report)

    def gc_remote(
        self, remote: str, *, dry_run: bool = False, grace_seconds: float = _gc.DEFAULT_GRACE_SECONDS
    ) -> _remote_check.RemoteGcPlan:
        from .remote import check

        return check.collect(self.remote(remote), grace_seconds=grace_seconds, dry_run=dry_run)

    def remove_remote(self, remote: str, ref: str, *, force: bool = False) -> tuple[str, list[str]]:
        """Delete a version from a remote (a tagged one needs `force`, which drops its tags there); returns
        (its ID, the tags removed). `gc_remote` frees the space only it used."""
        from .remote import prune

        return prune.remove(self.remote(remote), ref, force=force)

    def prune_remote(
        self, remote: str, *, keep_last: int | None = None, keep_within: float | None = None, dry_run: bool = False
    ) -> PrunePlan:
        """Remove a remote's versions outside the retention rules (its tags, its `latest` and its newest
        version are always kept); `gc_remote` frees their space."""
        from .remote import prune

        now = datetime.now(timezone.utc)
        return prune.prune(self.remote(remote), now, keep_last=keep_last, keep_within=keep_within, dry_run=dry_run)

    # -- reading ---------------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        return resolve(self.store, ref)

    def get(self, ref: str) -> dict[str, Any]:
        """A version's metadata; its pickle verdict is the one its stored bytes give (content/verdict.py)."""
        vid = self.resolve(ref)
        return _verdict.local(self.store, vid, self.store.versions.read(vid))

    def _loadable(self, vid: str) -> dict[str, Any]:
        """The metadata a load decides on: the verdict of the bytes; a damaged version raises its own error."""
        return _verdict.local(self.store, vid, self.store.versions.read(vid), strict=True)

    def ids(self) -> list[str]:
        """Version IDs, oldest first."""
        return self.store.versions.ids()

    def versions(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Metadata of the newest `limit` versions (all by default), newest first.

        A version removed while this runs is skipped, so readers never fail because of a concurrent rm.
        """
        return _history.versions(self.store, limit)

    def log(
        self,
        *,
        limit: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        tags: list[str] | None = None,
        sort: str | None = None,
        descending: bool | None = None,
        where: str | None = None,
    ) -> list[dict[str, Any]]:
        """Versions newest first, filtered by time (the ID is the save time) and tags, each with its
        metadata plus `tags` (names pointing at it). Reads only the versions it returns.

        With `sort` (a metric name), the best come first (see `ranking`); `descending` overrides the
        direction the metric's name implies. Ranking reads every version that passes the filters.
        `where` ("accuracy>0.95 and C<1") keeps the versions it holds for (see `diff.query`).
        """
        return _history.log(
            self.store,
            limit=limit,
            since=since,
            until=until,
            tags=tags,
            sort=sort,
            descending=descending,
            where=where,
        )

    def check_metrics(self, names: list[str], shown: list[dict[str, Any]]) -> None:
        """Raise BadInput (with a "did you mean") for a metric name that no version has."""
        _history.check_metrics(self.store, names, shown)

    def show(self, ref: str) -> dict[str, Any]:
        """A version's metadata, its files, and how much of its content it shares with its parent."""
        return _history.show(self.store, ref)

    def du(self, largest: int = 10) -> dict[str, Any]:
        """Logical size of all versions, bytes on disk, savings, and what each version alone holds."""
        browsed = getattr(self.store, "url", None)  # a remote browsed read-only (remote/mirror.py) holds no objects
        if browsed is not None:
            raise BadInput(f"the disk use of {browsed} is not known from its metadata alone (see du in a clone)")
        return disk_usage(self.store, largest)

    def latest(self) -> dict[str, Any] | None:
        return _history.latest(self.store)

    def tags(self) -> dict[str, str]:
        return self.store.refs.tags()

    def sign(self, ref: str, key_path: str | os.PathLike[str], *, digest: str = "blake3") -> tuple[str, Path]:
        """Sign version `ref` with the EC private key at `key_path` (blake3: reads no weight bytes; sha256:
        reads them once, for model_signing's CLI)."""
        from .ops import signing as _signing  # cryptography loads only for signing commands

        version_id = self.resolve(ref)
        key = _signing.load_private_key(Path(key_path))
        return version_id, _signing.sign(self.store, version_id, key, digest=digest)

    def signature_bundle(self, ref: str, key_paths: list[str] | None = None) -> bytes:
        """The OpenSSF model-signing bundle of `ref` to write beside a checkout (with several stored, the one
        by one of the public keys that verifies)."""
        from .ops import signing as _signing

        keys = [_signing.load_public_key(Path(k)) for k in key_paths or []]
        return _signing.bundle_for_checkout(self.store, self.resolve(ref), keys)

    def checkout_signature(
        self,
        ref: str,
        dest: str | os.PathLike[str],
        signature: str | None,
        key_paths: list[str] | None = None,
        *,
        force: bool = False,
    ) -> bytes | None:
        """What `checkout --signature FILE` writes, read and checked before the checkout writes anything:
        FILE must not be the model or lie inside a checked-out directory (model_signing would count it)."""
        if signature is None:
            if key_paths:
                raise BadInput("--signature-key needs --signature FILE")
            return None
        if signature.endswith(("/", os.sep)) or Path(signature).is_dir():
            raise BadInput(f"--signature {signature} names a directory; name the file to write")
        model, sig = Path(dest).resolve(), Path(signature).resolve()
        manifest = self.manifest(ref)
        if sig in (model, model / manifest.entries[0].path):
            raise BadInput(f"--signature {signature}: that is where the model goes; name another file")
        if manifest.kind != KIND_FILE and sig.is_relative_to(model):
            raise BadInput(
                f"--signature {signature}: put it outside the checked-out directory (model_signing would "
                "count it as a file of the model)"
            )
        if not sig.parent.is_dir():
            raise BadInput(f"--signature {signature}: its directory {sig.parent} does not exist")
        if sig.exists() and not force:
            raise BadInput(f"--signature {signature} already exists (use --force to overwrite)")
        return self.signature_bundle(ref, key_paths)

    def write_signature(self, path: str | os.PathLike[str], data: bytes, *, force: bool = False) -> None:
        """Write a bundle beside a checkout, atomically; an existing file only with `force`."""
        from .ops import signing as _signing

        _signing.write_bundle(Path(path), data, force=force)

    def verify(self, ref: str, key_paths: list[str], *, promotion: bool = False) -> _signing.Verified:
        """A stored signature of `ref` by one of the public keys that matches it; else NotVerified. With
        `promotion`, `ref` is a tag whose present position must come from a move signed by one of the keys."""
        from .ops import signing as _signing
        from .ops import tagsign

        keys = [_signing.load_public_key(Path(k)) for k in key_paths]
        found = _signing.verify(self.store, self.resolve(ref), keys)
        if promotion:
            current = self.store.refs.tags().get(ref)
            if current is None:
                raise BadInput(f"--promotion: {ref!r} is not a tag")
            why = tagsign.position(ref, _tags.history(self.store, ref), current, keys)
            if why is not None:
                raise _signing.NotVerified(f"{found.version}: signed, but not a signed promotion: {why}")
        return found

    def manifest(self, ref: str) -> Manifest:
        return self.store.version_manifest(self.resolve(ref))

    def check_loadable(
        self, ref: str, *, allow_unsafe: bool | None = None, trusted_keys: _trust.KeySpec = None
    ) -> Loadable:
        """`ref` if it may be loaded, else the first reason not to, in this order: a damaged version fails
        as itself; a version whose pickles are unsafe or unknown raises UnsafeToLoad unless
        `allow_unsafe=True` or MSTORE_ALLOW_UNSAFE=1 (as `model_path`); with trusted keys (`trusted_keys`,
        else MSTORE_TRUSTED_KEYS), a version none of them signed raises Untrusted. Nothing is written."""
        vid = self.resolve(ref)
        manifest = self.manifest(vid)  # a damaged version fails as itself, before the verdict
        meta = self._loadable(vid)
        _compare.check_loadable(meta, vid, allow_unsafe)
        _trust.check_stored(self.store, vid, _trust.trusted_keys(trusted_keys), manifest)
        return Loadable(vid, manifest, meta)

    def checkout(
        self,
        ref: str | Loadable,
        dest: str | os.PathLike[str],
        *,
        force: bool = False,
        progress: Progress | None = None,
        allow_unsafe: bool | None = None,
        trusted_keys: _trust.KeySpec = None,
    ) -> Path:
        """Write the version's model to `dest`, verified bit-exact; returns the path written. A `dest` that
        ends in a slash is a directory, created if need be (a single-file model lands inside it). A ref is
        first passed through `check_loadable` (with `allow_unsafe` and `trusted_keys`), so an unsafe or
        untrusted version raises, writing nothing; a `Loadable` it returned is checked out as it is."""
        if isinstance(ref, Loadable):
            if allow_unsafe is not None or trusted_keys is not None:
                raise ValueError("checkout of a Loadable: its checks were made by check_loadable")
            checked = ref
        else:
            checked = self.check_loadable(ref, allow_unsafe=allow_unsafe, trusted_keys=trusted_keys)
        manifest = checked.manifest
        target = Path(dest)
        if os.fspath(dest).endswith(("/", os.sep)) and manifest.kind == KIND_FILE:
            target = target / manifest.entries[0].path
        return restore(manifest, self.store.objects, target, force=force, progress=progress)

    def compare(self, ref1: str, ref2: str | None = None) -> dict[str, Any]:
        """What changed from `ref1` to `ref2`; with `ref1` alone, what changed in it (from its parent)."""
        if ref2 is None:
            return _compare.compare(self.store, *_history.parent_pair(self.store, ref1))
        return _compare.compare(self.store, self.resolve(ref1), self.resolve(ref2))

    def fsck(self, *, verify_data: bool = True, progress: Progress | None = None) -> _fsck.Report:
        return _fsck.fsck(self.store, verify_data=verify_data, progress=progress)

    def quarantine(self, report: _fsck.Report) -> list[str]:
        """Move the corrupt objects of an fsck report aside; returns their ids."""
        with self.store.write_lock():
            return _fsck.quarantine(self.store, report)

    # -- archives ------------------------------------------------------------------------------------

    def export(self, refs: list[str], dest: str | os.PathLike[str], *, force: bool = False) -> dict[str, Any]:
        """Write the versions `refs` name, their tags and every object they need into one `.mstore` file."""
        return _archive.export(self.store, self._named(refs), Path(dest), force=force)

    def export_plain(
        self, refs: list[str], dest: str | os.PathLike[str], *, allow_unsafe: bool | None = None
    ) -> list[Path]:
        """Write `DEST/version_<ID>/<model file or folder>` and `metadata.json` for each version (the seed's
        layout, readable without mstore); every file is verified bit-exact. DEST must not exist or be empty.
        Plain files leave mstore's verdict behind, so a version whose pickles are unsafe or unknown is
        refused, writing nothing, unless `allow_unsafe=True` or MSTORE_ALLOW_UNSAFE=1 (as `checkout`)."""
        ids = self._named(refs)
        for vid in ids:
            _compare.check_loadable(self._loadable(vid), vid, allow_unsafe)
        return _archive.export_plain(self.store, ids, Path(dest))

    def _named(self, refs: list[str]) -> list[str]:
        if not refs:
            raise BadInput("name at least one version to export")
        return [self.resolve(ref) for ref in refs]

    def import_archive(self, path: str | os.PathLike[str]) -> _archive.ImportStats:
        """Import a `.mstore` archive: everything is verified before anything is stored; versions that
        exist here are skipped; a damaged archive imports nothing (BadArchive names the bad part)."""
        stats = _archive.import_archive(self.root, Path(path))
        _verdict.recompute(self.store, stats.versions_imported)  # never the archive's claim
        return stats

    @classmethod
    def import_into(cls, root: str | os.PathLike[str], path: str | os.PathLike[str]) -> _archive.ImportStats:
        """`import_archive` into the store at `root`, which is created only once the archive has been
        verified: a damaged archive leaves no empty store behind."""
        stats = _archive.import_archive(Path(root), Path(path))
        _verdict.recompute(Store.open(Path(root)), stats.versions_imported)  # never the archive's claim
        return stats


class _Refreshing(Repository):
    """A browsed remote that a long-running reader (`ui --remote`) keeps current: `listed_once()` refreshes
    the mirror when the last refresh is `every` seconds old."""

    def __init__(self, store: Store, again: Callable[[], Any], every: float) -> None:
        super().__init__(store)
        self._again, self._every = again, every
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def listed_once(self) -> Repository:
        if time.monotonic() - self._at >= self._every:
            with self._lock:
                if time.monotonic() - self._at >= self._every:
                    with suppress(MStoreError, OSError):  # unreachable for now: serve the mirror as it is
                        self.store = self._again().store
                    self._at = time.monotonic()
        return super().listed_once()
