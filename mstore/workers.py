"""One way to run mstore's work on threads: a bounded window in flight, the first error stops it.

Save, checkout, fsck, push, pull and the remote checks overlap work that releases the GIL (blake3, zstd,
numpy copies, fsync, network waits) on a few threads. Every pool is made here (`pool`), one per
operation, and work goes through these helpers, so the bound on what is held in memory at once
(2 x workers items) and the error rule live in one place.

Two numbers, because the two kinds of work want different concurrency (both measured): local work is
CPU- and disk-bound, so a couple of threads more than cores lets fsync waits overlap with hashing and
compression; object storage rewards many requests in flight far more than a local disk does.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar

CORES = os.cpu_count() or 2  # CPU-bound work (fsck's tree checks): one thread per core
WORKERS = min(8, CORES + 2)  # local save / checkout: cores + 2, fsync waits overlap with work
REMOTE_WORKERS = 8  # requests in flight to a remote; MSTORE_TRANSFER_WORKERS overrides (1 to 64)
PARALLEL_MIN_BYTES = 8 << 20  # smaller files are done inline: no thread start-up, deterministic order

T = TypeVar("T")
R = TypeVar("R")


@contextmanager
def pool(workers: int = WORKERS) -> Iterator[ThreadPoolExecutor]:
    """A pool of `workers` threads for one operation; on leaving, queued work is cancelled and running
    work waited for."""
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mstore")
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def remote_workers() -> int:
    """REMOTE_WORKERS, or MSTORE_TRANSFER_WORKERS when set (1 to 64)."""
    try:
        return max(1, min(64, int(os.environ.get("MSTORE_TRANSFER_WORKERS", REMOTE_WORKERS))))
    except ValueError:
        return REMOTE_WORKERS


def map_ordered(fn: Callable[[T], R], items: Iterable[T], executor: Executor | None, window: int) -> Iterator[R]:
    """`fn` over `items`, results in the items' order, at most `window` + 1 submitted and not yet taken.

    With no pool, inline (small files: no thread start-up). `items` is consumed lazily, so a reader that
    produces the items (a file being chunked) is never more than `window` pieces ahead. When the caller
    stops early, an item fails or `items` itself raises, what is still queued is cancelled and what is
    running is waited for: no work of this call goes on after it has returned or raised."""
    if executor is None:
        yield from map(fn, items)
        return
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(executor.submit(fn, item))
            if len(pending) > window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        wait(pending)


def run_all(items: Iterable[T], fn: Callable[[T], None], workers: int) -> None:
    """`fn` over `items` on `workers` threads in any order, at most 2 x workers in flight; the first
    error cancels what has not started and is raised."""
    with pool(workers) as executor:
        pending: set[Future[None]] = set()
        try:
            for item in items:
                if len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        f.result()
                pending.add(executor.submit(fn, item))
            for f in pending:
                f.result()
        except BaseException:
            for f in pending:
                f.cancel()
            raise


def map_all(items: list[T], fn: Callable[[T], R], workers: int) -> list[R]:
    """`[fn(x) for x in items]` on `workers` threads (small per-version requests)."""
    if len(items) <= 1:
        return [fn(x) for x in items]
    with pool(workers) as executor:
        return list(executor.map(fn, items))
