"""The stat cache can only ever save a re-read: whatever happens to a file between saves (new content of the
same size, its mtime forced back with os.utime, a replacement by rename, edits within the same second),
a save records exactly the bytes the file holds; a damaged cache file means no cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mstore import Repository
from mstore.content import statcache

from helpers import examples


class Clock:
    """statcache's clock (its seam, `clock_ns`): real time plus what a test lets pass. "Long enough ago to
    trust" is decided by the test, not by a sleep racing the racy window."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return time.time_ns() + self.offset

    def pause(self) -> None:
        self.offset += 2 * statcache.RACY_NS


CLOCK = Clock()


@pytest.fixture(autouse=True)
def _virtual_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statcache, "clock_ns", CLOCK)


class Hits:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = statcache.StatCache.lookup

        def lookup(cache: statcache.StatCache, path: Path, st: os.stat_result) -> object:
            found = real(cache, path, st)
            self.count += found is not None
            return found

        monkeypatch.setattr(statcache.StatCache, "lookup", lookup)


def _saved_digest(repo: Repository) -> str:
    return repo.manifest("latest").entries[0].digest


def test_an_unchanged_file_is_not_read_again_and_a_change_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hits = Hits(monkeypatch)
    repo = Repository.init(tmp_path / "store")
    model = tmp_path / "model.bin"
    model.write_bytes(os.urandom(100_000))
    CLOCK.pause()
    repo.save(model)
    assert hits.count == 0
    repo.save(model)
    assert hits.count == 1 and _saved_digest(repo) == blake3.blake3(model.read_bytes()).hexdigest()
    # same size, same mtime (forced back): the ctime still moved, so the file is read again
    old = model.stat()
    model.write_bytes(os.urandom(100_000))
    os.utime(model, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert model.stat().st_mtime_ns == old.st_mtime_ns and model.stat().st_size == old.st_size
    repo.save(model)
    assert hits.count == 1 and _saved_digest(repo) == blake3.blake3(model.read_bytes()).hexdigest()


def test_a_file_changed_within_the_racy_window_is_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hits = Hits(monkeypatch)
    monkeypatch.setattr(statcache, "RACY_NS", 10**12)  # every file is "just modified"
    repo = Repository.init(tmp_path / "store")
    model = tmp_path / "model.bin"
    model.write_bytes(b"x" * 5000)
    repo.save(model)
    repo.save(model)
    assert hits.count == 0


def test_missing_objects_mean_a_re_read(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "store")
    model = tmp_path / "model.bin"
    model.write_bytes(os.urandom(50_000))
    CLOCK.pause()
    repo.save(model)
    for oid in list(repo.store.objects):
        repo.store.objects.delete(oid)
    repo.save(model)  # the cache names objects that are gone: the file is read and they are stored again
    assert repo.fsck().ok
    assert repo.checkout("latest", tmp_path / "out.bin").read_bytes() == model.read_bytes()


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty", "wrong-chunks"])
def test_a_damaged_cache_means_no_cache(tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Repository.init(tmp_path / "store")
    model = tmp_path / "model.bin"
    model.write_bytes(os.urandom(50_000))
    CLOCK.pause()
    repo.save(model)
    path = tmp_path / "store" / statcache.CACHE_DIR / statcache.CACHE_FILE
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 4
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "garbage":
        raw = bytearray(os.urandom(len(raw)))
    elif damage == "empty":
        raw = bytearray()
    else:  # a well-formed cache whose chunks do not add up to the size: refused as a whole
        entries = statcache._decode(bytes(raw))
        key, digest, chunks, when = entries[str(model)]
        entries[str(model)] = (key, digest, chunks[:1] * 2, when)
        raw = bytearray(statcache._encode(entries))
    path.write_bytes(bytes(raw))
    hits = Hits(monkeypatch)
    repo.save(model)
    assert hits.count == 0
    assert _saved_digest(repo) == blake3.blake3(model.read_bytes()).hexdigest()


step = st.one_of(
    st.tuples(st.just("write"), st.binary(min_size=1, max_size=64), st.booleans()),
    st.tuples(st.just("utime_back"), st.none(), st.none()),
    st.tuples(st.just("replace"), st.binary(min_size=1, max_size=64), st.none()),
    st.tuples(st.just("pause"), st.none(), st.none()),
    st.tuples(st.just("save"), st.none(), st.none()),
)


@pytest.mark.slow
@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_a_save_never_records_stale_content(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, bytes | None, bool | None]]
) -> None:
    root = tmp_path_factory.mktemp("statcache")
    repo = Repository.init(root / "store")
    model = root / "model.bin"
    model.write_bytes(b"initial content!" * 64)
    saved_mtime = model.stat().st_mtime_ns
    for op, data, same_size in [*steps, ("save", None, None)]:
        if op == "write":
            assert data is not None
            size = model.stat().st_size
            content = (data * (size // len(data) + 1))[:size] if same_size else data * 16
            with open(model, "r+b" if same_size else "wb") as f:  # in place, as an editor or a trainer would
                f.write(content)
                f.truncate()
        elif op == "utime_back":  # same size and mtime as at the last save, new bytes or not
            os.utime(model, ns=(saved_mtime, saved_mtime))
        elif op == "replace":
            assert data is not None
            tmp = root / "incoming"
            tmp.write_bytes(data * 16)
            os.utime(tmp, ns=(saved_mtime, saved_mtime))
            os.replace(tmp, model)
        elif op == "pause":
            CLOCK.pause()
        else:
            saved_mtime = model.stat().st_mtime_ns
            repo.save(model)
            assert _saved_digest(repo) == blake3.blake3(model.read_bytes()).hexdigest()
    assert repo.checkout("latest", root / "out.bin").read_bytes() == model.read_bytes()
