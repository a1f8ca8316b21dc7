"""Materialise a manifest on disk, verifying every chunk before any of its bytes are written.

Files are assembled in a temp file beside their final name from chunks that were each decoded and
re-hashed against their object id, in the order a hash-verified manifest lists them, and renamed into
place only when all of them were written and the length is the file's. The whole file is not hashed a
second time: its bytes are the concatenation of verified chunks, and the manifest that orders them is
itself verified, so a second hash could only catch a bug in this loop (docs/guarantees.md, promise 1).
Checkout either produces the exact bytes that were saved or fails loudly.
Paths come from a validated manifest and are re-checked here: nothing is written outside `dest`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Executor
from contextlib import nullcontext
from pathlib import Path

from .. import workers
from ..errors import CorruptObject, DestinationExists, InvalidName
from ..store import fsutil
from ..store.manifest import KIND_FILE, Chunk, Entry, Manifest, check_relpath
from ..store.objects import ObjectStore
from ..workers import PARALLEL_MIN_BYTES, WORKERS, map_ordered

Progress = Callable[[int], None]


def checkout_target(manifest: Manifest, dest: Path) -> Path:
    """Where a checkout to `dest` lands: a single-file model into an existing directory keeps its name."""
    if manifest.kind == KIND_FILE and dest.is_dir():
        return dest / manifest.entries[0].path
    return dest


def _write_chunks(entry: Entry, fd: int, objects: ObjectStore, pool: Executor | None) -> Iterator[int]:
    """Each chunk decoded, verified and written at its offset in `fd` (`os.pwrite`, on the restore's
    threads for large files, a bounded window ahead, so the main thread is not the writer); yields the
    bytes written per chunk, in order."""
    offsets, offset = [], 0
    for chunk in entry.chunks:
        offsets.append(offset)
        offset += chunk.size

    def write(item: tuple[Chunk, int]) -> int:
        chunk, at = item
        data = objects.read(chunk.oid, chunk.size, buffer=True, in_planes=True)
        if len(data) != chunk.size:  # objects.read checked it already; a cheap second guard
            raise CorruptObject(f"{entry.path}: chunk {chunk.oid} has the wrong size")
        view = memoryview(data)
        while view:
            done = os.pwrite(fd, view, at)
            view, at = view[done:], at + done
        return len(data)

    parallel = pool if entry.size >= PARALLEL_MIN_BYTES and len(entry.chunks) >= 2 else None
    yield from map_ordered(write, zip(entry.chunks, offsets, strict=True), parallel, 2 * WORKERS)


def _write_file(
    entry: Entry, target: Path, objects: ObjectStore, progress: Progress | None, pool: Executor | None
) -> None:
    tmp = fsutil.temp_name(target.parent, target.name)
    try:
        with open(tmp, "xb") as out:
            written = 0
            for size in _write_chunks(entry, out.fileno(), objects, pool):
                written += size
                if progress:
                    progress(size)
            length = os.fstat(out.fileno()).st_size
        if written != entry.size or length != entry.size:
            raise CorruptObject(f"{entry.path}: reassembled {length} bytes, the manifest says {entry.size}")
        os.chmod(tmp, 0o755 if entry.executable else 0o644)
        os.replace(tmp, target)
    except BaseException:
        fsutil.remove_file(tmp)
        raise


def _ensure_real_dir(path: Path) -> None:
    """Create `path` as a directory, refusing to go through a symlink or over a file."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        path.mkdir()
        return
    if not stat.S_ISDIR(mode):
        raise DestinationExists(f"{path} exists and is not a directory")


_FORCE = ("--force", "force=True")  # how the caller says it: a CLI flag or a Python keyword


def restore(
    manifest: Manifest,
    objects: ObjectStore,
    dest: Path,
    *,
    force: bool = False,
    progress: Progress | None = None,
    only: Collection[str] | None = None,
) -> Path:
    """Write the model to `dest` and return the path written. Existing files need `force`.

    `only`: the paths of the files to write (with the folders that hold them), for a directory model;
    None writes every file and folder."""
    large = any(e.size >= PARALLEL_MIN_BYTES for e in manifest.files if only is None or e.path in only)
    with workers.pool() if large else nullcontext() as pool:
        return _restore(manifest, objects, dest, force, progress, pool, only)


def _restore(
    manifest: Manifest,
    objects: ObjectStore,
    dest: Path,
    force: bool,
    progress: Progress | None,
    pool: Executor | None,
    only: Collection[str] | None = None,
) -> Path:
    target = checkout_target(manifest, dest)
    if manifest.kind == KIND_FILE:
        if target.is_symlink() or target.is_dir() or (target.exists() and not force):
            raise DestinationExists(f"{target} already exists (use {{force}} to overwrite)", force=_FORCE)
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_file(manifest.entries[0], target, objects, progress, pool)
        return target
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise DestinationExists(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise DestinationExists(f"{target} is not empty (use {{force}} to write into it)", force=_FORCE)
    target.mkdir(parents=True, exist_ok=True)
    for entry in manifest.entries:
        if only is not None and (entry.is_dir or entry.path not in only):
            continue
        rel = check_relpath(entry.path)
        out = target.joinpath(*rel.split("/"))
        if only is not None:  # the folder entries were skipped: make this file's folders
            for depth in range(1, rel.count("/") + 1):
                _ensure_real_dir(target.joinpath(*rel.split("/")[:depth]))
        if not out.resolve().is_relative_to(target.resolve()):
            raise InvalidName(f"refusing to write {entry.path!r} outside {target}")
        if entry.is_dir:
            _ensure_real_dir(out)
            continue
        if out.is_symlink() or out.is_dir():
            raise DestinationExists(f"{out} exists and is not a regular file")
        _write_file(entry, out, objects, progress, pool)
    return target
