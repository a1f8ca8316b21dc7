"""Checkout decodes a chain of byte-plane deltas in plane space (XOR commutes with the byte transpose):
every level's planes are XORed and the elements interleaved once per piece, bit-exact; a damaged base
is still loud (its envelope checksum, or the top object's hash), and fsck still names the damaged object."""

from __future__ import annotations

from pathlib import Path

import blake3
import numpy as np
import pytest

from mstore import Repository
from mstore.errors import CorruptObject, DamagedDeltaBase, IntegrityError
from mstore.store import codec

from helpers import safetensors_bytes


def _weights(seed: int, n: int = 64 * 1024) -> dict[str, tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        "a.weight": ("F32", rng.standard_normal(n).astype(np.float32)),
        "b.weight": ("BF16", (rng.standard_normal(n).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)),
    }


def _nudge(tensors: dict[str, tuple[str, np.ndarray]], seed: int) -> dict[str, tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, (dtype, a) in tensors.items():
        if dtype == "F32":
            out[name] = (dtype, (a + rng.standard_normal(a.shape).astype(a.dtype) * np.float32(1e-3) * np.abs(a)))
        else:  # bf16 bit patterns: flip a few low mantissa bits, as a fine-tune does
            out[name] = (dtype, a ^ (rng.random(a.shape) < 0.3).astype(np.uint16))
    return out


def _deep_store(tmp_path: Path, levels: int = 4) -> tuple[Repository, list[bytes]]:
    """A store of `levels` versions, each a small nudge of the one before: byte-plane deltas on deltas."""
    repo = Repository.init(tmp_path / "store")
    tensors, saved = _weights(0), []
    path = tmp_path / "m.safetensors"
    for step in range(levels):
        saved.append(safetensors_bytes(tensors))
        path.write_bytes(saved[-1])
        repo.save(path)
        tensors = _nudge(tensors, step + 1)
    return repo, saved


def _header(repo: Repository, oid: str) -> codec.Header:
    header = codec.parse_header(repo.store.objects.path(oid).read_bytes())
    assert header is not None
    return header


def _deepest(repo: Repository) -> str:
    store = repo.store.objects
    return max(store, key=store.depth)


def test_a_chain_of_depth_3_or_more_decodes_bit_exact_interleaving_once_per_piece(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, saved = _deep_store(tmp_path)
    store = repo.store.objects
    top = _deepest(repo)
    assert store.depth(top) >= 3 and _header(repo, top).codec == codec.PLANES_XOR_DELTA
    expected = store.read(top)  # every level decoded and hashed, as fsck does
    calls: list[int] = []
    real = codec._interleave

    def counting(planes: list[bytes | memoryview], width: int, size: int) -> bytearray:
        calls.append(size)
        return real(planes, width, size)

    monkeypatch.setattr(codec, "_interleave", counting)
    assert bytes(store.read(top, buffer=True, in_planes=True)) == expected
    assert len(calls) == 1  # the planes of all levels were XORed, then interleaved once (not once a level)
    calls.clear()
    out = repo.checkout("latest", tmp_path / "out.safetensors")
    assert out.read_bytes() == saved[-1]
    pieces = [c for c in repo.manifest("latest").entries[0].chunks if store.depth(c.oid) >= 1]
    assert pieces and len(calls) == len([c for c in repo.manifest("latest").entries[0].chunks if _planes(repo, c.oid)])
    for version, content in zip(repo.ids(), saved, strict=True):  # every version, every depth
        assert repo.checkout(version, tmp_path / "v.safetensors", force=True).read_bytes() == content


def _planes(repo: Repository, oid: str) -> bool:
    header = codec.parse_header(repo.store.objects.path(oid).read_bytes()[: codec.HEADER_BYTES])
    return header is not None and header.codec in codec.PLANE_CODECS


def _bottom(repo: Repository, top: str) -> str:
    oid = top
    while (base := repo.store.objects.delta_base(oid)) is not None:
        oid = base
    return oid


def _rewrite(repo: Repository, oid: str, blob: bytes) -> None:
    path = repo.store.objects.path(oid)
    path.chmod(0o644)
    path.write_bytes(blob)


def test_a_damaged_base_is_loud_on_checkout_and_fsck_names_it(tmp_path: Path) -> None:
    repo, _ = _deep_store(tmp_path)
    top = _deepest(repo)
    base = _bottom(repo, top)
    blob = bytearray(repo.store.objects.path(base).read_bytes())
    blob[-10] ^= 1  # a stored byte of the bottom level: its envelope checksum fails
    _rewrite(repo, base, bytes(blob))
    with pytest.raises(DamagedDeltaBase, match=base):
        repo.store.objects.read(top, buffer=True, in_planes=True)
    with pytest.raises(IntegrityError):
        repo.checkout("latest", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()  # nothing half-written is left under the name
    codes = {p.subject: p.code for p in repo.fsck().errors}
    assert codes[base] == "corrupt-object" and codes[top] == "damaged-base"


def test_a_base_with_a_forged_checksum_fails_the_top_objects_hash(tmp_path: Path) -> None:
    """Damage the envelope checksum cannot see (the checksum recomputed over changed bytes) is caught by
    the hash of the top object, which covers the whole chain; fsck still names the base."""
    repo, _ = _deep_store(tmp_path)
    top = _deepest(repo)
    base = _bottom(repo, top)
    blob = bytearray(repo.store.objects.path(base).read_bytes())
    header = _header(repo, base)
    how, _ = codec._PLANE.unpack_from(blob, header.payload_offset)
    assert how == codec.PLANE_RAW  # byte 0 of every element: random mantissa bits, stored raw
    blob[header.payload_offset + header.width * codec._PLANE.size + 10] ^= 1  # a byte zstd cannot vouch for
    head, check_at = codec._HEAD.size, codec._HEAD.size + codec.CHECK
    blob[head:check_at] = blake3.blake3(bytes(blob[:head])).update(bytes(blob[check_at:])).digest()[: codec.CHECK]
    _rewrite(repo, base, bytes(blob))
    with pytest.raises(CorruptObject, match=f"{top} is corrupt: its bytes, decoded with its delta chain"):
        repo.store.objects.read(top, buffer=True, in_planes=True)
    with pytest.raises(IntegrityError):
        repo.checkout("latest", tmp_path / "out.safetensors")
    codes = {p.subject: p.code for p in repo.fsck().errors}
    assert codes[base] == "corrupt-object" and codes[top] == "damaged-base"


def test_a_damaged_chunk_of_a_large_file_leaves_nothing_behind(tmp_path: Path) -> None:
    """The parallel path (chunks written at their offsets by the workers): a chunk that fails its check
    stops the checkout, and neither the file nor its temp file is left."""
    repo = Repository.init(tmp_path / "store")
    path = tmp_path / "big.safetensors"
    path.write_bytes(safetensors_bytes(_weights(3, n=4 << 20)))  # 32 MiB: several chunks, on the pool
    repo.save(path)
    chunks = repo.manifest("latest").entries[0].chunks
    assert len(chunks) >= 2
    victim = chunks[len(chunks) // 2].oid
    blob = bytearray(repo.store.objects.path(victim).read_bytes())
    blob[-10] ^= 1
    _rewrite(repo, victim, bytes(blob))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IntegrityError, match=victim):
        repo.checkout("latest", out / "big.safetensors")
    assert list(out.iterdir()) == []
    blob[-10] ^= 1
    _rewrite(repo, victim, bytes(blob))
    assert repo.checkout("latest", out / "big.safetensors").read_bytes() == path.read_bytes()
