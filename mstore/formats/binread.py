"""A bounded cursor over `read(offset, length)` for the header parsers of untrusted model files (ONNX, GGUF).

It never reads outside `[start, end)`, keeps one small window in memory, skips long values by moving its
position instead of reading them, and counts every step against a budget, so a crafted length or count
ends the parse with `Malformed` instead of an allocation or a long loop.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

Read = Callable[[int, int], bytes]
WINDOW = 1 << 16  # bytes read ahead for small values


class Malformed(ValueError):
    """The bytes are not a valid file of the expected format (or exceed a parser limit)."""


class Budget:
    """A shared count of parse steps; `spend` raises Malformed once it is used up."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    def spend(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise Malformed("parse step limit reached")


class Cursor:
    """Reads forward through `[start, end)` of a file; every read and skip is checked against `end`."""

    __slots__ = ("_buf", "_buf_at", "_read", "end", "pos")  # one per protobuf field: kept small

    def __init__(self, read: Read, start: int, end: int) -> None:
        if not 0 <= start <= end:
            raise Malformed("bad range")
        self._read = read
        self.pos, self.end = start, end
        self._buf, self._buf_at = b"", start

    def left(self) -> int:
        return self.end - self.pos

    def sub(self, length: int) -> Cursor:
        """A cursor over the next `length` bytes (a length-delimited field); this one moves past them."""
        self.need(length)
        inner = Cursor(self._read, self.pos, self.pos + length)
        inner._buf, inner._buf_at = self._buf, self._buf_at  # shares the window already read
        self.pos += length
        return inner

    def need(self, n: int) -> None:
        if n < 0 or n > self.end - self.pos:
            raise Malformed(f"{n} bytes wanted at {self.pos}, {self.end - self.pos} left")

    def skip(self, n: int) -> None:
        self.need(n)
        self.pos += n

    def take(self, n: int) -> bytes:
        self.need(n)
        at = self.pos - self._buf_at
        if at >= 0 and at + n <= len(self._buf):
            data = self._buf[at : at + n]
        elif n > WINDOW:
            data = self._read(self.pos, n)
        else:
            self._buf_at = self.pos
            self._buf = self._read(self.pos, min(WINDOW, self.end - self.pos))
            data = self._buf[:n]
        if len(data) != n:
            raise Malformed("short read")
        self.pos += n
        return data

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        value: int = struct.unpack("<I", self.take(4))[0]
        return value

    def u64(self) -> int:
        value: int = struct.unpack("<Q", self.take(8))[0]
        return value

    def varint(self) -> int:
        """A protobuf base-128 varint of at most 10 bytes, below 2**64."""
        value = 0
        for i in range(10):
            byte = self.u8()
            value |= (byte & 0x7F) << (7 * i)
            if byte < 0x80:
                if value >= 1 << 64:
                    raise Malformed("varint too large")
                return value
        raise Malformed("varint too long")
