"""The only code that writes store files: temp file beside the target, fsync, rename, fsync the directory.

Keeping every durable write here gives one place to audit (and, later, to inject crashes and faults).
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

TMP_PREFIX = ".tmp-"


def temp_name(directory: Path, stem: str) -> Path:
    """A unique temp path in `directory` (same filesystem as the target, so rename is atomic)."""
    return directory / f"{TMP_PREFIX}{stem[:40]}-{os.getpid()}-{secrets.token_hex(6)}"


def is_temp_name(name: str) -> bool:
    return name.startswith(TMP_PREFIX)


def fsync_dir(directory: Path) -> None:
    """Make a rename or link in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(directory: Path, stem: str, data: bytes, mode: int = 0o444) -> Path:
    tmp = temp_name(directory, stem)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        remove_file(tmp)
        raise
    os.close(fd)
    return tmp


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, sync_dir: bool = True) -> None:
    """Replace `path` with `data` so that readers see the old or the new content, never a mix."""
    tmp = _write_temp(path.parent, path.name, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        remove_file(tmp)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def create_exclusive(path: Path, data: bytes, *, mode: int = 0o444) -> bool:
    """Publish `data` at `path` only if nothing is there yet (os.link fails on an existing name).

    Returns False when `path` already existed. The caller fsyncs the directory (batched per save).
    """
    tmp = _write_temp(path.parent, path.name, data, mode)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        remove_file(tmp)


def write_file(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write a new file inside a staging directory (no rename needed: the directory is renamed later)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_file(path: Path) -> None:
    """Unlink `path`; a file that is already gone is fine (every caller wants it gone)."""
    with suppress(FileNotFoundError):
        os.unlink(path)


@contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold a flock on `path`; the kernel releases it if the process dies, so no lock is ever stale."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the flock
