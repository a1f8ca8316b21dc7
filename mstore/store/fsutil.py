"""The only code that changes store files: temp file beside the target, fsync, rename, fsync the directory.

Every mutating filesystem call goes through `_step`, which gives tests two switches over the whole
code base: `MSTORE_CRASH_AT=k` (or `crash_at(k)`) ends the process abruptly, like SIGKILL, just before
the k-th operation, and `set_fault_hook` lets a test raise ENOSPC or EIO at any chosen operation.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..errors import UnsafeLayout, UnsafeStoreFile

TMP_PREFIX = ".tmp-"
CRASH_EXIT_CODE = 137  # what a shell reports for SIGKILL

FaultHook = Callable[[str, Path], None]
_crash_at = int(os.environ.get("MSTORE_CRASH_AT", "0") or 0)
_steps = 0
_fault_hook: FaultHook | None = None
_read_fault_hook: FaultHook | None = None


def crash_at(k: int) -> None:
    """Test hook: die (os._exit, no cleanup) just before the k-th filesystem operation from now; 0 disables."""
    global _crash_at, _steps
    _crash_at, _steps = k, 0


def set_fault_hook(hook: FaultHook | None) -> None:
    """Test hook: `hook(op, path)` runs before every operation and may raise OSError to inject a fault."""
    global _fault_hook
    _fault_hook = hook


def set_read_fault_hook(hook: FaultHook | None) -> None:
    """Test hook: `hook("read", path)` runs before every read of a store file and may raise OSError (EIO)."""
    global _read_fault_hook
    _read_fault_hook = hook


def steps_taken() -> int:
    return _steps


def _step(op: str, path: Path) -> None:
    global _steps
    _steps += 1
    if _crash_at and _steps >= _crash_at:
        os._exit(CRASH_EXIT_CODE)
    if _fault_hook is not None:
        _fault_hook(op, path)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_malloc_tuned = False


def keep_freed_memory() -> None:
    """Let glibc reuse freed object buffers instead of returning them to the kernel (once per process).

    Saves, checkouts and fsck allocate and free a few MiB per object, thousands of times. By default
    glibc gives each such buffer its own mmap (or trims the heap after it is freed), so every object's
    bytes are page-faulted and zeroed by the kernel again: measured, 550,000 page faults and ~1 s of
    system CPU for an fsck of 1 GB of content, 14,000 faults and 0.2 s with these two settings. Memory
    stays bounded by the peak working set, which the pools' windows already bound. A no-op off glibc.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): their allocators behave differently
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # the largest glibc accepts; objects are pieces of 4 MiB
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)


def temp_name(directory: Path, stem: str) -> Path:
    """A unique temp path in `directory` (same filesystem as the target, so rename is atomic)."""
    return directory / f"{TMP_PREFIX}{stem[:40]}-{os.getpid()}-{secrets.token_hex(6)}"


def is_temp_name(name: str) -> bool:
    return name.startswith(TMP_PREFIX)


def open_regular(path: Path) -> int:
    """A read-only descriptor for `path`, which must be a regular file and not a symlink.

    Store files come from disks and remotes others can write to: a FIFO would block `open` forever
    (hence O_NONBLOCK, checked by fstat before any read), `/dev/zero` would never end, and a symlink
    could point anywhere. mstore never creates any of these in a store, so all of them are refused.
    """
    if _read_fault_hook is not None:
        _read_fault_hook("read", path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeStoreFile(f"{path} is a symbolic link (mstore never creates links in a store)") from None
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO's peer missing on some systems
            raise UnsafeStoreFile(f"{path} is not a regular file") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO, device or socket"
            raise UnsafeStoreFile(f"{path} is {kind}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path, limit: int, *, head: int | None = None) -> bytes:
    """The bytes of the regular file `path` (or its first `head` bytes); refuses files over `limit` bytes.

    Reads at most `limit` bytes whatever happens to the file meanwhile, so a hostile store can make
    mstore neither hang nor run out of memory. FileNotFoundError passes through.
    """
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if head is None and size > limit:
            raise UnsafeStoreFile(f"{path} is larger than any such file mstore writes ({size} > {limit} bytes)")
        want = min(size, limit) if head is None else min(head, limit)
        chunks, got = [], 0
        while got < want:
            piece = os.read(fd, min(want - got, 16 << 20))
            if not piece:
                break
            chunks.append(piece)
            got += len(piece)
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_real_dir(path: Path, what: str, remedy: str = "run `mstore fsck`") -> bool:
    """True if `path` is a real directory, False if it does not exist; UnsafeLayout (saying `remedy`) if it
    is anything else."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(mode):
        raise UnsafeLayout(f"{what} ({path}) is a symbolic link; mstore never creates one there ({remedy})")
    if not stat.S_ISDIR(mode):
        raise UnsafeLayout(f"{what} ({path}) is not a directory ({remedy})")
    return True


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


_SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h: start writeback of the range's dirty pages, do not wait
_BATCH_ENV = "MSTORE_BATCH_DURABILITY"  # "0": an fsync per object, as before batches existed
_start_writeback: Callable[[int], None] | None = None
_writeback_probed = False


def _writeback_starter() -> Callable[[int], None] | None:
    """`sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)` through libc (Linux only), or None."""
    global _start_writeback, _writeback_probed
    if _writeback_probed:
        return _start_writeback
    _writeback_probed = True
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):  # not glibc / no such symbol: fall back to an fsync per object
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int

    def start(fd: int) -> None:
        call(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # a hint: a failure here is found by the fsync that follows

    _start_writeback = start
    return start


def batching_supported() -> bool:
    """Whether object writes may be batched (`write_unsynced`, then `fsync_files`): Linux, where the
    writeback of each file can be started as it is written, unless MSTORE_BATCH_DURABILITY=0."""
    return os.environ.get(_BATCH_ENV, "1") != "0" and _writeback_starter() is not None


def write_unsynced(path: Path, data: bytes, *, mode: int = 0o444) -> None:
    """Create `path` (a temp name: it must not exist) with `data`, its writeback started but not waited
    for. Not durable until `fsync_files` returns for it; never link it into place before that. An error
    leaves no file behind."""
    _step("create", path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            _step("write", path)
            view = view[os.write(fd, view[: 8 << 20]) :]
        start = _writeback_starter()
        if start is not None:
            start(fd)
    except BaseException:
        os.close(fd)
        with suppress(FileNotFoundError):
            os.unlink(path)
        raise
    os.close(fd)


FSYNC_THREADS = 4  # fsyncs in flight at once: the journal commits them together (measured: see guarantees.md)


def fsync_files(paths: list[Path]) -> None:
    """fsync each file (written by `write_unsynced`), several at a time. The steps are taken in order
    in the calling thread; the first error is raised once every fsync already started has returned,
    and none is retried (the caller must treat every file of the batch as not durable)."""
    if not paths:
        return

    def one(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    if len(paths) == 1:
        _step("fsync", paths[0])
        one(paths[0])
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(FSYNC_THREADS, len(paths)), thread_name_prefix="mstore-fsync") as pool:
        futures = []
        try:
            for path in paths:
                _step("fsync", path)
                futures.append(pool.submit(one, path))
        finally:
            errors = [f.exception() for f in futures]  # waits for each: nothing is left running
        for exc in errors:
            if exc is not None:
                raise exc


def publish_temp(tmp: Path, path: Path, *, replace: bool) -> bool:
    """Give the durable temp file `tmp` its final name `path`: a new link (False if `path` exists
    already), or with `replace` an atomic replace of a damaged copy. `tmp` is gone afterwards."""
    if replace:
        _step("replace", path)
        os.replace(tmp, path)
        return True
    try:
        _step("link", path)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        remove_file(tmp)


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
    return publish_temp(_write_temp(path.parent, path.name, data, mode), path, replace=False)


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
    fd = try_lock(path, shared=shared)
    assert fd is not None  # a waiting lock always comes back held
    try:
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the flock


def try_lock(path: Path, *, shared: bool = False, wait: bool = True) -> int | None:
    """Open `path` (O_NOFOLLOW) and flock it; returns the descriptor (close it to unlock), or None when
    `wait` is False and another process holds a conflicting lock. For locks held longer than a block."""
    try:  # O_NOFOLLOW: a planted symlink must not make us create or open a file elsewhere
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise UnsafeStoreFile(f"lock file {path} is not a regular file (run `mstore fsck`)") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeStoreFile(f"lock file {path} is not a regular file (run `mstore fsck`)")
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            os.close(fd)
            return None
    except BaseException:
        with suppress(OSError):
            os.close(fd)
        raise
    return fd
