"""Turn a model file or directory into objects plus a manifest, reading each source byte once.

The main thread reads pieces (chunker), feeds the whole-file hash and hands each piece to a small pool
of workers that hash it, skip it if the store has it, and otherwise encode (compress, byte-group, or
delta against the parent's same tensor) and write it, with a bounded number of pieces in flight so
memory stays bounded whatever the model size. A file whose size, mtime or inode differ before and
after reading is refused, so a version is never stored under a hash that does not match the file.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import blake3

from .. import workers
from ..errors import InvalidName, MStoreError, SourceChanged, SourceNotFound, UnsupportedSource
from ..formats.tensors import Read, Tensor, onnx_external_tensors
from ..store import codec
from ..store.chunking import Chunker, Piece
from ..store.codec import Compression, DeltaBase
from ..store.manifest import KIND_DIR, KIND_FILE, Chunk, Entry, Manifest, check_relpath
from ..store.objects import ObjectStore, hash_bytes
from ..workers import PARALLEL_MIN_BYTES, WORKERS, map_ordered
from . import statcache
from .statcache import StatCache

Progress = Callable[[int], None]
# (path, tensor piece key) -> object id of that piece in the parent version; path "" for single-file models
ParentPieces = dict[tuple[str, tuple[Any, ...]], str]


@dataclass
class IngestStats:
    """What a save read and what it added to the store."""

    bytes_total: int = 0
    bytes_new: int = 0  # content bytes of new objects
    stored_new: int = 0  # bytes those objects take on disk (after compression / delta)
    deltas: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def bytes_reused(self) -> int:
        return self.bytes_total - self.bytes_new


def _fingerprint(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


class _Writer:
    """Stores pieces; safe to call from several threads."""

    def __init__(
        self, objects: ObjectStore, stats: IngestStats, compression: Compression | None, parent: ParentPieces
    ) -> None:
        self.objects, self.stats, self.compression, self.parent = objects, stats, compression, parent

    def store(self, piece: Piece, rel: str) -> Chunk:
        data, n = piece.data, len(piece.data)
        oid = hash_bytes(data)
        if self.objects.has_intact(oid, n):
            return Chunk(oid, n)
        stored, is_delta = None, False
        if self.compression is not None:
            base, sample = self._base(rel, piece, oid)
            encoder = self.compression.encoder()
            width = piece.width if self.compression.grouping else 1
            stored = encoder.encode(data, width, base, tensor=piece.key is not None, base_sample=sample)
            is_delta = base is not None and codec.is_delta(stored)
        if self.objects.put(data, oid, stored):
            with self.stats._lock:
                self.stats.bytes_new += n
                self.stats.stored_new += len(stored) if stored is not None else n
                self.stats.deltas += is_delta
        return Chunk(oid, n)

    def _base(self, rel: str, piece: Piece, oid: str) -> tuple[DeltaBase | None, bytes | None]:
        """The parent's same piece as a delta base (its content read, verified, only when a delta is
        tried), and a cheap unverified sample of it for the encoder's estimate."""
        if piece.key is None or self.compression is None or not self.compression.delta:
            return None, None
        base_oid = self.parent.get((rel, piece.key))
        if base_oid is None or base_oid == oid:
            return None, None
        n = len(piece.data)
        grouped = self.compression.planes and self.compression.grouping and piece.width > 1
        try:  # bounded, never a FIFO or a link, and only the header and a sample are read here
            header, sample = self.objects.peek(base_oid, n, piece.width if grouped else 0)
        except (MStoreError, OSError):  # an unreadable base only costs the delta, never the save
            return None, None
        depth = header.depth if header is not None else 0

        def content() -> bytes | None:
            try:
                return self.objects.read(base_oid, n, buffer=True)  # only XORed
            except (MStoreError, OSError):  # an unreadable base only costs the delta, never the save
                return None

        return DeltaBase(base_oid, content, depth), sample


def _open_source(path: Path) -> BinaryIO:
    """A model file for reading; a FIFO or device swapped in after the scan is refused, never waited on."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsupportedSource(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _ingest_file(
    path: Path,
    rel: str,
    parent_key: str,
    writer: _Writer,
    chunker: Chunker,
    pool: Executor | None,
    progress: Progress | None,
    cache: StatCache | None = None,
    external: Sequence[Tensor] = (),
) -> Entry:
    try:
        with _open_source(path) as f:
            before = os.fstat(f.fileno())
            executable = bool(before.st_mode & stat.S_IXUSR)
            hit = cache.lookup(path, before) if cache is not None else None
            if hit is not None and all(writer.objects.has_intact(c.oid, c.size) for c in hit[1]):
                writer.stats.bytes_total += before.st_size  # unchanged since it was saved: not read again
                if progress:
                    progress(before.st_size)
                return Entry(rel, False, before.st_size, executable, hit[0], hit[1])
            read_start = statcache.clock_ns()
            whole = blake3.blake3()

            def pieces() -> Iterator[Piece]:
                for piece in chunker.split(f, rel, before.st_size, external):
                    whole.update(piece.data)
                    if progress:
                        progress(len(piece.data))
                    yield piece

            def keep(piece: Piece) -> Chunk:
                return writer.store(piece, parent_key)

            parallel = pool if before.st_size >= PARALLEL_MIN_BYTES else None
            chunks = list(map_ordered(keep, pieces(), parallel, 2 * WORKERS))  # bounded: few pieces in flight
            after = os.stat(path)
    except FileNotFoundError:
        raise SourceChanged(f"{path} disappeared while it was being saved; nothing was published") from None
    size = sum(c.size for c in chunks)
    if _fingerprint(before) != _fingerprint(after) or size != before.st_size:
        raise SourceChanged(
            f"{path} changed while it was being saved; nothing was published "
            "(save again once whatever is writing it has finished)"
        )
    writer.stats.bytes_total += size
    digest = whole.hexdigest()
    if cache is not None:
        cache.record(path, after, read_start, digest, tuple(chunks))
    return Entry(rel, False, size, executable, digest, tuple(chunks))


def _onnx_external(items: list[tuple[str, Path, bool]]) -> dict[str, list[Tensor]]:
    """The tensors the .onnx files of a directory model place in its other files (ONNX external data),
    so those files are cut at tensor boundaries too. Best effort: an unreadable model file counts as none."""
    files = [(rel, full) for rel, full, is_dir in items if not is_dir]
    if not any(rel.endswith(".onnx") for rel, _ in files):
        return {}
    sizes = {}
    for rel, full in files:
        with contextlib.suppress(OSError):
            sizes[rel] = full.lstat().st_size

    def models() -> Iterator[tuple[str, Read, int]]:
        for rel, full in files:
            if not rel.endswith(".onnx"):
                continue
            try:  # never through a link, and a FIFO swapped in since the scan cannot block the save
                fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if stat.S_ISREG(st.st_mode):
                    yield rel, _reader(f), st.st_size

    return onnx_external_tensors(models(), sizes)


def _reader(f: BinaryIO) -> Read:
    def read(offset: int, length: int) -> bytes:
        try:
            f.seek(offset)
            data: bytes = f.read(length)
        except OSError:
            return b""  # a short read: the parser gives up on this file
        return data

    return read


def scan(source: Path, exclude: Path | None = None) -> tuple[str, list[tuple[str, Path, bool]]]:
    """Check the source and list what to store: (kind, [(relative path, absolute path, is_dir)]).

    `exclude` is a directory left out with everything under it (the store a save writes to, when it
    lies inside the model directory: its lock and staging files change during the save, and a version
    must never contain its own store). Folders that held nothing but it are left out too.
    """
    try:
        st = source.stat()  # a top-level symlink is followed, as `cp` would
    except (FileNotFoundError, NotADirectoryError):
        raise SourceNotFound(f"model path {str(source)!r} does not exist") from None
    if stat.S_ISREG(st.st_mode):
        name = source.resolve().name if source.is_symlink() else source.name
        return KIND_FILE, [(_checked(name, source), source, False)]
    if not stat.S_ISDIR(st.st_mode):
        raise UnsupportedSource(f"{source} is neither a regular file nor a directory")
    skip = _identity(exclude)
    skipped: str | None = None
    items: list[tuple[str, Path, bool]] = []
    for dirpath, dirnames, filenames in os.walk(source, onerror=_raise, followlinks=False):
        base = Path(dirpath)
        for name in list(dirnames) + filenames:
            full = base / name
            rel = full.relative_to(source).as_posix()
            st_entry = full.lstat()
            mode = st_entry.st_mode
            if stat.S_ISLNK(mode):
                raise UnsupportedSource(f"{full} is a symbolic link; mstore stores regular files and directories only")
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise UnsupportedSource(f"{full} is not a regular file or directory")
            if stat.S_ISDIR(mode) and skip is not None and (st_entry.st_dev, st_entry.st_ino) == skip:
                dirnames.remove(name)  # os.walk does not descend into it
                skipped = rel
                continue
            items.append((_checked(rel, full), full, stat.S_ISDIR(mode)))
    if skipped is not None:  # drop folders that only existed to hold the excluded one
        holders = {a.as_posix() for a in Path(skipped).parents if a.as_posix() != "."}
        others = [i[0] for i in items if i[0] not in holders]
        items = [i for i in items if i[0] not in holders or any(o.startswith(i[0] + "/") for o in others)]
    items.sort()
    return KIND_DIR, items


def _identity(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def inside(path: Path, directory: Path) -> bool:
    """Whether `path` is `directory` or lies under it (compared by device and inode, so symlinks,
    bind mounts and case-insensitive file systems cannot hide it)."""
    target = _identity(directory)
    if target is None:
        return False
    resolved = path.resolve()
    return any(_identity(p) == target for p in (resolved, *resolved.parents))


def _checked(rel: str, full: Path) -> str:
    try:
        return check_relpath(rel)
    except InvalidName as exc:
        raise UnsupportedSource(f"cannot store {full}: {exc}") from None


def _raise(exc: OSError) -> None:
    raise exc


def ingest(
    source: Path,
    objects: ObjectStore,
    chunker: Chunker,
    progress: Progress | None = None,
    *,
    compression: Compression | None = None,
    parent: ParentPieces | None = None,
    exclude: Path | None = None,
    cache: StatCache | None = None,
) -> tuple[Manifest, IngestStats]:
    """Store every file of `source` in `objects` and return its manifest (not yet stored) and stats.

    `exclude`: a directory inside `source` to leave out (see `scan`). With a stat `cache`, a file
    unchanged since it was last saved is not read (see statcache.py); the caller flushes the cache once
    the version is published.
    """
    kind, items = scan(source, exclude)
    external = _onnx_external(items) if kind == KIND_DIR else {}
    stats = IngestStats()
    writer = _Writer(objects, stats, compression, parent or {})
    needs_pool = any(not d and full.stat().st_size >= PARALLEL_MIN_BYTES for _, full, d in items)
    with workers.pool() if needs_pool else nullcontext() as pool:
        entries = [
            Entry(rel, is_dir=True)
            if is_dir
            else _ingest_file(
                full,
                rel,
                "" if kind == KIND_FILE else rel,
                writer,
                chunker,
                pool,
                progress,
                cache,
                external.get(rel, ()),
            )
            for rel, full, is_dir in items
        ]
    return Manifest(kind, tuple(entries)), stats


def source_size(source: Path, exclude: Path | None = None) -> int:
    """Total bytes of the files under `source` (for progress bars)."""
    _, items = scan(source, exclude)
    return sum(full.stat().st_size for _, full, is_dir in items if not is_dir)
