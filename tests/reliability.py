"""Helpers for the tests that try to break the store: forked children that crash or get killed,
and one check of everything a crash must never break."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import blake3

from mstore import Repository
from mstore.store import fsutil


def run_in_child(
    fn: Callable[[], object], *, crash_at: int = 0, kill_at: int = 0, kill_after: float | None = None
) -> int:
    """Run `fn` in a forked child; crash it at its `crash_at`-th filesystem step (os._exit), send it a real
    SIGKILL at its `kill_at`-th step (from itself, through the fault hook: deterministic), or SIGKILL it
    after `kill_after` seconds (a race: where it lands is luck). Returns the child's exit code (negative
    signal number when killed)."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            fsutil.crash_at(crash_at)
            if kill_at:

                def kill(op: str, path: Path) -> None:
                    if fsutil.steps_taken() >= kill_at:
                        os.kill(os.getpid(), signal.SIGKILL)  # delivered before kill() returns

                fsutil.set_fault_hook(kill)
            fn()
        except BaseException:
            code = 1
        os._exit(code)
    if kill_after is not None:
        time.sleep(kill_after)
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def assert_no_lock_held(repo: Repository) -> None:
    """The store's write and gc locks are free: asked without waiting, so a lock a dead process still
    holds fails the test instead of hanging it."""
    for name in ("write", "gc"):
        fd = fsutil.try_lock(repo.store.locks / name, wait=False)
        assert fd is not None, f"the {name} lock is still held"
        os.close(fd)


def content_hash(repo: Repository, version_id: str) -> str:
    """blake3 of the version's single file, reassembled from verified objects."""
    manifest = repo.manifest(version_id)
    hasher = blake3.blake3()
    for chunk in manifest.files[0].chunks:
        hasher.update(repo.store.objects.read(chunk.oid, chunk.size))
    return hasher.hexdigest()


def assert_consistent(
    repo: Repository,
    expected: dict[str, str],
    *,
    check: list[str] | None = None,
    latest_before: str | None | bool = False,
) -> None:
    """fsck finds no errors; refs/latest names an existing version and is either what it was before
    the interrupted command (`latest_before`) or the newest version; the versions in `check` (default:
    all) restore to the content hash recorded in `expected`."""
    report = repo.fsck()
    assert report.ok, [p.message for p in report.errors]
    ids = repo.ids()
    assert set(expected) <= set(ids), "a committed version disappeared"
    latest = repo.store.refs.latest()
    allowed = {ids[-1] if ids else None} | ({latest_before} if latest_before is not False else set())
    assert latest in allowed, f"refs/latest is {latest}, neither old nor new ({allowed})"
    for vid in expected if check is None else check:
        assert content_hash(repo, vid) == expected[vid], f"version {vid} does not restore bit-exact"


def leftovers(repo: Repository) -> list[Path]:
    return list(repo.store.objects.stray_files()) + list(repo.store.tmp.iterdir())
