"""Corruption is always found: any flipped bit, truncation or deletion is reported by fsck, and
checkout never hands back wrong bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstore import Repository
from mstore.errors import IntegrityError, MStoreError
from mstore.store.chunking import MIN_CHUNK_SIZE

from helpers import examples, write_tree


def build(root: Path, tmp: Path) -> tuple[Repository, dict[str, dict[str, bytes]]]:
    """Three versions sharing chunks, with 4 KiB chunks; returns the repo and what each version holds."""
    repo = Repository.init(root)
    repo.store.config["chunker"] = {"name": "fixed", "size": MIN_CHUNK_SIZE}
    rng = __import__("random").Random(7)
    base = bytes(rng.randrange(256) for _ in range(3 * MIN_CHUNK_SIZE))
    contents = [
        {"model.bin": base, "config.json": b"{}"},
        {"model.bin": base[:-10] + b"0123456789", "config.json": b"{}"},
        {"model.bin": base + b"tail", "config.json": b'{"a": 1}'},
    ]
    expected = {}
    for i, files in enumerate(contents):
        src = write_tree(tmp / f"src{i}", files)
        expected[repo.save(src, {"metrics": {"accuracy": 0.5 + i / 10}})["timestamp"]] = files
    repo.tag("first", next(iter(expected)))
    return repo, expected


def _writable(path: Path) -> None:
    os.chmod(path, 0o644)


def _checkout_all(repo: Repository, expected: dict[str, dict[str, bytes]], out: Path) -> dict[str, str]:
    """Checkout each version: returns 'ok' / 'error' per version, failing the test on wrong bytes."""
    status = {}
    for vid, files in expected.items():
        target = out / vid
        try:
            repo.checkout(vid, target)
        except MStoreError:
            status[vid] = "error"
            continue
        got = {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()}
        assert got == files, f"checkout of {vid} returned wrong bytes silently"
        status[vid] = "ok"
    return status


def test_clean_store_is_clean(tmp_path: Path) -> None:
    repo, expected = build(tmp_path / "s", tmp_path)
    report = repo.fsck()
    assert report.ok and report.problems == [] and report.versions == 3
    assert set(_checkout_all(repo, expected, tmp_path / "out").values()) == {"ok"}


@settings(max_examples=examples(60))
@given(
    which=st.integers(0, 10_000),
    how=st.sampled_from(["flip", "truncate", "delete", "append"]),
    where=st.integers(0, 1 << 30),
    bit=st.integers(0, 7),
)
@pytest.mark.slow
def test_any_damage_to_any_object_is_found(
    tmp_path_factory: pytest.TempPathFactory, which: int, how: str, where: int, bit: int
) -> None:
    tmp = tmp_path_factory.mktemp("c")
    repo, expected = build(tmp / "s", tmp)
    oids = sorted(repo.store.objects)
    oid = oids[which % len(oids)]
    path = repo.store.objects.path(oid)
    _writable(path)
    data = bytearray(path.read_bytes())
    if how == "flip" and data:
        data[where % len(data)] ^= 1 << bit
        path.write_bytes(bytes(data))
    elif how == "truncate" and data:
        path.write_bytes(bytes(data[: where % len(data)]))
    elif how == "append":
        path.write_bytes(bytes(data) + b"\0")
    else:
        path.unlink()
    report = repo.fsck()
    assert not report.ok
    assert any(oid == p.subject for p in report.errors)
    status = _checkout_all(repo, expected, tmp / "out")
    assert set(report.damaged_versions) == {v for v, s in status.items() if s == "error"}
    assert "error" in status.values()


@settings(max_examples=examples(60))
@given(
    target=st.sampled_from(["metadata.json", "metadata.b3", "latest", "tag"]),
    where=st.integers(0, 1 << 20),
    bit=st.integers(0, 7),
)
@pytest.mark.slow
def test_any_bit_flip_in_metadata_or_refs_is_found(
    tmp_path_factory: pytest.TempPathFactory, target: str, where: int, bit: int
) -> None:
    tmp = tmp_path_factory.mktemp("m")
    repo, expected = build(tmp / "s", tmp)
    vid = sorted(expected)[where % 3]
    path = {
        "metadata.json": repo.root / f"version_{vid}" / "metadata.json",
        "metadata.b3": repo.root / f"version_{vid}" / "metadata.b3",
        "latest": repo.root / "refs" / "latest",
        "tag": repo.root / "refs" / "tags" / "first",
    }[target]
    data = bytearray(path.read_bytes())
    data[where % len(data)] ^= 1 << bit
    path.write_bytes(bytes(data))
    assert not repo.fsck().ok


def test_structural_mode_finds_missing_and_truncated_objects(tmp_path: Path) -> None:
    repo, _ = build(tmp_path / "s", tmp_path)
    oid = sorted(repo.store.objects)[0]
    repo.store.objects.delete(oid)
    report = repo.fsck(verify_data=False)
    assert not report.ok and report.bytes_checked == 0


def test_leftovers_and_unreachable_objects_are_information(tmp_path: Path) -> None:
    repo, expected = build(tmp_path / "s", tmp_path)
    repo.remove(sorted(expected)[-1])
    (repo.store.tmp / ".tmp-stage-1-abc").mkdir()
    report = repo.fsck()
    assert report.ok
    codes = {p.code for p in report.problems}
    assert codes == {"unreachable", "leftover"}


def test_a_version_with_unreadable_metadata_is_named(tmp_path: Path) -> None:
    repo, expected = build(tmp_path / "s", tmp_path)
    vid = sorted(expected)[1]
    (repo.root / f"version_{vid}" / "metadata.json").write_text("{not json")
    report = repo.fsck()
    assert report.damaged_versions == [vid]
    with pytest.raises(IntegrityError):
        repo.get(vid)
