"""The only code that changes store files: temp file beside the target, fsync, rename, fsync the directory.

Every mutating filesystem call goes through `_step`, which gives tests two switches over the whole
code base: `MSTORE_CRASH_AT=k` (or `crash_at(k)`) ends the process abruptly, like SIGKILL, just before
the k-th operation, and `set_fault_hook` lets a test raise ENOSPC or EIO at any chosen operation.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

TMP_PREFIX = ".tmp-"
CRASH_EXIT_CODE = 137  # what a shell reports for SIGKILL

FaultHook = Callable[[str, Path], None]
_crash_at = int(os.environ.get("MSTORE_CRASH_AT", "0") or 0)
_steps = 0
_fault_hook: FaultHook | None = None


def crash_at(k: int) -> None:
    """Test hook: die (os._exit, no cleanup) just before the k-th filesystem operation from now; 0 disables."""
    global _crash_at, _steps
    _crash_at, _steps = k, 0


def set_fault_hook(hook: FaultHook | None) -> None:
    """Test hook: `hook(op, path)` runs before every operation and may raise OSError to inject a fault."""
    global _fault_hook
    _fault_hook = hook


def steps_taken() -> int:
    return _steps


def _step(op: str, path: Path) -> None:
    global _steps
    _steps += 1
    if _crash_at and _steps >= _crash_at:
        os._exit(CRASH_EXIT_CODE)
    if _fault_hook is not None:
        _fault_hook(op, path)


def temp_name(directory: Path, stem: str) -> Path:
    """A unique temp path in `directory` (same filesystem as the target, so rename is atomic)."""
    return directory / f"{TMP_PREFIX}{stem[:40]}-{os.getpid()}-{secrets.token_hex(6)}"


def is_temp_name(name: str) -> bool:
    return name.startswith(TMP_PREFIX)


def fsync_dir(directory: Path) -> None:
    """Make a rename, link or unlink in `directory` durable."""
    _step("fsync_dir", directory)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Create `path` (which must not exist) with `data`, fsynced. An error leaves no file behind."""
    _step("create", path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            _step("write", path)
            view = view[os.write(fd, view[: 8 << 20]) :]
        _step("fsync", path)
        os.fsync(fd)  # an fsync error is final: the caller aborts, nothing retries it
    except BaseException:
        os.close(fd)
        with suppress(FileNotFoundError):
            os.unlink(path)
        raise
    os.close(fd)


def _write_temp(directory: Path, stem: str, data: bytes, mode: int) -> Path:
    tmp = temp_name(directory, stem)
    write_file(tmp, data, mode=mode)
    return tmp


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, sync_dir: bool = True) -> None:
    """Replace `path` with `data` so that readers see the old or the new content, never a mix."""
    tmp = _write_temp(path.parent, path.name, data, mode)
    try:
        _step("replace", path)
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
        _step("link", path)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        remove_file(tmp)


def rename(src: Path, dst: Path) -> None:
    """Atomic rename within one filesystem (the commit point of a version, the start of a removal)."""
    _step("rename", dst)
    os.rename(src, dst)


def make_dir(path: Path, *, parents: bool = False) -> None:
    """mkdir that is fine if the directory exists already."""
    _step("mkdir", path)
    path.mkdir(parents=parents, exist_ok=True)


def touch(path: Path) -> None:
    """Refresh mtime (so gc's grace period protects an object a save is about to reuse)."""
    _step("utime", path)
    os.utime(path)


def remove_file(path: Path) -> None:
    """Unlink `path`; a file that is already gone is fine (every caller wants it gone)."""
    _step("unlink", path)
    with suppress(FileNotFoundError):
        os.unlink(path)


def remove_tree(path: Path) -> None:
    """Delete a directory tree that is already out of sight (in tmp/); safe to repeat."""
    _step("rmtree", path)
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold a flock on `path`; the kernel releases it if the process dies, so no lock is ever stale."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the flock
