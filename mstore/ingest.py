"""Turn a model file or directory into objects plus a manifest, hashing while reading.

The source is read exactly once: each chunk is hashed, stored if new, and fed to the whole-file
hash. A file whose size, mtime or inode differ before and after reading is refused, so a version is
never stored under a hash that does not match the file the user meant.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import blake3

from .chunking import Chunker
from .errors import InvalidName, SourceChanged, SourceNotFound, UnsupportedSource
from .manifest import KIND_DIR, KIND_FILE, Chunk, Entry, Manifest, check_relpath
from .objects import ObjectStore, hash_bytes

Progress = Callable[[int], None]


@dataclass
class IngestStats:
    """What a save read and what it added to the store."""

    bytes_total: int = 0
    bytes_new: int = 0
    chunks_total: int = 0
    chunks_new: int = 0

    @property
    def bytes_reused(self) -> int:
        return self.bytes_total - self.bytes_new


def _fingerprint(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def _ingest_file(
    path: Path, rel: str, objects: ObjectStore, chunker: Chunker, stats: IngestStats, progress: Progress | None
) -> Entry:
    try:
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            if not stat.S_ISREG(before.st_mode):
                raise UnsupportedSource(f"{path} is not a regular file")
            whole = blake3.blake3()
            chunks = []
            for piece in chunker.split(f):
                oid = hash_bytes(piece)
                if objects.put(piece, oid):
                    stats.bytes_new += len(piece)
                    stats.chunks_new += 1
                whole.update(piece)
                chunks.append(Chunk(oid, len(piece)))
                stats.chunks_total += 1
                if progress:
                    progress(len(piece))
            after = os.stat(path)
    except FileNotFoundError:
        raise SourceChanged(f"{path} disappeared while it was being saved; nothing was published") from None
    size = sum(c.size for c in chunks)
    if _fingerprint(before) != _fingerprint(after) or size != before.st_size:
        raise SourceChanged(f"{path} changed while it was being saved; nothing was published (save it again)")
    stats.bytes_total += size
    return Entry(rel, False, size, bool(before.st_mode & stat.S_IXUSR), whole.hexdigest(), tuple(chunks))


def scan(source: Path) -> tuple[str, list[tuple[str, Path, bool]]]:
    """Check the source and list what to store: (kind, [(relative path, absolute path, is_dir)])."""
    try:
        st = source.stat()  # a top-level symlink is followed, as `cp` would
    except FileNotFoundError:
        raise SourceNotFound(f"model path {str(source)!r} does not exist") from None
    except NotADirectoryError:
        raise SourceNotFound(f"model path {str(source)!r} does not exist") from None
    if stat.S_ISREG(st.st_mode):
        name = source.resolve().name if source.is_symlink() else source.name
        return KIND_FILE, [(_checked(name, source), source, False)]
    if not stat.S_ISDIR(st.st_mode):
        raise UnsupportedSource(f"{source} is neither a regular file nor a directory")
    items: list[tuple[str, Path, bool]] = []
    for dirpath, dirnames, filenames in os.walk(source, onerror=_raise, followlinks=False):
        base = Path(dirpath)
        for name in dirnames + filenames:
            full = base / name
            rel = full.relative_to(source).as_posix()
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise UnsupportedSource(f"{full} is a symbolic link; mstore stores regular files and directories only")
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise UnsupportedSource(f"{full} is not a regular file or directory")
            items.append((_checked(rel, full), full, stat.S_ISDIR(mode)))
    items.sort()
    return KIND_DIR, items


def _checked(rel: str, full: Path) -> str:
    try:
        return check_relpath(rel)
    except InvalidName as exc:
        raise UnsupportedSource(f"cannot store {full}: {exc}") from None


def _raise(exc: OSError) -> None:
    raise exc


def ingest(
    source: Path, objects: ObjectStore, chunker: Chunker, progress: Progress | None = None
) -> tuple[Manifest, IngestStats]:
    """Store every file of `source` in `objects` and return its manifest (not yet stored) and stats."""
    kind, items = scan(source)
    stats = IngestStats()
    entries = [
        Entry(rel, is_dir=True) if is_dir else _ingest_file(full, rel, objects, chunker, stats, progress)
        for rel, full, is_dir in items
    ]
    return Manifest(kind, tuple(entries)), stats


def source_size(source: Path) -> int:
    """Total bytes of the files under `source` (for progress bars)."""
    _, items = scan(source)
    return sum(full.stat().st_size for _, full, is_dir in items if not is_dir)
