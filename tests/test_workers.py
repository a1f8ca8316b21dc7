"""The one bounded worker pool (mstore/workers.py): order kept, memory in flight bounded, errors stop it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

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

    def fail_on_7(x: int) -> None:
        if x == 7:
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        run_all(range(10_000), fail_on_7, workers=2)


def test_map_all_is_map() -> None:
    assert map_all([3, 1, 2], lambda x: x + 1, workers=3) == [4, 2, 3]
    assert map_all([5], lambda x: x, workers=3) == [5]
