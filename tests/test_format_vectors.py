"""docs/format.md is precise enough to implement: an independent reader, written from that page alone
(it imports nothing from mstore), decodes the test vectors printed there, and mstore agrees with it."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import blake3
import msgpack
import pytest
import zstandard

from mstore.errors import CorruptObject
from mstore.store import codec
from mstore.store.objects import decode_object

FORMAT_MD = Path(__file__).resolve().parent.parent / "docs" / "format.md"


def vectors() -> dict[str, tuple[str, int, bytes]]:
    """name -> (id, size, stored bytes), parsed from the ```text blocks of format.md."""
    out = {}
    for block in re.findall(r"```text\n(.*?)```", FORMAT_MD.read_text(), re.S):
        fields = dict(line.split(":", 1) for line in block.strip().splitlines())
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        out[fields["vector"]] = (fields["id"], int(fields["size"]), bytes.fromhex(fields["stored"]))
    return out


# -- the independent reader: every line below follows format.md's "Objects" section --------------------


def ungroup(data: bytes, width: int) -> bytes:
    if width == 1 or len(data) % width:
        return data
    n = len(data) // width
    return bytes(data[plane * n + i] for i in range(n) for plane in range(width))


def read_object(stored: bytes, bases: dict[str, bytes]) -> bytes:
    if stored[:4] != b"MSZ\x01":
        return stored  # a raw object
    codec_id, width = stored[4], stored[5]
    (size,) = struct.unpack("<Q", stored[6:14])
    assert codec_id in (0, 1, 2, 3) and width in (1, 2, 4, 8) and size <= 256 << 20
    check = stored[14:22]
    assert blake3.blake3(stored[:14] + stored[22:]).digest()[:8] == check, "envelope check"
    if codec_id == 0:
        content = stored[22:]
    elif codec_id in (1, 2):
        plain = zstandard.ZstdDecompressor().decompress(stored[22:], max_output_size=size)
        content = plain if codec_id == 1 else ungroup(plain, width)
    else:
        base_id, _depth = stored[22:54].hex(), stored[54]
        diff = ungroup(zstandard.ZstdDecompressor().decompress(stored[55:], max_output_size=size), width)
        base = bases[base_id]
        content = bytes(a ^ b for a, b in zip(diff, base, strict=True))
    assert len(content) == size
    return content


def model_hash(manifest: dict[str, object]) -> str:
    entries = manifest["entries"]
    assert isinstance(entries, list)
    if manifest["kind"] == "file":
        return bytes(entries[0]["b3"]).hex()
    lines = []
    for e in entries:
        if e["type"] == "d":
            lines.append(f"d {e['path']}\n")
        else:
            lines.append(f"{'x' if e['exec'] else 'f'} {bytes(e['b3']).hex()} {e['size']} {e['path']}\n")
    return blake3.blake3("".join(lines).encode()).hexdigest()


# -- the tests ------------------------------------------------------------------------------------------


def test_format_md_has_every_kind_of_vector() -> None:
    assert set(vectors()) == {"raw", "identity", "zstd", "grouped", "delta", "manifest"}


def test_the_independent_reader_decodes_every_vector_to_its_id() -> None:
    found: dict[str, bytes] = {}
    for name in ("raw", "identity", "zstd", "grouped", "delta", "manifest"):
        oid, size, stored = vectors()[name]
        content = read_object(stored, found)
        assert len(content) == size and blake3.blake3(content).hexdigest() == oid, name
        found[oid] = content
    manifest = msgpack.unpackb(found[vectors()["manifest"][0]], raw=False)
    assert manifest["mstore"] == "manifest" and manifest["kind"] == "file"
    ((chunk_id, chunk_size),) = manifest["entries"][0]["chunks"]
    assert bytes(chunk_id).hex() == vectors()["delta"][0] and chunk_size == vectors()["delta"][1]
    assert model_hash(manifest) == vectors()["delta"][0]


@pytest.mark.parametrize("name", ["raw", "identity", "zstd", "grouped", "delta"])
def test_mstore_decodes_each_vector_as_the_independent_reader_does(name: str) -> None:
    table = vectors()
    contents = {oid: read_object(stored, {}) for oid, _, stored in (table["grouped"],)}
    oid, size, stored = table[name]
    ours = decode_object(oid, stored, size, lambda base, n: contents[base])
    assert ours == read_object(stored, contents)


def test_a_vector_with_one_flipped_bit_is_refused_by_both_readers() -> None:
    oid, size, stored = vectors()["zstd"]
    damaged = bytearray(stored)
    damaged[-1] ^= 0x01
    with pytest.raises(AssertionError):
        read_object(bytes(damaged), {})
    with pytest.raises(CorruptObject):
        decode_object(oid, bytes(damaged), size, lambda base, n: b"")
    assert codec.MAGIC == b"MSZ\x01"
