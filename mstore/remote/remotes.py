"""Remotes: another store that versions travel to and from, behind one small interface.

`Remote` is what push, pull, clone, `fsck --remote` and `gc --remote` need from the other side. Two
implementations hold the same layout as a local store (`mstore.json`, `objects/ab/cd…`,
`version_<ID>/metadata.json` + `metadata.b3`, `refs/latest`, `refs/tags/<name>`):

- `DirectoryRemote`: a store in a local or NFS directory, written with the local store's own machinery
  (temp file + fsync + rename, a version published by one rename, flock for refs and gc);
- `BucketRemote`: the same keys in a `Bucket` (S3 or in memory). A bucket has no rename and no lock,
  so: a version is committed by its `metadata.b3` key, written only after `metadata.json` (and
  readers list only committed versions); refs change by compare-and-swap (conditional puts); pushes
  and gc announce themselves with lock keys under `locks/` and refuse to overlap.

One contract suite (tests/test_remote_contract.py) holds every implementation to the same behaviour.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

from ..errors import (
    BadInput,
    CorruptConfig,
    CorruptObject,
    CorruptRef,
    CorruptVersion,
    IntegrityError,
    MissingObject,
    MStoreError,
    StoreNotFound,
    UnsafeStoreFile,
    VersionConflict,
    VersionIsTagged,
    VersionNotFound,
)
from ..store import commit, signatures
from ..store.codec import HEADER_BYTES
from ..store.layout import CONFIG, MAX_CONFIG_BYTES, Store, config_bytes, parse_config
from ..store.metadata import MAX_METADATA_BYTES
from ..store.objects import check_oid, is_oid, stored_limit
from ..store.refs import LATEST, MAX_REF_BYTES, Refs, check_tag_name, decode_ref, encode_ref, is_version_id
from ..store.taglog import MAX_HISTORY_BYTES
from ..store.versions import CHECKSUM, MAX_CHECKSUM_BYTES, METADATA, PREFIX, checksum_line, verified_metadata
from ..workers import remote_workers
from .bucket import Bucket, Entry, KeyMissing, PreconditionFailed, RemoteError, md5_etag

STORED_LIMIT = stored_limit(None)  # no object mstore writes is larger
CAS_ATTEMPTS = 20  # compare-and-swap retries before giving up on a ref that keeps moving
LOCK_STALE_SECONDS = 30 * 60  # a lock key not refreshed for this long belongs to a dead process
LOCK_REFRESH_SECONDS = 5 * 60
EXCLUSIVE_LOCKS = ("gc", "rm")  # run alone on a remote; any other kind (push) runs beside its own kind


class RemoteBusy(MStoreError):
    """A gc is running on the remote while we push, or a push while we gc."""


class Remote(Protocol):
    url: str
    wants_content: bool  # put_object needs the content (a directory store); False: the stored bytes suffice

    def config(self) -> dict[str, Any] | None:
        """The remote's mstore.json, or None if nothing was ever pushed there."""
        ...

    def initialise(self, config: dict[str, Any]) -> dict[str, Any]:
        """Create the remote with `config` unless it exists; returns the config it has."""
        ...

    def object_index(self) -> dict[str, Entry]:
        """Every object on the remote: id -> (stored size, last modified)."""
        ...

    def get_object(self, oid: str, limit: int = STORED_LIMIT) -> bytes:
        """The object as stored (unverified: callers decode and hash it); raises MissingObject, or an
        IntegrityError without reading it whole when it is larger than `limit` bytes."""
        ...

    def object_header(self, oid: str) -> bytes:
        """The object's first bytes (enough to read its envelope header); raises MissingObject."""
        ...

    def put_object(self, oid: str, content: bytes | None, blob: bytes) -> int:
        """Store a verified object: `blob` in the remote's format (see codec.stored_form), `content` what
        it decodes to (None when `wants_content` is False). A damaged copy already there is replaced.
        Returns the bytes sent (0 when a directory remote already had it intact)."""
        ...

    def delete_object(self, oid: str) -> None: ...

    def version_ids(self) -> list[str]:
        """Committed versions, oldest first."""
        ...

    def pending_version_ids(self) -> list[str]:
        """Versions whose record is being written (a push in progress or interrupted): gc keeps their objects."""
        ...

    def raw_version(self, version_id: str) -> bytes:
        """metadata.json's bytes, verified against metadata.b3; VersionNotFound / CorruptVersion."""
        ...

    def publish_version(self, version_id: str, meta: bytes) -> bool:
        """Commit a version record after all its objects are there; False if it already was, the same."""
        ...

    def holds_version(self, version_id: str, meta: bytes) -> bool:
        """True if this version is committed here with exactly `meta`; False if it is not here.

        Raises VersionConflict when it is here with other content. Call `version_ids()` first: a bucket
        answers from that listing's ETags when it can, without downloading the record.
        """
        ...

    def get_ref(self, name: str) -> tuple[str | None, Any]:
        """(version ID or None, a token for `set_ref`); `name` is `latest` or `tags/<tag>`."""
        ...

    def set_ref(self, name: str, version_id: str, expected: Any) -> None:
        """Point `name` at `version_id` if it still holds what `get_ref` returned; else PreconditionFailed."""
        ...

    def delete_ref(self, name: str, expected: Any) -> None:
        """Delete tag ref `name` (`tags/<tag>`) if it still holds what `get_ref` returned; else PreconditionFailed."""
        ...

    def get_history(self, tag: str) -> tuple[bytes | None, Any]:
        """The tag's history file (unverified: callers parse it) and a token for `set_history`."""
        ...

    def set_history(self, tag: str, data: bytes, expected: Any) -> None:
        """Replace the tag's history if it still is what `get_history` returned; else PreconditionFailed."""
        ...

    def tag_names(self) -> list[str]: ...

    def signature_index(self, version_id: str | None = None) -> dict[str, list[str]]:
        """Every signature bundle there (or only `version_id`'s), from one listing: version ID -> key
        fingerprints."""
        ...

    def get_signature(self, version_id: str, keyid: str) -> bytes:
        """A bundle's bytes, unverified; IntegrityError when missing or larger than a bundle can be."""
        ...

    def put_signature(self, version_id: str, keyid: str, data: bytes, *, replace: bool = False) -> None:
        """Store a bundle unless one is there for (version, key) already; with `replace` (push verified the
        one it sends, and that the remote's differs), whatever is there."""
        ...

    def delete_signatures(self, version_id: str) -> None:
        """Delete every bundle of a version (removed, or never there: gc's orphans)."""
        ...

    def remove_version(self, version_id: str, *, force: bool = False) -> list[str]:
        """Remove a committed version; returns the tags removed with it. Call under `lock("rm")`.

        Refs first: tags naming it need `force` (else VersionIsTagged) and are deleted; `latest`, if it names
        it, moves back to the newest remaining version. Then the record goes, committed-ness first, so the
        version leaves listings at once. Its objects stay until `gc`. A version whose removal was
        interrupted (a record without its commit key) is finished off. VersionNotFound if it is not there.
        """
        ...

    def lock(self, kind: str) -> AbstractContextManager[None]:
        """`push` (many may run together), `gc` or `rm` (alone): raises RemoteBusy when another kind runs."""
        ...


def ref_key(name: str) -> str:
    if name == LATEST:
        return f"refs/{LATEST}"
    kind, _, tag = name.partition("/")
    if kind != "tags":
        raise BadInput(f"unknown ref {name!r}")
    return f"refs/tags/{check_tag_name(tag)}"


def tag_of(remote: Remote, name: str) -> str | None:
    """A tag's target on the remote, or None if there is no such tag (or `name` cannot be a tag)."""
    try:
        check_tag_name(name)
    except BadInput:
        return None
    return remote.get_ref(f"tags/{name}")[0]


class DirectoryRemote:
    """A store in a directory, changed only through the local store's crash-safe operations."""

    wants_content = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = str(path)
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            try:
                self._store = Store.open(self.path)
            except StoreNotFound as exc:
                if os.path.lexists(self.path / CONFIG):
                    raise StoreNotFound(f"remote {self.url}: {exc}") from None
                raise StoreNotFound(f"remote {self.url}: no mstore store there (push to it first)") from None
        return self._store

    def config(self) -> dict[str, Any] | None:
        return dict(self.store.config) if os.path.lexists(self.path / CONFIG) else None

    def initialise(self, config: dict[str, Any]) -> dict[str, Any]:
        self._store = Store.init(self.path, like=config)
        return dict(self._store.config)

    def object_index(self) -> dict[str, Entry]:
        out = {}
        for oid in self.store.objects:
            try:
                st = self.store.objects.path(oid).stat()
            except FileNotFoundError:
                continue
            out[oid] = Entry(oid, st.st_size, st.st_mtime)
        return out

    def get_object(self, oid: str, limit: int = STORED_LIMIT) -> bytes:
        try:
            return self.store.objects.stored(oid, limit)
        except MissingObject:
            raise MissingObject(f"{self.url}: object {oid} is missing") from None

    def object_header(self, oid: str) -> bytes:
        try:
            return self.store.objects.header(oid)
        except MissingObject:
            raise MissingObject(f"{self.url}: object {oid} is missing") from None

    def put_object(self, oid: str, content: bytes | None, blob: bytes) -> int:
        if content is None:
            raise TypeError("a directory remote stores objects through its store: the content is needed")
        stored = blob if self.store.objects.envelopes else None
        if not self.store.objects.put(content, oid, stored):
            if self.store.objects.verify(oid, len(content)) is None:
                return 0  # already here, intact
            self.store.objects.delete(oid)  # damaged in place (a repair): replace it with the good bytes
            self.store.objects.put(content, oid, stored)
        return len(stored if stored is not None else content)

    def delete_object(self, oid: str) -> None:
        self.store.objects.delete(oid)

    def version_ids(self) -> list[str]:
        return self.store.versions.ids()

    def pending_version_ids(self) -> list[str]:
        return []  # a directory version appears by one rename: never half there

    def raw_version(self, version_id: str) -> bytes:
        return self.store.versions.raw_metadata(version_id)

    def holds_version(self, version_id: str, meta: bytes) -> bool:
        return commit.holds(self.store, version_id, meta)

    def publish_version(self, version_id: str, meta: bytes) -> bool:
        """The local store's own commit point (its `latest` is push's to move, by compare-and-swap)."""
        self.store.objects.sync()
        with self.store.write_lock():
            return commit.publish(self.store, version_id, meta)

    def get_ref(self, name: str) -> tuple[str | None, Any]:
        raw = Refs.read_file(self.path / ref_key(name), f"{self.url}: {ref_key(name)}")
        return (None, None) if raw is None else (decode_ref(raw, ref_key(name)), raw)

    def set_ref(self, name: str, version_id: str, expected: Any) -> None:
        with self.store.write_lock():
            if self.get_ref(name)[1] != expected:
                raise PreconditionFailed(f"{self.url}: {ref_key(name)} changed since it was read")
            if name == LATEST:
                self.store.refs.set_latest(version_id)
            else:  # the pusher writes the history records that explain the move (promote.py)
                self.store.refs.set_tag(name.partition("/")[2], version_id, record=False)

    def delete_ref(self, name: str, expected: Any) -> None:
        with self.store.write_lock():
            if self.get_ref(name)[1] != expected:
                raise PreconditionFailed(f"{self.url}: {ref_key(name)} changed since it was read")
            self.store.refs.delete_tag(ref_key(name)[len("refs/tags/") :], record=False)

    def get_history(self, tag: str) -> tuple[bytes | None, Any]:
        raw = self.store.refs.history_raw(tag)
        return raw, raw

    def set_history(self, tag: str, data: bytes, expected: Any) -> None:
        with self.store.write_lock():
            if self.store.refs.history_raw(tag) != expected:
                raise PreconditionFailed(f"{self.url}: refs/history/{tag} changed since it was read")
            self.store.refs.write_history(tag, data)

    def tag_names(self) -> list[str]:
        return self.store.refs.tag_names()

    def signature_index(self, version_id: str | None = None) -> dict[str, list[str]]:
        root = self.store.root
        names = signatures.version_dirs(root) if version_id is None else [version_id]
        found = {v: signatures.keyids(root, v) for v in names if is_version_id(v)}
        return {v: k for v, k in found.items() if k}

    def get_signature(self, version_id: str, keyid: str) -> bytes:
        try:
            return signatures.read(self.store.root, version_id, keyid)
        except (OSError, UnsafeStoreFile) as exc:
            raise IntegrityError(f"{self.url}: signature {version_id}/{keyid[:16]}: {exc}") from None

    def put_signature(self, version_id: str, keyid: str, data: bytes, *, replace: bool = False) -> None:
        signatures.keep(self.store.root, version_id, keyid, data, replace=replace)

    def delete_signatures(self, version_id: str) -> None:
        signatures.drop(self.store.root, version_id)

    def remove_version(self, version_id: str, *, force: bool = False) -> list[str]:
        """The local store's own removal: refs first, then one rename (all-or-nothing)."""
        with self.store.write_lock():
            if not self.store.versions.exists(version_id):
                raise VersionNotFound(f"version {version_id} does not exist on {self.url}")
            return commit.remove(self.store, version_id, force=force)

    def lock(self, kind: str) -> AbstractContextManager[None]:
        return self.store.gc_lock(exclusive=kind in EXCLUSIVE_LOCKS)


class BucketRemote:
    """The store layout as keys in a bucket (S3 or memory)."""

    wants_content = False

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self.url = bucket.url
        self._record_etags: dict[str, str] = {}  # version ID -> metadata.json's ETag, from the last listing

    def config(self) -> dict[str, Any] | None:
        try:
            raw = self.bucket.get(CONFIG, limit=MAX_CONFIG_BYTES)
        except KeyMissing:
            return None
        except IntegrityError as exc:
            raise CorruptConfig(f"{self.url}/{CONFIG} is not a valid mstore config ({exc})") from None
        return parse_config(raw, f"{self.url}/{CONFIG}")

    def initialise(self, config: dict[str, Any]) -> dict[str, Any]:
        existing = self.config()
        if existing is not None:
            return existing
        shared = {k: v for k, v in config.items() if k != "remotes"}
        try:
            self.bucket.put(CONFIG, config_bytes(shared), if_absent=True)
            return shared
        except PreconditionFailed:  # someone else initialised it at the same moment: use theirs
            pass
        found = self.config()
        assert found is not None
        return found

    @staticmethod
    def _object_key(oid: str) -> str:
        check_oid(oid)
        return f"objects/{oid[:2]}/{oid[2:]}"

    def object_index(self) -> dict[str, Entry]:
        out = {}
        for entry in self.bucket.list("objects/"):
            parts = entry.key.split("/")
            if len(parts) == 3 and len(parts[1]) == 2 and is_oid(parts[1] + parts[2]):
                out[parts[1] + parts[2]] = entry
        return out

    def get_object(self, oid: str, limit: int = STORED_LIMIT) -> bytes:
        try:
            return self.bucket.get(self._object_key(oid), limit=limit)
        except KeyMissing:
            raise MissingObject(f"{self.url}: object {oid} is missing") from None
        except IntegrityError as exc:
            raise CorruptObject(f"object {oid}: {exc}") from None

    def object_header(self, oid: str) -> bytes:
        try:
            return self.bucket.get_range(self._object_key(oid), 0, HEADER_BYTES)
        except KeyMissing:
            raise MissingObject(f"{self.url}: object {oid} is missing") from None

    def put_object(self, oid: str, content: bytes | None, blob: bytes) -> int:
        self.bucket.put(self._object_key(oid), blob)
        return len(blob)

    def delete_object(self, oid: str) -> None:
        self.bucket.delete(self._object_key(oid))

    def _version_keys(self) -> tuple[set[str], set[str]]:
        records, committed, etags = set(), set(), {}
        for entry in self.bucket.list(PREFIX):
            name, _, leaf = entry.key.partition("/")
            vid = name[len(PREFIX) :]
            if not is_version_id(vid):
                continue
            if leaf == METADATA:
                records.add(vid)
                etags[vid] = entry.etag
            elif leaf == CHECKSUM:
                committed.add(vid)
        self._record_etags = etags
        return records, committed

    def version_ids(self) -> list[str]:
        return sorted(self._version_keys()[1])

    def pending_version_ids(self) -> list[str]:
        records, committed = self._version_keys()
        return sorted(records - committed)

    def raw_version(self, version_id: str) -> bytes:
        if not is_version_id(version_id):
            raise VersionNotFound(f"{version_id!r} is not a version ID")
        where = f"{PREFIX}{version_id}"
        try:
            recorded = self.bucket.get(f"{where}/{CHECKSUM}", limit=MAX_CHECKSUM_BYTES)
        except KeyMissing:
            raise VersionNotFound(f"version {version_id} does not exist on {self.url}") from None
        except IntegrityError as exc:
            raise CorruptVersion(f"{self.url}: {where}/{CHECKSUM}: {exc}") from None
        try:
            data = self.bucket.get(f"{where}/{METADATA}", limit=MAX_METADATA_BYTES)
        except KeyMissing:
            raise CorruptVersion(f"{self.url}: {where}/{METADATA} is missing") from None
        except IntegrityError as exc:
            raise CorruptVersion(f"{self.url}: {where}/{METADATA}: {exc}") from None
        verified_metadata(version_id, data, recorded)
        return data

    def holds_version(self, version_id: str, meta: bytes) -> bool:
        etag = self._record_etags.get(version_id)
        if etag is not None and etag == md5_etag(meta):
            return True  # listed as committed, with these very bytes: no need to download the record
        try:
            theirs = self.raw_version(version_id)
        except VersionNotFound:
            return False
        if theirs != meta:
            raise VersionConflict.of(version_id)
        return True

    def publish_version(self, version_id: str, meta: bytes) -> bool:
        """metadata.json (create-only), then metadata.b3, the commit point; a rerun finishes a half-written one."""
        where = f"{PREFIX}{version_id}"
        try:
            self.bucket.put(f"{where}/{METADATA}", meta, if_absent=True)
        except PreconditionFailed:
            if self.bucket.get(f"{where}/{METADATA}") != meta:
                raise VersionConflict.of(version_id) from None
        try:
            self.bucket.put(f"{where}/{CHECKSUM}", checksum_line(meta), if_absent=True)
        except PreconditionFailed:
            return False
        return True

    def get_ref(self, name: str) -> tuple[str | None, Any]:
        key = ref_key(name)
        try:
            found = self.bucket.get_with_etag(key, limit=MAX_REF_BYTES)
        except IntegrityError as exc:
            raise CorruptRef(f"{self.url}: {key}: {exc}") from None
        if found is None:
            return None, None
        return decode_ref(found[0], f"{self.url}: {key}"), found[1]

    def set_ref(self, name: str, version_id: str, expected: Any) -> None:
        key, data = ref_key(name), encode_ref(version_id)
        if expected is None:
            self.bucket.put(key, data, if_absent=True)
        else:
            self.bucket.put(key, data, if_match=str(expected))

    def delete_ref(self, name: str, expected: Any) -> None:
        """Checked, then deleted: S3 has no conditional delete everywhere, so a move by someone else in
        the instant between the two is lost (its history record stays, and says so)."""
        if self.get_ref(name)[1] != expected:
            raise PreconditionFailed(f"{self.url}: {ref_key(name)} changed since it was read")
        self.bucket.delete(ref_key(name))

    def get_history(self, tag: str) -> tuple[bytes | None, Any]:
        key = f"refs/history/{check_tag_name(tag)}"
        try:
            found = self.bucket.get_with_etag(key, limit=MAX_HISTORY_BYTES)
        except IntegrityError as exc:
            raise CorruptRef(f"{self.url}: {key}: {exc}") from None
        return (None, None) if found is None else found

    def set_history(self, tag: str, data: bytes, expected: Any) -> None:
        key = f"refs/history/{check_tag_name(tag)}"
        if expected is None:
            self.bucket.put(key, data, if_absent=True)
        else:
            self.bucket.put(key, data, if_match=str(expected))

    def tag_names(self) -> list[str]:
        return sorted(e.key[len("refs/tags/") :] for e in self.bucket.list("refs/tags/"))

    @staticmethod
    def _signature_key(version_id: str, keyid: str) -> str:
        if not is_version_id(version_id) or not signatures.is_keyid(keyid):
            raise IntegrityError(f"signature {version_id!r}/{keyid!r}: not a version ID and key fingerprint")
        return f"{signatures.SIGNATURES}/{version_id}/{keyid}.json"

    def signature_index(self, version_id: str | None = None) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        if version_id is not None and not is_version_id(version_id):
            return out
        for entry in self.bucket.list(f"{signatures.SIGNATURES}/{version_id + '/' if version_id else ''}"):
            parts = entry.key.split("/")
            keyid = parts[-1][: -len(".json")] if parts[-1].endswith(".json") else ""
            if len(parts) == 3 and is_version_id(parts[1]) and signatures.is_keyid(keyid):
                out.setdefault(parts[1], []).append(keyid)
        return out

    def get_signature(self, version_id: str, keyid: str) -> bytes:
        try:
            return self.bucket.get(self._signature_key(version_id, keyid), limit=signatures.MAX_BUNDLE_BYTES)
        except KeyMissing:
            raise IntegrityError(f"{self.url}: signature {version_id}/{keyid[:16]} is missing") from None

    def put_signature(self, version_id: str, keyid: str, data: bytes, *, replace: bool = False) -> None:
        with suppress(PreconditionFailed):  # one is there already: replaced only when asked
            self.bucket.put(self._signature_key(version_id, keyid), data, if_absent=not replace)

    def delete_signatures(self, version_id: str) -> None:
        if not is_version_id(version_id):
            raise IntegrityError(f"{version_id!r} is not a version ID")
        for entry in list(self.bucket.list(f"{signatures.SIGNATURES}/{version_id}/")):
            self.bucket.delete(entry.key)

    def remove_version(self, version_id: str, *, force: bool = False) -> list[str]:
        """Refs first (tags deleted, `latest` moved back by compare-and-swap), then `metadata.b3` (the
        commit point: the version leaves listings at once), then `metadata.json`. A crash between leaves
        either the whole version (rerun rm) or a bare record, which no listing shows and a rerun deletes."""
        if not is_version_id(version_id):
            raise VersionNotFound(f"{version_id!r} is not a version ID")
        where = f"{PREFIX}{version_id}"
        records, committed = self._version_keys()
        if version_id not in committed:
            if version_id not in records:
                raise VersionNotFound(f"version {version_id} does not exist on {self.url}")
            self.bucket.delete(f"{where}/{METADATA}")  # the rest of an interrupted removal (or push)
            return []
        tags = []
        for name in self.tag_names():
            with suppress(BadInput, CorruptRef):  # an unreadable tag names no version; fsck reports it
                if self.get_ref(f"tags/{name}")[0] == version_id:
                    tags.append(name)
        if tags and not force:
            raise VersionIsTagged(
                f"version {version_id} is tagged {', '.join(tags)} on {self.url} (use {{force}} to remove it "
                "and its tags)",
                force=("--force", "force=True"),
            )
        for name in tags:
            self.bucket.delete(ref_key(f"tags/{name}"))
        remaining = sorted(committed - {version_id})
        self._move_latest_from(version_id, remaining[-1] if remaining else None)
        self.bucket.delete(f"{where}/{CHECKSUM}")  # the commit point, undone
        self.bucket.delete(f"{where}/{METADATA}")
        self.delete_signatures(version_id)  # after the version: a crash between leaves orphans (gc --remote)
        return tags

    def _move_latest_from(self, version_id: str, successor: str | None) -> None:
        """If `latest` names `version_id`, point it at `successor` (compare-and-swap), or delete it if None."""
        for _ in range(CAS_ATTEMPTS):
            try:
                current, token = self.get_ref(LATEST)
            except CorruptRef:
                current, token = None, None  # damaged: it names nothing; replace it below only if ours
            if current != version_id:
                return
            if successor is None:
                self.bucket.delete(ref_key(LATEST))
                return
            try:
                self.set_ref(LATEST, successor, token)
                return
            except PreconditionFailed:
                time.sleep(0.01)  # moved between our read and write: read again
        raise PreconditionFailed(f"{self.url}: refs/{LATEST} keeps changing under us; try again")

    @contextmanager
    def lock(self, kind: str) -> Iterator[None]:
        """Announce ourselves under locks/, then look: a gc runs alone, pushes run together.

        Both sides write first and list second, and a bucket is strongly consistent, so of a push and a
        gc that start together at least one sees the other and stops (both may; then both retry later).
        A background thread refreshes the key; one not refreshed for LOCK_STALE_SECONDS is ignored.
        """
        key = f"locks/{kind}-{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(6)}"

        def write() -> None:
            body = json.dumps({"kind": kind, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
            self.bucket.put(key, body.encode())

        write()
        stop = threading.Event()
        try:
            entries = list(self.bucket.list("locks/"))
            now = max((e.modified for e in entries if e.key == key), default=time.time())  # the bucket's clock
            others = [e.key[len("locks/") :] for e in entries if e.key != key and now - e.modified < LOCK_STALE_SECONDS]
            if kind in EXCLUSIVE_LOCKS and others:
                raise RemoteBusy(
                    f"{self.url}: another mstore is using the remote ({', '.join(others)}); try later "
                    f"(a killed process's lock expires {LOCK_STALE_SECONDS // 60} minutes after its last refresh)"
                )
            busy = [o for o in others if o.startswith(tuple(f"{k}-" for k in EXCLUSIVE_LOCKS))]
            if kind not in EXCLUSIVE_LOCKS and busy:
                what = "a gc" if busy[0].startswith("gc-") else "an rm or prune"
                raise RemoteBusy(f"{self.url}: {what} is running on the remote; try again when it is done")

            def refresh() -> None:
                while not stop.wait(LOCK_REFRESH_SECONDS):
                    with suppress(RemoteError):  # the next refresh tries again; staleness takes 30 minutes
                        write()

            threading.Thread(target=refresh, daemon=True, name=f"mstore-lock-{kind}").start()
            yield
        finally:
            stop.set()
            with suppress(RemoteError):  # left behind, it goes stale
                self.bucket.delete(key)


def open_remote(url: str, *, endpoint_url: str | None = None, workers: int | None = None) -> Remote:
    """A remote from its URL: `s3://bucket/prefix`, `file:///path` or a plain path."""
    if url.startswith("s3://"):
        from .s3 import S3Bucket  # boto3 loads only when an S3 remote is used

        endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        return BucketRemote(S3Bucket(url, endpoint_url=endpoint_url, workers=workers or remote_workers()))
    return DirectoryRemote(remote_path(url))


def remote_path(url: str) -> Path:
    if url.startswith("file://"):
        return Path(url[len("file://") :])
    if "://" in url:
        raise BadInput(f"remote {url!r}: use s3://BUCKET/PREFIX, file:///PATH or a directory path")
    if not url:
        raise BadInput("the remote URL is empty")
    return Path(url)
