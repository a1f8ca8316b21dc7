"""Archives and plain export (issue 13, item 4): `mstore export` / `mstore import` round trips bit-exact, a
damaged, truncated or hostile archive imports nothing and names the bad part; `export --plain` writes the
seed's layout. Hostile archives are written byte by byte from docs/format.md ("Archives")."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import blake3
import pytest
import zstandard
from craft import MAGIC as ENVELOPE_MAGIC
from craft import b3, envelope, file_manifest, mstore, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from mstore import Repository
from mstore.ops.archive import MAGIC, BadArchive

from helpers import examples, format_2_store

ZSTD = 1


def rec(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<Q", len(body)) + blake3.blake3(body).digest() + body


def obj(content: bytes, blob: bytes | None = None, size: int | None = None) -> bytes:
    oid = bytes.fromhex(b3(content))
    return rec(
        b"O", oid + struct.pack("<Q", len(content) if size is None else size) + (content if blob is None else blob)
    )


def ver(vid: str, meta: dict[str, object]) -> bytes:
    raw = (json.dumps(meta, indent=2) + "\n").encode()
    return rec(b"V", bytes([len(vid)]) + vid.encode() + raw)


def archive(*records: bytes, versions: list[str] | None = None, tags: dict[str, str] | None = None) -> bytes:
    header = {"format": 1, "versions": versions or [], "tags": tags or {}, "objects": 0}
    body = [rec(b"H", json.dumps(header).encode()), *records]
    return MAGIC + b"".join(body) + rec(b"E", json.dumps({"records": len(body)}).encode())


def one_version(vid: str = "20261101_120000", name: str = "model.bin", content: bytes = b"hello " * 50) -> list[bytes]:
    manifest = file_manifest(name, b3(content), len(content), [(b3(content), len(content))])
    meta = {
        "timestamp": vid,
        "model_hash": b3(content),
        "original_path": f"/models/{name}",
        "mstore": {"format": 2, "manifest": b3(manifest), "kind": "file", "size": len(content), "files": 1},
    }
    return [obj(content), obj(manifest), ver(vid, meta)]


def test_a_hand_written_archive_imports(tmp_path: Path) -> None:
    """The format as documented is enough to write an archive without mstore."""
    path = tmp_path / "a.mstore"
    path.write_bytes(archive(*one_version(), versions=["20261101_120000"], tags={"prod": "20261101_120000"}))
    repo = Repository.init(tmp_path / "store")
    stats = repo.import_archive(path)
    assert stats.versions_imported == ["20261101_120000"] and stats.tags_set == ["prod"]
    repo.checkout("prod", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == b"hello " * 50


# -- round trips ---------------------------------------------------------------------------------------


files = st.dictionaries(
    st.sampled_from(["a.bin", "b.json", "sub/c.bin", "sub/deep/d.txt"]),
    st.binary(max_size=3000) | st.builds(lambda n, b: b * n, st.integers(1, 5000), st.binary(min_size=1, max_size=8)),
    min_size=1,
    max_size=4,
)


@settings(max_examples=examples(10))
@given(st.lists(files, min_size=1, max_size=3), st.booleans())
def test_export_import_round_trips_bit_exact(
    tmp_path_factory: pytest.TempPathFactory, models: list, single: bool
) -> None:
    tmp = tmp_path_factory.mktemp("rt")
    source = Repository.init(tmp / "src")
    for i, tree in enumerate(models):
        if single:
            path = tmp / f"m{i}.bin"
            path.write_bytes(next(iter(tree.values())))
        else:
            path = tmp / f"tree{i}" / "model"
            for rel, data in tree.items():
                (path / rel).parent.mkdir(parents=True, exist_ok=True)
                (path / rel).write_bytes(data)
        source.save(path, {"metrics": {"acc": i / 10}}, message=f"v{i}")
    source.tag("first", source.ids()[0])
    source.export(source.ids(), tmp / "all.mstore")
    target = Repository.init(tmp / "dst")
    stats = target.import_archive(tmp / "all.mstore")
    assert stats.versions_imported == source.ids() == target.ids()
    assert target.tags() == source.tags()
    for vid in source.ids():
        assert target.store.versions.raw_metadata(vid) == source.store.versions.raw_metadata(vid)
        a, b = tmp / f"a-{vid}", tmp / f"b-{vid}"
        source.checkout(vid, a)
        target.checkout(vid, b)
        assert _tree(a) == _tree(b)
    assert target.fsck().ok
    again = target.import_archive(tmp / "all.mstore")
    assert again.versions_imported == [] and again.versions_skipped == source.ids() and again.objects_stored == 0


def _tree(path: Path) -> dict[str, bytes | None]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {p.relative_to(path).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))}


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Repository, Path]:
    repo = Repository.init(tmp_path / "src")
    model = tmp_path / "model.bin"
    for i in range(2):
        model.write_bytes(os.urandom(20_000) + bytes(i))
        repo.save(model)
    repo.tag("prod", "latest")
    path = tmp_path / "two.mstore"
    repo.export(["latest~1", "prod"], path)
    return repo, path


def test_only_the_named_versions_and_their_tags_travel(tmp_path: Path, exported: tuple[Repository, Path]) -> None:
    repo, path = exported
    repo.export(["latest~1"], tmp_path / "one.mstore")
    target = Repository.init(tmp_path / "dst")
    stats = target.import_archive(tmp_path / "one.mstore")
    assert target.ids() == [repo.ids()[0]] and target.tags() == {} and stats.tags_set == []


def test_every_damage_imports_nothing_and_names_the_part(tmp_path: Path, exported: tuple[Repository, Path]) -> None:
    _, path = exported
    data = path.read_bytes()
    target = Repository.init(tmp_path / "dst")
    before = snapshot(target.root)
    damaged = tmp_path / "bad.mstore"
    positions = sorted({0, 5, 20, 100, 200, len(data) // 2, len(data) - 60, len(data) - 1, *range(16, len(data), 997)})
    for pos in positions:
        for variant in (data[:pos], data[:pos] + bytes([data[pos] ^ 0x40]) + data[pos + 1 :]):
            damaged.write_bytes(variant)
            with pytest.raises(BadArchive) as caught:
                target.import_archive(damaged)
            message = str(caught.value)
            assert "nothing was imported" in message
            assert any(w in message for w in ("record", "magic", "truncated")), message
            assert snapshot(target.root) == before
    damaged.write_bytes(data + b"x")
    with pytest.raises(BadArchive, match="after the end record"):
        target.import_archive(damaged)
    assert target.ids() == []


# -- hostile archives ----------------------------------------------------------------------------------


VID = "20261101_120000"


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        (
            "version id with ..",
            archive(*one_version()[:2], ver("../../x", {"timestamp": "../../x"})),
            "no valid version",
        ),
        ("absolute version id", archive(*one_version()[:2], ver("/etc/passwd", {})), "no valid version"),
        ("tag with ..", archive(*one_version(), versions=[VID], tags={"../../evil": VID}), "not a safe name"),
        (
            "tag to nowhere",
            archive(*one_version(), versions=[VID], tags={"prod": "20261101_130000"}),
            "names no version",
        ),
        (
            "manifest path with ..",
            archive(*one_version(name="../../escape.bin")),
            "manifest",
        ),
        (
            "absolute manifest path",
            archive(*one_version(name="/etc/escape.bin")),
            "manifest",
        ),
        ("record size bomb", MAGIC + b"H" + struct.pack("<Q", 1 << 60) + b"\0" * 32, "declares"),
        (
            "object size bomb",
            archive(obj(b"x", envelope(ZSTD, 1 << 40, zstandard.ZstdCompressor().compress(b"\0" * 100)), 1 << 40)),
            "declares",
        ),
        (
            "zstd bomb",
            archive(
                rec(
                    b"O",
                    bytes(32)
                    + struct.pack("<Q", 10)
                    + envelope(ZSTD, 10, zstandard.ZstdCompressor().compress(b"\0" * (50 << 20))),
                )
            ),
            "object",
        ),
        (
            "object larger than any chunk",
            archive(obj(b"x", envelope(ZSTD, 100 << 20, zstandard.ZstdCompressor().compress(b"\0" * 100)), 100 << 20)),
            "declares",
        ),
        ("object twice", archive(*one_version()[:1], *one_version()), "appears twice"),
        ("delta object", archive(obj(b"y" * 64, envelope(3, 64, b"", base="ab" * 32, depth=1))), "object"),
        ("object that lies", archive(rec(b"O", bytes(32) + struct.pack("<Q", 3) + b"abc")), "does not hash"),
        ("not an archive", ENVELOPE_MAGIC + b"\0" * 100, "bad magic"),
        ("no header", MAGIC + one_version()[0], "header"),
        ("unknown record", archive(rec(b"Z", b"")), "unknown kind"),
        ("wrong end count", MAGIC + rec(b"H", b'{"format": 1, "tags": {}}') + rec(b"E", b'{"records": 7}'), "counts"),
        ("future format", MAGIC + rec(b"H", b'{"format": 3, "tags": {}}') + rec(b"E", b'{"records": 1}'), "format"),
        ("future version", archive(*one_version(vid="99991231_235959")), "future"),
        (
            "forged model_hash",
            archive(
                *one_version()[:2],
                ver(
                    VID,
                    {
                        "timestamp": VID,
                        "model_hash": "0" * 64,
                        "mstore": {
                            "manifest": b3(
                                file_manifest("model.bin", b3(b"hello " * 50), 300, [(b3(b"hello " * 50), 300)])
                            )
                        },
                    },
                ),
            ),
            "model_hash",
        ),
    ],
)
def test_hostile_archives_import_nothing(tmp_path: Path, name: str, data: bytes, expected: str) -> None:
    path = tmp_path / "hostile.mstore"
    path.write_bytes(data)
    target = Repository.init(tmp_path / "dst")
    before = snapshot(target.root)
    with pytest.raises(BadArchive, match=expected):
        target.import_archive(path)
    assert snapshot(target.root) == before
    assert not (tmp_path / "escape.bin").exists()


def test_objects_that_inflate_far_beyond_the_archive_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Distinct objects of zeros compress ~1000x: past a floor, content may not exceed 1024x the archive's
    size (the floor is lowered here so a small archive shows it)."""
    import mstore.ops.archive as archive_module

    monkeypatch.setattr(archive_module, "EXPANSION_FLOOR", 0)
    bombs = [b"\0" * (1 << 20) + bytes([i]) for i in range(3)]
    data = archive(*(obj(c, envelope(ZSTD, len(c), zstandard.ZstdCompressor().compress(c))) for c in bombs))
    path = tmp_path / "bomb.mstore"
    path.write_bytes(data)
    assert len(data) * archive_module.MAX_EXPANSION < 3 << 20
    with pytest.raises(BadArchive, match="inflate"):
        Repository.init(tmp_path / "dst").import_archive(path)


def test_an_archive_that_is_a_fifo_or_a_link_to_one_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.mstore"
    link.symlink_to(fifo)
    work = tmp_path / "work"
    work.mkdir()
    for target in (fifo, link):
        done = mstore("import", target, cwd=work, store=tmp_path / "store", timeout=30)
        assert done.one_line_error and "not a regular file" in done.stderr, done.stderr


def test_existing_versions_with_other_metadata_are_a_conflict(
    tmp_path: Path, exported: tuple[Repository, Path]
) -> None:
    repo, path = exported
    data = path.read_bytes()
    vid = repo.ids()[0]
    target = Repository.init(tmp_path / "dst")
    hand = tmp_path / "hand.mstore"
    hand.write_bytes(archive(*one_version(vid=vid)))
    target.import_archive(hand)  # another model under the same ID
    with pytest.raises(BadArchive, match="exists here with other metadata"):
        target.import_archive(path)
    assert target.ids() == [vid] and data == path.read_bytes()


def test_a_conflicting_version_that_arrives_between_the_two_passes_imports_nothing(
    tmp_path: Path, exported: tuple[Repository, Path]
) -> None:
    """`import_into` verifies an archive before the store exists; another process may create the store
    with a different version of the same ID before the archive is applied: refused, not skipped."""
    from mstore.ops.archive import apply_import, plan_import

    repo, path = exported
    vid = repo.ids()[0]
    plan = plan_import(None, path)
    target = Repository.init(tmp_path / "dst")
    hand = tmp_path / "hand.mstore"
    hand.write_bytes(archive(*one_version(vid=vid)))
    target.import_archive(hand)  # meanwhile, another model under the same ID
    with pytest.raises(BadArchive, match="exists here with other metadata"):
        apply_import(target.store, plan)
    assert target.ids() == [vid] and target.fsck().ok
    message = str(pytest.raises(BadArchive, target.import_archive, path).value)
    assert message.count("nothing was imported") == 1, message


# -- plain export and the command line -----------------------------------------------------------------


def test_plain_export_writes_the_seed_layout(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "store")
    (tmp_path / "model.joblib").write_bytes(b"weights" * 100)
    v1 = repo.save(tmp_path / "model.joblib", {"metrics": {"acc": 0.5}})["timestamp"]
    folder = tmp_path / "checkpoint"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "w.bin").write_bytes(b"\1" * 1000)
    (folder / "empty").mkdir()
    v2 = repo.save(folder)["timestamp"]
    out = tmp_path / "export"
    repo.export_plain(["latest~1", "latest"], out)
    assert (out / f"version_{v1}" / "model.joblib").read_bytes() == b"weights" * 100
    assert (out / f"version_{v1}" / "metadata.json").read_bytes() == repo.store.versions.raw_metadata(v1)
    assert json.loads((out / f"version_{v1}" / "metadata.json").read_text())["metrics"] == {"acc": 0.5}
    assert _tree(out / f"version_{v2}" / "checkpoint") == _tree(folder)
    assert sorted(p.name for p in out.iterdir()) == [f"version_{v1}", f"version_{v2}"]
    with pytest.raises(Exception, match="not an empty directory"):
        repo.export_plain(["latest"], out)


@pytest.mark.parametrize("folder", [False, True])
def test_plain_export_of_a_model_named_metadata_json_is_refused_before_anything_is_written(
    tmp_path: Path, folder: bool
) -> None:
    """The plain layout puts metadata.json beside the model: a model of that name would be replaced by the
    metadata (a file) or fail half-way (a folder). Refused, one line, nothing written."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "other.bin").write_bytes(b"fine")
    model = work / "metadata.json"
    if folder:
        model.mkdir()
        (model / "w.bin").write_bytes(b"weights")
    else:
        model.write_bytes(b'{"weights": [1, 2, 3]}')
    assert mstore("save", "other.bin", cwd=work, store=tmp_path / "s").code == 0
    assert mstore("save", "metadata.json", cwd=work, store=tmp_path / "s").code == 0
    result = mstore("export", "latest~1", "latest", "--plain", "-o", "plain", cwd=work, store=tmp_path / "s")
    assert result.one_line_error and result.code != 0, result.stderr
    assert "metadata.json" in result.stderr and "nothing was exported" in result.stderr
    assert not (work / "plain").exists() or not any((work / "plain").iterdir())


@pytest.mark.slow
def test_cli_export_import_and_plain(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "model.bin").write_bytes(b"abc" * 1000)
    src, dst = tmp_path / "src", tmp_path / "dst"
    assert mstore("save", "model.bin", "--tag", "prod", cwd=work, store=src).code == 0
    done = mstore("export", "prod", "-o", "prod.mstore", "--json", cwd=work, store=src)
    assert done.code == 0 and json.loads(done.stdout)["tags"] == {"prod": json.loads(done.stdout)["versions"][0]}
    again = mstore("export", "prod", "-o", "prod.mstore", cwd=work, store=src)
    assert again.one_line_error and "already exists" in again.stderr
    imported = mstore("import", "prod.mstore", "--json", cwd=work, store=dst)
    assert imported.code == 0 and json.loads(imported.stdout)["tags_set"] == ["prod"]
    assert "skipped 1 already here" in mstore("import", "prod.mstore", cwd=work, store=dst).stdout
    assert mstore("export", "prod", "--plain", "-o", "plain", cwd=work, store=dst).code == 0
    assert [p.name for p in (work / "plain").iterdir()][0].startswith("version_")
    (work / "bad.mstore").write_bytes((work / "prod.mstore").read_bytes()[:-10])
    bad = mstore("import", "bad.mstore", cwd=work, store=tmp_path / "third")
    assert bad.one_line_error and bad.code == 1 and "nothing was imported" in bad.stderr
    assert not (tmp_path / "third").exists()  # a refused archive leaves no empty store behind


def test_a_plane_coded_object_in_an_archive_reaches_a_format_2_store_as_raw_content(tmp_path: Path) -> None:
    """mstore's own export re-encodes every object with codecs 0-2, but an archive may carry plane-coded
    objects (codecs 4/5, format 3). A format-2 store receives them as raw content, as a pull does, so the
    mstore versions that wrote that store can still read everything in it."""
    import numpy as np

    from mstore.store.codec import Encoder

    content = np.random.default_rng(3).standard_normal(1 << 16).astype(np.float32).tobytes()
    blob = Encoder(1, 3, planes=True).encode(content, 4)
    assert blob.startswith(ENVELOPE_MAGIC) and blob[len(ENVELOPE_MAGIC)] in (4, 5)
    vid = "20261101_120000"
    manifest = file_manifest("w.bin", b3(content), len(content), [(b3(content), len(content))])
    meta = {
        "timestamp": vid,
        "model_hash": b3(content),
        "original_path": "/models/w.bin",
        "mstore": {"format": 3, "manifest": b3(manifest), "kind": "file", "size": len(content), "files": 1},
    }
    (tmp_path / "a.mstore").write_bytes(archive(obj(content, blob), obj(manifest), ver(vid, meta), versions=[vid]))
    old = format_2_store(tmp_path / "old")
    assert old.import_archive(tmp_path / "a.mstore").versions_imported == [vid]
    stored = [o.read_bytes() for o in (old.root / "objects").rglob("*") if o.is_file()]
    codecs = {b[len(ENVELOPE_MAGIC)] for b in stored if b.startswith(ENVELOPE_MAGIC)}  # raw content has none
    assert not codecs & {4, 5}, codecs
    assert old.checkout(vid, tmp_path / "out.bin").read_bytes() == content
    assert old.fsck().ok
