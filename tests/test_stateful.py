"""A stateful model check: random sequences of save / tag / rm / gc / checkout against a plain dict.

After every step fsck reports no errors, every remaining version restores bit-exact, `latest` is the
newest version, and tags point where the model says they do.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, precondition, rule

from mstore import Repository
from mstore.chunking import MIN_CHUNK_SIZE
from mstore.errors import VersionIsTagged

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
        self.tags = {n: v for n, v in self.tags.items() if v != vid}

    @rule()
    def gc(self) -> None:
        self.repo.gc(grace_seconds=0)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def checkout(self, data: st.DataObject) -> None:
        vid = data.draw(st.sampled_from(sorted(self.model)))
        self.n += 1
        out = self.repo.checkout(vid, self.tmp / f"out{self.n}")
        assert out.read_bytes() == self.model[vid]

    @invariant()
    def store_matches_model(self) -> None:
        assert self.repo.ids() == sorted(self.model)
        assert self.repo.tags() == self.tags
        assert self.repo.store.refs.latest() == (max(self.model) if self.model else None)
        report = self.repo.fsck()
        assert report.ok, report.errors

    @invariant()
    def every_version_restores_bit_exact(self) -> None:
        for vid, data in self.model.items():
            manifest = self.repo.manifest(vid)
            got = b"".join(self.repo.store.objects.read(c.oid, c.size) for c in manifest.files[0].chunks)
            assert got == data


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
