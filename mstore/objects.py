"""Content-addressed object store: immutable files named by the blake3 hex digest of their bytes.

`objects/ab/cdef…` holds the object whose id is `abcdef…` (git-style fan-out on the first two hex
digits), so `b3sum objects/ab/cdef…` prints `abcdef…`. Objects are written once and never modified.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import blake3

from . import fsutil
from .errors import CorruptObject, IntegrityError, MissingObject

OID_HEX_LEN = 64
_OID_RE = re.compile(r"[0-9a-f]{64}")
_FANOUT_RE = re.compile(r"[0-9a-f]{2}")
_REST_RE = re.compile(r"[0-9a-f]{62}")
READ_BLOCK = 1 << 20


def hash_bytes(data: bytes | memoryview) -> str:
    """The object id of `data`."""
    return blake3.blake3(data).hexdigest()


def is_oid(value: object) -> bool:
    return isinstance(value, str) and _OID_RE.fullmatch(value) is not None


def check_oid(value: str) -> str:
    """Validate an object id before it is ever joined into a path."""
    if not is_oid(value):
        raise IntegrityError(f"invalid object id {value!r}")
    return value


class ObjectStore:
    """The `objects/` directory of one store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirty: set[Path] = set()

    def path(self, oid: str) -> Path:
        check_oid(oid)
        return self.root / oid[:2] / oid[2:]

    def has(self, oid: str) -> bool:
        return self.path(oid).is_file()

    def put(self, data: bytes, oid: str | None = None) -> bool:
        """Store `data`; returns True if it was new. Call `sync()` before publishing anything that refers to it.

        An existing object of the right size is kept and has its mtime refreshed (so a gc grace
        period protects it); one of the wrong size is damaged and is replaced by the good bytes.
        """
        oid = oid or hash_bytes(data)
        path = self.path(oid)
        try:
            st = path.stat()
        except FileNotFoundError:
            st = None
        if st is not None and st.st_size == len(data):
            fsutil.touch(path)
            return False
        fsutil.make_dir(path.parent, parents=True)
        if st is None:
            created = fsutil.create_exclusive(path, data)
        else:  # damaged copy: replace it
            fsutil.atomic_write(path, data, mode=0o444, sync_dir=False)
            created = True
        self._dirty.update((path.parent, path.parent.parent))  # the fan-out dir may be new too
        return created

    def sync(self) -> None:
        """fsync every directory that gained an object since the last sync."""
        for directory in sorted(self._dirty, key=lambda p: len(p.parts), reverse=True):
            fsutil.fsync_dir(directory)
        self._dirty.clear()

    def read(self, oid: str, expected_size: int | None = None) -> bytes:
        """The object's bytes, verified against its id (never returns wrong bytes)."""
        path = self.path(oid)
        try:
            with open(path, "rb") as f:
                limit = -1 if expected_size is None else expected_size + 1
                data = f.read(limit)
        except FileNotFoundError:
            raise MissingObject(f"object {oid} is missing") from None
        if expected_size is not None and len(data) != expected_size:
            raise CorruptObject(f"object {oid} is truncated or overlong: expected {expected_size} bytes")
        if hash_bytes(data) != oid:
            raise CorruptObject(f"object {oid} is corrupt: its bytes do not match its hash")
        return data

    def verify(self, oid: str) -> str | None:
        """Re-hash an object from disk in bounded memory; returns a problem description or None."""
        hasher = blake3.blake3()
        try:
            with open(self.path(oid), "rb") as f:
                while block := f.read(READ_BLOCK):
                    hasher.update(block)
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            return f"unreadable: {exc.strerror}"
        if hasher.hexdigest() != oid:
            return "bytes do not match the hash"
        return None

    def size(self, oid: str) -> int:
        return self.path(oid).stat().st_size

    def delete(self, oid: str) -> None:
        fsutil.remove_file(self.path(oid))

    def __iter__(self) -> Iterator[str]:
        """Every object id on disk (temp files and stray names are skipped)."""
        if not self.root.is_dir():
            return
        for fan in sorted(os.listdir(self.root)):
            if not _FANOUT_RE.fullmatch(fan):
                continue
            for rest in sorted(os.listdir(self.root / fan)):
                if _REST_RE.fullmatch(rest):
                    yield fan + rest

    def stray_files(self) -> Iterator[Path]:
        """Temp files and foreign names under objects/ (leftovers of crashed saves, or junk)."""
        if not self.root.is_dir():
            return
        for fan in sorted(os.listdir(self.root)):
            fan_path = self.root / fan
            if not _FANOUT_RE.fullmatch(fan) or not fan_path.is_dir():
                yield fan_path
                continue
            for rest in sorted(os.listdir(fan_path)):
                if not _REST_RE.fullmatch(rest):
                    yield fan_path / rest
