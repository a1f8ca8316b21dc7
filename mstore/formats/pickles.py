"""Which globals a pickle (or joblib) file would import, read statically: nothing is ever imported or called.

Loading a pickle runs whatever its GLOBAL / STACK_GLOBAL / INST opcodes name (`os.system`, `builtins.eval`),
so mstore records those names at save and calls a file known-safe only when every one of them is an exact
(module, qualified name) pair of the reviewed table in `allowlist.py`. The walker is a small, strict model
of CPython's unpickler that tracks *data* (short strings, numbers, tuples, dicts) and placeholders for
objects: operands are decoded as the unpickler decodes them (escapes in STRING / UNICODE, every integer
form, the protocol-2 renames of `_compat_pickle`), the memo is followed exactly, and STACK_GLOBAL operands
are resolved through it.

One file, two loaders. `joblib.load` reads the raw bytes of an array right after a real joblib
`NumpyArrayWrapper` is built (one padding-length byte and that padding when the wrapper has
`numpy_array_alignment_bytes`, then count x itemsize bytes, the itemsize computed from the dtype as numpy
computes it), and reads an array whose dtype has objects as a nested pickle with a plain unpickler.
`pickle.load` skips nothing: those bytes are opcodes to it. So a file with joblib arrays is walked twice,
once as each loader reads it, and both walks must be clean. Files joblib wrote with `compress=` are
decompressed (under a bound) and walked as joblib reads them; `data.pkl` inside a torch zip checkpoint is
walked as a plain pickle.

Fail closed: a walk that stops where the unpickler would go on (a limit, an operand or a construct the
walker does not model) makes the file *incomplete*, and its verdict "unknown", which mstore treats as
unsafe. A walk that stops where the real loader stops too (an unknown opcode, a truncated operand, a stack
underflow) only ends what that loader would import. Everything is bounded: the file is read through a
reader that refuses to go past its end, long strings are skipped rather than read, and the opcode count,
stack, memo and nesting have hard limits.
"""

from __future__ import annotations

import _compat_pickle
import bz2
import codecs
import functools
import importlib.util
import io
import lzma
import os
import re
import stat
import struct
import sys
import weakref
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from . import allowlist as _allow

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

UNKNOWN_GLOBAL = "?"  # a STACK_GLOBAL whose operands are not plain strings (computed names): always unsafe
WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")  # the only array wrapper on the allowlist
_RECONSTRUCTORS = {("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__")}


def is_safe(name: str, allowed: frozenset[tuple[str, str]] = _allow.ALLOWED) -> bool:
    """Whether the recorded global `name` (`module.Name` or `module:dotted.name`) is an exact allowlist pair."""
    pair = _allow.from_display(name)
    return pair is not None and pair in allowed


class NotPickle(Exception):
    """The walk stopped: malformed, hostile or beyond a limit (the message says which, and where)."""


class LoaderStops(NotPickle):
    """The walk stopped where CPython's unpickler raises too: what follows is never loaded."""


@dataclass
class Scan:
    """The globals one file's pickle stream(s) reference, in first-seen order."""

    globals: list[str] = field(default_factory=list)
    complete: bool = True
    error: str | None = None
    arrays: int = 0  # joblib array payloads skipped
    fingerprint: tuple[int, ...] | None = None  # (size, mtime_ns, inode, device, ctime_ns) when scanned
    found: list[ArrayInfo] = field(default_factory=list)  # joblib arrays, in file order
    roots: list[Any] = field(default_factory=list)  # what each top-level pickle built (for naming arrays)
    allowed: frozenset[tuple[str, str]] = field(default=_allow.ALLOWED, repr=False)
    loaders: list[str] = field(default_factory=list)  # the loaders modelled: "pickle", "joblib", "torch"

    @property
    def unsafe(self) -> list[str]:
        return [g for g in self.globals if not is_safe(g, self.allowed)]

    @property
    def verdict(self) -> str:
        """ "unsafe" (a global off the allowlist), "unknown" (the walk stopped early: treated as unsafe), "safe"."""
        return "unsafe" if self.unsafe else "safe" if self.complete else "unknown"


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
    """A placeholder for an object the unpickler would build: what built it, its args and state."""

    __slots__ = ("kind", "args", "state", "wrapper")

    def __init__(self, kind: str, args: Any = None, wrapper: bool = False) -> None:
        self.kind = kind
        self.args = args
        self.state: Any = None
        self.wrapper = wrapper  # a real joblib NumpyArrayWrapper instance


class _Global:
    __slots__ = ("name", "pair")

    def __init__(self, name: str, pair: tuple[str, str] | None = None) -> None:
        self.name = name
        self.pair = pair


class _Big:
    """A string or bytes value too long to keep: only its length is known."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


_MARK = object()
_UNKNOWN = object()


class _Reader:
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
            return _Big(n)
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


def _u(fmt: str, data: bytes) -> int:
    value: int = struct.unpack(fmt, data)[0]
    return value


def _resolve(module: str, name: str, proto: int) -> tuple[str, str]:
    """What `find_class` really imports: protocols 0-2 rename Python 2 names (`_compat_pickle`)."""
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            mapped: tuple[str, str] = _compat_pickle.NAME_MAPPING[(module, name)]
            return mapped
        if module in _compat_pickle.IMPORT_MAPPING:
            return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


_STR_MAKERS = {"builtins.str", "_codecs.encode", UNKNOWN_GLOBAL, "?"}


def _maybe_str(value: Any) -> bool:
    """Whether a STACK_GLOBAL operand may be an exact `str` (the unpickler refuses anything else): a known
    string, one too long to keep, what an unmodelled or str-making callable returned, a persistent id."""
    if isinstance(value, (str, _Big)) or value is _UNKNOWN:
        return True
    return isinstance(value, _Obj) and (value.kind in _STR_MAKERS or not is_safe(value.kind))


@functools.lru_cache(maxsize=4096)
def _top_level_exists(module: str) -> bool:
    """Whether the top-level package of `module` could be imported here (searched for, never imported;
    any doubt counts as yes)."""
    top = module.split(".")[0]
    if not top.isidentifier():
        return False
    if top in sys.builtin_module_names or top in sys.stdlib_module_names:
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError, AttributeError):
        return True


def _mentions_wrapper(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _Global):
        return value.pair == WRAPPER
    if depth < 3 and isinstance(value, (tuple, list)):
        return any(_mentions_wrapper(v, depth + 1) for v in value)
    if depth < 3 and isinstance(value, dict):
        return any(_mentions_wrapper(v, depth + 1) for v in value.values())
    return False


class _Walker:
    def __init__(self, reader: _Reader, scan: Scan) -> None:
        self.r = reader
        self.scan = scan
        self.ops = 0
        self.plain_pass = False  # the second walk of a joblib file, as pickle.load reads it

    def note(self, name: str) -> None:
        if name not in self.scan.globals:
            if len(self.scan.globals) >= 10_000:
                raise NotPickle("more than 10000 distinct globals")
            self.scan.globals.append(name)

    def note_pair(self, module: str, name: str, proto: int) -> _Global:
        module, name = _resolve(module, name, proto)
        shown = _allow.display(module, name) if module and name else f"{module}:{name}"
        if self.plain_pass and (module, name) not in self.scan.allowed and not _top_level_exists(module):
            # pickle.load reading joblib's array bytes as opcodes: an import that fails ends the load
            raise LoaderStops(f"pickle.load stops at {shown}: there is no module {module.split('.')[0]!r}")
        self.note(shown)
        return _Global(shown, (module, name))

    def walk(self, depth: int = 0, joblib: bool = True) -> None:
        """One pickle stream, from its first opcode to STOP, read as joblib's unpickler (`joblib`) or as a
        plain unpickler reads it."""
        if depth > MAX_NESTED:
            raise NotPickle("pickles nested too deeply")
        r = self.r
        stack: list[Any] = []
        marks: list[int] = []
        memo: dict[int, Any] = {}
        proto = 0
        frame_end = -1

        def pop() -> Any:
            if len(stack) <= (marks[-1] if marks else 0):
                raise LoaderStops(f"stack underflow at offset {r.pos}")
            return stack.pop()

        def pop_mark() -> list[Any]:
            if not marks:
                raise LoaderStops(f"no MARK to pop at offset {r.pos}")
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
                raise LoaderStops(f"stack underflow at offset {r.pos}")
            return stack[-1]

        def put(index: int) -> None:
            if index < 0:
                raise LoaderStops("negative memo index")
            if index not in memo and len(memo) >= MAX_MEMO:
                raise NotPickle(f"more than {MAX_MEMO} memo entries")
            memo[index] = top()

        def get(index: int) -> None:
            if index not in memo:
                raise LoaderStops(f"memo entry {index} not defined at offset {r.pos}")
            push(memo[index])

        def mutable(target: Any, what: str) -> Any:
            if isinstance(target, _Global):  # benign pickles never patch a class while loading
                raise NotPickle(f"{what} on the class {target.name} at offset {r.pos}")
            return target

        def construct(cls: Any, args: Any, via: str) -> _Obj:
            if isinstance(cls, (int, float, str, bytes, tuple, list, dict, type(None), _Big)):
                raise LoaderStops(f"{via} of a {type(cls).__name__}, not a callable, at offset {r.pos}")
            pair = cls.pair if isinstance(cls, _Global) else None
            wrapper = pair == WRAPPER
            if pair in _RECONSTRUCTORS and isinstance(args, tuple) and args and _mentions_wrapper(args[0]):
                wrapper, args = True, args[1:]
            if _mentions_wrapper(args):
                raise NotPickle(f"joblib's array wrapper passed to {via} at offset {r.pos}")
            if isinstance(args, tuple):
                args = args[:MAX_CONTAINER]
            return _Obj(cls.name if isinstance(cls, _Global) else "?", args, wrapper)

        while True:
            self.ops += 1
            if self.ops > MAX_OPS:
                raise NotPickle(f"more than {MAX_OPS} opcodes")
            code = r.read(1)[0]
            if code == 0x2E:  # STOP
                if depth == 0 and len(stack) == 1:
                    self.scan.roots.append(stack[0])
                return
            if code == 0x80:  # PROTO
                proto = r.read(1)[0]
                if proto > 5:
                    raise LoaderStops("unknown pickle protocol")
            elif code == 0x95:  # FRAME: a length hint, the frame's opcodes follow inline
                n = _u("<Q", r.read(8))
                if n > r.end - r.pos:
                    raise LoaderStops(f"a frame at offset {r.pos} runs past the end of the file")
                frame_end = r.pos + n
            elif code == 0x63 or code == 0x69:  # GLOBAL / INST "module\nname\n"
                module, name = _utf8(r.line()), _utf8(r.line())
                g = self.note_pair(module, name, proto)
                if code == 0x63:
                    push(g)
                else:
                    push(construct(g, tuple(pop_mark()), "INST"))
            elif code == 0x93:  # STACK_GLOBAL
                name, module = pop(), pop()
                if isinstance(module, str) and isinstance(name, str):
                    push(self.note_pair(module, name, proto))
                elif _maybe_str(module) and _maybe_str(name):
                    self.note(UNKNOWN_GLOBAL)  # a name the walker cannot read (too long, or computed)
                    push(_Global(UNKNOWN_GLOBAL))
                else:
                    raise LoaderStops(f"STACK_GLOBAL of non-strings at offset {r.pos}")
            elif code in (0x82, 0x83, 0x84):  # EXT1/2/4: the copyreg extension registry
                r.read({0x82: 1, 0x83: 2, 0x84: 4}[code])
                self.note(UNKNOWN_GLOBAL)
                push(_Global(UNKNOWN_GLOBAL))
            elif code == 0x52:  # REDUCE
                args, func = pop(), pop()
                push(construct(func, args, "REDUCE"))
            elif code == 0x81:  # NEWOBJ
                args, cls = pop(), pop()
                push(construct(cls, args, "NEWOBJ"))
            elif code == 0x92:  # NEWOBJ_EX
                kwargs, args, cls = pop(), pop(), pop()
                if _mentions_wrapper(kwargs):
                    raise NotPickle(f"joblib's array wrapper passed to NEWOBJ_EX at offset {r.pos}")
                push(construct(cls, args, "NEWOBJ_EX"))
            elif code == 0x6F:  # OBJ: MARK cls args...
                items = pop_mark()
                if not items:
                    raise LoaderStops(f"OBJ without a class at offset {r.pos}")
                push(construct(items[0], tuple(items[1:]), "OBJ"))
            elif code == 0x62:  # BUILD
                state = pop()
                obj = mutable(top(), "BUILD")
                if isinstance(obj, _Obj):
                    if obj.wrapper and joblib:
                        obj.state = _wrapper_state(obj.state, state)
                        if r.pos < frame_end:
                            raise NotPickle(f"a joblib array inside a pickle frame at offset {r.pos}")
                        stack.pop()
                        push(self._skip_array(obj.state, depth))
                    elif obj.wrapper:
                        obj.state = _wrapper_state(obj.state, state)
                    else:
                        obj.state = state
            elif code in (0x50, 0x51):  # PERSID / BINPERSID: resolved by the loader's persistent_load
                if code == 0x50:
                    r.line()
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
                put(_int_line(r.line(), 10))
            elif code == 0x71:
                put(r.read(1)[0])
            elif code == 0x72:
                put(_u("<I", r.read(4)))
            elif code == 0x67:  # GET
                get(_int_line(r.line(), 10))
            elif code == 0x68:
                get(r.read(1)[0])
            elif code == 0x6A:
                get(_u("<I", r.read(4)))
            elif code == 0x5D:  # EMPTY_LIST
                push([])
            elif code == 0x29:  # EMPTY_TUPLE
                push(())
            elif code == 0x7D:  # EMPTY_DICT
                push({})
            elif code == 0x8F:  # EMPTY_SET
                push(_Obj("builtins.set"))
            elif code == 0x61:  # APPEND
                value = pop()
                _extend(mutable(top(), "APPEND"), [value])
            elif code == 0x65:  # APPENDS
                items = pop_mark()
                _extend(mutable(top(), "APPENDS"), items)
            elif code == 0x90:  # ADDITEMS
                items = pop_mark()
                mutable(top(), "ADDITEMS")
                if any(_mentions_wrapper(v) for v in items):
                    raise NotPickle(f"joblib's array wrapper added to a set at offset {r.pos}")
            elif code == 0x6C:  # LIST
                push(pop_mark()[:MAX_CONTAINER])
            elif code == 0x74:  # TUPLE
                push(tuple(pop_mark()[:MAX_CONTAINER]))
            elif code == 0x91:  # FROZENSET
                pop_mark()
                push(_Obj("builtins.frozenset"))
            elif code in (0x85, 0x86, 0x87):  # TUPLE1/2/3
                n = code - 0x84
                items = [pop() for _ in range(n)][::-1]
                push(tuple(items))
            elif code == 0x64:  # DICT
                items = pop_mark()
                d: dict[Any, Any] = {}
                _set_items(d, items)
                push(d)
            elif code == 0x73:  # SETITEM
                value, key = pop(), pop()
                _set_items(mutable(top(), "SETITEM"), [key, value])
            elif code == 0x75:  # SETITEMS
                items = pop_mark()
                _set_items(mutable(top(), "SETITEMS"), items)
            elif code == 0x4E:  # NONE
                push(None)
            elif code == 0x88:
                push(True)
            elif code == 0x89:
                push(False)
            elif code == 0x4A:  # BININT
                push(_u("<i", r.read(4)))
            elif code == 0x4B:
                push(r.read(1)[0])
            elif code == 0x4D:
                push(_u("<H", r.read(2)))
            elif code == 0x49:  # INT (also True/False as 00/01)
                text = r.line()
                push(True if text == b"01" else False if text == b"00" else _int_line(text, 0))
            elif code == 0x4C:  # LONG
                text = r.line()
                push(_int_line(text[:-1] if text.endswith(b"L") else text, 0))
            elif code == 0x8A:  # LONG1
                push(int.from_bytes(r.read(r.read(1)[0]), "little", signed=True))
            elif code == 0x8B:  # LONG4
                n = _u("<i", r.read(4))
                if n < 0:
                    raise LoaderStops("LONG4 with a negative byte count")
                if n > 1 << 16:
                    raise NotPickle(f"an integer of {n} bytes")
                push(int.from_bytes(r.read(n), "little", signed=True))
            elif code == 0x46:  # FLOAT
                try:
                    push(float(r.line()))
                except ValueError:
                    raise LoaderStops(f"an invalid FLOAT before offset {r.pos}") from None
            elif code == 0x47:  # BINFLOAT
                push(struct.unpack(">d", r.read(8))[0])
            elif code == 0x53:  # STRING (protocol 0: quoted, backslash escapes as Python 2 wrote them)
                push(_string_operand(r.line(), r.pos))
            elif code == 0x56:  # UNICODE (raw-unicode-escape)
                try:
                    push(codecs.raw_unicode_escape_decode(r.line())[0])
                except UnicodeDecodeError:
                    raise LoaderStops(f"an undecodable UNICODE operand before offset {r.pos}") from None
            elif code == 0x54:  # BINSTRING
                n = _u("<i", r.read(4))
                if n < 0:
                    raise LoaderStops("BINSTRING with a negative byte count")
                push(_latin(r.value(n, False)))
            elif code == 0x55:  # SHORT_BINSTRING
                push(_latin(r.value(r.read(1)[0], False)))
            elif code == 0x8C:  # SHORT_BINUNICODE
                push(r.value(r.read(1)[0], True))
            elif code == 0x58:  # BINUNICODE
                push(r.value(_u("<I", r.read(4)), True))
            elif code == 0x8D:  # BINUNICODE8
                push(r.value(_u("<Q", r.read(8)), True))
            elif code == 0x43:  # SHORT_BINBYTES
                push(r.value(r.read(1)[0], False))
            elif code == 0x42:  # BINBYTES
                push(r.value(_u("<I", r.read(4)), False))
            elif code in (0x8E, 0x96):  # BINBYTES8, BYTEARRAY8
                push(r.value(_u("<Q", r.read(8)), False))
            elif code == 0x97:  # NEXT_BUFFER (out-of-band data the loader supplies)
                push(_UNKNOWN)
            elif code == 0x98:  # READONLY_BUFFER
                top()
            else:
                raise LoaderStops(f"unknown opcode 0x{code:02x} at offset {r.pos - 1}")

    def _skip_array(self, state: Any, depth: int) -> _Obj:
        """The array bytes joblib reads right after a NumpyArrayWrapper (see the module docstring)."""
        if not isinstance(state, dict) or len(state) >= MAX_CONTAINER:
            raise NotPickle(f"a NumpyArrayWrapper without a readable state before offset {self.r.pos}")
        shape, dtype = state.get("shape"), state.get("dtype")
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise NotPickle(f"a NumpyArrayWrapper with an unreadable shape before offset {self.r.pos}")
        itemsize = _itemsize(dtype)
        if itemsize is None:  # the dtype has objects: joblib reads a nested pickle with a plain unpickler
            self.walk(depth + 1, joblib=False)
            self.scan.arrays += 1
            return _Obj("numpy.ndarray")
        if state.get("numpy_array_alignment_bytes") is not None:
            self.r.skip(self.r.read(1)[0])
        count = 1
        for n in shape:
            count *= n
            if count * itemsize > self.r.end:
                raise NotPickle(f"an array of shape {shape} larger than the file before offset {self.r.pos}")
        array = _Obj("numpy.ndarray")
        assert isinstance(dtype, _Obj)  # _itemsize refused anything else
        array.args = ArrayInfo(_dtype_name(dtype), shape, self.r.pos, count * itemsize, depth)
        self.r.skip(count * itemsize)
        self.scan.arrays += 1
        self.scan.found.append(array.args)
        return array


def _wrapper_state(old: Any, state: Any) -> dict[Any, Any]:
    """A wrapper's attributes after one more BUILD: `__dict__.update(state)` then the slot state, as
    pickle's load_build does (the wrapper has no __setstate__)."""
    merged = dict(old) if isinstance(old, dict) else {}
    slots: Any = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    for part in (state, slots):
        if part is None or part == {}:
            continue
        if not isinstance(part, dict) or len(part) >= MAX_CONTAINER:
            raise NotPickle("a NumpyArrayWrapper with a state the walker cannot read")
        merged.update(part)
    return merged


def _dtype_name(dtype: _Obj) -> str:
    code = dtype.args[0] if isinstance(dtype.args, tuple) and dtype.args else ""
    order = dtype.state[1] if isinstance(dtype.state, tuple) and len(dtype.state) > 1 else "|"
    if not isinstance(code, str) or not isinstance(order, str) or len(code) > 8 or order not in "<>|=":
        return ""
    return ("<" if order == "=" else order) + code


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


def joblib_arrays(read: Any, size: int, fingerprint: tuple[int, ...] | None = None) -> list[ArrayInfo]:
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


# The element size numpy gives each dtype code a pickle may name (numpy ignores a pickled element size for
# these); S, U and V take theirs from the pickled state. Any other code is refused: the walker cannot know.
_CODE_SIZES = {
    **{f"f{n}": n for n in (2, 4, 8, 16)},
    **{f"i{n}": n for n in (1, 2, 4, 8)},
    **{f"u{n}": n for n in (1, 2, 4, 8)},
    **{f"c{n}": n for n in (8, 16, 32)},
    "b1": 1,
    "M8": 8,
    "m8": 8,
    "O8": 8,
}
_FLEXIBLE = re.compile(r"[SUV][0-9]{1,9}")


def _itemsize(dtype: Any) -> int | None:
    """The element size numpy gives a pickled numpy.dtype placeholder, None when its dtype has objects (the
    NPY_ITEM_HASOBJECT flag, which numpy takes from the pickled state); NotPickle when not known."""
    if not isinstance(dtype, _Obj) or dtype.kind != "numpy.dtype" or not isinstance(dtype.args, tuple):
        raise NotPickle("a NumpyArrayWrapper whose dtype is not a numpy.dtype")
    code = dtype.args[0] if dtype.args else None
    if not isinstance(code, str) or not (code in _CODE_SIZES or _FLEXIBLE.fullmatch(code)):
        raise NotPickle(f"an array of dtype {str(code)[:20]!r}, whose size the walker does not know")
    state = dtype.state
    if state is None:
        hasobject = code == "O8"
        elsize = None
    elif (
        isinstance(state, tuple)
        and len(state) >= 8
        and state[0] in (3, 4)
        and isinstance(state[5], int)
        and isinstance(state[7], int)
    ):  # numpy takes hasobject from the flags and, for S / U / V, the element size from the state
        hasobject = bool(state[7] & 1)
        elsize = state[5]
    else:
        raise NotPickle(f"a dtype {code!r} with a state the walker does not model")
    if hasobject:
        return None
    if code in _CODE_SIZES:
        return _CODE_SIZES[code]
    size = elsize if elsize is not None and elsize >= 0 else int(code[1:])
    if size <= 0:
        raise NotPickle(f"an array of dtype {code!r} with element size {size}")
    return size


def _int_line(line: bytes, base: int) -> int:
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


def _utf8(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise LoaderStops("a GLOBAL name that is not UTF-8") from None


def _string_operand(line: bytes, pos: int) -> str:
    """A STRING operand: quoted, then `codecs.escape_decode` (then ASCII; latin-1 here, a superset)."""
    if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
        raise LoaderStops(f"an unquoted STRING operand before offset {pos}")
    try:
        data: bytes = codecs.escape_decode(line[1:-1])[0]
    except ValueError:
        raise LoaderStops(f"an undecodable STRING operand before offset {pos}") from None
    return data.decode("latin-1")


def _latin(value: Any) -> Any:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _extend(target: Any, items: list[Any]) -> None:
    if isinstance(target, list):
        target.extend(items[: max(0, MAX_CONTAINER - len(target))])


def _set_items(target: Any, items: list[Any]) -> None:
    if len(items) % 2:
        raise LoaderStops("an odd number of values for a dict")
    if not isinstance(target, dict):
        return
    for i in range(0, len(items), 2):
        key = items[i]
        kept = isinstance(key, (str, int, bytes, bool, type(None)))
        if kept and (len(target) < MAX_CONTAINER or key in target):
            target[key] = items[i + 1]


def looks_like_pickle(head: bytes) -> bool:
    """A pickle of protocol 2-5 starts with the PROTO opcode; joblib writes protocol 2 or higher too."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _walk_all(f: BinaryIO, size: int, scan: Scan, joblib: bool, plain_pass: bool = False, once: bool = False) -> None:
    reader = _Reader(f, size)
    walker = _Walker(reader, scan)
    walker.plain_pass = plain_pass
    try:
        if joblib and once:
            walker.walk()
        elif joblib:
            while reader.pos < size:  # consecutive pickles too (a caller may load them one by one)
                walker.walk()
        else:
            walker.walk(joblib=False)  # pickle.load reads one pickle
    except LoaderStops as exc:
        if joblib:  # a file joblib cannot read to its end: what it holds past that point is not known
            scan.complete = False
            scan.error = str(exc)
    except NotPickle as exc:
        scan.complete = False
        scan.error = str(exc) if joblib else f"read as a plain pickle: {exc}"
    except (RecursionError, MemoryError, OverflowError, ValueError, struct.error) as exc:
        scan.complete = False
        scan.error = f"{type(exc).__name__} while reading"


def scan_stream(f: BinaryIO, size: int) -> Scan:
    """Walk every pickle in `f` (`size` bytes; consecutive pickles too) as joblib's unpickler reads it and,
    when that skipped array bytes, once more as `pickle.load` reads it. Never raises NotPickle."""
    scan = Scan(loaders=["pickle", "joblib"])
    _walk_all(f, size, scan, joblib=True)
    if scan.arrays:
        found, roots, complete, error = scan.found, scan.roots, scan.complete, scan.error
        f.seek(0)
        _walk_all(f, size, scan, joblib=False, plain_pass=True)
        scan.found, scan.roots = found, roots
        if not complete:
            scan.complete, scan.error = False, error
    return scan


def scan_bytes(data: bytes) -> Scan:
    return scan_stream(io.BytesIO(data), len(data))


# The first byte of every opcode protocols 0-5 define (pickletools.code2op, which mstore never imports).
OPCODE_BYTES = frozenset(
    b"().012BCFGIJKLMNPQRSTUVX]abcdeghijlopqrstu}"
    b"\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98"
)
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
        _walk_all(stream, limit, scan, joblib=True, once=True)  # type: ignore[arg-type]
    except NotPickle as exc:
        scan.complete, scan.error = False, str(exc)
    if scan.complete and (stream.read(1) or not stream.eof):
        scan.complete, scan.error = False, "bytes after the pickle in the compressed stream"
    scan.found = []  # offsets inside a compressed stream are not file offsets
    return scan


def _scan_zip(source: Path | BinaryIO) -> Scan | None:
    """A torch checkpoint (a zip with `<name>/data.pkl`): every pickle inside, walked as plain pickles."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    with archive:
        names = [i for i in archive.infolist() if i.filename.endswith((".pkl", ".pickle"))]
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
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError, zlib.error) as exc:
                scan.complete, scan.error = False, f"{info.filename}: {exc}"
                continue
            inner = Scan(allowed=scan.allowed)
            _walk_all(io.BytesIO(data), len(data), inner, joblib=False)
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
        _RECENT[scan.fingerprint] = scan  # for joblib_arrays, while the caller keeps the scan
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
    elif suffix in PICKLE_SUFFIXES and head[:1] and head[0] in OPCODE_BYTES:
        scan = scan_stream(f, size)
    else:
        return None  # every unpickler raises on a first byte that is no opcode: nothing is ever loaded
    if scan is not None and allowed is not None:
        scan.allowed = frozenset(allowed)
    return scan


_RECENT: weakref.WeakValueDictionary[tuple[int, ...], Scan] = weakref.WeakValueDictionary()


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
