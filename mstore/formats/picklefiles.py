"""Which files are pickles, and how each loader opens them: protocol 2+ by their first bytes, 0 and 1 by
their names, joblib's compressed files (inflated under a bound), `data.pkl` inside torch zip
checkpoints; plus the stat fingerprint that says a file is still the one scanned, and the named joblib
arrays of a stored file."""

from __future__ import annotations

import bz2
import io
import lzma
import os
import re
import stat
import weakref
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from .joblibwrap import name_arrays
from .pickleops import MAX_INFLATE_RATIO, MAX_INFLATED, MAX_ZIP_PICKLE, OPCODE_BYTES, NotPickle, looks_like_pickle
from .picklescan import ArrayInfo, Scan
from .picklewalk import scan_stream, walk_all


class _ReadAt:
    """A buffered file-like view of a `read(offset, length)` function (for tensors.index_tensors)."""

    def __init__(self, read: Any, size: int) -> None:
        self._read = read
        self.size = size
        self.pos = 0
        self.buf = b""
        self.buf_at = 0

    def read(self, n: int) -> bytes:
        start = self.pos - self.buf_at
        if start < 0 or start + n > len(self.buf):
            if n > 1 << 20:
                data: bytes = self._read(self.pos, n)
                self.pos += len(data)
                return data
            self.buf_at = self.pos
            self.buf = self._read(self.pos, min(1 << 20, self.size - self.pos))
            start = 0
        data = self.buf[start : start + n]
        self.pos += len(data)
        return data

    def seek(self, pos: int) -> int:
        self.pos = pos
        return pos


def joblib_arrays(read: Any, size: int, fingerprint: tuple[int, ...] | None = None) -> list[ArrayInfo]:
    """The named arrays of a joblib file read through `read(offset, length)`; [] when the walk did not
    reach the end cleanly (such a file is then cut like any other).

    With the `fingerprint` of the open file, the walk that `scan_file` made of it during this save (the
    safety scan) is reused while that scan is alive, instead of walking a large pickle a second time."""
    scan = RECENT.get(fingerprint) if fingerprint is not None and fingerprint[0] == size else None
    if scan is None:
        scan = scan_stream(_ReadAt(read, size), size)  # type: ignore[arg-type]
    if not scan.complete:
        return []
    name_arrays(scan)
    return [a for a in scan.found if a.depth == 0]


PICKLE_SUFFIXES = {".pkl", ".pickle", ".pck", ".joblib", ".sav", ".dill"}


COMPRESSED_SUFFIXES = {".z", ".gz", ".bz2", ".xz", ".lzma", ".lz4"}


_COMPRESSED = [  # joblib's compressors (joblib/compressor.py), by the bytes their files start with
    (b"\x1f\x8b", "gzip"),
    (b"BZ", "bz2"),
    (b"]\x00", "lzma"),
    (b"\xfd7zXZ", "xz"),
    (b'\x04"M\x18', "lz4"),
    (b"ZF", "joblib-zfile"),  # joblib < 0.10, read by numpy_pickle_compat
    (b"x", "zlib"),
]


class _Inflating:
    """A forward-only file view of a compressed stream, never inflating more than `limit` bytes."""

    def __init__(self, raw: BinaryIO, kind: str, limit: int) -> None:
        self.raw = raw
        self.limit = limit
        self.pos = 0
        self.buf = b""
        self.eof = False
        if kind in ("zlib", "gzip"):
            self.d: Any = zlib.decompressobj(15 if kind == "zlib" else 31)
        elif kind == "bz2":
            self.d = bz2.BZ2Decompressor()
        elif kind in ("lzma", "xz"):
            self.d = lzma.LZMADecompressor(lzma.FORMAT_ALONE if kind == "lzma" else lzma.FORMAT_XZ)
        else:
            raise NotPickle(f"a {kind} file, which the walker does not read")

    def _fill(self, n: int) -> None:
        while len(self.buf) < n and not self.eof:
            if self.pos + len(self.buf) > self.limit:
                raise NotPickle(f"the compressed file inflates to more than {self.limit} bytes")
            d = self.d
            if d.eof:
                if d.unused_data or self.raw.read(1):
                    raise NotPickle("data after the compressed stream")
                self.eof = True
                break
            data = getattr(d, "unconsumed_tail", b"")
            if not data and getattr(d, "needs_input", True):
                data = self.raw.read(1 << 16)
                if not data:
                    self.eof = True  # truncated: the reads that follow come up short
                    break
            try:
                self.buf += d.decompress(data, 1 << 20)
            except (zlib.error, OSError, lzma.LZMAError, EOFError, ValueError) as exc:
                raise NotPickle(f"a damaged compressed stream ({exc})") from None

    def read(self, n: int) -> bytes:
        self._fill(n)
        data, self.buf = self.buf[:n], self.buf[n:]
        self.pos += len(data)
        return data

    def seek(self, pos: int) -> int:
        while self.pos < pos:
            self.read(min(pos - self.pos, 1 << 20))
            if self.eof and not self.buf and self.pos < pos:
                break
        return self.pos


def _scan_compressed(f: BinaryIO, size: int, kind: str) -> Scan:
    limit = min(MAX_INFLATED, size * MAX_INFLATE_RATIO + (1 << 20))
    scan = Scan(loaders=["joblib"])
    try:
        stream = _Inflating(f, kind, limit)
    except NotPickle as exc:
        scan.complete, scan.error = False, str(exc)
        return scan
    try:
        walk_all(stream, limit, scan, joblib=True, once=True)  # type: ignore[arg-type]
    except NotPickle as exc:
        scan.complete, scan.error = False, str(exc)
    if scan.complete and (stream.read(1) or not stream.eof):
        scan.complete, scan.error = False, "bytes after the pickle in the compressed stream"
    scan.found = []  # offsets inside a compressed stream are not file offsets
    return scan


SEVEN_ZIP = b"7z\xbc\xaf\x27\x1c"
_TORCH_STORAGE = re.compile(r"(^|/)(data|\.data)/")


def _sniff(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Whether a zip member not named like a pickle starts like one (never a torch storage: raw tensor bytes)."""
    if info.is_dir() or _TORCH_STORAGE.search(info.filename):
        return False
    try:
        with archive.open(info) as member:
            return looks_like_pickle(member.read(8))
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError, RuntimeError, zlib.error):
        return False


def _scan_npy(f: BinaryIO, size: int) -> Scan | None:
    """A .npy file whose dtype holds objects: numpy.load(allow_pickle=True) unpickles what follows the header."""
    head = f.read(12)
    if head[:6] != b"\x93NUMPY" or len(head) < 10:
        return None
    hlen, start = (
        (int.from_bytes(head[8:10], "little"), 10) if head[6] == 1 else (int.from_bytes(head[8:12], "little"), 12)
    )
    if hlen > 1 << 16 or start + hlen > size:
        return Scan(complete=False, error="a .npy header mstore cannot read", loaders=["numpy"])
    f.seek(start)
    match = re.search(r"'descr':\s*(.*?),\s*'(fortran_order|shape)'", f.read(hlen).decode("latin-1"), re.S)
    if match is None:
        return Scan(complete=False, error="a .npy header mstore cannot read", loaders=["numpy"])
    if "O" not in match.group(1):
        return None  # plain numbers: numpy reads them as bytes
    scan = Scan(loaders=["numpy"])
    data = f.read(MAX_ZIP_PICKLE + 1)
    if len(data) > MAX_ZIP_PICKLE:
        scan.complete, scan.error = False, f"an object array larger than {MAX_ZIP_PICKLE} bytes"
        return scan
    walk_all(io.BytesIO(data), len(data), scan, joblib=False)
    return scan


def _scan_zip(source: Path | BinaryIO) -> Scan | None:
    """A torch checkpoint (a zip with `<name>/data.pkl`): every pickle inside, walked as plain pickles."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    with archive:
        names = [i for i in archive.infolist() if i.filename.endswith((".pkl", ".pickle")) or _sniff(archive, i)]
        if not names:
            return None
        scan = Scan(loaders=["torch"])
        for info in names:
            if info.file_size > MAX_ZIP_PICKLE:
                scan.complete, scan.error = False, f"{info.filename} is larger than {MAX_ZIP_PICKLE} bytes"
                continue
            try:
                with archive.open(info) as member:
                    data = member.read(MAX_ZIP_PICKLE + 1)
            except (
                zipfile.BadZipFile,
                OSError,
                ValueError,
                NotImplementedError,
                EOFError,
                RuntimeError,
                zlib.error,
            ) as exc:
                scan.complete, scan.error = False, f"{info.filename}: {exc}"  # RuntimeError: an "encrypted" member
                continue
            inner = Scan(allowed=scan.allowed)
            walk_all(io.BytesIO(data), len(data), inner, joblib=False)
            for g in inner.globals:
                if g not in scan.globals:
                    scan.globals.append(g)
            if not inner.complete:
                scan.complete, scan.error = False, f"{info.filename}: {inner.error}"
        return scan


def scan_file(path: Path, allowed: Iterable[tuple[str, str]] | None = None) -> Scan | None:
    """The scan of `path` when it starts like a pickle of protocol 2+, like a file joblib compressed, like a
    torch zip checkpoint, or is named like a pickle (protocols 0 and 1 have no magic bytes); None
    otherwise, or when it is not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        os.set_blocking(fd, True)
        scan = scan_named(f, st.st_size, path.name, allowed)
        if scan is None:
            return None
        scan.fingerprint = fingerprint(st)
        RECENT[scan.fingerprint] = scan  # for joblib_arrays, while the caller keeps the scan
        return scan


def scan_named(f: BinaryIO, size: int, name: str, allowed: Iterable[tuple[str, str]] | None = None) -> Scan | None:
    """`scan_file` of an open, seekable file of `size` bytes whose name is `name` (a path's last part: the
    suffix decides for protocols 0 and 1 and for compressed files): a file on disk, or a stored file
    read back from its objects (content/verdict.py)."""
    head = f.read(8)
    suffixes = {s.lower() for s in Path(name).suffixes}
    suffix = Path(name).suffix.lower()
    kind = next((k for magic, k in _COMPRESSED if head.startswith(magic)), None)
    f.seek(0)
    if looks_like_pickle(head):
        scan: Scan | None = scan_stream(f, size)
    elif kind is not None and suffixes & (PICKLE_SUFFIXES | COMPRESSED_SUFFIXES):
        scan = _scan_compressed(f, size, kind)
    elif head.startswith(b"PK\x03\x04"):
        scan = _scan_zip(f)
    elif head.startswith(b"\x93NUMPY"):
        scan = _scan_npy(f, size)
    elif head.startswith(SEVEN_ZIP):  # no loader opens one, but what it holds would be loaded once unpacked
        scan = Scan(complete=False, error="a 7z archive, which mstore cannot look into", loaders=["7z"])
    elif suffix in PICKLE_SUFFIXES and head[:1] and head[0] in OPCODE_BYTES:
        scan = scan_stream(f, size)
    else:
        return None  # every unpickler raises on a first byte that is no opcode: nothing is ever loaded
    if scan is not None and allowed is not None:
        scan.allowed = frozenset(allowed)
    return scan


RECENT: weakref.WeakValueDictionary[tuple[int, ...], Scan] = weakref.WeakValueDictionary()


def fingerprint(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What says a file is still the one scanned: a same-size rewrite with its mtime put back still
    changes its ctime (which no unprivileged caller can set)."""
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns)


def unchanged(path: Path, scan: Scan) -> bool:
    """Whether `path` is still the file that was scanned (a save checks this after storing it)."""
    try:
        return fingerprint(os.stat(path, follow_symlinks=False)) == scan.fingerprint
    except OSError:
        return False


def scan_source(
    items: list[tuple[str, Path, bool]], allowed: Iterable[tuple[str, str]] | None = None
) -> dict[str, tuple[Path, Scan]]:
    """Relative path -> (path, scan), for every file of a model (as listed by ingest.scan) that is, or may
    be, a pickle. A file that starts like one but cannot be walked is kept, with the verdict "unknown"."""
    table = frozenset(allowed) if allowed is not None else None
    out = {}
    for rel, full, is_dir in items:
        if is_dir:
            continue
        scan = scan_file(full, table)
        if scan is not None:
            out[rel] = (full, scan)
    return out
