"""A version's pickle verdict as a function of its stored bytes, kept in a local record: never taken on trust.

The `mstore` block of a version's metadata says what its pickles import (`pickle_globals`,
`unsafe_globals`, `pickle_incomplete`, `pickle_verdict`). Metadata that came from a remote or an archive
was written by whoever could write there, so that block is a claim, not a fact. The fact lives here:

- `<store>/cache/verdicts/<manifest id>.json` (and `<model cache>/verdicts/<manifest id>.json` for
  `model_path(remote=...)`) holds, for every file of one manifest that is, or may be, a pickle, the globals
  it imports and whether the walk reached its end. A manifest id names the exact paths and bytes, so the
  record is computed once per distinct model and is true for every version that shares it.
- `save` writes the record from the scan it made of the source (same bytes: the file's stat is checked after
  storing it); `pull`, `clone` and `import` compute it from the stored bytes as they arrive; a version
  without a record (a store older than this module, a lost cache) gets one on first use. The bytes are
  streamed from their verified chunks (a few chunks in memory, array payloads skipped by seeking).
- `effective(meta, record)` is what every reader uses: the metadata with that block replaced by the
  record's, the unsafe globals taken against the local allowlist (the default table, `MSTORE_ALLOW_FILE`,
  and the `--allow` entries of a save made in this store, kept in its record). When the metadata claimed
  another verdict, `pickle_claimed` keeps the claim ("claimed safe, found unsafe").

A record is an untrusted local file like any other: read strictly and bounded; anything odd, or a record
written by another scanner version, is recomputed. Trust roots are local: nothing fetched can add an
allowlist entry or a verdict that this store then believes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import MStoreError
from ..formats import allowlist as _allow
from ..formats import pickles as _pickles
from ..store import fsutil
from ..store.layout import Store, manifest_id
from ..store.manifest import Entry, Manifest
from ..store.objects import is_oid
from .storedfile import Chunks, StoredFile

FORMAT = 1
SCANNER = 1  # bump when the walker changes what it finds: records of an older scanner are recomputed
RECORDS = "cache/verdicts"  # under a store's root
MAX_RECORD_BYTES = 64 << 20
PICKLE_KEYS = (
    "pickle_globals",
    "unsafe_globals",
    "pickle_incomplete",
    "pickle_verdict",
    "pickle_allowed",
    "pickle_scope",  # a partial scan: the only files it read (the rest are unknown)
)


class _StoredStream(io.RawIOBase):
    """A stored file as a seekable binary stream over its verified chunks (the scanner seeks past arrays)."""

    def __init__(self, file: StoredFile) -> None:
        self.file = file
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.file.size}[whence]
        self.pos = max(0, base + pos)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.file.size - self.pos))
        if n:
            view[:n] = self.file.read(self.pos, n)
        self.pos += n
        return n


def scan_entry(entry: Entry, chunks: Chunks, allowed: Iterable[tuple[str, str]] | None = None) -> _pickles.Scan | None:
    """The scan of one stored file, read back from its chunks as `scan_file` reads a file on disk."""
    if entry.size == 0:
        return None
    stream: BinaryIO = io.BufferedReader(_StoredStream(StoredFile(entry, chunks)), 1 << 16)
    return _pickles.scan_named(stream, entry.size, entry.path.rsplit("/", 1)[-1], allowed)


def scan_manifest(manifest: Manifest, chunks: Chunks, only: Iterable[str] | None = None) -> dict[str, Any]:
    """{path: {"globals", "complete", "error"}} for every file of `manifest` (or of `only`) that is, or may
    be, a pickle. A file whose bytes cannot be read is kept as incomplete: it fails closed."""
    wanted = set(only) if only is not None else None
    out: dict[str, Any] = {}
    for entry in manifest.files:
        if wanted is not None and entry.path not in wanted:
            continue
        try:
            scan = scan_entry(entry, chunks)
        except (MStoreError, OSError, ValueError) as exc:
            out[entry.path] = {"globals": [], "complete": False, "error": f"{UNREADABLE} ({exc})"}
            continue
        if scan is not None:
            out[entry.path] = {"globals": list(scan.globals), "complete": scan.complete, "error": scan.error}
    return out


UNREADABLE = "its stored bytes cannot be read"


def _keep(directory: Path, oid: str, record: Mapping[str, Any]) -> None:
    """Keep a record computed from bytes, unless some bytes could not be read: that may be repaired (a pull,
    `fsck`), and the verdict must then be taken again, not stay "unknown" for good."""
    if not any(str(f.get("error") or "").startswith(UNREADABLE) for f in record["files"].values()):
        write_record(directory, oid, record)


def record_of(files: Mapping[str, Any], source: str, allowed: Iterable[str] = ()) -> dict[str, Any]:
    """A record: the per-file results, where they came from ("save" or "bytes"), the local --allow entries."""
    return {
        "format": FORMAT,
        "scanner": SCANNER,
        "source": source,
        "allowed": sorted(set(allowed)),
        "files": {rel: files[rel] for rel in sorted(files)},
    }


def record_of_scans(scans: Mapping[str, _pickles.Scan], allowed: Iterable[str] = ()) -> dict[str, Any]:
    """The record a save writes from the scans it made of its source files."""
    files = {rel: {"globals": list(s.globals), "complete": s.complete, "error": s.error} for rel, s in scans.items()}
    return record_of(files, "save", allowed)


def _valid(doc: Any) -> dict[str, Any] | None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("scanner") != SCANNER:
        return None
    files, allowed = doc.get("files"), doc.get("allowed")
    if not isinstance(files, dict) or not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
        return None
    for value in files.values():
        if not (
            isinstance(value, dict)
            and isinstance(value.get("globals"), list)
            and all(isinstance(g, str) for g in value["globals"])
            and isinstance(value.get("complete"), bool)
            and (value.get("error") is None or isinstance(value.get("error"), str))
        ):
            return None
    return doc


def read_record(directory: Path, oid: str) -> dict[str, Any] | None:
    """The record of manifest `oid` under `directory`; None when there is none or it does not validate."""
    if not is_oid(oid):
        return None
    try:
        data = fsutil.read_regular(directory / f"{oid}.json", MAX_RECORD_BYTES)
        return _valid(json.loads(data))
    except (OSError, ValueError, MStoreError):
        return None


def write_record(directory: Path, oid: str, record: Mapping[str, Any]) -> None:
    """Keep a record (atomically). A store this user cannot write still answers: the verdict is then
    computed again next time."""
    if not is_oid(oid):
        return
    try:
        for folder in (directory.parent, directory):  # real directories, never links out of the store
            if not fsutil.check_real_dir(folder, f"{folder.name}/"):
                fsutil.make_dir(folder)
        data = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
        fsutil.atomic_write(directory / f"{oid}.json", data, sync_dir=False)
    except (OSError, MStoreError):
        pass


def _local_extra() -> list[str]:
    """MSTORE_ALLOW_FILE's entries; one that cannot be read or parsed adds nothing (fail closed)."""
    try:
        extra = _allow.extra_from_env()
        _allow.table(extra)
        return extra
    except (OSError, ValueError):
        return []


def block_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata keys a record stands for (the shape `ops/save.pickle_safety` writes); {} without pickles."""
    files: Mapping[str, Any] = record["files"]
    if not files:
        return {}
    allowed = sorted(set(record["allowed"]) | set(_local_extra()))
    try:
        table = _allow.table(allowed)
    except ValueError:
        table = _allow.ALLOWED
    names = [g for rel in sorted(files) for g in files[rel]["globals"]]
    out: dict[str, Any] = {
        "pickle_globals": {rel: list(files[rel]["globals"]) for rel in sorted(files)},
        "unsafe_globals": sorted({g for g in names if not _pickles.is_safe(g, table)}),
    }
    incomplete = {rel: files[rel]["error"] or "stopped early" for rel in sorted(files) if not files[rel]["complete"]}
    if incomplete:
        out["pickle_incomplete"] = incomplete
    out["pickle_verdict"] = "unsafe" if out["unsafe_globals"] else "unknown" if incomplete else "safe"
    if record["allowed"]:
        out["pickle_allowed"] = list(record["allowed"])
    return out


def effective(meta: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """`meta` with its pickle keys replaced by what `record` found (a copy; `meta` is not changed)."""
    block = meta.get("mstore")
    if not isinstance(block, dict):
        return dict(meta)
    found = block_of(record)
    claimed = block.get("pickle_verdict")
    new = {k: v for k, v in block.items() if k not in PICKLE_KEYS and k != "pickle_claimed"}
    new.update(found)
    if isinstance(claimed, str) and claimed != found.get("pickle_verdict"):
        new["pickle_claimed"] = claimed[:20]
    return {**meta, "mstore": new}


def unreadable(meta: Mapping[str, Any], why: str) -> dict[str, Any]:
    """`meta` when its bytes could not be scanned: unknown, treated as unsafe."""
    record = record_of({"?": {"globals": [], "complete": False, "error": why}}, "bytes")
    return effective(meta, record)


def records_dir(store: Store) -> Path:
    return store.root / RECORDS


def record_for(store: Store, version_id: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The record of a version's manifest: read, else computed from the stored bytes and kept."""
    oid = manifest_id(dict(meta), version_id)
    directory = records_dir(store)
    found = read_record(directory, oid)
    if found is None:
        manifest = store.version_manifest(version_id, dict(meta))
        found = record_of(scan_manifest(manifest, store.objects), "bytes")
        _keep(directory, oid, found)
    return found


def local(store: Store, version_id: str, meta: Mapping[str, Any], *, strict: bool = False) -> dict[str, Any]:
    """A version's metadata as every reader must see it: its pickle verdict recomputed from its bytes
    (`effective`). A version whose manifest cannot be read is "unknown" (`mstore fsck` says why); with
    `strict` (a load, which needs the manifest anyway) that error is raised instead."""
    block = meta.get("mstore")
    if not isinstance(block, dict) or store.metadata_only:  # browsing: the remote's claim, fetched bytes none
        return dict(meta)
    try:
        return effective(meta, record_for(store, version_id, meta))
    except (MStoreError, OSError, ValueError) as exc:
        if strict:
            raise
        return unreadable(meta, f"its model cannot be read to check its pickles ({exc})")


def recompute(store: Store, version_ids: Iterable[str]) -> None:
    """Compute the records of versions that arrived from elsewhere (pull, clone, import), now: the first
    `log` should not pay for them, and their metadata's own claim is never consulted."""
    for vid in version_ids:
        try:
            local(store, vid, store.versions.read(vid))
        except MStoreError:
            continue


def keep_save_record(store: Store, oid: str, scans: Mapping[str, _pickles.Scan], allowed: Iterable[str]) -> None:
    """What a save found in its source files, kept as the record of the manifest it wrote."""
    write_record(records_dir(store), oid, record_of_scans(scans, allowed))


def from_chunks(
    meta: Mapping[str, Any],
    oid: str,
    manifest: Manifest,
    chunks: Chunks,
    directory: Path,
    only: Iterable[str] | None = None,
) -> dict[str, Any]:
    """`local` for a version read from elsewhere without a store of its own (`model_path(remote=...)`): the
    record is kept under `directory` (the model cache's). With `only` (a partial load) just those files
    are scanned, and the rest count as unknown, so that nothing unscanned ever passes as safe."""
    record = read_record(directory, oid)  # a whole load made it before: it answers for any part too
    if record is None and only is None:
        record = record_of(scan_manifest(manifest, chunks), "bytes")
        _keep(directory, oid, record)
    if record is not None:
        return effective(meta, record)
    assert only is not None
    scope = sorted(set(only))
    files = scan_manifest(manifest, chunks, scope)
    if len(scope) == len(manifest.files):
        return effective(meta, record_of(files, "bytes"))
    files[""] = {"globals": [], "complete": False, "error": "only the files asked for were scanned"}
    out = effective(meta, record_of(files, "bytes"))
    out["mstore"]["pickle_scope"] = scope  # offline, a load of any other file is refused as unknown
    return out


def forget(store: Store, oid: str) -> None:
    """Drop the record of a manifest that gc deleted (a record is derived: losing one costs a recompute)."""
    if is_oid(oid):
        try:
            if fsutil.check_real_dir(records_dir(store), "cache/verdicts/"):
                fsutil.remove_file(records_dir(store) / f"{oid}.json")
        except (OSError, MStoreError):
            pass
