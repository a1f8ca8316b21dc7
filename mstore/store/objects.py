"""Content-addressed object store: immutable files named by the blake3 hex digest of their content.

`objects/ab/cdef…` holds the object whose id is `abcdef…` (git-style fan-out on the first two hex
digits). A raw object is its content, so `b3sum objects/ab/cdef…` prints `abcdef…`; an encoded one
(compressed, byte-grouped or a delta, see codec.py) decodes to it. Objects are written once and never
modified; every read decodes and re-hashes.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar, cast

import blake3

from ..errors import CorruptObject, DamagedDeltaBase, IntegrityError, MissingObject, UnsafeStoreFile
from . import codec, fsutil

_OID_RE = re.compile(r"[0-9a-f]{64}")
_FANOUT_RE = re.compile(r"[0-9a-f]{2}")
_REST_RE = re.compile(r"[0-9a-f]{62}")
T = TypeVar("T")
BATCH_OBJECTS = 512  # a batch is fsynced and published once it holds this many objects...
BATCH_BYTES = 256 << 20  # ...or this many stored bytes (bounds what a crash leaves as temps for gc)


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
    checked: codec.Header | None = None,
) -> bytes:
    """An object's content from its stored bytes (wherever they came from), verified against its id.

    `read_base(base, size)` gives a delta base's verified content. A delta whose base cannot be read
    raises DamagedDeltaBase, not CorruptObject: its own bytes may be fine, so it must not be thrown away.
    Callers that may meet delta chains use `decode_chain`, which walks them without recursion.
    `checked`: the envelope header `codec.verify_envelope` gave for this blob (not checksummed again).
    """
    if envelopes:

        def load_base(base: str, size: int) -> bytes:
            try:
                return read_base(base, size)
            except IntegrityError as exc:
                raise DamagedDeltaBase(f"object {oid} is a delta against {base}, which is damaged ({exc})") from None

        try:
            data = codec.decode(blob, expected_size, load_base, buffer=buffer, checked=checked)
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


# A chain is written at most codec.MAX_DEPTH deep; a base re-saved after damage may be re-encoded at
# another depth, so allow slack, but never follow a crafted chain (or cycle) further than this.
MAX_CHAIN = 4 * codec.MAX_DEPTH
ENVELOPE_SLACK = 128  # an envelope is never more than this many bytes larger than its content

GetBlob = Callable[[str, int], bytes]  # (oid, most bytes it may have) -> the object as stored, unverified
GetHeader = Callable[[str], bytes]  # oid -> its first bytes (enough for an envelope header)
Known = Callable[[str, int], "bytes | None"]  # verified content available without a download, or None
Keep = Callable[[str, bytes, bytes], None]  # (oid, content, blob): a verified base, e.g. to store it


def stored_limit(expected_size: int | None) -> int:
    """The most bytes an object's stored form may have: a read never takes more than this."""
    return (codec.MAX_OBJECT if expected_size is None else min(expected_size, codec.MAX_OBJECT)) + ENVELOPE_SLACK


def _no_base(oid: str, size: int) -> bytes:
    raise CorruptObject(f"unexpected delta base {oid}")


def decode_chain(
    oid: str,
    expected_size: int | None,
    get_blob: GetBlob,
    get_header: GetHeader,
    *,
    envelopes: bool = True,
    known: Known | None = None,
    keep: Keep | None = None,
    buffer: bool = False,
    in_planes: bool = False,
) -> tuple[bytes, bytes]:
    """(content, stored bytes) of `oid`, verified; the one decoder of delta chains, local or remote.

    The chain is walked iteratively by headers first (cycle-checked, at most MAX_CHAIN deep, every level
    declaring the same size), then decoded from its base upwards holding one level at a time, so memory
    is a few times the object's size whatever the chain looks like. Every level is hash-verified.
    A damaged level below the top raises DamagedDeltaBase (the top's own bytes may be fine).
    `buffer`: the content may come back as a bytearray (see codec.decode); bases always may, as they are
    only XORed, unless `keep` stores them.
    `in_planes` (checkout): a chain of byte-plane objects (codec 4 under codec 5s of one width) is decoded
    in plane space (`codec.PlaneChain`): every level's envelope checksum is checked, but only the top is
    hashed, and it covers the chain; so damage a base's checksum misses is reported on the top object.
    """
    blob = get_blob(oid, stored_limit(expected_size))
    if not envelopes or not codec.is_delta(blob):
        return decode_object(oid, blob, expected_size, _no_base, envelopes=envelopes, buffer=buffer), blob
    header = codec.verify_envelope(blob, expected_size, oid)  # the top's own damage is not the base's
    assert header is not None and header.base is not None
    size, top_base = header.size, header.base
    try:
        chain: list[str] = []  # the bases below `oid`, nearest first, that must be decoded
        shapes: list[tuple[int, int] | None] = []  # each base's (codec, width) as its header says
        below: tuple[str, bytes] | None = None  # (oid, content) where the walk stopped on known content
        planes: codec.PlaneChain | None = None  # the bases' planes XORed, when decoded in plane space
        base: str | None = top_base
        while base is not None:
            if base == oid or base in chain:
                raise CorruptObject(f"delta chain of object {oid} has a cycle")
            if len(chain) >= MAX_CHAIN:
                raise CorruptObject(f"delta chain of object {oid} is longer than {MAX_CHAIN}")
            check_oid(base)
            found = known(base, size) if known is not None else None
            if found is not None:
                below = (base, found)
                break
            chain.append(base)
            level = codec.parse_header(get_header(base))
            if level is not None and level.size != size:
                raise CorruptObject(f"object {base} declares {level.size} bytes, its delta needs {size}")
            base = level.base if level is not None else None
            shapes.append((level.codec, level.width) if level is not None else None)
        if in_planes and below is None and keep is None and _plane_chain(header, shapes):
            planes = _plane_bases(header, chain, get_blob)  # damage here is the base's, as below
        for level_oid in [] if planes is not None else reversed(chain):
            level_blob = get_blob(level_oid, stored_limit(size))
            content = decode_object(
                level_oid, level_blob, size, _base_reader(below), envelopes=True, buffer=keep is None
            )
            if keep is not None:
                keep(level_oid, content, level_blob)
            below = (level_oid, content)
            del level_blob
    except IntegrityError as exc:
        raise DamagedDeltaBase(f"object {oid} is a delta against {top_base}, which is damaged ({exc})") from None
    if planes is not None:
        data = _top_in_planes(oid, blob, header, planes)
        return (data if buffer else bytes(data)), blob
    # the top's envelope was checked above, before any base was read: its checksum is not computed twice
    top = decode_object(oid, blob, size, _base_reader(below), envelopes=True, buffer=buffer, checked=header)
    return top, blob


def _plane_chain(top: codec.Header, shapes: list[tuple[int, int] | None]) -> bool:
    """True when the chain under `top` is codec 5s on one codec 4, all of the top's width."""
    width = top.width
    return (
        top.codec == codec.PLANES_XOR_DELTA
        and width in (2, 4, 8)
        and bool(shapes)
        and shapes[-1] == (codec.PLANES, width)
        and all(shape == (codec.PLANES_XOR_DELTA, width) for shape in shapes[:-1])
    )


def _plane_bases(header: codec.Header, chain: list[str], get_blob: GetBlob) -> codec.PlaneChain:
    """The planes of the top's bases XORed (see decode_chain `in_planes`), each level's envelope checked.

    A base whose stored bytes fail their envelope checksum, or that changed since the walk, raises here
    (decode_chain reports it as DamagedDeltaBase, as when every level was hashed)."""
    size = header.size
    planes = codec.PlaneChain(header.width, size)
    expected_base: str | None = None  # the bottom has no base; each level above names the one below
    for level_oid in reversed(chain):
        level_blob = get_blob(level_oid, stored_limit(size))
        level = codec.verify_envelope(level_blob, size, level_oid)
        if level is None or level.base != expected_base:
            raise CorruptObject(f"object {level_oid} is not the delta base its chain named")
        try:
            planes.add(level_blob, level)
        except CorruptObject as exc:
            raise CorruptObject(f"object {level_oid}: {exc}") from None
        expected_base = level_oid
        del level_blob
    if header.base != expected_base:
        raise CorruptObject(f"delta base {header.base} is not the one its chain named")
    return planes


def _top_in_planes(oid: str, blob: bytes, header: codec.Header, planes: codec.PlaneChain) -> bytes:
    """The top's planes XORed onto its bases', interleaved once, and hashed against `oid` (covering the
    whole chain: a base that decodes to wrong bytes makes the top fail its hash)."""
    try:
        planes.add(blob, header)
        data = planes.content()
    except CorruptObject as exc:
        raise CorruptObject(f"object {oid}: {exc}") from None
    if len(data) != header.size:
        raise CorruptObject(f"object {oid} is truncated or overlong: expected {header.size} bytes")
    if hash_bytes(memoryview(data)) != oid:
        raise CorruptObject(f"object {oid} is corrupt: its bytes, decoded with its delta chain, do not match its hash")
    return cast(bytes, data)


def _base_reader(below: tuple[str, bytes] | None) -> Callable[[str, int], bytes]:
    """A read_base that gives only the level just decoded (a header that changed since the walk is damage)."""

    def read_base(base: str, size: int) -> bytes:
        if below is None or below[0] != base:
            raise CorruptObject(f"delta base {base} is not the one its chain named")
        return below[1]

    return read_base


class ObjectStore:
    """The `objects/` directory of one store."""

    def __init__(self, root: Path, *, envelopes: bool = True) -> None:
        self.root = root
        self.envelopes = envelopes  # False for format-1 stores: every object is raw, nothing is parsed
        self._dirty: set[Path] = set()
        self._batching = False
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one flush at a time (any put that fills the batch flushes)
        # objects written in the open batch, not yet durable: oid -> (temp file, content size, stored
        # size, whether a damaged copy at the final name is replaced)
        self._pending: dict[str, tuple[Path, int, int, bool]] = {}
        self._pending_bytes = 0

    def path(self, oid: str) -> Path:
        check_oid(oid)
        return self.root / oid[:2] / oid[2:]

    def _at(self, oid: str, read: Callable[[Path], T]) -> T:
        """`read(the file of oid)`. An object of this process's open batch is read from its temp file
        (verified as any read is), or from its final name if the batch published it meanwhile."""
        path = self.path(oid)
        with self._lock:
            entry = self._pending.get(oid)
        if entry is None:
            return read(path)
        try:
            return read(entry[0])
        except FileNotFoundError:
            return read(path)

    def _existing_size(self, path: Path) -> int | None:
        """Content size an existing object file claims (raw: its length; encoded: its header), or None.

        -1 when the file cannot be an object (damaged header, not a regular file)."""
        try:
            fd = fsutil.open_regular(path)
        except FileNotFoundError:
            return None
        except IntegrityError:
            return -1
        try:
            head = os.read(fd, codec.HEADER_BYTES)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if not self.envelopes:
            return size
        try:
            header = codec.parse_header(head)
        except CorruptObject:
            return -1
        return size if header is None else header.size

    def claimed_size(self, oid: str) -> int | None:
        """The content size the object file claims (-1 if its header is damaged), None if it is missing."""
        with self._lock:
            entry = self._pending.get(oid)
        if entry is not None:  # written by this batch: it is durable before anything can refer to it
            return entry[1]
        return self._existing_size(self.path(oid))

    def has_intact(self, oid: str, size: int) -> bool:
        """True when the object exists and claims the right size; refreshes its mtime (gc grace).

        An object of this process's open batch counts: `sync()` makes it durable (or fails) before
        anything that refers to it is published."""
        with self._lock:
            entry = self._pending.get(oid)
        if entry is not None:
            return entry[1] == size
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
        fsutil.check_real_dir(path.parent, "an objects/ fan-out directory")  # never write through a link
        if self._batching:
            return self._put_pending(oid, path, blob, len(data))
        if not os.path.lexists(path):
            created = fsutil.create_exclusive(path, blob)
        else:  # damaged copy: replace it
            fsutil.atomic_write(path, blob, mode=0o444, sync_dir=False)
            created = True
        self._dirty.update((path.parent, path.parent.parent))  # the fan-out dir may be new too
        return created

    def _put_pending(self, oid: str, path: Path, blob: bytes, size: int) -> bool:
        """Write `oid` to a temp file of the open batch (its writeback started, not waited for)."""
        tmp = fsutil.temp_name(path.parent, path.name)
        fsutil.write_unsynced(tmp, blob)
        with self._lock:
            if oid in self._pending:  # another thread wrote it meanwhile
                new, full = False, False
            else:
                self._pending[oid] = (tmp, size, len(blob), os.path.lexists(path))  # damaged copy: replaced
                self._pending_bytes += len(blob)
                new = True
                full = len(self._pending) >= BATCH_OBJECTS or self._pending_bytes >= BATCH_BYTES
        if not new:
            fsutil.remove_file(tmp)
        elif full:
            self.flush()
        return new

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Batched durability for the puts inside: each object goes to a temp file without an fsync,
        and every BATCH_BYTES (and at `sync()` or the end) the batch's temps are fsynced together, then
        linked to their final names, so an object is never at its final name before it is durable.
        On an error everything not yet durable is removed. Without `fsutil.batching_supported()`
        (not Linux, or MSTORE_BATCH_DURABILITY=0), each put fsyncs its object as before."""
        if self._batching or not fsutil.batching_supported():
            yield
            return
        self._batching = True
        try:
            yield
            self.flush()
        except BaseException:
            self.discard()
            raise
        finally:
            self._batching = False

    def flush(self) -> None:
        """Make the open batch's objects durable (fsync every temp), then give them their final names.

        An error (EIO on an fsync, ENOSPC on a link) removes every temp of the batch and is raised:
        no object whose fsync did not succeed is ever at its final name."""
        with self._flushing:
            with self._lock:
                batch = sorted(self._pending.items())
            if not batch:
                return
            try:
                fsutil.fsync_files([entry[0] for _, entry in batch])
                for oid, (tmp, _, stored, replace) in batch:
                    path = self.path(oid)
                    fsutil.publish_temp(tmp, path, replace=replace)
                    with self._lock:
                        if self._pending.pop(oid, None) is not None:
                            self._pending_bytes -= stored
                        self._dirty.update((path.parent, path.parent.parent))
            except BaseException:
                self.discard()
                raise

    def discard(self) -> None:
        """Remove every temp of the open batch (after an error: none of them is known to be durable)."""
        with self._lock:
            batch, self._pending, self._pending_bytes = list(self._pending.values()), {}, 0
        for tmp, *_ in batch:
            with suppress(OSError):  # best effort, after an error already raised; fsck/gc clean the rest
                fsutil.remove_file(tmp)

    def sync(self) -> None:
        """Make every object put so far durable (the open batch's too), then fsync every directory that
        gained an object since the last sync."""
        self.flush()
        for directory in sorted(self._dirty, key=lambda p: len(p.parts), reverse=True):
            fsutil.fsync_dir(directory)
        self._dirty.clear()

    def read(
        self, oid: str, expected_size: int | None = None, *, buffer: bool = False, in_planes: bool = False
    ) -> bytes:
        """The object's content, decoded and verified against its id (never returns wrong bytes).

        `buffer`: the content may be a bytearray (one copy fewer; see codec.decode), for callers that
        only write, hash or XOR it. `in_planes`: a chain of byte-plane deltas is decoded in plane space,
        only the top hashed (checkout; see decode_chain): fsck keeps hashing every level.
        """
        return decode_chain(
            oid, expected_size, self.stored, self.header, envelopes=self.envelopes, buffer=buffer, in_planes=in_planes
        )[0]

    def read_with_blob(
        self,
        oid: str,
        expected_size: int | None = None,
        known: Mapping[str, bytes] | None = None,
        *,
        buffer: bool = False,
    ) -> tuple[bytes, bytes]:
        """(content, the file as stored): one read, decoded and verified (for copying an object as is).

        `known` maps object ids to content already verified against them: a delta base found there is
        not read and decoded again (fsck verifies a base, then its deltas with it).
        """
        return decode_chain(
            oid, expected_size, self.stored, self.header, envelopes=self.envelopes, known=_lookup(known), buffer=buffer
        )

    def decode(self, oid: str, blob: bytes, expected_size: int | None = None, *, buffer: bool = False) -> bytes:
        """The verified content of `oid` from its stored bytes, read already (bases are read as needed)."""

        def get_blob(wanted: str, limit: int) -> bytes:
            return blob if wanted == oid else self.stored(wanted, limit)

        return decode_chain(oid, expected_size, get_blob, self.header, envelopes=self.envelopes, buffer=buffer)[0]

    def stored(self, oid: str, limit: int | None = None) -> bytes:
        """The object file's bytes, unverified; refuses anything over `limit` or that is not a regular file."""
        most = stored_limit(None) if limit is None else limit
        try:
            return self._at(oid, lambda path: fsutil.read_regular(path, most))
        except FileNotFoundError:
            raise MissingObject(f"object {oid} is missing") from None
        except UnsafeStoreFile as exc:
            raise CorruptObject(f"object {oid}: {exc}") from None

    def peek(self, oid: str, size: int, width: int) -> tuple[codec.Header | None, bytes | None]:
        """(envelope header, content sample at `codec.sample_spans` or None) of a stored object, unverified.

        Reads only the bytes these need (see `codec.sample_at`); `width` 0 skips the sample. For a save's
        delta estimate against the parent's object, whose full content is read (and verified) only when
        a delta is tried.
        """
        try:
            fd = self._at(oid, fsutil.open_regular)
        except FileNotFoundError:
            raise MissingObject(f"object {oid} is missing") from None
        except UnsafeStoreFile as exc:
            raise CorruptObject(f"object {oid}: {exc}") from None
        try:
            stored_size = os.fstat(fd).st_size
            if stored_size > stored_limit(size):
                raise CorruptObject(f"object {oid} is larger than its content allows")

            def read(offset: int, length: int) -> bytes:
                return os.pread(fd, max(0, min(length, stored_size - offset)), offset)

            header = codec.parse_header(read(0, codec.HEADER_BYTES)) if self.envelopes else None
            sample = codec.sample_at(read, stored_size, size, width) if width > 1 else None
        finally:
            os.close(fd)
        return header, sample

    def header(self, oid: str) -> bytes:
        """The object file's first bytes (its envelope header, if any)."""
        try:
            return self._at(oid, lambda path: fsutil.read_regular(path, stored_limit(None), head=codec.HEADER_BYTES))
        except FileNotFoundError:
            raise MissingObject(f"object {oid} is missing") from None
        except UnsafeStoreFile as exc:
            raise CorruptObject(f"object {oid}: {exc}") from None

    def verify(self, oid: str, expected_size: int | None = None) -> tuple[str, str] | None:
        """Decode and re-hash one object; returns (problem code, one-line description) or None.

        `damaged-base` means the object's own bytes are fine but a delta base it needs is not;
        `unreadable` that the read failed (permissions, I/O error): not proof of damage.
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
        except OSError as exc:  # EACCES, a transient EIO: the bytes may be fine, so never quarantine them
            return ("unreadable", f"object {oid} could not be read: {exc.strerror or exc}"), None

    def depth(self, oid: str) -> int:
        """How many deltas must be undone to read this object (0 for a raw or plainly compressed one)."""
        if not self.envelopes:
            return 0
        try:
            header = codec.parse_header(self.header(oid))
        except (IntegrityError, OSError):
            return 0
        return header.depth if header else 0

    def delta_base(self, oid: str) -> str | None:
        """The object a delta-encoded object is decoded against (it must stay reachable), or None."""
        if not self.envelopes:
            return None
        try:
            header = codec.parse_header(self.header(oid))
        except (IntegrityError, OSError):  # verify() reports it; a walk of bases must not stop here
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
        return self.path(oid).lstat().st_size

    def delete(self, oid: str) -> None:
        fsutil.remove_file(self.path(oid))

    def __iter__(self) -> Iterator[str]:
        """Every object id on disk (temp files and stray names are skipped)."""
        if not self.root.is_dir() or self.root.is_symlink():
            return
        for fan in sorted(os.listdir(self.root)):
            if not _FANOUT_RE.fullmatch(fan) or not _is_real_dir(self.root / fan):
                continue
            for rest in sorted(os.listdir(self.root / fan)):
                if _REST_RE.fullmatch(rest):
                    yield fan + rest

    def stray_files(self) -> Iterator[Path]:
        """Temp files and foreign names under objects/ (leftovers of crashed saves, or junk)."""
        if not self.root.is_dir() or self.root.is_symlink():
            return
        for fan in sorted(os.listdir(self.root)):
            fan_path = self.root / fan
            if not _FANOUT_RE.fullmatch(fan) or not _is_real_dir(fan_path):
                yield fan_path
                continue
            for rest in sorted(os.listdir(fan_path)):
                if not _REST_RE.fullmatch(rest):
                    yield fan_path / rest


def _lookup(known: Mapping[str, bytes] | None) -> Known | None:
    """`known` as decode_chain wants it: content of the right size, or None."""
    if not known:
        return None

    def find(oid: str, size: int) -> bytes | None:
        content = known.get(oid)
        return content if content is not None and len(content) == size else None

    return find


def _is_real_dir(path: Path) -> bool:
    """A directory and not a symlink to one (listing through a link would reach outside the store)."""
    return not path.is_symlink() and path.is_dir()
