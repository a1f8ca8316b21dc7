"""The manifest: a msgpack object listing a model's files and, for each file, the objects holding its bytes.

A manifest is itself an object, so a version needs only its manifest id to be fully described, and
everything it lists is verifiable by hash. Decoding is strict and bounded: a manifest read from disk
is untrusted input.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import blake3
import msgpack

from ..errors import CorruptManifest, InvalidName

MANIFEST_FORMAT = 1
MAX_MANIFEST_BYTES = 256 << 20
MAX_PATH_CHARS = 4096
MAX_COMPONENT_BYTES = 255
KIND_FILE = "file"  # the model is one file; the manifest has exactly one file entry
KIND_DIR = "dir"  # the model is a directory tree


def check_relpath(path: str) -> str:
    """Accept only a clean relative POSIX path: no absolute paths, `..`, empty parts, backslashes or control chars."""
    if not isinstance(path, str) or not path:
        raise InvalidName("empty path in model tree")
    if len(path) > MAX_PATH_CHARS:
        raise InvalidName(f"path longer than {MAX_PATH_CHARS} characters")
    if any(ord(c) < 32 or c in "\x7f\\" for c in path):
        raise InvalidName(f"path {path!r} contains a control character or backslash")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidName(f"path {path!r} is not valid UTF-8") from None
    if path.startswith("/"):
        raise InvalidName(f"absolute path {path!r} in model tree")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise InvalidName(f"path {path!r} has an empty, '.' or '..' component")
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise InvalidName(f"path component longer than {MAX_COMPONENT_BYTES} bytes in {path!r}")
    return path


@dataclass(frozen=True)
class Chunk:
    oid: str
    size: int


@dataclass(frozen=True)
class Entry:
    """One file or directory of the model. Directories have no size, digest or chunks."""

    path: str
    is_dir: bool = False
    size: int = 0
    executable: bool = False
    digest: str = ""  # blake3 hex of the whole file (what `b3sum` prints)
    chunks: tuple[Chunk, ...] = field(default=())


@dataclass(frozen=True)
class Manifest:
    kind: str
    entries: tuple[Entry, ...]

    @property
    def files(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if not e.is_dir)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

    @property
    def model_hash(self) -> str:
        """For one file, the file's blake3 (as `b3sum` prints it); for a tree, `tree_digest`."""
        if self.kind == KIND_FILE:
            return self.entries[0].digest
        return tree_digest(self.entries)

    def chunk_ids(self) -> Iterator[str]:
        for entry in self.entries:
            for chunk in entry.chunks:
                yield chunk.oid

    def encode(self) -> bytes:
        entries: list[dict[str, Any]] = []
        for e in self.entries:
            if e.is_dir:
                entries.append({"path": e.path, "type": "d"})
            else:
                entries.append(
                    {
                        "path": e.path,
                        "type": "f",
                        "size": e.size,
                        "exec": e.executable,
                        "b3": bytes.fromhex(e.digest),
                        "chunks": [[bytes.fromhex(c.oid), c.size] for c in e.chunks],
                    }
                )
        doc = {"mstore": "manifest", "v": MANIFEST_FORMAT, "kind": self.kind, "entries": entries}
        return msgpack.packb(doc, use_bin_type=True)

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Parse and validate; any deviation raises CorruptManifest."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise CorruptManifest("manifest is too large")
        try:
            doc = msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=True,
                max_str_len=MAX_PATH_CHARS * 4,
                max_bin_len=64,
                max_array_len=len(data),
                max_map_len=32,
            )
            return _from_doc(doc)
        except CorruptManifest:
            raise
        except InvalidName as exc:
            raise CorruptManifest(f"manifest has an unsafe path: {exc}") from None
        except (ValueError, TypeError, KeyError, msgpack.UnpackException, RecursionError) as exc:
            raise CorruptManifest(f"manifest does not decode: {exc}") from None


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise CorruptManifest(f"invalid manifest: {what}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _from_doc(doc: Any) -> Manifest:
    _expect(isinstance(doc, dict) and doc.get("mstore") == "manifest", "not a manifest")
    _expect(doc.get("v") == MANIFEST_FORMAT, f"unsupported manifest format {doc.get('v')!r}")
    kind = doc.get("kind")
    _expect(kind in (KIND_FILE, KIND_DIR), "unknown kind")
    raw_entries = doc.get("entries")
    _expect(isinstance(raw_entries, list), "entries is not a list")
    entries = [_entry_from_doc(raw) for raw in raw_entries]
    paths = [e.path for e in entries]
    _expect(paths == sorted(set(paths)), "entries are not sorted and unique")
    if kind == KIND_FILE:
        _expect(len(entries) == 1 and not entries[0].is_dir, "a file manifest has exactly one file")
        _expect("/" not in entries[0].path, "a file manifest names a bare file")
    else:
        dirs = {e.path for e in entries if e.is_dir}
        for p in paths:
            parent = p.rpartition("/")[0]
            _expect(parent == "" or parent in dirs, f"{p!r} has no parent directory entry")
    return Manifest(kind, tuple(entries))


def _entry_from_doc(raw: Any) -> Entry:
    _expect(isinstance(raw, dict), "entry is not a map")
    path = check_relpath(raw.get("path"))
    if raw.get("type") == "d":
        _expect(set(raw) == {"path", "type"}, "directory entry has extra fields")
        return Entry(path, is_dir=True)
    _expect(raw.get("type") == "f", "unknown entry type")
    _expect(set(raw) == {"path", "type", "size", "exec", "b3", "chunks"}, "file entry fields")
    size, digest, raw_chunks = raw["size"], raw["b3"], raw["chunks"]
    _expect(_is_int(size), "size is not a non-negative integer")
    _expect(isinstance(raw["exec"], bool), "exec is not a boolean")
    _expect(isinstance(digest, bytes) and len(digest) == 32, "b3 is not 32 bytes")
    _expect(isinstance(raw_chunks, list), "chunks is not a list")
    chunks = []
    for rc in raw_chunks:
        _expect(isinstance(rc, list) and len(rc) == 2, "chunk is not a pair")
        oid, csize = rc
        _expect(isinstance(oid, bytes) and len(oid) == 32, "chunk id is not 32 bytes")
        _expect(_is_int(csize) and csize > 0, "chunk size is not a positive integer")
        chunks.append(Chunk(oid.hex(), csize))
    _expect(sum(c.size for c in chunks) == size, "chunk sizes do not add up to the file size")
    return Entry(path, False, size, raw["exec"], digest.hex(), tuple(chunks))


def tree_digest(entries: tuple[Entry, ...] | list[Entry]) -> str:
    """Deterministic digest of a directory model: blake3 over one line per entry, sorted by path.

    Lines are `d <path>` for a directory and `f <b3> <size> <path>` (`x` instead of `f` when
    executable) for a file, each ending in a newline; see docs/format.md.
    """
    hasher = blake3.blake3()
    for e in sorted(entries, key=lambda e: e.path):
        line = f"d {e.path}\n" if e.is_dir else f"{'x' if e.executable else 'f'} {e.digest} {e.size} {e.path}\n"
        hasher.update(line.encode("utf-8"))
    return hasher.hexdigest()
