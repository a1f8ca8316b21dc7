"""Content-addressed object store: immutable files named by the blake3 hex digest of their content.

`objects/ab/cdef…` holds the object whose id is `abcdef…` (git-style fan-out on the first two hex
digits). A raw object is its content, so `b3sum objects/ab/cdef…` prints `abcdef…`; an encoded one
(compressed, byte-grouped or a delta, see codec.py) decodes to it. Objects are written once and never
modified; every read decodes and re-hashes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path

import blake3

from . import codec, fsutil
from .errors import CorruptObject, DamagedDeltaBase, IntegrityError, MissingObject

OID_HEX_LEN = 64
_OID_RE = re.compile(r"[0-9a-f]{64}")
_FANOUT_RE = re.compile(r"[0-9a-f]{2}")
_REST_RE = re.compile(r"[0-9a-f]{62}")


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


def decode_object(
    oid: str,
    blob: bytes,
    expected_size: int | None,
    read_base: Callable[[str, int], bytes],
    *,
    envelopes: bool = True,
    buffer: bool = False,
) -> bytes:
    """An object's content from its stored bytes (wherever they came from), verified against its id.

    `read_base(base, size)` gives a delta base's verified content. A delta whose base cannot be read
    raises DamagedDeltaBase, not CorruptObject: its own bytes may be fine, so it must not be thrown away.
    """
    if envelopes:

        def load_base(base: str, size: int) -> bytes:
            try:
                return read_base(base, size)
            except IntegrityError as exc:
                raise DamagedDeltaBase(f"object {oid} is a delta against {base}, which is damaged ({exc})") from None

        try:
            data = codec.decode(blob, expected_size, load_base, buffer=buffer)
        except DamagedDeltaBase:
            raise
        except CorruptObject as exc:
            raise CorruptObject(f"object {oid}: {exc}") from None
    else:
        data = blob
    if expected_size is not None and len(data) != expected_size:
        raise CorruptObject(f"object {oid} is truncated or overlong: expected {expected_size} bytes")
    if hash_bytes(data) != oid:
        raise CorruptObject(f"object {oid} is corrupt: its bytes do not match its hash")
    return data


class ObjectStore:
    """The `objects/` directory of one store."""

    def __init__(self, root: Path, *, envelopes: bool = True) -> None:
        self.root = root
        self.envelopes = envelopes  # False for format-1 stores: every object is raw, nothing is parsed
        self._dirty: set[Path] = set()

    def path(self, oid: str) -> Path:
        check_oid(oid)
        return self.root / oid[:2] / oid[2:]

    def has(self, oid: str) -> bool:
        return self.path(oid).is_file()

    def _existing_size(self, path: Path) -> int | None:
        """Content size an existing object file claims (raw: its length; encoded: its header), or None."""
        try:
            with open(path, "rb") as f:
                head = f.read(64)
                size = os.fstat(f.fileno()).st_size
        except FileNotFoundError:
            return None
        if not self.envelopes:
            return size
        try:
            header = codec.parse_header(head)
        except CorruptObject:
            return -1
        return size if header is None else header.size

    def claimed_size(self, oid: str) -> int | None:
        """The content size the object file claims (-1 if its header is damaged), None if it is missing."""
        return self._existing_size(self.path(oid))

    def has_intact(self, oid: str, size: int) -> bool:
        """True when the object exists and claims the right size; refreshes its mtime (gc grace)."""
        path = self.path(oid)
        if self._existing_size(path) != size:
            return False
        fsutil.touch(path)
        return True

    def put(self, data: bytes, oid: str | None = None, stored: bytes | None = None) -> bool:
        """Store `data` (on disk as `stored`, its encoding, if given); returns True if it was new.

        Call `sync()` before publishing anything that refers to it. An existing object that claims the
        right size is kept and has its mtime refreshed (so a gc grace period protects it); one that
        does not is damaged and is replaced by the good bytes.
        """
        oid = oid or hash_bytes(data)
        if self.has_intact(oid, len(data)):
            return False
        path = self.path(oid)
        blob = stored if stored is not None else codec.as_raw(data) if self.envelopes else data
        fsutil.make_dir(path.parent, parents=True)
        if not path.exists():
            created = fsutil.create_exclusive(path, blob)
        else:  # damaged copy: replace it
            fsutil.atomic_write(path, blob, mode=0o444, sync_dir=False)
            created = True
        self._dirty.update((path.parent, path.parent.parent))  # the fan-out dir may be new too
        return created

    def sync(self) -> None:
        """fsync every directory that gained an object since the last sync."""
        for directory in sorted(self._dirty, key=lambda p: len(p.parts), reverse=True):
            fsutil.fsync_dir(directory)
        self._dirty.clear()

    def read(self, oid: str, expected_size: int | None = None, _depth: int = 0, *, buffer: bool = False) -> bytes:
        """The object's content, decoded and verified against its id (never returns wrong bytes).

        `buffer`: the content may be a bytearray (one copy fewer; see codec.decode), for callers that
        only write, hash or XOR it.
        """
        return self.read_with_blob(oid, expected_size, _depth, buffer=buffer)[0]

    def read_with_blob(
        self,
        oid: str,
        expected_size: int | None = None,
        _depth: int = 0,
        known: Mapping[str, bytes] | None = None,
        *,
        buffer: bool = False,
    ) -> tuple[bytes, bytes]:
        """(content, the file as stored): one read, decoded and verified (for copying an object as is).

        `known` maps object ids to content already verified against them: a delta base found there is
        not read and decoded again (fsck verifies a base, then its deltas with it).
        """
        # Chains are written at most MAX_DEPTH deep; a base re-saved after damage may be re-encoded at
        # another depth, so allow slack, but never follow a cycle in a crafted store forever.
        if _depth > 4 * codec.MAX_DEPTH:
            raise CorruptObject(f"object {oid}: delta chain is too long (or a cycle)")
        path = self.path(oid)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > codec.MAX_OBJECT + 64:
                    raise CorruptObject(f"object {oid} is larger than any object mstore writes")
                blob = f.read(size)
        except FileNotFoundError:
            raise MissingObject(f"object {oid} is missing") from None

        def read_base(base: str, size: int) -> bytes:
            content = known.get(base) if known else None
            if content is not None and len(content) == size:
                return content
            return self.read(base, size, _depth + 1, buffer=True)  # a base is only XORed

        content = decode_object(oid, blob, expected_size, read_base, envelopes=self.envelopes, buffer=buffer)
        return content, blob

    def decode(self, oid: str, blob: bytes, expected_size: int | None = None, *, buffer: bool = False) -> bytes:
        """The verified content of `oid` from its stored bytes, read already (bases are read as needed)."""
        read_base = partial(self.read, buffer=True)  # a base is only XORed
        return decode_object(oid, blob, expected_size, read_base, envelopes=self.envelopes, buffer=buffer)

    def verify(self, oid: str, expected_size: int | None = None) -> tuple[str, str] | None:
        """Decode and re-hash one object; returns (problem code, one-line description) or None.

        `damaged-base` means the object's own bytes are fine but a delta base it needs is not.
        """
        return self.verify_read(oid, expected_size)[0]

    def verify_read(
        self, oid: str, expected_size: int | None = None, known: Mapping[str, bytes] | None = None
    ) -> tuple[tuple[str, str] | None, bytes | None]:
        """(problem or None, the verified content or None): `verify` that also hands back the content."""
        try:
            return None, self.read_with_blob(oid, expected_size, known=known, buffer=True)[0]
        except DamagedDeltaBase as exc:
            return ("damaged-base", str(exc)), None
        except IntegrityError as exc:
            return ("corrupt-object", str(exc)), None
        except OSError as exc:
            return ("corrupt-object", f"object {oid} is unreadable: {exc.strerror}"), None

    def depth(self, oid: str) -> int:
        """How many deltas must be undone to read this object (0 for a raw or plainly compressed one)."""
        if not self.envelopes:
            return 0
        try:
            with open(self.path(oid), "rb") as f:
                header = codec.parse_header(f.read(64))
        except (FileNotFoundError, CorruptObject):
            return 0
        return header.depth if header else 0

    def delta_base(self, oid: str) -> str | None:
        """The object a delta-encoded object is decoded against (it must stay reachable), or None."""
        if not self.envelopes:
            return None
        try:
            with open(self.path(oid), "rb") as f:
                header = codec.parse_header(f.read(64))
        except (FileNotFoundError, CorruptObject):
            return None
        return header.base if header else None

    def closure(self, oids: set[str]) -> set[str]:
        """`oids` plus every delta base they (transitively) need."""
        out, todo = set(oids), list(oids)
        while todo:
            base = self.delta_base(todo.pop())
            if base is not None and is_oid(base) and base not in out:
                out.add(base)
                todo.append(base)
        return out

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
