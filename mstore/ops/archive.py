"""`.mstore` archives: versions, their tags and every object they need in one self-verifying file.

Layout (docs/format.md, "Archives"): a 16-byte magic, then records `kind u8 | length u64le | blake3 32B |
body`, where the blake3 covers the body. Kinds: `H` header (JSON), `O` object (object id 32B | content size
u64le | the content, raw or in a non-delta mstore envelope), `V` version (ID length u8 | ID | metadata.json's
exact bytes), `S` signature (format 2: ID length u8 | ID | key fingerprint 32B | bundle), `E` end (JSON
with the record count). Writing streams one object at a time; importing reads
the whole archive once to verify every record, object and version, and only then a second time to store
objects, then publishes versions and tags. An archive holds no paths at all: version IDs, tag names and
object ids are validated like any other input, and manifests decode with the store's strict decoder.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import blake3

from ..content.restore import restore
from ..errors import (
    BadInput,
    CorruptObject,
    DestinationExists,
    IntegrityError,
    InvalidName,
    MStoreError,
    StoreNotFound,
    VersionConflict,
)
from ..store import codec, fsutil
from ..store import commit as _commit
from ..store import signatures as signed
from ..store.chunking import MAX_CHUNK_SIZE
from ..store.codec import stored_form
from ..store.layout import Store, check_model_hash, manifest_id
from ..store.manifest import KIND_FILE, Manifest
from ..store.metadata import MAX_METADATA_BYTES
from ..store.metadata import loads as load_metadata
from ..store.objects import hash_bytes
from ..store.refs import check_tag_name, is_version_id
from ..store.versions import METADATA, is_future, saved_name

MAGIC = b"MSTORE-ARCHIVE\x00\x01"
HEADER, OBJECT, VERSION, SIGNATURE, END = b"H", b"O", b"V", b"S", b"E"
FORMATS = (1, 2)  # 2: may hold signature records; an archive without any is still written as 1
_RECORD = struct.Struct("<cQ32s")
MAX_OBJECT = MAX_CHUNK_SIZE  # content of one object: the largest chunk mstore cuts (a manifest too)
MAX_EXPANSION = 1024  # content bytes per archive byte beyond EXPANSION_FLOOR: zstd bombs stop here
EXPANSION_FLOOR = 1 << 30
MAX_MANIFESTS = codec.MAX_OBJECT  # the manifests pass 1 holds while it verifies the versions, in all
MAX_JSON = 16 << 20
MAX_RECORDS = 50_000_000


class BadArchive(IntegrityError):
    """The archive is damaged, truncated or not an mstore archive; nothing was imported."""


@dataclass
class ImportStats:
    versions_imported: list[str] = field(default_factory=list)
    versions_skipped: list[str] = field(default_factory=list)
    objects_stored: int = 0
    tags_set: list[str] = field(default_factory=list)
    tag_conflicts: list[str] = field(default_factory=list)
    signatures_kept: int = 0


@dataclass
class ImportPlan:
    """What pass 1 of an import verified: the objects present, those needed, the versions to publish
    (with their manifests) and the tags to set."""

    path: Path
    oids: set[str]
    needed: set[str]
    versions: list[tuple[str, bytes, str, Manifest]]
    tags: dict[str, str]
    stats: ImportStats
    signatures: list[tuple[str, str, bytes]] = field(default_factory=list)  # (version, keyid, bundle), unverified


# -- writing ----------------------------------------------------------------------------------------


def _record(out: BinaryIO, kind: bytes, body: bytes) -> None:
    out.write(_RECORD.pack(kind, len(body), blake3.blake3(body).digest()))
    out.write(body)


def export(store: Store, version_ids: list[str], dest: Path, *, force: bool = False) -> dict[str, Any]:
    """Write `version_ids`, the tags naming them and every object they need to `dest` (atomically)."""
    if dest.is_symlink() or dest.is_dir() or (dest.exists() and not force):
        raise DestinationExists(f"{dest} already exists (use {{force}} to overwrite)", force=("--force", "force=True"))
    ids = sorted(set(version_ids))
    wanted = set(ids)
    tags = {name: vid for name, vid in sorted(store.refs.tags().items()) if vid in wanted}
    records: list[tuple[str, bytes]] = []
    oids: dict[str, int] = {}  # id -> content size, in first-needed order
    for vid in ids:
        raw = store.versions.raw_metadata(vid)
        meta = load_metadata(raw, f"version_{vid}")
        manifest = store.version_manifest(vid, meta)
        oids.setdefault(manifest_id(meta, vid), -1)
        for entry in manifest.files:
            for chunk in entry.chunks:
                oids.setdefault(chunk.oid, chunk.size)
        records.append((vid, raw))
    bundles = [(vid, keyid, data) for vid in ids for keyid, data in signed.bundles(store.root, vid) if data]
    encoder = codec.Encoder(level=3)
    tmp = fsutil.temp_name(dest.parent, dest.name)
    total = 0
    try:
        with open(tmp, "xb") as out:
            out.write(MAGIC)
            header = {"format": 2 if bundles else 1, "versions": ids, "tags": tags, "objects": len(oids)}
            _record(out, HEADER, json.dumps(header).encode())
            for oid, size in oids.items():
                content = store.objects.read(oid, None if size < 0 else size)
                if len(content) > MAX_OBJECT:
                    raise BadInput(
                        f"object {oid[:12]} holds {len(content)} bytes, more than an archive carries "
                        f"({MAX_OBJECT >> 20} MiB); nothing was exported (share it with push instead)"
                    )
                blob = encoder.encode(content, tensor=False)
                _record(out, OBJECT, bytes.fromhex(oid) + struct.pack("<Q", len(content)) + blob)
                total += len(content)
            for vid, raw in records:
                _record(out, VERSION, bytes([len(vid)]) + vid.encode() + raw)
            for vid, keyid, data in bundles:
                _record(out, SIGNATURE, bytes([len(vid)]) + vid.encode() + bytes.fromhex(keyid) + data)
            _record(out, END, json.dumps({"records": 1 + len(oids) + len(records) + len(bundles)}).encode())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {
        "path": str(dest),
        "versions": ids,
        "tags": tags,
        "objects": len(oids),
        "content_bytes": total,
        "signatures": len(bundles),
    }


# -- reading ----------------------------------------------------------------------------------------


@dataclass
class _Record:
    index: int
    offset: int
    kind: bytes
    body: bytes

    def where(self) -> str:
        return f"record {self.index} at byte {self.offset}"


def _open(path: Path) -> tuple[BinaryIO, int]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BadInput(f"{path}: no such archive") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot open ({exc.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise BadArchive(f"{path} is not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), st.st_size


def _records(f: BinaryIO, size: int, path: Path) -> Iterator[_Record]:
    if f.read(len(MAGIC)) != MAGIC:
        raise BadArchive(f"{path} is not an mstore archive (bad magic)")
    pos, index = len(MAGIC), 0
    while True:
        head = f.read(_RECORD.size)
        if len(head) != _RECORD.size:
            raise BadArchive(f"{path}: truncated: record {index} at byte {pos} is cut off (no end record)")
        kind, length, digest = _RECORD.unpack(head)
        limit = MAX_OBJECT + codec.HEADER_BYTES + 1024 if kind == OBJECT else MAX_JSON + 256
        if length > limit or length > size - pos - _RECORD.size:
            raise BadArchive(
                f"{path}: record {index} at byte {pos} declares {length} bytes "
                f"({'past the end of the file' if length <= limit else 'more than any record mstore writes'})"
            )
        body = f.read(length)
        if len(body) != length:
            raise BadArchive(f"{path}: truncated: record {index} at byte {pos} is cut off")
        if blake3.blake3(body).digest() != digest:
            raise BadArchive(f"{path}: record {index} at byte {pos} is damaged (checksum mismatch)")
        yield _Record(index, pos, kind, body)
        if kind == END:
            if f.read(1):
                raise BadArchive(f"{path}: data after the end record at byte {pos}")
            return
        pos += _RECORD.size + length
        index += 1
        if index > MAX_RECORDS:
            raise BadArchive(f"{path}: more than {MAX_RECORDS} records")


def _json(rec: _Record, path: Path) -> dict[str, Any]:
    try:
        value = json.loads(rec.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadArchive(f"{path}: {rec.where()} is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadArchive(f"{path}: {rec.where()} is not a JSON object")
    return value


def _object(rec: _Record, path: Path) -> tuple[str, bytes, bytes]:
    """(id, content, blob) of an object record, decoded within its declared size and re-hashed."""
    if len(rec.body) < 40:
        raise BadArchive(f"{path}: {rec.where()} is too short for an object")
    oid = rec.body[:32].hex()
    (size,) = struct.unpack("<Q", rec.body[32:40])
    blob = rec.body[40:]
    if size > MAX_OBJECT:
        raise BadArchive(f"{path}: {rec.where()} (object {oid[:12]}) declares {size} bytes")

    def no_base(base: str, n: int) -> bytes:
        raise CorruptObject("archive objects are never deltas")

    try:
        content = codec.decode(blob, size, no_base)
    except CorruptObject as exc:
        raise BadArchive(f"{path}: {rec.where()} (object {oid[:12]}): {exc}") from None
    if len(content) != size or hash_bytes(content) != oid:
        raise BadArchive(f"{path}: {rec.where()} (object {oid[:12]}) does not hash to its id")
    return oid, content, blob


def _version(rec: _Record, path: Path) -> tuple[str, bytes, dict[str, Any]]:
    n = rec.body[0] if rec.body else 0
    vid = rec.body[1 : 1 + n].decode("ascii", "replace")
    raw = rec.body[1 + n :]
    if not is_version_id(vid):
        raise BadArchive(f"{path}: {rec.where()} names no valid version ID ({vid[:40]!r})")
    if len(raw) > MAX_METADATA_BYTES:
        raise BadArchive(f"{path}: {rec.where()}: metadata larger than {MAX_METADATA_BYTES >> 20} MiB")
    try:
        meta = load_metadata(raw, f"version_{vid}")
    except MStoreError as exc:
        raise BadArchive(f"{path}: {rec.where()}: {exc}") from None
    if meta.get("timestamp") != vid:
        raise BadArchive(f"{path}: {rec.where()}: metadata timestamp does not match version {vid}")
    return vid, raw, meta


def plan_import(store: Store | None, path: Path) -> ImportPlan:
    """Pass 1: read and verify the whole archive against `store` (None: a store not created yet); write nothing."""
    from datetime import datetime, timezone

    stats = ImportStats()
    f, size = _open(path)
    with f:
        # pass 1: every record, object and version verified; nothing written
        header: dict[str, Any] | None = None
        oids: set[str] = set()
        manifests: dict[str, Manifest] = {}
        manifest_bytes = content_bytes = 0
        versions: list[tuple[str, bytes, dict[str, Any]]] = []
        bundles: list[tuple[str, str, bytes]] = []
        count = 0
        for rec in _records(f, size, path):
            count += 1
            if rec.index == 0 and rec.kind != HEADER:
                raise BadArchive(f"{path}: {rec.where()} should be the header")
            if rec.kind == HEADER:
                if rec.index != 0:
                    raise BadArchive(f"{path}: {rec.where()}: a second header")
                header = _json(rec, path)
                if header.get("format") not in FORMATS:
                    raise BadArchive(f"{path}: archive format {header.get('format')!r} is not 1 or 2 (upgrade mstore?)")
            elif rec.kind == OBJECT:
                oid, content, _ = _object(rec, path)
                if oid in oids:
                    raise BadArchive(f"{path}: {rec.where()}: object {oid[:12]} appears twice")
                oids.add(oid)
                content_bytes += len(content)
                if content_bytes > EXPANSION_FLOOR + MAX_EXPANSION * size:
                    raise BadArchive(
                        f"{path}: {rec.where()}: its objects inflate to more than {MAX_EXPANSION}x the archive's size"
                    )
                if content[:1] and (0x80 <= content[0] <= 0x8F or content[0] in (0xDE, 0xDF)):
                    try:  # a msgpack map: perhaps a manifest (strictly decoded); anything else is a chunk
                        decoded = Manifest.decode(content)
                    except Exception:
                        continue
                    manifest_bytes += len(content)
                    if manifest_bytes > MAX_MANIFESTS:
                        raise BadArchive(f"{path}: manifests larger than {MAX_MANIFESTS >> 20} MiB in all")
                    manifests[oid] = decoded
            elif rec.kind == VERSION:
                versions.append(_version(rec, path))
            elif rec.kind == SIGNATURE:
                if (bundle := _signature(rec)) is not None:
                    bundles.append(bundle)
            elif rec.kind == END:
                end = _json(rec, path)
                if end.get("records") != count - 1:
                    raise BadArchive(f"{path}: the end record counts {end.get('records')!r} records, not {count - 1}")
            else:
                raise BadArchive(f"{path}: {rec.where()} has unknown kind {rec.kind!r}")
        assert header is not None
        tags = header.get("tags")
        if not isinstance(tags, dict):
            raise BadArchive(f"{path}: the header has no tags map")
        now = datetime.now(timezone.utc)
        plan: list[tuple[str, bytes, str, Manifest]] = []
        for vid, raw, meta in versions:
            if is_future(vid, now):
                raise BadArchive(f"{path}: version {vid} lies in the future (a broken clock or a forged record)")
            if store is not None and store.versions.exists(vid):
                if store.versions.raw_metadata(vid) != raw:
                    raise BadArchive(f"{path}: version {vid} exists here with other metadata")
                stats.versions_skipped.append(vid)
                continue
            moid = manifest_id(meta, vid)
            found = manifests.get(moid)
            if found is None:
                raise BadArchive(f"{path}: version {vid}: its manifest {moid[:12]} is not in the archive")
            try:
                check_model_hash(meta, found, vid)
            except MStoreError as exc:
                raise BadArchive(f"{path}: {exc}") from None
            for entry in found.files:
                for chunk in entry.chunks:
                    if chunk.oid not in oids:
                        raise BadArchive(f"{path}: version {vid}: object {chunk.oid[:12]} is not in the archive")
            plan.append((vid, raw, moid, found))
        clean_tags: dict[str, str] = {}
        for name, vid in tags.items():
            if not isinstance(name, str) or not isinstance(vid, str) or vid not in {v for v, _, _ in versions}:
                raise BadArchive(f"{path}: the header's tag {str(name)[:40]!r} names no version in the archive")
            try:
                clean_tags[check_tag_name(name)] = vid
            except BadInput:
                raise BadArchive(f"{path}: the header's tag name {name[:40]!r} is not a safe name") from None
        needed = {moid for _, _, moid, _ in plan}
        needed |= {c.oid for _, _, _, m in plan for e in m.files for c in e.chunks}

    in_archive = {v for v, _, _ in versions}
    kept = [b for b in bundles if b[0] in in_archive][: signed.MAX_BUNDLES_PER_VERSION * max(1, len(in_archive))]
    return ImportPlan(path, oids, needed, plan, clean_tags, stats, kept)


def _signature(rec: _Record) -> tuple[str, str, bytes] | None:
    """(version, keyid, bundle) of a signature record, or None when it is not well-formed (not kept; never
    trusted either way: verified at use against local keys)."""
    n = rec.body[0] if rec.body else 0
    vid = rec.body[1 : 1 + n].decode("ascii", "replace")
    keyid, data = rec.body[1 + n : 33 + n].hex(), rec.body[33 + n :]
    if not is_version_id(vid) or len(keyid) != 64 or signed.well_formed(data) is not None:
        return None
    return vid, keyid, data


def apply_import(store: Store, plan: ImportPlan) -> ImportStats:
    """Pass 2: store the objects (verified again: the file may have changed since pass 1), then publish
    the versions, then set the tags."""
    path, oids, needed, stats = plan.path, plan.oids, plan.needed, plan.stats
    target_planes = store.format >= 3  # a format-2 store gets codec 4/5 objects as raw content
    f, size = _open(path)
    with f, store.gc_lock(), store.objects.batch():  # objects durable together, before _commit.commit
        for rec in _records(f, size, path):
            if rec.kind != OBJECT:
                continue
            oid, content, blob = _object(rec, path)
            if oid not in oids:
                raise BadArchive(f"{path}: the archive changed while it was imported")
            if oid in needed and store.objects.put(
                content, oid, stored_form(content, blob, True, store.objects.envelopes, target_planes)
            ):
                stats.objects_stored += 1
        try:  # a conflicting version may have arrived since pass 1 (another process): refused as a whole
            done = _commit.commit(store, [(vid, raw) for vid, raw, _, _ in plan.versions], plan.tags)
        except VersionConflict as exc:
            raise BadArchive(f"{path}: version {exc.version_id} exists here with other metadata") from None
        stats.versions_imported += done.published
        stats.versions_skipped += done.skipped
        stats.tags_set, stats.tag_conflicts = done.tags_set, done.tag_conflicts
        for vid, keyid, data in plan.signatures:
            if store.versions.exists(vid):
                stats.signatures_kept += signed.keep(store.root, vid, keyid, data)
    return stats


def import_archive(root: Path, path: Path) -> ImportStats:
    """Verify the whole archive against the store at `root` (if there is one yet), then create the store
    if need be and apply it: a damaged archive imports nothing and leaves no empty store behind."""
    try:
        store: Store | None = Store.open(root)
    except StoreNotFound:
        store = None
    try:
        plan = plan_import(store, path)
        return apply_import(store if store is not None else Store.init(root), plan)
    except BadArchive as exc:
        raise BadArchive(f"{exc}; nothing was imported") from None


def export_plain(store: Store, version_ids: list[str], dest: Path) -> list[Path]:
    """Write `DEST/version_<ID>/<model file or folder>` and `metadata.json` for each version (the seed's
    layout, readable without mstore); every file is verified bit-exact. DEST must not exist or be empty."""
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise DestinationExists(f"{dest} exists and is not an empty directory")
    planned = []
    for vid in sorted(set(version_ids)):  # every name is checked before anything is written
        raw = store.versions.raw_metadata(vid)
        meta = load_metadata(raw, f"version_{vid}")
        manifest = store.version_manifest(vid, meta)
        name = manifest.entries[0].path if manifest.kind == KIND_FILE else saved_name(meta, vid)
        if name == METADATA:
            raise InvalidName(
                f"version {vid}'s model is named {METADATA}, which the plain layout keeps for its metadata; "
                f"nothing was exported (check it out under another name: mstore checkout {vid} -o PATH)"
            )
        planned.append((vid, raw, manifest, name))
    written = []
    for vid, raw, manifest, name in planned:
        directory = dest / f"version_{vid}"
        directory.mkdir(parents=True)
        written.append(restore(manifest, store.objects, directory / name))
        (directory / METADATA).write_bytes(raw)
    return written
