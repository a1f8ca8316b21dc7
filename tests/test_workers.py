"""The one bounded worker pool (mstore/workers.py): order kept, memory in flight bounded, errors stop it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstore.workers import map_all, map_ordered, run_all

from helpers import examples


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(st.integers(), max_size=60), st.integers(1, 6), st.booleans())
def test_map_ordered_keeps_order_and_never_runs_more_than_the_window_ahead(
    items: list[int], window: int, threaded: bool
) -> None:
    produced = consumed = 0
    ahead: list[int] = []

    def source():  # type: ignore[no-untyped-def]
        nonlocal produced
        for x in items:
            produced += 1
            yield x

    with ThreadPoolExecutor(3) as pool:
        out = []
        for y in map_ordered(lambda x: x * 2, source(), pool if threaded else None, window):
            consumed += 1
            ahead.append(produced - consumed)
            out.append(y)
    assert out == [x * 2 for x in items]
    # the reader of the items is never more than `window` items ahead of what was taken
    assert all(n <= window for n in ahead), (max(ahead), window)


def test_map_ordered_raises_the_first_error_and_cancels_the_queued_rest() -> None:
    started: list[int] = []
    release = threading.Event()

    def work(x: int) -> int:
        started.append(x)
        if x == 0:
            raise ValueError("boom")
        release.wait(5)  # item 1 holds the only thread while the error is raised
        return x

    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(ValueError, match="boom"):
            list(map_ordered(work, range(100), pool, 10))
        release.set()
    # 11 were submitted (the window + 1); all but the failed one and (maybe) one already running were cancelled
    assert started in ([0], [0, 1]), started


def test_run_all_runs_everything_once_and_stops_on_the_first_error() -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def keep(x: int) -> None:
        with lock:
            seen.append(x)

    run_all(range(200), keep, workers=4)
    assert sorted(seen) == list(range(200))

    calls = 0

    def fail_on_7(x: int) -> None:
        nonlocal calls
        with lock:
            calls += 1
        if x == 7:
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        run_all(range(10_000), fail_on_7, workers=2)
    assert 8 <= calls <= 7 + 2 * 2 + 2, calls  # stopped near the error, not after all 10,000


def test_map_all_is_map() -> None:
    assert map_all([3, 1, 2], lambda x: x + 1, workers=3) == [4, 2, 3]
    assert map_all([5], lambda x: x, workers=3) == [5]


@pytest.mark.parametrize("how", ["items raise", "caller stops"])
def test_map_ordered_leaves_no_work_running_after_it_returns(how: str) -> None:
    """A chunker that raises (the file changed) or a reader that stops early: nothing of this call is
    still running afterwards, so no thread writes after the error has been reported."""
    running = 0
    lock = threading.Lock()

    def slow(x: int) -> int:
        nonlocal running
        with lock:
            running += 1
        time.sleep(0.05)
        with lock:
            running -= 1
        return x

    def items():  # type: ignore[no-untyped-def]
        yield from range(5)
        if how == "items raise":
            raise RuntimeError("source changed")
        yield from range(5, 100)

    with ThreadPoolExecutor(2) as pool:
        results = map_ordered(slow, items(), pool, 4)
        if how == "items raise":
            with pytest.raises(RuntimeError, match="source changed"):
                list(results)
        else:
            assert next(results) == 0
            results.close()
        with lock:
            assert running == 0


def test_remote_checks_take_their_concurrency_from_the_environment_like_transfers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MSTORE_TRANSFER_WORKERS sets the requests in flight of push and pull, and of fsck/gc --remote too."""
    from mstore import Repository
    from mstore.remote import check as remote_check

    repo = Repository.init(tmp_path / "store")
    (tmp_path / "m.bin").write_bytes(b"weights" * 1000)
    repo.save(tmp_path / "m.bin")
    repo.remote_add("team", str(tmp_path / "shared"))
    repo.push("team")
    seen: list[int] = []
    real = remote_check.run_all

    def spy(items, fn, workers):  # type: ignore[no-untyped-def]
        seen.append(workers)
        return real(items, fn, workers)

    monkeypatch.setattr(remote_check, "run_all", spy)
    monkeypatch.setenv("MSTORE_TRANSFER_WORKERS", "3")
    assert remote_check.check(repo.remote("team"), verify_data=True).ok
    remote_check.collect(repo.remote("team"), grace_seconds=0, dry_run=True)
    assert seen and set(seen) == {3}, seen
