"""A stateful model check: random sequences of save / tag / rm / prune / gc / checkout / corrupt /
crash against a plain dict of what the store should hold.

After every step fsck reports no errors, every remaining version restores bit-exact, `latest` is the
newest version, and tags point where the model says they do. `corrupt` flips a bit and expects fsck to
notice (then heals it); `crash` kills a save at a random filesystem step and accepts the version being
complete or absent, never anything in between.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, precondition, rule

from mstore import Repository
from mstore.errors import MStoreError, VersionIsTagged
from mstore.store import fsutil
from mstore.store.chunking import MIN_CHUNK_SIZE

from helpers import examples
from reliability import run_in_child

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves this suite out of the quick loop

CHUNK = MIN_CHUNK_SIZE
blocks = st.lists(st.sampled_from([b"A" * CHUNK, b"B" * CHUNK, b"C" * 100, b"D" * CHUNK]), max_size=4).map(b"".join)


class StoreMachine(RuleBasedStateMachine):
    versions = Bundle("versions")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="mstore-stateful-"))
        self.repo = Repository.init(self.tmp / "store")
        self.repo.store.config["chunker"] = {"name": "fixed", "size": CHUNK}
        self.model: dict[str, bytes] = {}
        self.tags: dict[str, str] = {}
        self.n = 0
        self.latest_may_be_stale = False

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(target=versions, data=blocks, extra=st.binary(max_size=64))
    def save(self, data: bytes, extra: bytes) -> str:
        self.n += 1
        src = self.tmp / f"src{self.n}"
        src.write_bytes(data + extra)
        vid = str(self.repo.save(src, {"metrics": {"step": self.n}})["timestamp"])
        assert vid not in self.model and all(vid > other for other in self.model)
        self.model[vid] = data + extra
        self.latest_may_be_stale = False
        return vid

    @rule(vid=versions, name=st.sampled_from(["prod", "best", "v1.0"]))
    def tag(self, vid: str, name: str) -> None:
        if vid in self.model:
            self.repo.tag(name, vid, force=True)
            self.tags[name] = vid

    @rule(vid=consumes(versions), force=st.booleans())
    def remove(self, vid: str, force: bool) -> None:
        if vid not in self.model:
            return
        tagged = vid in self.tags.values()
        try:
            self.repo.remove(vid, force=force)
        except VersionIsTagged:
            assert tagged and not force
            return
        del self.model[vid]
        self.latest_may_be_stale = False
        self.tags = {n: v for n, v in self.tags.items() if v != vid}

    @rule(keep_last=st.integers(0, 3))
    def prune(self, keep_last: int) -> None:
        ids = sorted(self.model)
        keep = set(ids[-keep_last:] if keep_last else []) | set(self.tags.values()) | set(ids[-1:])
        plan, _ = self.repo.prune(keep_last=keep_last, grace_seconds=0)
        assert set(plan.keep) == keep and set(plan.remove) == set(ids) - keep
        if plan.remove:
            self.latest_may_be_stale = False
        self.model = {v: d for v, d in self.model.items() if v in keep}

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def corrupt(self, data: st.DataObject) -> None:
        oid = data.draw(st.sampled_from(sorted(self.repo.store.objects)))
        path = self.repo.store.objects.path(oid)
        original = path.read_bytes()
        if not original:
            return
        damaged = bytearray(original)
        bit = data.draw(st.integers(0, len(original) * 8 - 1))
        damaged[bit // 8] ^= 1 << (bit % 8)
        path.chmod(0o644)
        path.write_bytes(bytes(damaged))
        report = self.repo.fsck()
        assert not report.ok and oid in {p.subject for p in report.errors}
        for vid in report.damaged_versions:
            try:
                got = self.repo.checkout(vid, self.tmp / f"bad{self.n}-{vid}").read_bytes()
            except MStoreError:
                continue
            raise AssertionError(f"checkout of damaged {vid} returned {len(got)} bytes")
        path.write_bytes(original)  # heal, so the invariants below hold again

    @rule(data=blocks, at=st.integers(1, 40))
    def crash(self, data: bytes, at: int) -> None:
        self.n += 1
        src = self.tmp / f"src{self.n}"
        src.write_bytes(data + b"crash")
        before = set(self.repo.ids())
        code = run_in_child(lambda: self.repo.save(src), crash_at=at)
        assert code in (0, fsutil.CRASH_EXIT_CODE)
        new = set(self.repo.ids()) - before
        assert len(new) <= 1 and (code != 0 or new)
        self.latest_may_be_stale = True
        for vid in new:
            self.model[vid] = data + b"crash"
        self.repo.gc(grace_seconds=0)  # also sweeps what the crash left behind

    @rule()
    def gc(self) -> None:
        self.repo.gc(grace_seconds=0)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def checkout(self, data: st.DataObject) -> None:
        vid = data.draw(st.sampled_from(sorted(self.model)))
        self.n += 1
        out = self.repo.checkout(vid, self.tmp / f"out{self.n}", allow_unsafe=True)  # random bytes may look pickled
        assert out.read_bytes() == self.model[vid]

    @invariant()
    def store_matches_model(self) -> None:
        assert self.repo.ids() == sorted(self.model)
        assert self.repo.tags() == self.tags
        latest = self.repo.store.refs.latest()
        if self.latest_may_be_stale:  # a crash between publishing and updating the ref: fsck's stale-ref
            assert latest is None or latest in self.model
        else:
            assert latest == (max(self.model) if self.model else None)
        report = self.repo.fsck()
        assert report.ok, report.errors

    @invariant()
    def every_version_restores_bit_exact(self) -> None:
        for vid, data in self.model.items():
            manifest = self.repo.manifest(vid)
            got = b"".join(self.repo.store.objects.read(c.oid, c.size) for c in manifest.files[0].chunks)
            assert got == data


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=examples(40), stateful_step_count=25, deadline=None)
