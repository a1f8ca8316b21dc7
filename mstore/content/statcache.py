"""A stat cache for saves, like git's index: a file whose stat has not changed since it was last saved
is not read again; its chunk list and whole-file hash are taken from the cache.

`<store>/cache/stat.msgpack` maps a source file's absolute path to what a save read from it (size,
mtime_ns, ctime_ns, inode, device; the whole-file blake3 and the chunks). It can only ever cause a
re-hash, never a wrong answer:

- an entry is used only when size, mtime_ns, ctime_ns, inode and device all match. Writing a file or
  forcing its mtime back with `os.utime` changes its ctime, which no user call can set;
- an entry is recorded only when the file's mtime and ctime are more than `RACY_NS` (1 s) older than
  the moment its reading began ("racy" files, as git calls them): file timestamps come from a coarse
  clock, so a change made just after the read could otherwise carry the very same ctime;
- a hit still checks that every chunk object is in the store with the right size (and refreshes its
  mtime, as a save does, for gc's grace period), else the file is read as usual;
- the file is untrusted input: a checksum covers it, and anything that does not decode or validate
  strictly means "no cache". It is written atomically (fsutil), so a crash leaves the old or the new.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import msgpack

from ..errors import MStoreError
from ..store import fsutil
from ..store.manifest import Chunk
from ..store.objects import is_oid

CACHE_DIR = "cache"
CACHE_FILE = "stat.msgpack"
VERSION = 1
RACY_NS = 1_000_000_000
MAX_ENTRIES = 10_000
MAX_BYTES = 64 << 20
Key = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device
clock_ns: Callable[[], int] = time.time_ns


def stat_key(st: os.stat_result) -> Key:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


MAX_CACHE_BYTES = 256 << 20  # far above 10,000 entries; a larger file is not ours: no cache


class StatCache:
    """One store's stat cache; load once per save, `record` what was read, `flush` at the end."""

    def __init__(self, store_root: Path) -> None:
        self.dir = store_root / CACHE_DIR
        self.path = self.dir / CACHE_FILE
        self._entries: dict[str, tuple[Key, str, tuple[Chunk, ...], int]] | None = None
        self._dirty = False

    def _load(self) -> dict[str, tuple[Key, str, tuple[Chunk, ...], int]]:
        if self._entries is None:
            try:  # a store file like any other: bounded, and never a FIFO or a link
                self._entries = _decode(fsutil.read_regular(self.path, MAX_CACHE_BYTES))
            except (OSError, ValueError, MStoreError):
                self._entries = {}
        return self._entries

    def lookup(self, path: Path, st: os.stat_result) -> tuple[str, tuple[Chunk, ...]] | None:
        """(whole-file blake3, chunks) if the file at `path` with stat `st` is exactly as last saved."""
        hit = self._load().get(os.path.abspath(path))
        if hit is None or hit[0] != stat_key(st):
            return None
        return hit[1], hit[2]

    def record(
        self, path: Path, st: os.stat_result, read_start_ns: int, digest: str, chunks: tuple[Chunk, ...]
    ) -> None:
        """Remember a file read from `read_start_ns` on with stat `st` (before and after the read)."""
        entries = self._load()
        key = os.path.abspath(path)
        if max(st.st_mtime_ns, st.st_ctime_ns) >= read_start_ns - RACY_NS:  # racy: changed too recently
            if entries.pop(key, None) is not None:
                self._dirty = True
            return
        entries.pop(key, None)  # re-insert at the end: the oldest entries go first when the cache is full
        entries[key] = (stat_key(st), digest, chunks, read_start_ns)
        while len(entries) > MAX_ENTRIES:
            del entries[next(iter(entries))]
        self._dirty = True

    def flush(self) -> None:
        """Write the cache (atomically) if it changed; failing to write it only costs a re-hash later."""
        if not self._dirty or self._entries is None:
            return
        try:
            fsutil.make_dir(self.dir)
            for name in os.listdir(self.dir):  # a crash mid-write leaves a temp file: clear old ones
                stale = self.dir / name
                if fsutil.is_temp_name(name) and stale.stat().st_mtime < time.time() - 3600:
                    fsutil.remove_file(stale)
            fsutil.atomic_write(self.path, _encode(self._entries), sync_dir=False)
        except OSError:
            pass
        self._dirty = False


def _encode(entries: dict[str, tuple[Key, str, tuple[Chunk, ...], int]]) -> bytes:
    body = msgpack.packb(
        {
            "v": VERSION,
            "entries": [
                [path, list(key), bytes.fromhex(digest), [[bytes.fromhex(c.oid), c.size] for c in chunks], when]
                for path, (key, digest, chunks, when) in entries.items()
            ],
        },
        use_bin_type=True,
    )
    return bytes(blake3.blake3(body).digest()) + body


def _decode(raw: bytes) -> dict[str, tuple[Key, str, tuple[Chunk, ...], int]]:
    """Strict: any damage, unknown version or ill-formed entry raises ValueError (meaning: no cache)."""
    if len(raw) > MAX_BYTES or len(raw) < 32:
        raise ValueError("stat cache has an impossible size")
    check, body = raw[:32], raw[32:]
    if blake3.blake3(body).digest() != check:
        raise ValueError("stat cache fails its checksum")
    try:
        doc: Any = msgpack.unpackb(body, raw=False, strict_map_key=True, max_bin_len=MAX_BYTES, max_str_len=MAX_BYTES)
    except Exception as exc:  # msgpack raises several types on bad input
        raise ValueError(f"stat cache does not decode: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != VERSION or not isinstance(doc.get("entries"), list):
        raise ValueError("stat cache has an unknown layout")
    out: dict[str, tuple[Key, str, tuple[Chunk, ...], int]] = {}
    for item in doc["entries"]:
        if not (isinstance(item, list) and len(item) == 5):
            raise ValueError("bad stat cache entry")
        path, key, digest, chunks, when = item
        if not (
            isinstance(path, str)
            and isinstance(key, list)
            and len(key) == 5
            and all(type(k) is int and k >= 0 for k in key)
            and isinstance(digest, bytes)
            and len(digest) == 32
            and isinstance(chunks, list)
            and type(when) is int
        ):
            raise ValueError("bad stat cache entry")
        parsed = []
        for chunk in chunks:
            if not (isinstance(chunk, list) and len(chunk) == 2 and isinstance(chunk[0], bytes)):
                raise ValueError("bad stat cache chunk")
            oid, size = chunk[0].hex(), chunk[1]
            if not is_oid(oid) or type(size) is not int or size <= 0:
                raise ValueError("bad stat cache chunk")
            parsed.append(Chunk(oid, size))
        if sum(c.size for c in parsed) != key[0]:
            raise ValueError("stat cache chunks do not add up to the file size")
        out[path] = ((key[0], key[1], key[2], key[3], key[4]), digest.hex(), tuple(parsed), when)
    return out
