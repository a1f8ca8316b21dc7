"""Tensor-aware storage end to end: unchanged tensors dedup, retrained tensors become small lossless
deltas against the parent, chains stay bounded, and every version restores bit-exact even after the
versions its deltas were based on are removed and garbage-collected."""

from __future__ import annotations

from pathlib import Path

import blake3
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mstore import Repository
from mstore.store import codec
from mstore.store.codec import MAX_DEPTH
from mstore.store.objects import ObjectStore

from helpers import examples, format_2_store, safetensors_bytes, store_bytes


def _weights(seed: int, n: int = 64 * 1024) -> dict[str, tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        "backbone.weight": ("F32", rng.standard_normal(n).astype(np.float32)),
        "backbone.bias": ("F32", rng.standard_normal(256).astype(np.float32)),
        "head.weight": ("F32", rng.standard_normal(4 * 256).astype(np.float32)),
    }


def _nudge(tensors: dict[str, tuple[str, np.ndarray]], seed: int) -> dict[str, tuple[str, np.ndarray]]:
    """A warm-started retrain: every weight moves a little."""
    rng = np.random.default_rng(seed)
    return {
        k: (d, (a + rng.standard_normal(a.shape).astype(a.dtype) * np.float32(1e-3) * np.abs(a)).astype(a.dtype))
        for k, (d, a) in tensors.items()
    }


def _save(repo: Repository, path: Path, tensors: dict[str, tuple[str, np.ndarray]], **kw: object) -> dict:  # type: ignore[type-arg]
    path.write_bytes(safetensors_bytes(tensors))
    return repo.save(path, **kw)  # type: ignore[arg-type]


def test_warm_start_retrain_is_stored_as_deltas_and_restores_exactly(tmp_path: Path, repo: Repository) -> None:
    v1 = _weights(0)
    m1 = _save(repo, tmp_path / "model.safetensors", v1)
    v2 = _nudge(v1, 1)
    m2 = _save(repo, tmp_path / "model.safetensors", v2)
    info = m2["mstore"]
    assert info["delta_objects"] >= 1 and info["parent"] == m1["timestamp"]
    plain_first = m1["mstore"]["new_bytes"]
    assert info["new_bytes"] < 0.75 * plain_first  # the delta is much smaller than a full (compressed) copy
    out = repo.checkout("latest", tmp_path / "out.safetensors")
    assert out.read_bytes() == safetensors_bytes(v2)
    assert repo.fsck().ok


def test_frozen_backbone_new_head_stores_only_the_head(tmp_path: Path, repo: Repository) -> None:
    v1 = _weights(0, n=1 << 18)
    _save(repo, tmp_path / "m.safetensors", v1)
    v2 = dict(v1, **{"head.weight": ("F32", np.random.default_rng(9).standard_normal(4 * 256).astype(np.float32))})
    m2 = _save(repo, tmp_path / "m.safetensors", v2)
    assert m2["mstore"]["new_content_bytes"] <= 4 * 256 * 4 + 4096  # the head and the header, nothing else
    assert m2["mstore"]["reused_bytes"] >= (1 << 18) * 4


def test_delta_chains_survive_removal_of_their_bases(tmp_path: Path, repo: Repository) -> None:
    tensors = _weights(0)
    saved = []
    for i in range(8):
        saved.append(_save(repo, tmp_path / "m.safetensors", tensors)["timestamp"])
        expected_last = safetensors_bytes(tensors)
        tensors = _nudge(tensors, i + 10)
    for oid in repo.store.objects:
        assert repo.store.objects.depth(oid) <= MAX_DEPTH  # restoring reads a bounded chain
    for vid in saved[:-1]:
        repo.remove(vid)
    repo.gc(grace_seconds=0)
    assert repo.fsck().ok
    assert repo.checkout(saved[-1], tmp_path / "last.safetensors").read_bytes() == expected_last
    assert blake3.blake3(expected_last).hexdigest() == repo.get(saved[-1])["model_hash"]


def test_explicit_parent(tmp_path: Path, repo: Repository) -> None:
    base = _weights(0)
    first = _save(repo, tmp_path / "m.safetensors", base)["timestamp"]
    _save(repo, tmp_path / "m.safetensors", _weights(5))  # an unrelated model in between
    child = _save(repo, tmp_path / "m.safetensors", _nudge(base, 3), parent=first)
    assert child["mstore"]["parent"] == first and child["mstore"]["delta_objects"] >= 1


@settings(max_examples=examples(25))
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from([1e-6, 1e-3, 1e-2]) | st.floats(1e-6, 1.0)), min_size=1, max_size=4
    ),
    dtype=st.sampled_from([("F32", np.float32), ("F16", np.float16), ("BF16", np.uint16)]),
)
@pytest.mark.slow
@example(steps=[(0, 1e-3), (0, 1e-3), (1, 1.0)], dtype=("F32", np.float32))  # the delta path, always
@example(steps=[(2, 1e-2), (2, 1e-6)], dtype=("BF16", np.uint16))
def test_any_sequence_of_retrains_restores_bit_exact(
    tmp_path_factory: object, steps: list[tuple[int, float]], dtype: tuple[str, type]
) -> None:
    tmp = tmp_path_factory.mktemp("seq")  # type: ignore[attr-defined]
    repo = Repository.init(tmp / "store")
    rng = np.random.default_rng(0)
    arrays = {f"layer{i}": rng.standard_normal(3000 + i).astype(np.float32) for i in range(3)}
    versions = []
    previous: dict[str, tuple[str, np.ndarray]] | None = None
    for which, scale in steps:
        name = f"layer{which % 3}"
        arrays[name] = (arrays[name] + np.float32(scale) * rng.standard_normal(arrays[name].shape)).astype(np.float32)
        if dtype[0] == "BF16":
            tensors = {k: ("BF16", (a.view(np.uint32) >> 16).astype(np.uint16)) for k, a in arrays.items()}
        else:
            tensors = {k: (dtype[0], a.astype(dtype[1])) for k, a in arrays.items()}
        data = safetensors_bytes(tensors)
        (tmp / "m.safetensors").write_bytes(data)
        meta = repo.save(tmp / "m.safetensors")
        versions.append((meta["timestamp"], data))
        changed = previous is not None and previous[name][1].tobytes() != tensors[name][1].tobytes()
        if changed and scale <= 1e-2:  # a retrain that nudged a tensor: stored as a delta on its parent
            assert meta["mstore"]["delta_objects"] >= 1, (which, scale, dtype[0])
        previous = tensors
    for vid, data in versions:
        assert repo.checkout(vid, tmp / f"out-{vid}.safetensors").read_bytes() == data
    assert repo.fsck().ok and store_bytes(repo) > 0


def test_large_files_take_the_parallel_path_and_still_round_trip(tmp_path: Path, repo: Repository) -> None:
    from mstore import workers

    rng = np.random.default_rng(11)
    big = {f"w{i}": ("F32", rng.standard_normal(1 << 20).astype(np.float32)) for i in range(3)}  # 12 MiB
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(safetensors_bytes(big))
    (model / "opaque.bin").write_bytes(rng.bytes(workers.PARALLEL_MIN_BYTES + 12345))
    first = repo.save(model)
    (model / "model.safetensors").write_bytes(safetensors_bytes(_nudge(big, 12)))
    second = repo.save(model)
    assert second["mstore"]["delta_objects"] >= 3  # every tensor piece was retrained: deltas, on the pool
    for meta in (first, second):
        out = repo.checkout(meta["timestamp"], tmp_path / f"out-{meta['timestamp']}")
        files = sorted(p.name for p in out.iterdir())
        assert files == ["model.safetensors", "opaque.bin"]
    assert (tmp_path / f"out-{second['timestamp']}" / "model.safetensors").read_bytes() == (
        model / "model.safetensors"
    ).read_bytes()
    assert repo.fsck().ok


def test_a_damaged_parent_costs_the_deltas_not_the_save(tmp_path: Path, repo: Repository) -> None:
    v1 = _weights(0)
    first = _save(repo, tmp_path / "m.safetensors", v1)
    manifest = repo.store.objects.path(first["mstore"]["manifest"])
    manifest.chmod(0o644)
    manifest.write_bytes(b"damaged")
    second = _save(repo, tmp_path / "m.safetensors", _nudge(v1, 1))
    assert second["mstore"]["delta_objects"] == 0
    assert repo.checkout("latest", tmp_path / "out.safetensors").read_bytes() == safetensors_bytes(_nudge(v1, 1))
    assert repo.fsck().damaged_versions == [first["timestamp"]]


def test_a_quarantined_delta_base_heals_when_its_model_is_saved_again(tmp_path: Path, repo: Repository) -> None:
    from typer.testing import CliRunner

    from mstore.cli import app

    v1 = _weights(0)
    first = _save(repo, tmp_path / "m.safetensors", v1)
    second = _save(repo, tmp_path / "m.safetensors", _nudge(v1, 1))
    assert second["mstore"]["delta_objects"] >= 1
    base = next(
        repo.store.objects.delta_base(o)
        for o in repo.manifest(second["timestamp"]).chunk_ids()
        if repo.store.objects.delta_base(o)
    )
    path = repo.store.objects.path(base)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    result = CliRunner().invoke(app, ["--store", str(repo.root), "fsck", "--repair"])
    assert result.exit_code == 1 and first["timestamp"] in result.stdout and second["timestamp"] in result.stdout
    (tmp_path / "m.safetensors").write_bytes(safetensors_bytes(v1))
    repo.save(tmp_path / "m.safetensors")  # the first model again: recreates the base
    assert repo.fsck().ok
    assert repo.checkout(second["timestamp"], tmp_path / "b.safetensors").read_bytes() == safetensors_bytes(
        _nudge(v1, 1)
    )


def _codecs(repo: Repository) -> set[int]:
    out = set()
    for oid in repo.store.objects:
        head = repo.store.objects.path(oid).read_bytes()[:5]
        out.add(head[4] if head.startswith(codec.MAGIC) else -1)
    return out


def test_format_2_stores_keep_writing_what_format_2_readers_decode(tmp_path: Path) -> None:
    format_2_store(tmp_path / "old")
    new = Repository.init(tmp_path / "new")
    assert new.store.format == 3 and new.store.config["compression"]["planes"] is True
    v1 = _weights(0, n=1 << 18)
    v2 = _nudge(v1, 1)
    for repo in (Repository.open(tmp_path / "old"), new):
        for version in (v1, v2):
            _save(repo, tmp_path / "m.safetensors", version)
        assert repo.checkout("latest", tmp_path / "out.safetensors", force=True).read_bytes() == safetensors_bytes(v2)
        assert repo.fsck().ok
    old_codecs = _codecs(Repository.open(tmp_path / "old"))
    assert codec.XOR_DELTA in old_codecs and max(old_codecs) <= codec.XOR_DELTA
    assert {codec.PLANES, codec.PLANES_XOR_DELTA} <= _codecs(new)


def test_fsck_decodes_every_object_once_and_still_finds_a_damaged_base(
    tmp_path: Path, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mstore.ops import fsck
    from mstore.store import objects

    store = _depth_3_chain(repo, tmp_path)
    decoded: list[str] = []
    in_planes: list[str] = []
    real, real_planes = objects.decode_object, fsck._verify_planes

    def counting(oid: str, *args: object, **kw: object) -> bytes:
        decoded.append(oid)
        return real(oid, *args, **kw)  # type: ignore[arg-type]

    def counting_planes(oid: str, *args: object) -> object:
        in_planes.append(oid)
        return real_planes(oid, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(objects, "decode_object", counting)
    monkeypatch.setattr(fsck, "_verify_planes", counting_planes)
    report = repo.fsck()
    assert report.ok
    assert any(store.depth(oid) == 3 for oid in in_planes)  # deltas verified in plane space, with their base's
    decoded += in_planes
    manifests = {repo.get(v)["mstore"]["manifest"] for v in repo.ids()}  # read once more, as manifests
    assert sorted(o for o in decoded if o not in manifests) == sorted(set(store) - manifests)  # bases once too
    # a damaged base: its deltas report damaged-base (their own bytes are fine), the base corrupt-object
    base = next(oid for oid in store if store.depth(oid) == 0 and any(store.delta_base(o) == oid for o in store))
    path = store.path(base)
    path.chmod(0o644)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 1
    path.write_bytes(bytes(blob))
    codes = {p.subject: p.code for p in repo.fsck().errors}
    assert codes[base] == "corrupt-object"
    assert {codes[o] for o in store if store.delta_base(o) == base} == {"damaged-base"}


def _depth_3_chain(repo: Repository, tmp_path: Path) -> ObjectStore:
    tensors = _weights(0, n=1 << 17)
    for seed in range(1, 5):  # a chain: v1 <- v2 <- v3 <- v4 deltas
        _save(repo, tmp_path / "m.safetensors", tensors)
        tensors = _nudge(tensors, seed)
    store = repo.store.objects
    assert any(store.depth(oid) >= 3 for oid in store)
    return store


def test_fsck_names_a_damaged_object_at_every_level_of_a_depth_3_chain(tmp_path: Path, repo: Repository) -> None:
    """Damage anywhere in any level of a chain (envelope, compressed plane, raw plane, last byte) is reported
    on that object as corrupt-object; every delta above it as damaged-base (its own bytes are fine), the
    levels below it as fine; the versions that need it are named."""
    store = _depth_3_chain(repo, tmp_path)
    top = next(oid for oid in store if store.depth(oid) == 3)
    chain = [top]
    while (base := store.delta_base(chain[-1])) is not None:
        chain.append(base)
    assert [store.depth(oid) for oid in chain] == [3, 2, 1, 0]
    for level, damaged in enumerate(chain):
        path = store.path(damaged)
        path.chmod(0o644)
        good = path.read_bytes()
        header = codec.parse_header(good)
        assert header is not None and header.codec in codec.PLANE_CODECS
        table = header.payload_offset  # the plane table, then the compressed exponent plane, then raw planes
        for offset, forged in [(6, False), (20, False), (table + 2, False), (table + 40, False)] + [
            (len(good) // 2, False),
            (len(good) - 1, False),
            (len(good) // 2, True),  # a raw plane changed and its envelope checksum made again: only the hash sees it
            (len(good) - 1, True),
        ]:
            blob = bytearray(good)
            blob[offset] ^= 0x10
            if forged:
                head, check = codec._HEAD.size, codec.CHECK
                blob[head : head + check] = codec._check(blob[:head], blob[head + check :])
            path.write_bytes(bytes(blob))
            report = repo.fsck()
            codes = {p.subject: p.code for p in report.errors}
            assert codes.get(damaged) == "corrupt-object", (level, offset, codes)
            assert all(codes.get(oid) == "damaged-base" for oid in chain[:level]), (level, offset)
            assert not any(oid in codes for oid in chain[level + 1 :]), (level, offset)
            problem = next(p for p in report.errors if p.subject == damaged)
            assert damaged in problem.message and problem.versions
            for oid in chain[:level]:
                above = next(p for p in report.errors if p.subject == oid)
                assert "damaged" in above.message
        path.write_bytes(good)
        assert repo.fsck().ok
