"""Which globals a pickle (or joblib, or torch) file would import, read statically: nothing is imported or called.

Loading a pickle runs whatever its GLOBAL / STACK_GLOBAL / INST opcodes name (`os.system`, `builtins.eval`),
so mstore records those names at save and calls the file safe only when every one is on the exact allowlist
(formats/allowlist.py). The walker is a strict model of the loaders that will read the file, not a guess:

- operands are decoded as CPython's unpickler decodes them (STRING through `codecs.escape_decode`,
  UNICODE as raw-unicode-escape, INT / LONG with base 0 as `int(text, 0)` reads them, GLOBAL lines as
  strict UTF-8), names resolved as `find_class` resolves them (the protocol 0-2 renames of
  `_compat_pickle`; a dotted protocol-4 name is kept whole and matched whole), STACK_GLOBAL operands
  followed through the memo;
- each file is walked once per loader. `joblib.load` (its NumpyUnpickler, the pure-Python unpickler)
  reads an array's raw bytes right after the BUILD of a real `joblib.numpy_pickle.NumpyArrayWrapper`,
  from the file *after the current frame* (the Python unpickler reads a frame ahead), with the size numpy
  computes from the dtype (the type code for standard types, the pickled element size only for S / U / V,
  `hasobject` from the pickled flags, as numpy's `__setstate__` sets them), and an object array as a
  nested pickle read by a plain unpickler. `pickle.load` skips nothing: for a file with such arrays it is
  walked a second time with no skipping, and it must either finish or stop at an error the real unpickler
  raises at that point too (an unknown opcode, the end of the file). A torch zip checkpoint's `data.pkl`
  is walked as torch.load reads it; a joblib file written with `compress=` is inflated under a bound and
  walked as joblib reads it.
- it fails closed: a walk that stops where the loader would go on (a limit, a value the walker cannot
  know exactly where the loader's path depends on it, an inflation past its bound) makes the file's
  verdict "unknown", which is treated as unsafe; a global off the allowlist makes it "unsafe".

Everything is bounded: the file is read through a reader that refuses to go past its end, long strings are
skipped rather than read, and the opcode count, stack, memo and nesting have hard limits.
"""

from __future__ import annotations

import _compat_pickle
import bz2
import codecs
import gzip
import lzma
import os
import re
import stat
import struct
import tempfile
import weakref
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

from .allowlist import JOBLIB_ARRAY_WRAPPER, display, is_allowed

MAX_OPS = 20_000_000  # a large scikit-learn pipeline (big vocabulary) is a few million
MAX_STACK = 1_000_000
MAX_MEMO = 2_000_000
MAX_MARKS = 10_000
MAX_NESTED = 8  # nested pickles (joblib object arrays)
MAX_KEPT_STRING = 1024  # longer strings and bytes are skipped, never read into memory
MAX_CONTAINER = 4096  # elements kept per simulated list / dict (the rest are counted, not kept)
MAX_LINE = 1 << 16
MAX_INFLATE = 8 << 30  # a compressed joblib file inflates to at most this ...
INFLATE_RATIO = 200  # ... and to at most this many times its size (and 256 MiB whatever its size)
MAX_ZIP_PICKLE = 1 << 30  # a data.pkl inside a torch zip

UNKNOWN_GLOBAL = "?"  # a STACK_GLOBAL whose operands the walker cannot know: always unsafe
_UNKNOWN_PAIR = ("?", "?")
_OBJECT_FLAG = 0x01  # NPY_ITEM_HASOBJECT in a dtype's flags


class NotPickle(Exception):
    """The walk stopped: malformed, hostile or beyond a limit (the message says which, and where).

    `definite`: the real unpickler raises at this very point too, so nothing after it is ever loaded."""

    def __init__(self, message: str, definite: bool = False) -> None:
        super().__init__(message)
        self.definite = definite


def _stop(message: str) -> NotPickle:
    return NotPickle(message, definite=True)


@dataclass
class Scan:
    """The globals one file's pickle stream(s) reference, in first-seen order, and the verdict on them."""

    globals: list[str] = field(default_factory=list)  # as shown: `os.system`, `joblib.numpy_pickle:os.system`
    pairs: list[tuple[str, str]] = field(default_factory=list)  # the same, as (module, name)
    complete: bool = True  # every loader's walk reached its end (or a point where the loader fails too)
    error: str | None = None  # why not
    arrays: int = 0  # joblib array payloads skipped
    fingerprint: tuple[int, int, int, int, int] | None = None  # (size, mtime_ns, ctime_ns, inode, device)
    found: list[ArrayInfo] = field(default_factory=list)  # joblib arrays, in file order
    roots: list[Any] = field(default_factory=list)  # what each top-level pickle built (for naming arrays)
    extra: frozenset[tuple[str, str]] = frozenset()  # the user's own allowed names (`--allow`)
    notes: list[str] = field(default_factory=list)  # e.g. where pickle.load of a joblib file stops
    wrappers: int = 0  # NumpyArrayWrapper records the joblib walk acted on

    @property
    def unsafe(self) -> list[str]:
        return [_show(p) for p in self.pairs if not is_allowed(*p, self.extra)]

    @property
    def user_allowed(self) -> list[str]:
        return [display(*p) for p in self.pairs if p in self.extra and not is_allowed(*p)]

    @property
    def verdict(self) -> str:
        """`unsafe` (a global off the allowlist), `unknown` (the walk could not be finished: treated as
        unsafe) or `safe`."""
        return "unsafe" if self.unsafe else "unknown" if not self.complete else "safe"

    @property
    def reason(self) -> str:
        """One line: why the verdict is what it is."""
        bad = self.unsafe
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            return f"loading it imports {', '.join(bad[:3])}{more}, off the allowlist"
        if not self.complete:
            return f"it could not be read to its end ({self.error}); its globals are unknown"
        return f"{len(self.pairs)} global(s), all on the allowlist"

    def note(self, pair: tuple[str, str]) -> None:
        if pair not in self.pairs:
            if len(self.pairs) >= 10_000:
                raise NotPickle("more than 10000 distinct globals")
            self.pairs.append(pair)
            self.globals.append(_show(pair))


def _show(pair: tuple[str, str]) -> str:
    return UNKNOWN_GLOBAL if pair == _UNKNOWN_PAIR else display(*pair)


def is_safe(name: str) -> bool:
    """Whether the global shown as `module.name` (or `module:dotted.name`) is on the allowlist."""
    module, sep, attr = name.partition(":") if ":" in name else name.rpartition(".")
    return bool(sep) and is_allowed(module, attr)


@dataclass
class ArrayInfo:
    """One array whose raw bytes joblib wrote into the file: where, what, and (after `name_arrays`) its name."""

    dtype: str  # numpy type string with byte order: "<f8", "|u1", ">i4"; "" when unknown
    shape: tuple[int, ...]
    offset: int
    length: int
    depth: int
    name: str = ""


class _Obj:
    """A placeholder for an object the unpickler would build: the class it is an instance of (when known
    exactly), its args and state."""

    __slots__ = ("kind", "args", "state", "attrs")

    def __init__(self, kind: tuple[str, str] | None, args: Any = None) -> None:
        self.kind = kind
        self.args = args
        self.state: Any = None
        self.attrs: dict[Any, Any] | None = None  # __dict__ as BUILD merged it (array wrappers only)


class _Global:
    __slots__ = ("pair",)

    def __init__(self, pair: tuple[str, str]) -> None:
        self.pair = pair


class _Big:
    """A string or bytes value too long to keep: only its length is known."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


class _List(list):  # type: ignore[type-arg]
    truncated = False


class _Dict(dict):  # type: ignore[type-arg]
    truncated = False


_MARK = object()
_UNKNOWN = object()
_LITERALS = (int, float, bool, type(None), bytes, tuple, list, dict)  # values that are surely not a str


class _Reader:
    """Reads a file, never past `end`; long values are skipped by seeking, not read.

    With `frames` (the pure-Python unpickler joblib uses), a FRAME's bytes are taken ahead as that
    unpickler does: opcodes are then read from the frame, while `raw_skip` (joblib reading array bytes
    from its file handle) goes on from the file's cursor, after the frame."""

    def __init__(self, f: BinaryIO, end: int) -> None:
        self.f = f
        self.end = end
        self.pos = 0  # the file's cursor
        self.frame: list[int] | None = None  # [cursor, end] of the frame being read (frames mode)
        self.frames = False
        self._at = 0

    @property
    def here(self) -> int:
        return self.frame[0] if self.frame else self.pos

    def _get(self, at: int, n: int) -> bytes:
        if at != self._at:
            self.f.seek(at)
        data = self.f.read(n)
        self._at = at + len(data)
        if len(data) != n:
            raise _stop(f"the file ended early at offset {at + len(data)}")
        return data

    def _span(self, n: int) -> int:
        """Claim the next `n` opcode bytes; their offset."""
        fr = self.frame
        if fr is not None:
            if fr[0] == fr[1] and n:
                self.frame = None  # the frame is used up: the unframer reads the file again
            elif fr[0] + n > fr[1]:
                raise _stop(f"a value of {n} bytes at offset {fr[0]} runs past the end of its frame")
            else:
                fr[0] += n
                return fr[0] - n
        if n < 0 or n > self.end - self.pos:
            raise _stop(f"a value of {n} bytes at offset {self.pos} runs past the end of the file")
        self.pos += n
        return self.pos - n

    def read(self, n: int) -> bytes:
        return self._get(self._span(n), n)

    def byte(self) -> int:
        return self.read(1)[0]

    def skip(self, n: int) -> None:
        self._span(n)

    def raw_skip(self, n: int) -> int:
        """Skip `n` bytes at the file's cursor (past any frame); their offset."""
        if n < 0 or n > self.end - self.pos:
            raise _stop(f"{n} bytes at offset {self.pos} run past the end of the file")
        self.pos += n
        return self.pos - n

    def raw_byte(self) -> int:
        at = self.raw_skip(1)
        return self._get(at, 1)[0]

    def value(self, n: int, text: bool) -> Any:
        if n > MAX_KEPT_STRING:
            self.skip(n)
            return _Big(n)
        data = self.read(n)
        if not text:
            return data
        try:
            return data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise _stop(f"invalid UTF-8 string before offset {self.here}") from None

    def line(self, allow_long: bool = False) -> bytes | None:
        """The bytes up to the next newline (without it); None for a line longer than MAX_LINE when
        `allow_long` (it is skipped), else NotPickle."""
        fr = self.frame
        if fr is not None and fr[0] == fr[1]:
            self.frame = fr = None
        start = fr[0] if fr else self.pos
        limit = fr[1] if fr else self.end
        at, kept = start, b""
        while True:
            chunk = self._get(at, min(limit - at, 1 << 16)) if at < limit else b""
            if not chunk:
                raise _stop(f"a text argument at offset {start} runs past the end of its {'frame' if fr else 'file'}")
            cut = chunk.find(b"\n")
            if cut >= 0:
                end = at + cut + 1
                if len(kept) + cut > MAX_LINE:
                    if not allow_long:
                        raise NotPickle(f"a text argument longer than {MAX_LINE} bytes at offset {start}")
                    out = None
                else:
                    out = kept + chunk[:cut]
                break
            if len(kept) <= MAX_LINE:
                kept += chunk
            at += len(chunk)
        if fr is not None:
            fr[0] = end
        else:
            self.pos = end
        return out


def _u(fmt: str, data: bytes) -> int:
    value: int = struct.unpack(fmt, data)[0]
    return value


def _resolve(module: str, name: str, proto: int) -> tuple[str, str]:
    """(module, name) as `find_class` looks it up: protocols 0-2 are renamed through `_compat_pickle`
    (fix_imports, the default of pickle.load and joblib)."""
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    return module, name


def _kind(func: Any, args: Any) -> tuple[str, str] | None:
    """The class of what calling `func(*args)` builds, when the walker knows it exactly: the class itself
    (REDUCE / NEWOBJ of a class) or the class copyreg._reconstructor is asked for."""
    if not isinstance(func, _Global):
        return None
    if func.pair == ("copyreg", "_reconstructor") and isinstance(args, tuple) and args:
        return args[0].pair if isinstance(args[0], _Global) else None
    return func.pair


def _no_hidden_wrapper(func: Any, args: Any, where: int) -> None:
    """The array wrapper class handed to a callable that is neither it nor copyreg._reconstructor might
    come back as a wrapper instance the walker would not know of: refuse to guess."""
    if isinstance(func, _Global) and func.pair in (JOBLIB_ARRAY_WRAPPER, ("copyreg", "_reconstructor")):
        return
    items = list(args) if isinstance(args, (tuple, list)) else [args]
    for item in items[:64]:
        inner = list(item)[:64] if isinstance(item, (tuple, list)) else [item]
        if any(isinstance(x, _Global) and x.pair == JOBLIB_ARRAY_WRAPPER for x in inner):
            raise NotPickle(f"the joblib array wrapper class is passed to another callable at offset {where}")


class _Walker:
    def __init__(self, reader: _Reader, scan: Scan, mode: str) -> None:
        self.r = reader
        self.scan = scan
        self.mode = mode  # "joblib", "plain" or "torch": the loader being modelled
        self.ops = 0

    def walk(self, depth: int = 0) -> None:
        """One pickle stream, from its first opcode to STOP."""
        if depth > MAX_NESTED:
            raise NotPickle("pickles nested too deeply")
        r = self.r
        skip_arrays = self.mode == "joblib" and depth == 0  # NumpyUnpickler; a nested pickle is plain
        proto = 0
        stack: list[Any] = []
        marks: list[int] = []
        memo: dict[int, Any] = {}

        def pop() -> Any:
            if len(stack) <= (marks[-1] if marks else 0):
                raise _stop(f"stack underflow at offset {r.here}")
            return stack.pop()

        def pop_mark() -> list[Any]:
            if not marks:
                raise _stop(f"no MARK to pop at offset {r.here}")
            start = marks.pop()
            items = stack[start:]
            del stack[start:]
            return items

        def push(value: Any) -> None:
            if len(stack) >= MAX_STACK:
                raise NotPickle(f"more than {MAX_STACK} values on the stack")
            stack.append(value)

        def top() -> Any:
            if len(stack) <= (marks[-1] if marks else 0):
                raise _stop(f"stack underflow at offset {r.here}")
            return stack[-1]

        def put(index: int | None) -> None:
            if index is None or index < 0:
                raise _stop(f"an invalid memo index at offset {r.here}")
            if index not in memo and len(memo) >= MAX_MEMO:
                raise NotPickle(f"more than {MAX_MEMO} memo entries")
            memo[index] = top()

        def get(index: int | None) -> None:
            if index is None or index not in memo:
                raise _stop(f"a memo index that was never stored at offset {r.here}")
            push(memo[index])

        def note_global(module: str, name: str) -> _Global:
            pair = _resolve(module, name, proto)
            self.scan.note(pair)
            return _Global(pair)

        def line_text(what: str) -> str:
            raw = r.line()
            assert raw is not None
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _stop(f"a {what} that is not UTF-8 at offset {r.here}") from None

        while True:
            self.ops += 1
            if self.ops > MAX_OPS:
                raise NotPickle(f"more than {MAX_OPS} opcodes")
            at = r.here
            code = r.byte()
            if code == 0x2E:  # STOP
                if depth == 0 and len(stack) == 1:
                    self.scan.roots.append(stack[0])
                return
            if code == 0x80:  # PROTO
                proto = r.byte()
                if proto > 5:
                    raise _stop(f"unsupported pickle protocol {proto} at offset {at}")
            elif code == 0x95:  # FRAME
                n = _u("<Q", r.read(8))
                if not r.frames:  # the C unpickler: a length hint, the frame's opcodes follow inline
                    if n > r.end - r.here:
                        raise _stop(f"a frame at offset {at} runs past the end of the file")
                else:  # the Python unpickler reads the whole frame ahead
                    if r.frame is not None and r.frame[0] != r.frame[1]:
                        raise _stop(f"a new frame before the end of the current one at offset {at}")
                    if n > r.end - r.pos:
                        raise _stop(f"a frame at offset {at} runs past the end of the file")
                    r.frame = [r.pos, r.pos + n]
                    r.pos += n
            elif code == 0x63:  # GLOBAL "module\nname\n"
                module = line_text("module name")
                push(note_global(module, line_text("global name")))
            elif code == 0x69:  # INST "module\nname\n", MARK args...
                module = line_text("module name")
                cls = note_global(module, line_text("class name"))
                args = tuple(pop_mark())
                if skip_arrays:
                    _no_hidden_wrapper(cls, args, at)
                push(_Obj(cls.pair, args))
            elif code == 0x93:  # STACK_GLOBAL
                name, module = pop(), pop()
                if isinstance(module, str) and isinstance(name, str):
                    push(note_global(module, name))
                elif isinstance(module, _LITERALS) or isinstance(name, _LITERALS):
                    raise _stop(f"STACK_GLOBAL of a non-string at offset {at}")
                else:  # computed by a call, too long to keep, ...: the name cannot be known
                    self.scan.note(_UNKNOWN_PAIR)
                    push(_Global(_UNKNOWN_PAIR))
            elif code in (0x82, 0x83, 0x84):  # EXT1/2/4: the loading process's copyreg extension registry
                r.read({0x82: 1, 0x83: 2, 0x84: 4}[code])
                self.scan.note(_UNKNOWN_PAIR)
                push(_Global(_UNKNOWN_PAIR))
            elif code == 0x52:  # REDUCE
                args, func = pop(), pop()
                if skip_arrays:
                    _no_hidden_wrapper(func, args, at)
                push(_Obj(_kind(func, args), args))
            elif code == 0x81:  # NEWOBJ
                args, cls = pop(), pop()
                if skip_arrays:
                    _no_hidden_wrapper(None, args, at)
                push(_Obj(cls.pair if isinstance(cls, _Global) else None, args))
            elif code == 0x92:  # NEWOBJ_EX
                kwargs, args, cls = pop(), pop(), pop()
                if skip_arrays:
                    _no_hidden_wrapper(None, (args, kwargs), at)
                push(_Obj(cls.pair if isinstance(cls, _Global) else None, args))
            elif code == 0x6F:  # OBJ: MARK cls args...
                items = pop_mark()
                if not items:
                    raise _stop(f"OBJ without a class at offset {at}")
                if skip_arrays:
                    _no_hidden_wrapper(None, tuple(items[1:]), at)
                cls = items[0]
                push(_Obj(cls.pair if isinstance(cls, _Global) else None, tuple(items[1:])))
            elif code == 0x62:  # BUILD
                state = pop()
                obj = top()
                if isinstance(obj, _Obj):
                    obj.state = state
                    if skip_arrays and obj.kind == JOBLIB_ARRAY_WRAPPER:
                        stack.pop()
                        push(self._read_array(obj, state, depth, at))
            elif code in (0x50, 0x51):  # PERSID / BINPERSID: only torch.load has a persistent_load
                if self.mode != "torch":
                    raise _stop(f"a persistent id at offset {at}, which this loader refuses")
                if code == 0x50:
                    r.line(allow_long=True)
                else:
                    pop()
                push(_UNKNOWN)
            elif code == 0x28:  # MARK
                if len(marks) >= MAX_MARKS:
                    raise NotPickle(f"more than {MAX_MARKS} nested marks")
                marks.append(len(stack))
            elif code == 0x31:  # POP_MARK
                pop_mark()
            elif code == 0x30:  # POP
                if marks and len(stack) == marks[-1]:
                    marks.pop()  # POP of a MARK discards the mark
                else:
                    pop()
            elif code == 0x32:  # DUP
                push(top())
            elif code == 0x94:  # MEMOIZE
                put(len(memo))
            elif code == 0x70:  # PUT
                put(_memo_line(r.line(allow_long=True)))
            elif code == 0x71:
                put(r.byte())
            elif code == 0x72:
                put(_u("<I", r.read(4)))
            elif code == 0x67:  # GET
                get(_memo_line(r.line(allow_long=True)))
            elif code == 0x68:
                get(r.byte())
            elif code == 0x6A:
                get(_u("<I", r.read(4)))
            elif code == 0x5D:  # EMPTY_LIST
                push(_List())
            elif code == 0x29:  # EMPTY_TUPLE
                push(())
            elif code == 0x7D:  # EMPTY_DICT
                push(_Dict())
            elif code == 0x8F:  # EMPTY_SET
                push(_Obj(("builtins", "set")))
            elif code == 0x61:  # APPEND
                value = pop()
                _extend(top(), [value])
            elif code == 0x65:  # APPENDS
                items = pop_mark()
                _extend(top(), items)
            elif code == 0x90:  # ADDITEMS
                pop_mark()
                top()
            elif code == 0x6C:  # LIST
                lst = _List()
                _extend(lst, pop_mark())
                push(lst)
            elif code == 0x74:  # TUPLE
                push(tuple(pop_mark()))
            elif code == 0x91:  # FROZENSET
                pop_mark()
                push(_Obj(("builtins", "frozenset")))
            elif code in (0x85, 0x86, 0x87):  # TUPLE1/2/3
                n = code - 0x84
                items = [pop() for _ in range(n)][::-1]
                push(tuple(items))
            elif code == 0x64:  # DICT
                d = _Dict()
                _set_items(d, pop_mark())
                push(d)
            elif code == 0x73:  # SETITEM
                value, key = pop(), pop()
                _set_items(top(), [key, value])
            elif code == 0x75:  # SETITEMS
                items = pop_mark()
                _set_items(top(), items)
            elif code == 0x4E:  # NONE
                push(None)
            elif code == 0x88:
                push(True)
            elif code == 0x89:
                push(False)
            elif code == 0x4A:  # BININT
                push(_u("<i", r.read(4)))
            elif code == 0x4B:
                push(r.byte())
            elif code == 0x4D:
                push(_u("<H", r.read(2)))
            elif code == 0x49:  # INT (also True/False as 01/00)
                push(_int_line(r.line(allow_long=True), at, int_op=True))
            elif code == 0x4C:  # LONG
                push(_int_line(r.line(allow_long=True), at, int_op=False))
            elif code == 0x8A:  # LONG1
                push(int.from_bytes(r.read(r.byte()), "little", signed=True))
            elif code == 0x8B:  # LONG4
                n = _u("<i", r.read(4))
                if n < 0:
                    raise _stop(f"a negative LONG4 length at offset {at}")
                if n > 1 << 16:
                    r.skip(n)
                    push(_UNKNOWN)
                else:
                    push(int.from_bytes(r.read(n), "little", signed=True))
            elif code == 0x46:  # FLOAT
                r.line(allow_long=True)
                push(_UNKNOWN)
            elif code == 0x47:  # BINFLOAT
                push(struct.unpack(">d", r.read(8))[0])
            elif code == 0x53:  # STRING (protocol 0: quoted, backslash escapes)
                push(_string_line(r.line(allow_long=True), at))
            elif code == 0x56:  # UNICODE (raw-unicode-escape)
                push(_unicode_line(r.line(allow_long=True), at))
            elif code == 0x54:  # BINSTRING
                n = _u("<i", r.read(4))
                if n < 0:
                    raise _stop(f"a negative BINSTRING length at offset {at}")
                push(_latin(r.value(n, False)))
            elif code == 0x55:  # SHORT_BINSTRING
                push(_latin(r.value(r.byte(), False)))
            elif code == 0x8C:  # SHORT_BINUNICODE
                push(r.value(r.byte(), True))
            elif code == 0x58:  # BINUNICODE
                push(r.value(_u("<I", r.read(4)), True))
            elif code == 0x8D:  # BINUNICODE8
                push(r.value(_u("<Q", r.read(8)), True))
            elif code == 0x43:  # SHORT_BINBYTES
                push(r.value(r.byte(), False))
            elif code == 0x42:  # BINBYTES
                push(r.value(_u("<I", r.read(4)), False))
            elif code in (0x8E, 0x96):  # BINBYTES8, BYTEARRAY8
                push(r.value(_u("<Q", r.read(8)), False))
            elif code == 0x97:  # NEXT_BUFFER: no loader mstore models passes out-of-band buffers
                raise _stop(f"out-of-band data at offset {at}, which needs buffers the loader is not given")
            elif code == 0x98:  # READONLY_BUFFER
                top()
            else:
                raise _stop(f"unknown opcode 0x{code:02x} at offset {at}")

    def _read_array(self, wrapper: _Obj, state: Any, depth: int, at: int) -> _Obj:
        """What joblib's NumpyArrayWrapper.read does right after the wrapper's BUILD (module docstring)."""
        attrs = wrapper.attrs if wrapper.attrs is not None else _Dict()
        slots: Any = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slots = state
        for part in (state, slots):
            if part is None:
                continue
            if not isinstance(part, _Dict) or part.truncated:
                raise NotPickle(f"a NumpyArrayWrapper whose state the walker cannot read at offset {at}")
            attrs.update(part)
        wrapper.attrs = attrs
        self.scan.wrappers += 1
        shape, dtype = attrs.get("shape"), attrs.get("dtype")
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise NotPickle(f"a NumpyArrayWrapper with an unreadable shape at offset {at}")
        itemsize, hasobject, name = _dtype_facts(dtype, at)
        r = self.r
        count = 1
        for n in shape:
            count *= n
            if count * max(itemsize, 1) > r.end:
                raise NotPickle(f"an array of shape {shape} larger than the file at offset {at}")
        if hasobject:  # a nested pickle, read by a plain (pure-Python) unpickler from the file's cursor
            if attrs.get("allow_mmap"):
                raise NotPickle(f"an object array marked for memory mapping at offset {at}")
            outer, r.frame = r.frame, None
            self.walk(depth + 1)
            if r.frame is not None and r.frame[0] != r.frame[1]:
                raise NotPickle(f"a nested pickle that stops inside its frame before offset {r.frame[1]}")
            r.frame = outer
            self.scan.arrays += 1
            return _Obj(("numpy", "ndarray"))
        if itemsize == 0:
            raise _stop(f"an array of zero-size elements at offset {at}")
        if attrs.get("numpy_array_alignment_bytes") is not None:
            r.raw_skip(r.raw_byte())
        array = _Obj(("numpy", "ndarray"))
        array.args = ArrayInfo(name, shape, r.raw_skip(count * itemsize), count * itemsize, depth)
        self.scan.arrays += 1
        self.scan.found.append(array.args)
        return array


_FIXED = re.compile(r"([biufcOMm])(\d+)")
_FLEXIBLE = re.compile(r"([SUV])(\d+)")
_FIXED_SIZES = {
    "b": {1},
    "i": {1, 2, 4, 8},
    "u": {1, 2, 4, 8},
    "f": {2, 4, 8, 16},
    "c": {8, 16, 32},
    "O": {8},
    "M": {8},
    "m": {8},
}


def _dtype_facts(dtype: Any, at: int) -> tuple[int, bool, str]:
    """(element size, hasobject, type string) of a pickled numpy.dtype, as numpy's dtype(code) and
    __setstate__ compute them: the size from the type code for standard types and from the pickled state
    for S / U / V; hasobject from the pickled flags. Anything numpy itself would not write: NotPickle."""
    bad = NotPickle(f"a NumpyArrayWrapper whose dtype the walker cannot size exactly at offset {at}")
    if not isinstance(dtype, _Obj) or dtype.kind != ("numpy", "dtype") or not isinstance(dtype.args, tuple):
        raise bad
    code = dtype.args[0] if dtype.args else None
    if not isinstance(code, str) or len(dtype.args) > 3:
        raise bad
    fixed, flexible = _FIXED.fullmatch(code), _FLEXIBLE.fullmatch(code)
    if fixed and int(fixed[2]) in _FIXED_SIZES[fixed[1]]:
        kind, size = fixed[1], int(fixed[2])
    elif flexible:
        kind, size = flexible[1], int(flexible[2]) * (4 if flexible[1] == "U" else 1)
    else:
        raise bad
    hasobject = kind == "O"
    order = "|"
    state = dtype.state
    if state is not None:
        if not isinstance(state, tuple) or (state[:1], len(state)) not in (((3,), 8), ((4,), 9)):
            raise bad
        _version, order, _sub, names, fields, elsize, _align, flags = state[:8]
        if not isinstance(elsize, int) or not isinstance(flags, int) or not isinstance(order, str):
            raise bad
        if kind in "SUV":
            size = elsize  # numpy takes a flexible type's size from the state
        elif names is not None or fields is not None:
            raise bad
        hasobject = bool(flags & _OBJECT_FLAG)  # numpy sets a dtype's flags from the state
    if size < 0:
        raise bad
    order = "<" if order == "=" else order
    return size, hasobject, (order + code if order in "<>|" and kind not in "V" else "")


def _memo_line(line: bytes | None) -> int | None:
    """A PUT / GET index: `int(text)` (base 10) in both unpicklers; None when it is not one."""
    if line is None or not re.fullmatch(rb"\s*[+-]?\d+\s*", line) or len(line) > 4000:
        return None
    return int(line)


_PLAIN_INT = re.compile(rb"[+-]?(0|[1-9]\d{0,4299})")


def _int_line(line: bytes | None, at: int, *, int_op: bool) -> Any:
    """INT / LONG operands. Both unpicklers read them with base 0 (`0x10`, `0o7`, `1_0`), the C one first
    with strtol (which reads `010` as 8 where `int` refuses it): only a plain decimal is taken as a
    number; any other literal is a value the walker does not claim to know."""
    if line is None:
        raise NotPickle(f"an integer literal longer than {MAX_LINE} bytes at offset {at}")
    text = line[:-1] if not int_op and line.endswith(b"L") else line
    if len(text) > 4300 and text.strip(b"+-").isdigit():  # past sys.int_max_str_digits: both loaders raise
        raise _stop(f"an integer of more than 4300 digits at offset {at}")
    if int_op and text in (b"00", b"01"):
        return text == b"01"
    if _PLAIN_INT.fullmatch(text):
        return int(text)
    return _UNKNOWN


def _string_line(line: bytes | None, at: int) -> Any:
    """STRING: quoted, backslash escapes decoded with codecs.escape_decode, as both unpicklers do."""
    if line is None:
        return _UNKNOWN
    if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
        raise _stop(f"an unquoted STRING operand at offset {at}")
    try:
        data = codecs.escape_decode(line[1:-1])[0]
    except ValueError:
        raise _stop(f"an invalid escape in a STRING operand at offset {at}") from None
    return _latin(data)


def _unicode_line(line: bytes | None, at: int) -> Any:
    if line is None:
        return _UNKNOWN
    try:
        return line.decode("raw-unicode-escape")
    except UnicodeDecodeError:
        raise _stop(f"an invalid escape in a UNICODE operand at offset {at}") from None


def _latin(value: Any) -> Any:
    """STRING / BINSTRING values: str by default (ASCII; latin-1 is what `encoding="latin1"` reads)."""
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _extend(target: Any, items: list[Any]) -> None:
    if isinstance(target, list):
        room = max(0, MAX_CONTAINER - len(target))
        if len(items) > room and isinstance(target, _List):
            target.truncated = True
        target.extend(items[:room])


def _set_items(target: Any, items: list[Any]) -> None:
    if len(items) % 2:
        raise _stop("an odd number of values for a dict")
    if not isinstance(target, dict):
        return
    for i in range(0, len(items), 2):
        key = items[i]
        if len(target) < MAX_CONTAINER and isinstance(key, (str, int, bytes, bool, type(None))):
            target[key] = items[i + 1]
        elif isinstance(target, _Dict):
            target.truncated = True


def looks_like_pickle(head: bytes) -> bool:
    """A pickle of protocol 2-5 starts with the PROTO opcode; joblib writes protocol 2 or higher too."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _walk(f: BinaryIO, size: int, scan: Scan, mode: str) -> NotPickle | None:
    """Every pickle in `f` as the loader `mode` reads it (consecutive pickles too: a caller may load
    them one after the other); the error that stopped the walk, if any."""
    reader = _Reader(f, size)
    reader.frames = mode == "joblib"
    walker = _Walker(reader, scan, mode)
    try:
        while True:
            walker.walk()
            if reader.frame is not None and reader.frame[0] != reader.frame[1]:
                if mode == "joblib":
                    raise NotPickle(f"bytes after STOP inside a frame that ends at offset {reader.frame[1]}")
                reader.frame = None
            if reader.here >= size:
                return None
    except NotPickle as exc:
        return exc
    except (RecursionError, MemoryError, OverflowError, ValueError, struct.error) as exc:
        return NotPickle(f"{type(exc).__name__} while reading")


_LOADER = {"joblib": "joblib.load", "plain": "pickle.load", "torch": "torch.load"}


def scan_stream(f: BinaryIO, size: int, extra: frozenset[tuple[str, str]] = frozenset()) -> Scan:
    """Walk every pickle in `f` (`size` bytes) as joblib.load reads it, and again as pickle.load reads it
    when joblib would have read array bytes. Never raises NotPickle."""
    scan = Scan(extra=extra)
    _combine(scan, _walk(f, size, scan, "joblib"), "joblib")
    if scan.wrappers:
        found, roots, arrays = scan.found, scan.roots, scan.arrays
        _combine(scan, _walk(f, size, scan, "plain"), "plain", secondary=True)
        scan.found, scan.roots, scan.arrays = found, roots, arrays
    return scan


def _combine(scan: Scan, exc: NotPickle | None, mode: str, *, secondary: bool = False) -> None:
    """The walk that must finish (`secondary=False`) makes the scan incomplete when it did not; a second
    loader's walk may also stop where that loader fails (nothing after it is loaded)."""
    if exc is None:
        return
    if secondary and exc.definite:
        scan.notes.append(f"{_LOADER[mode]} stops there: {exc}")
        return
    if scan.complete:
        scan.complete = False
        scan.error = f"{_LOADER[mode]}: {exc}" if secondary or scan.wrappers else str(exc)


def scan_bytes(data: bytes, extra: frozenset[tuple[str, str]] = frozenset()) -> Scan:
    import io

    return scan_stream(io.BytesIO(data), len(data), extra)


# The first byte of every opcode protocols 0-5 define (pickletools.code2op, which mstore never imports).
OPCODE_BYTES = frozenset(
    b"().012BCFGIJKLMNPQRSTUVX]abcdeghijlopqrstu}"
    b"\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98"
)
PICKLE_SUFFIXES = {".pkl", ".pickle", ".pck", ".joblib", ".sav", ".dill", ".pt", ".pth", ".ckpt"}
ZIP_MAGIC = b"PK\x03\x04"
# joblib.load's compressors, by the prefix it detects them by (joblib/compressor.py); lz4 is not inflated
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZ": "bz2", b"\xfd7zXZ": "xz", b"]\x00": "lzma", b"\x78": "zlib"}
_UNREADABLE_PREFIXES = {b"\x04\x22\x4d\x18": "lz4", b"ZF": "joblib's pre-0.9.3 format"}


def _inflate(f: BinaryIO, kind: str, size: int) -> IO[bytes]:
    """The inflated stream of a compressed joblib file, in a temporary file, under a bound."""
    bound = min(MAX_INFLATE, max(256 << 20, INFLATE_RATIO * size))
    f.seek(0)
    stream: Any
    if kind == "gzip":
        stream = gzip.GzipFile(fileobj=f)
    elif kind == "bz2":
        stream = bz2.BZ2File(f)
    elif kind in ("xz", "lzma"):
        stream = lzma.LZMAFile(f, format=lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE)  # noqa: SIM115
    else:
        stream = _ZlibReader(f)
    out = tempfile.TemporaryFile()  # noqa: SIM115 (returned open)
    total = 0
    try:
        while True:
            chunk = stream.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > bound:
                raise NotPickle(f"it inflates ({kind}) to more than {bound} bytes")
            out.write(chunk)
    except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError) as exc:
        out.close()
        raise NotPickle(f"its {kind} stream does not inflate ({type(exc).__name__})") from None
    except NotPickle:
        out.close()
        raise
    out.seek(0)
    return out


class _ZlibReader:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.d = zlib.decompressobj()

    def read(self, n: int) -> bytes:
        while True:
            if self.d.eof:
                return self.d.flush()
            raw = self.f.read(1 << 16)
            if not raw:
                raise EOFError
            data = self.d.decompress(raw, n)
            while self.d.unconsumed_tail and len(data) < n:
                data += self.d.decompress(self.d.unconsumed_tail, n - len(data))
            if data:
                return data


def _scan_zip(f: BinaryIO, size: int, extra: frozenset[tuple[str, str]]) -> Scan | None:
    """A torch zip checkpoint: each `*/data.pkl` walked as torch.load reads it; None when the zip has none."""
    try:
        archive = zipfile.ZipFile(f)
        entries = [i for i in archive.infolist() if i.filename == "data.pkl" or i.filename.endswith("/data.pkl")]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None
    if not entries:
        return None
    scan = Scan(extra=extra)
    for info in entries:
        if info.file_size > MAX_ZIP_PICKLE:
            _combine(scan, NotPickle(f"{info.filename} is larger than {MAX_ZIP_PICKLE} bytes"), "torch")
            continue
        try:
            with archive.open(info) as member, tempfile.TemporaryFile() as tmp:
                n = 0
                while chunk := member.read(1 << 20):
                    n += len(chunk)
                    if n > MAX_ZIP_PICKLE:
                        raise NotPickle(f"{info.filename} inflates past {MAX_ZIP_PICKLE} bytes")
                    tmp.write(chunk)
                tmp.seek(0)
                _combine(scan, _walk(tmp, n, scan, "torch"), "torch")
        except NotPickle as exc:
            _combine(scan, exc, "torch")
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as exc:
            _combine(scan, NotPickle(f"{info.filename} does not unzip ({type(exc).__name__})"), "torch")
    # pickle.load / joblib.load of the zip itself stop at its first byte (a persistent id): nothing runs
    _combine(scan, _walk(f, size, scan, "plain"), "plain", secondary=True)
    return scan


def scan_open(f: BinaryIO, size: int, name: str, extra: frozenset[tuple[str, str]] = frozenset()) -> Scan | None:
    """The scan of an open regular file named `name`, or None when it is not a pickle, a joblib file or a
    torch zip checkpoint (protocols 0 and 1 have no magic bytes: those are recognised by their suffix)."""
    f.seek(0)
    head = f.read(8)
    suffix = Path(name).suffix.lower()
    if head.startswith(ZIP_MAGIC):
        return _scan_zip(f, size, extra)
    for prefix, kind in _UNREADABLE_PREFIXES.items():
        if head.startswith(prefix) and suffix in PICKLE_SUFFIXES:
            scan = Scan(extra=extra, complete=False, error=f"written in {kind}, which mstore does not read")
            return scan
    for prefix, kind in _COMPRESSED.items():
        if head.startswith(prefix) and (suffix in PICKLE_SUFFIXES or kind != "zlib"):
            try:
                inflated = _inflate(f, kind, size)
            except NotPickle as exc:
                return Scan(extra=extra, complete=False, error=str(exc)) if suffix in PICKLE_SUFFIXES else None
            with inflated:
                inflated_size = inflated.seek(0, os.SEEK_END)
                inflated.seek(0)
                if not looks_like_pickle(inflated.read(2)) and suffix not in PICKLE_SUFFIXES:
                    return None
                scan = Scan(extra=extra)
                _combine(scan, _walk(inflated, inflated_size, scan, "joblib"), "joblib")  # type: ignore[arg-type]
                scan.found, scan.roots = [], []  # offsets in the inflated stream, not in the file
                _combine(scan, _walk(f, size, scan, "plain"), "plain", secondary=True)
                return scan
    if not looks_like_pickle(head[:2]) and suffix not in PICKLE_SUFFIXES:
        return None
    if not head or head[0] not in OPCODE_BYTES:
        return None  # every unpickler raises on the first byte: nothing is ever loaded (not a pickle)
    f.seek(0)
    return scan_stream(f, size, extra)


def scan_file(path: Path, extra: frozenset[tuple[str, str]] = frozenset()) -> Scan | None:
    """The scan of `path` (see scan_open); None when it is not one, or not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        os.set_blocking(fd, True)
        scan = scan_open(f, st.st_size, path.name, extra)
        if scan is None:
            return None
        scan.fingerprint = fingerprint(st)
        _RECENT[scan.fingerprint] = scan  # for joblib_arrays, while the caller keeps the scan
        return scan


_RECENT: weakref.WeakValueDictionary[tuple[int, int, int, int, int], Scan] = weakref.WeakValueDictionary()


def fingerprint(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What a scan is keyed on: a rewrite of the file changes one of these (ctime cannot be set back)."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def unchanged(path: Path, scan: Scan) -> bool:
    """Whether `path` is still the file that was scanned (a save checks this after storing it)."""
    try:
        return fingerprint(os.stat(path, follow_symlinks=False)) == scan.fingerprint
    except OSError:
        return False


def scan_source(
    items: list[tuple[str, Path, bool]], extra: frozenset[tuple[str, str]] = frozenset()
) -> dict[str, tuple[Path, Scan]]:
    """Relative path -> (path, scan), for every file of a model (as listed by ingest.scan) that starts like a
    pickle, is named like one, or is a torch zip checkpoint.

    A file that starts like a pickle (0x80 and a protocol byte) but is not named like one, and whose walk
    found no global and stopped early, is opaque bytes that merely begin with 0x80: it is left out. A file
    *named* like a pickle is always kept: loading it is what its name invites."""
    out = {}
    for rel, full, is_dir in items:
        if is_dir:
            continue
        scan = scan_file(full, extra)
        if scan is None:
            continue
        if scan.complete or scan.globals or full.suffix.lower() in PICKLE_SUFFIXES:
            out[rel] = (full, scan)
    return out


def name_arrays(scan: Scan) -> None:
    """Name each array by where it sits in what the pickle built: `steps[1][1].coef_` (attributes after a
    dot, list and dict items in brackets; a top-level dict's keys bare). Arrays found twice keep the first
    name; arrays nothing names (past a container's kept elements) are `array<N>` by file order."""
    seen: set[int] = set()
    todo: list[tuple[Any, str]] = [(root, "") for root in reversed(scan.roots)]
    budget = 1_000_000
    while todo and budget:
        budget -= 1
        value, path = todo.pop()
        if isinstance(value, (list, tuple, dict, _Obj)):
            if id(value) in seen:
                continue
            seen.add(id(value))
        children: list[tuple[Any, str]] = []
        if isinstance(value, _Obj):
            if isinstance(value.args, ArrayInfo):
                if not value.args.name:
                    value.args.name = path or "array"
                continue
            state = value.state
            if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
                state = state[0]  # (dict state, slot state)
            if isinstance(state, dict):
                children += [(v, f"{path}.{k}" if path else str(k)) for k, v in state.items()]
            if isinstance(value.args, (list, tuple)):
                children += [(v, f"{path}({i})") for i, v in enumerate(value.args)]
        elif isinstance(value, dict):
            children += [(v, f"{path}[{k!r}]" if path else str(k)) for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            children += [(v, f"{path}[{i}]") for i, v in enumerate(value)]
        todo.extend(reversed(children))
    names: set[str] = set()
    for i, info in enumerate(scan.found):
        name = info.name or f"array{i}"
        if name in names:
            name = f"{name}#{i}"
        names.add(name)
        info.name = name


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


def joblib_arrays(read: Any, size: int, fingerprint: tuple[int, int, int, int, int] | None = None) -> list[ArrayInfo]:
    """The named arrays of a joblib file read through `read(offset, length)`; [] when the walk did not
    reach the end cleanly (such a file is then cut like any other).

    With the `fingerprint` of the open file, the walk that `scan_file` made of it during this save (the
    safety scan) is reused while that scan is alive, instead of walking a large pickle a second time."""
    scan = _RECENT.get(fingerprint) if fingerprint is not None and fingerprint[0] == size else None
    if scan is None:
        scan = scan_stream(_ReadAt(read, size), size)  # type: ignore[arg-type]
    if not scan.complete:
        return []
    name_arrays(scan)
    return [a for a in scan.found if a.depth == 0]
