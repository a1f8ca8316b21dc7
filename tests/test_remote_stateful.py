"""A stateful check of remotes: two stores save, push and pull through one bucket while transfers die
part-way (the bucket stops answering after a random number of requests) and gc runs on the remote.

After every step: every version the remote lists restores bit-exact from it (verified with
`fsck --remote --verify-data`), nothing the remote lists is half there, the remote's `latest` names one of
its versions and, after a push that finished, the newest one; every version a push completed is on the
remote with the content its store saved; both local stores stay fsck-clean.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import blake3
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from mstore import Repository
from mstore.ops import save
from mstore.remote.bucket import SMALL_VALUE_LIMIT, Entry, MemoryBucket, RemoteError
from mstore.remote.check import check, collect
from mstore.remote.remotes import BucketRemote
from mstore.remote.transfer import pull, push
from mstore.store.chunking import MIN_CHUNK_SIZE

from helpers import examples

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves this suite out of the quick loop

CHUNK = MIN_CHUNK_SIZE
blocks = st.lists(st.sampled_from([b"A" * CHUNK, b"B" * CHUNK, b"C" * 100, b"D" * CHUNK]), max_size=4).map(b"".join)


class DyingBucket(MemoryBucket):
    """A memory bucket that stops answering (like a killed process or a dropped network) after `budget` calls."""

    budget: int | None = None

    def _spend(self) -> None:
        if self.budget is not None:
            if self.budget <= 0:
                raise RemoteError("connection lost (injected)")
            self.budget -= 1

    def get_with_etag(self, key: str, *, limit: int = SMALL_VALUE_LIMIT) -> tuple[bytes, str] | None:
        self._spend()
        return super().get_with_etag(key, limit=limit)

    def put(self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None) -> str:
        self._spend()
        return super().put(key, data, if_absent=if_absent, if_match=if_match)

    def list(self, prefix: str) -> list[Entry]:  # type: ignore[override]
        self._spend()
        return list(super().list(prefix))


class Clock:
    """Each save happens one second after the previous one, so two stores never mint the same ID
    (ops.save's clock seam)."""

    def __init__(self) -> None:
        self.tick = datetime(2026, 11, 26, 8, 0, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.tick += timedelta(seconds=1)
        return self.tick


class RemoteMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="mstore-remote-stateful-"))
        self._real_clock = save.now
        save.now = Clock()
        self.stores = []
        for name in ("alice", "bob"):
            repo = Repository.init(self.tmp / name)
            repo.store.config["chunker"] = {"name": "fixed", "size": CHUNK}
            repo.store.save_config()
            self.stores.append(repo)
        self.bucket = DyingBucket()
        self.remote = BucketRemote(self.bucket)
        self.saved: dict[str, bytes] = {}  # every version any store saved -> its model bytes
        self.records: dict[str, bytes] = {}  # ... -> its metadata.json as the saving store wrote it
        self.pushed: set[str] = set()  # versions a push finished
        self.clean_push = False
        self.n = 0

    def teardown(self) -> None:
        save.now = self._real_clock
        shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(who=st.integers(0, 1), data=blocks, extra=st.binary(max_size=32))
    def save(self, who: int, data: bytes, extra: bytes) -> None:
        self.n += 1
        src = self.tmp / f"src{self.n}"
        src.write_bytes(data + extra)
        vid = str(self.stores[who].save(src)["timestamp"])
        self.saved[vid] = data + extra
        self.records[vid] = self.stores[who].store.versions.raw_metadata(vid)

    @rule(who=st.integers(0, 1), budget=st.none() | st.integers(0, 12))
    def push(self, who: int, budget: int | None) -> None:
        repo = self.stores[who]
        self.bucket.budget = budget
        try:
            push(repo.store, self.remote, repo.ids(), workers=2)
        except RemoteError:
            self.clean_push = False
            return
        finally:
            self.bucket.budget = None
        self.pushed.update(repo.ids())
        self.clean_push = True

    @rule(who=st.integers(0, 1), budget=st.none() | st.integers(0, 12))
    def pull(self, who: int, budget: int | None) -> None:
        repo = self.stores[who]
        if self.remote.config() is None:
            return
        self.bucket.budget = budget
        try:
            pull(self.remote, repo.store, self.remote.version_ids(), workers=2)
        except RemoteError:
            return
        finally:
            self.bucket.budget = None
        assert set(self.remote.version_ids()) <= set(repo.ids())

    @rule()
    def gc_remote(self) -> None:
        collect(self.remote, grace_seconds=0)

    @invariant()
    def remote_is_whole(self) -> None:
        ids = self.remote.version_ids()
        assert self.pushed <= set(ids)
        if not ids:
            return
        report = check(self.remote, verify_data=True, workers=2)
        assert report.ok, report.problems
        latest = self.remote.get_ref("latest")[0]
        assert latest is None or latest in ids
        if self.clean_push:
            assert latest == ids[-1]

    @invariant()
    def stores_hold_what_they_saved(self) -> None:
        for repo in self.stores:
            assert repo.fsck(verify_data=False).ok
            for vid in repo.ids():  # saved here or pulled: the content hash is that of the bytes saved
                assert repo.manifest(vid).model_hash == blake3.blake3(self.saved[vid]).hexdigest()
                assert repo.store.versions.raw_metadata(vid) == self.records[vid]
        for vid in self.pushed:  # the remote's record is byte for byte the one its store saved
            assert self.remote.raw_version(vid) == self.records[vid]

    @invariant()
    def pulled_versions_restore_bit_exact(self) -> None:
        for repo in self.stores:
            for vid in repo.ids()[-2:]:
                out = self.tmp / "out"
                repo.checkout(vid, out, force=True, allow_unsafe=True)  # random bytes may look like a pickle
                assert out.read_bytes() == self.saved[vid]


TestRemoteMachine = RemoteMachine.TestCase
TestRemoteMachine.settings = settings(max_examples=examples(25), stateful_step_count=12, deadline=None)
