"""Manifests round-trip exactly and hostile ones are rejected, never trusted."""

from __future__ import annotations

import blake3
import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mstore.errors import CorruptManifest, InvalidName
from mstore.store.manifest import KIND_DIR, KIND_FILE, Chunk, Entry, Manifest, check_relpath, tree_digest

name_part = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/\\", min_codepoint=32), min_size=1, max_size=12
).filter(lambda s: s not in (".", "..") and "\x7f" not in s)
hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)


@st.composite
def file_entries(draw: st.DrawFn, path: str) -> Entry:
    sizes = draw(st.lists(st.integers(1, 10_000), max_size=4))
    chunks = tuple(Chunk(draw(hex64), s) for s in sizes)
    return Entry(path, False, sum(sizes), draw(st.booleans()), draw(hex64), chunks)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    if draw(st.booleans()):
        return Manifest(KIND_FILE, (draw(file_entries(draw(name_part))),))
    paths = draw(st.lists(st.lists(name_part, min_size=1, max_size=3).map("/".join), max_size=6, unique=True))
    dirs = {p.rsplit("/", 1)[0] for p in paths if "/" in p}
    all_dirs = {"/".join(d.split("/")[: i + 1]) for d in dirs for i in range(d.count("/") + 1)}
    files = [p for p in paths if p not in all_dirs]
    entries = [Entry(d, is_dir=True) for d in all_dirs] + [draw(file_entries(p)) for p in files]
    return Manifest(KIND_DIR, tuple(sorted(entries, key=lambda e: e.path)))


@pytest.mark.slow
@given(manifests())
def test_encode_decode_round_trips(manifest: Manifest) -> None:
    assert Manifest.decode(manifest.encode()) == manifest


def test_tree_digest_is_the_documented_line_format() -> None:
    entries = [
        Entry("weights", is_dir=True),
        Entry("weights/a.bin", False, 3, False, "ab" * 32, ()),
        Entry("run.sh", False, 5, True, "cd" * 32, ()),
    ]
    text = f"x {'cd' * 32} 5 run.sh\nd weights\nf {'ab' * 32} 3 weights/a.bin\n"
    assert tree_digest(entries) == blake3.blake3(text.encode()).hexdigest()
    assert tree_digest(list(reversed(entries))) == tree_digest(entries)


@pytest.mark.parametrize(
    "bad", ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/.", "a\\b", "a\x00b", "a\nb", "x" * 300]
)
def test_unsafe_paths_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidName):
        check_relpath(bad)


def _nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


def _doc(**overrides: object) -> bytes:
    entry = {"path": "m.bin", "type": "f", "size": 3, "exec": False, "b3": b"\x01" * 32, "chunks": [[b"\x02" * 32, 3]]}
    doc: dict[str, object] = {"mstore": "manifest", "v": 1, "kind": "file", "entries": [entry]}
    for key, value in overrides.items():
        if key.startswith("entry_"):
            entry[key[6:]] = value
        else:
            doc[key] = value
    return msgpack.packb(doc, use_bin_type=True)


def test_valid_reference_document_decodes() -> None:
    assert Manifest.decode(_doc()).entries[0].size == 3


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2, 3]),
        _doc(v=2),
        _doc(kind="zip"),
        _doc(entry_path="../../etc/passwd"),
        _doc(entry_path="/abs"),
        _doc(entry_size=4),
        _doc(entry_size=-1),
        _doc(entry_size=True),
        _doc(entry_b3=b"short"),
        _doc(entry_chunks=[[b"\x02" * 32, 0]]),
        _doc(entry_chunks=[[b"\x02" * 31, 3]]),
        _doc(entry_extra=1),
        _doc(entries=[]),
        msgpack.packb({"mstore": "manifest", "v": 1, "kind": "dir", "entries": [{"path": "a/b", "type": "d"}]}),
        msgpack.packb(
            {
                "mstore": "manifest",
                "v": 1,
                "kind": "dir",
                "entries": [{"path": "b", "type": "d"}, {"path": "a", "type": "d"}],
            }
        ),
        msgpack.packb(_nested(200)),
        b"\xdd\xff\xff\xff\xff",  # array header claiming 4 billion items
    ],
)
def test_hostile_manifests_are_rejected(data: bytes) -> None:
    with pytest.raises(CorruptManifest):
        Manifest.decode(data)
