"""Pickle opcodes and operands as CPython's unpickler decodes them, read through a bounded reader.

The limits every walk keeps, the two ways a walk stops (`NotPickle`: beyond what mstore models, so the
file fails closed; `LoaderStops`: where the unpickler raises too), the placeholders the walker pushes for
what the unpickler would build, and the decoders of text and binary operands (escapes, every integer
form, the protocol-2 renames of `_compat_pickle`). Nothing here imports or calls what a pickle names.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import re
import struct
from typing import Any, BinaryIO

MAX_OPS = 20_000_000  # a large scikit-learn pipeline (big vocabulary) is a few million


MAX_STACK = 1_000_000


MAX_MEMO = 2_000_000


MAX_MARKS = 10_000


MAX_NESTED = 8  # nested pickles (joblib object arrays)


MAX_KEPT_STRING = 1024  # longer strings and bytes are skipped, never read into memory


MAX_CONTAINER = 4096  # elements kept per simulated container (the rest are counted, not kept)


MAX_LINE = 1 << 16


MAX_INFLATE_RATIO = 1100  # zlib cannot do better than ~1032:1; a compressed joblib file inflating more is refused


MAX_INFLATED = 16 << 30  # and never more than this in all


MAX_ZIP_PICKLE = 1 << 30  # a torch checkpoint's data.pkl


class NotPickle(Exception):
    """The walk stopped: malformed, hostile or beyond a limit (the message says which, and where)."""


class LoaderStops(NotPickle):
    """The walk stopped where CPython's unpickler raises too: what follows is never loaded."""


class Obj:
    """A placeholder for an object the unpickler would build: what built it, its args and state."""

    __slots__ = ("kind", "args", "state", "wrapper")

    def __init__(self, kind: str, args: Any = None, wrapper: bool = False) -> None:
        self.kind = kind
        self.args = args
        self.state: Any = None
        self.wrapper = wrapper  # a real joblib NumpyArrayWrapper instance


class Global:
    __slots__ = ("name", "pair")

    def __init__(self, name: str, pair: tuple[str, str] | None = None) -> None:
        self.name = name
        self.pair = pair


class Big:
    """A string or bytes value too long to keep: only its length is known."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


UNKNOWN = object()  # what the walker cannot know: a persistent id, an out-of-band buffer


class Reader:
    """Reads a regular file, never past `end`; long values are skipped by seeking, not read."""

    def __init__(self, f: BinaryIO, end: int) -> None:
        self.f = f
        self.end = end
        self.pos = 0

    def read(self, n: int) -> bytes:
        if n < 0 or n > self.end - self.pos:
            raise LoaderStops(f"a value of {n} bytes at offset {self.pos} runs past the end of the file")
        data = self.f.read(n)
        if len(data) != n:
            raise LoaderStops(f"the file ended early at offset {self.pos + len(data)}")
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        if n < 0 or n > self.end - self.pos:
            raise LoaderStops(f"{n} bytes at offset {self.pos} run past the end of the file")
        self.pos += n
        self.f.seek(self.pos)

    def value(self, n: int, text: bool) -> Any:
        if n > MAX_KEPT_STRING:
            self.skip(n)
            return Big(n)
        data = self.read(n)
        if not text:
            return data
        try:
            return data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise LoaderStops(f"invalid UTF-8 string before offset {self.pos}") from None

    def line(self) -> bytes:
        out = bytearray()
        while True:
            byte = self.read(1)
            if byte == b"\n":
                return bytes(out)
            out += byte
            if len(out) > MAX_LINE:
                raise NotPickle(f"a text argument longer than {MAX_LINE} bytes before offset {self.pos}")


def unpack(fmt: str, data: bytes) -> int:
    value: int = struct.unpack(fmt, data)[0]
    return value


def resolve_global(module: str, name: str, proto: int) -> tuple[str, str]:
    """What `find_class` really imports: protocols 0-2 rename Python 2 names (`_compat_pickle`)."""
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            mapped: tuple[str, str] = _compat_pickle.NAME_MAPPING[(module, name)]
            return mapped
        if module in _compat_pickle.IMPORT_MAPPING:
            return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


def int_line(line: bytes, base: int) -> int:
    """An INT / LONG (base 0, as `int(text, 0)` or the C unpickler's strtol read it) or PUT / GET (base 10)
    operand."""
    digits = len(line.strip().lstrip(b"+-").replace(b"_", b""))
    if digits > 4300 and line.strip().lstrip(b"+-")[:2].lower() not in (b"0x", b"0o", b"0b"):
        raise LoaderStops("an integer literal longer than Python reads")
    try:
        return int(line, base)
    except ValueError:
        pass
    if base == 0:
        octal = re.fullmatch(rb"\s*([+-]?)0([0-7]+)\s*", line)  # C's strtol reads a leading 0 as octal
        if octal:
            return int(octal.group(1) + octal.group(2), 8)
    raise LoaderStops(f"an invalid integer {line[:20]!r}")


def utf8(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise LoaderStops("a GLOBAL name that is not UTF-8") from None


def string_operand(line: bytes, pos: int) -> str:
    """A STRING operand: quoted, then `codecs.escape_decode` (then ASCII; latin-1 here, a superset)."""
    if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
        raise LoaderStops(f"an unquoted STRING operand before offset {pos}")
    try:
        data: bytes = codecs.escape_decode(line[1:-1])[0]
    except ValueError:
        raise LoaderStops(f"an undecodable STRING operand before offset {pos}") from None
    return data.decode("latin-1")


def latin(value: Any) -> Any:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def looks_like_pickle(head: bytes) -> bool:
    """A pickle of protocol 2-5 starts with the PROTO opcode; joblib writes protocol 2 or higher too."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


# The first byte of every opcode protocols 0-5 define (pickletools.code2op, which mstore never imports).
OPCODE_BYTES = frozenset(
    b"().012BCFGIJKLMNPQRSTUVX]abcdeghijlopqrstu}"
    b"\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98"
)
