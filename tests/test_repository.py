"""Saving and restoring: any bytes and any tree come back exactly, and only new content costs space."""

from __future__ import annotations

import os
from pathlib import Path

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mstore import Repository
from mstore.errors import (
    AmbiguousReference,
    DestinationExists,
    InvalidMetadata,
    InvalidName,
    SourceNotFound,
    TagExists,
    UnsupportedSource,
    VersionIsTagged,
    VersionNotFound,
)
from mstore.store.chunking import MIN_CHUNK_SIZE

from helpers import read_tree, store_bytes, write_tree

SMALL_CHUNKS = {"name": "fixed", "size": MIN_CHUNK_SIZE}


def small_chunk_repo(root: Path) -> Repository:
    """A store with 4 KiB chunks so that small test data spans several objects."""
    repo = Repository.init(root)
    repo.store.config["chunker"] = SMALL_CHUNKS
    return repo


_n = 0


def fresh(tmp_path: Path, name: str) -> Path:
    global _n
    _n += 1
    return tmp_path / f"{name}{_n}"


@pytest.mark.slow
@given(data=st.binary(max_size=5 * MIN_CHUNK_SIZE + 7))
def test_any_file_round_trips_bit_exact(tmp_path: Path, data: bytes) -> None:
    repo = small_chunk_repo(fresh(tmp_path, "store"))
    src = fresh(tmp_path, "model")
    src.write_bytes(data)
    meta = repo.save(src)
    assert meta["model_hash"] == blake3.blake3(data).hexdigest()  # what `b3sum model` prints
    out = repo.checkout("latest", fresh(tmp_path, "out"))
    assert out.read_bytes() == data


path_part = st.text(alphabet="abcXYZ019._-", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))
trees = st.dictionaries(
    st.lists(path_part, min_size=1, max_size=3).map("/".join), st.binary(max_size=3 * MIN_CHUNK_SIZE), max_size=6
)


@pytest.mark.slow
@given(files=trees, exec_mask=st.integers(0, 63), empty_dirs=st.lists(path_part, max_size=2, unique=True))
def test_any_tree_round_trips_with_exec_bits_and_empty_dirs(
    tmp_path: Path, files: dict[str, bytes], exec_mask: int, empty_dirs: list[str]
) -> None:
    # a path cannot be both a file and a directory
    files = {p: d for p, d in files.items() if not any(q.startswith(p + "/") for q in files)}
    executable = frozenset(p for i, p in enumerate(sorted(files)) if exec_mask >> i & 1)
    src = write_tree(fresh(tmp_path, "model"), files, executable)
    empty = [d for d in empty_dirs if not (src / d).exists()]
    for d in empty:
        (src / d).mkdir()
    repo = small_chunk_repo(fresh(tmp_path, "store"))
    repo.save(src)
    out = repo.checkout("latest", fresh(tmp_path, "out"))
    assert read_tree(out) == read_tree(src)
    assert all((out / d).is_dir() for d in empty)


def test_directory_hash_is_deterministic_and_content_sensitive(tmp_path: Path, repo: Repository) -> None:
    a = write_tree(tmp_path / "a", {"config.json": b"{}", "weights/model.bin": b"w" * 100})
    b = write_tree(tmp_path / "b", {"config.json": b"{}", "weights/model.bin": b"w" * 100})
    h1, h2 = repo.save(a)["model_hash"], repo.save(b)["model_hash"]
    assert h1 == h2
    (b / "weights" / "model.bin").write_bytes(b"w" * 99 + b"x")
    assert repo.save(b)["model_hash"] != h1


@given(
    base=st.binary(min_size=MIN_CHUNK_SIZE, max_size=6 * MIN_CHUNK_SIZE),
    tail=st.binary(max_size=2 * MIN_CHUNK_SIZE),
)
@pytest.mark.slow
def test_store_grows_only_by_new_chunks(tmp_path: Path, base: bytes, tail: bytes) -> None:
    repo = small_chunk_repo(fresh(tmp_path, "store"))
    src = fresh(tmp_path, "m")
    src.write_bytes(base)
    first = repo.save(src)
    objects_after_first = set(repo.store.objects)
    again = repo.save(src)
    assert again["mstore"]["new_bytes"] == 0  # identical content costs nothing
    assert set(repo.store.objects) == objects_after_first
    src.write_bytes(base + tail)
    third = repo.save(src)
    new_objects = set(repo.store.objects) - objects_after_first
    manifest = repo.manifest("latest")
    chunk_ids = [c.oid for c in manifest.files[0].chunks]
    # the store grew by exactly the objects it did not have, and new_bytes counts exactly them
    assert new_objects == (set(chunk_ids) | {third["mstore"]["manifest"]}) - objects_after_first
    assert third["mstore"]["new_bytes"] == sum(repo.store.objects.size(o) for o in new_objects)
    # appending keeps every full chunk of the old file
    assert set(chunk_ids[: len(base) // MIN_CHUNK_SIZE]) <= objects_after_first
    assert first["model_hash"] == again["model_hash"]


def test_equal_content_is_stored_once_across_files_and_versions(tmp_path: Path, repo: Repository) -> None:
    blob = os.urandom(3 << 20)
    tree = write_tree(tmp_path / "m", {"a.bin": blob, "b/copy.bin": blob})
    repo.save(tree)
    assert len(blob) <= store_bytes(repo) < len(blob) + 4096


def test_metadata_follows_the_seed_layout(tmp_path: Path, repo: Repository) -> None:
    src = tmp_path / "model.joblib"
    src.write_bytes(b"model")
    meta = repo.save(
        src,
        {"training_file": "train.csv", "metrics": {"accuracy": 0.9}, "num_samples": 10, "categories": ["a", "b"]},
        message="first",
    )
    vid = meta["timestamp"]
    on_disk = (repo.root / f"version_{vid}" / "metadata.json").read_text()
    assert '"training_file": "train.csv"' in on_disk
    assert meta["original_path"] == str(src)
    assert meta["message"] == "first"
    assert repo.get(vid) == meta
    assert repo.store.refs.latest() == vid


def test_numpy_scalars_are_accepted_as_metadata(tmp_path: Path, repo: Repository) -> None:
    np = pytest.importorskip("numpy")
    src = tmp_path / "m"
    src.write_bytes(b"m")
    meta = repo.save(src, {"metrics": {"accuracy": np.float32(0.5), "n": np.int64(3)}, "w": np.arange(2)})
    assert meta["metrics"] == {"accuracy": 0.5, "n": 3} and meta["w"] == [0, 1]


@pytest.mark.parametrize(
    "bad", [{"x": object()}, {"x": float("nan")}, {"m": {"a": float("inf")}}, {"mstore": 1}, "not a dict"]
)
def test_unstorable_metadata_is_refused_before_anything_is_written(
    tmp_path: Path, repo: Repository, bad: object
) -> None:
    src = tmp_path / "m"
    src.write_bytes(b"m")
    with pytest.raises(InvalidMetadata):
        repo.save(src, bad)  # type: ignore[arg-type]
    assert repo.ids() == [] and list(repo.store.objects) == []


def test_missing_and_unsupported_sources(tmp_path: Path, repo: Repository) -> None:
    with pytest.raises(SourceNotFound):
        repo.save(tmp_path / "nope.joblib")
    tree = write_tree(tmp_path / "t", {"a": b"1"})
    os.symlink("/etc/passwd", tree / "link")
    with pytest.raises(UnsupportedSource):
        repo.save(tree)
    assert repo.ids() == []


def _save_n(tmp_path: Path, repo: Repository, n: int) -> list[str]:
    ids = []
    for i in range(n):
        src = tmp_path / f"m{i}"
        src.write_bytes(bytes([i]) * 10)
        ids.append(repo.save(src)["timestamp"])
    return ids


def test_references_resolve_like_git(tmp_path: Path, repo: Repository) -> None:
    ids = _save_n(tmp_path, repo, 3)
    assert repo.resolve("latest") == ids[-1]
    assert repo.resolve("latest~2") == ids[0]
    assert repo.resolve(f"version_{ids[1]}") == ids[1]
    assert repo.resolve(ids[1]) == ids[1]
    repo.tag("prod", ids[0])
    assert repo.resolve("prod") == ids[0]
    assert repo.resolve("prod~0") == ids[0]
    with pytest.raises(VersionNotFound):
        repo.resolve("latest~3")
    with pytest.raises(VersionNotFound):
        repo.resolve("nosuchtag")
    with pytest.raises(AmbiguousReference):
        repo.resolve(ids[0][:8])  # same day
    with pytest.raises(InvalidName):
        repo.resolve("../../etc")


def test_tag_rm_and_latest(tmp_path: Path, repo: Repository) -> None:
    ids = _save_n(tmp_path, repo, 3)
    repo.tag("best", ids[1])
    with pytest.raises(TagExists):
        repo.tag("best", ids[2])
    repo.tag("best", ids[2], force=True)
    with pytest.raises(VersionIsTagged):
        repo.remove("best")
    repo.remove("best", force=True)
    assert repo.tags() == {}
    assert repo.ids() == ids[:2]
    assert repo.store.refs.latest() == ids[1]
    repo.remove(ids[0])
    repo.remove(ids[1])
    assert repo.store.refs.latest() is None and repo.latest() is None


def test_checkout_refuses_to_overwrite_without_force(tmp_path: Path, repo: Repository) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(b"v1")
    repo.save(src)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    written = repo.checkout("latest", out_dir)
    assert written == out_dir / "model.bin"
    with pytest.raises(DestinationExists):
        repo.checkout("latest", out_dir)
    written.write_bytes(b"local edit")
    repo.checkout("latest", out_dir, force=True)
    assert written.read_bytes() == b"v1"


def test_directory_checkout_needs_an_empty_or_new_target(tmp_path: Path, repo: Repository) -> None:
    repo.save(write_tree(tmp_path / "m", {"a": b"1", "d/b": b"2"}))
    target = tmp_path / "restored"
    repo.checkout("latest", target)
    with pytest.raises(DestinationExists):
        repo.checkout("latest", target)
    os.symlink(tmp_path / "elsewhere", tmp_path / "link")
    with pytest.raises(DestinationExists):
        repo.checkout("latest", tmp_path / "link")


def test_compare_reports_metrics_metadata_categories_and_files(tmp_path: Path, repo: Repository) -> None:
    a = write_tree(tmp_path / "a", {"config.json": b"{}", "model.bin": b"1" * 10, "old.txt": b"x"})
    b = write_tree(tmp_path / "b", {"config.json": b"{}", "model.bin": b"2" * 12, "new.txt": b"y"})
    report_a = {"accuracy": 0.8, "macro avg": {"f1-score": 0.7}, "note": "ok"}
    report_b = {"accuracy": 0.85, "macro avg": {"f1-score": 0.75}, "loss": 0.3}
    v1 = repo.save(a, {"metrics": report_a, "categories": ["bug", "billing"], "num_samples": 100, "lr": 0.1})
    v2 = repo.save(b, {"metrics": report_b, "categories": ["bug", "account"], "num_samples": 150, "seed": 1})
    diff = repo.compare(v1["timestamp"], v2["timestamp"])
    assert diff["time_diff"] >= 0 and diff["same_model"] is False
    assert diff["metadata"] == {
        "added": {"seed": 1},
        "removed": {"lr": 0.1},
        "changed": {"num_samples": {"old": 100, "new": 150}, "original_path": {"old": str(a), "new": str(b)}},
    }
    m = diff["metrics"]
    assert m["accuracy"]["delta"] == pytest.approx(0.05)
    assert m["macro avg.f1-score"] == {
        "old": 0.7,
        "new": 0.75,
        "delta": pytest.approx(0.05),
        "relative": pytest.approx(0.05 / 0.7),
        "direction": "higher",
        "improved": True,
    }
    assert m["loss"]["old"] is None and m["loss"]["delta"] is None and m["loss"]["direction"] == "lower"
    assert m["note"] == {"old": "ok", "new": None, "delta": None, "relative": None, "direction": None, "improved": None}
    assert diff["categories"] == {"added": ["account"], "removed": ["billing"]}
    assert diff["files"] == {
        "added": [{"path": "new.txt", "size": 1}],
        "removed": [{"path": "old.txt", "size": 1}],
        "changed": [{"path": "model.bin", "old_size": 10, "new_size": 12}],
        "unchanged": 1,
    }
