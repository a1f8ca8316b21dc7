"""Which globals a pickle (or joblib) file would import, read statically: nothing is ever imported or called.

Loading a pickle runs whatever its GLOBAL / STACK_GLOBAL / INST opcodes name (`os.system`, `builtins.eval`),
so mstore records those names at save and flags the ones outside a known-safe set. The walker is a small,
strict interpreter of the opcode stream that only tracks *data* (short strings, numbers, tuples, dicts) and
placeholders for objects: enough to resolve `STACK_GLOBAL` operands (also through the memo) and to find the
size of the array bytes joblib writes right after each `NumpyArrayWrapper` record (joblib/numpy_pickle.py:
the wrapper is pickled, then one padding-length byte and that many padding bytes when the wrapper's state
has `numpy_array_alignment_bytes`, then the array's raw bytes; an object-dtype array is a nested pickle
instead). Everything is bounded: the file is read through a reader that refuses to go past its end, long
strings are skipped rather than read, and the opcode count, stack, memo and nesting have hard limits.
Anything the walker does not understand ends the walk; the globals seen so far are kept (a real unpickler
would have imported them before failing) and the file is marked incomplete.
"""

from __future__ import annotations

import os
import stat
import struct
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

MAX_OPS = 20_000_000  # a large scikit-learn pipeline (big vocabulary) is a few million
MAX_STACK = 1_000_000
MAX_MEMO = 2_000_000
MAX_MARKS = 10_000
MAX_NESTED = 8  # nested pickles (joblib object arrays)
MAX_KEPT_STRING = 1024  # longer strings and bytes are skipped, never read into memory
MAX_CONTAINER = 4096  # elements kept per simulated container (the rest are counted, not kept)
MAX_LINE = 1 << 16

UNKNOWN_GLOBAL = "?"  # a STACK_GLOBAL whose operands are not plain strings (computed names): always unsafe

# Module prefixes whose globals only build data. A name is safe when its module is one of these or
# starts with one of them followed by "."; DENIED wins over SAFE_MODULES.
SAFE_MODULES = ("numpy", "scipy", "sklearn", "joblib", "collections")
SAFE_NAMES = {
    "copyreg._reconstructor",
    "copy_reg._reconstructor",
    "_codecs.encode",
    "datetime.datetime",
    "datetime.date",
    "datetime.time",
    "datetime.timedelta",
    "datetime.timezone",
    "decimal.Decimal",
    "fractions.Fraction",
    "uuid.UUID",
}
SAFE_BUILTINS = {
    "dict",
    "list",
    "set",
    "frozenset",
    "tuple",
    "bytearray",
    "bytes",
    "str",
    "int",
    "float",
    "complex",
    "bool",
    "slice",
    "range",
    "object",
    "NoneType",
    "Ellipsis",
    "NotImplemented",
}
# Inside the safe packages, the few names that load or run code.
DENIED_PREFIXES = ("numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "sklearn.utils._testing")
DENIED_NAMES = {"load", "loads", "system", "eval", "exec", "runstring", "compile", "__import__", "getattr", "open"}


def is_safe(name: str) -> bool:
    """Whether the global `module.name` is in the known-safe set (numpy, scipy, sklearn, joblib, collections,
    data-building builtins)."""
    module, _, attr = name.rpartition(".")
    if not module or attr in DENIED_NAMES:
        return False
    if any(module == p or module.startswith(p + ".") for p in DENIED_PREFIXES):
        return False
    if name in SAFE_NAMES:
        return True
    if module in ("builtins", "__builtin__"):
        return attr in SAFE_BUILTINS
    return any(module == p or module.startswith(p + ".") for p in SAFE_MODULES)


class NotPickle(Exception):
    """The walk stopped: malformed, hostile or beyond a limit (the message says which, and where)."""


@dataclass
class Scan:
    """The globals one file's pickle stream(s) reference, in first-seen order."""

    globals: list[str] = field(default_factory=list)
    complete: bool = True
    error: str | None = None
    arrays: int = 0  # joblib array payloads skipped
    fingerprint: tuple[int, int, int, int] | None = None  # (size, mtime_ns, inode, device) when scanned
    found: list[ArrayInfo] = field(default_factory=list)  # joblib arrays, in file order
    roots: list[Any] = field(default_factory=list)  # what each top-level pickle built (for naming arrays)

    @property
    def unsafe(self) -> list[str]:
        return [g for g in self.globals if not is_safe(g)]


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

    __slots__ = ("kind", "args", "state")

    def __init__(self, kind: str, args: Any = None) -> None:
        self.kind = kind
        self.args = args
        self.state: Any = None


class _Global:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


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
            raise NotPickle(f"a value of {n} bytes at offset {self.pos} runs past the end of the file")
        data = self.f.read(n)
        if len(data) != n:
            raise NotPickle(f"the file ended early at offset {self.pos + len(data)}")
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        if n < 0 or n > self.end - self.pos:
            raise NotPickle(f"{n} bytes at offset {self.pos} run past the end of the file")
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
            raise NotPickle(f"invalid UTF-8 string before offset {self.pos}") from None

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


class _Walker:
    def __init__(self, reader: _Reader, scan: Scan) -> None:
        self.r = reader
        self.scan = scan
        self.ops = 0

    def note(self, name: str) -> None:
        if name not in self.scan.globals:
            if len(self.scan.globals) >= 10_000:
                raise NotPickle("more than 10000 distinct globals")
            self.scan.globals.append(name)

    def walk(self, depth: int = 0) -> None:
        """One pickle stream, from its first opcode to STOP."""
        if depth > MAX_NESTED:
            raise NotPickle("pickles nested too deeply")
        r = self.r
        stack: list[Any] = []
        marks: list[int] = []
        memo: dict[int, Any] = {}

        def pop() -> Any:
            if len(stack) <= (marks[-1] if marks else 0):
                raise NotPickle(f"stack underflow at offset {r.pos}")
            return stack.pop()

        def pop_mark() -> list[Any]:
            if not marks:
                raise NotPickle(f"no MARK to pop at offset {r.pos}")
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
                raise NotPickle(f"stack underflow at offset {r.pos}")
            return stack[-1]

        def put(index: int) -> None:
            if index < 0:
                raise NotPickle("negative memo index")
            if index in memo or len(memo) < MAX_MEMO:
                memo[index] = top()

        def get(index: int) -> None:
            push(memo.get(index, _UNKNOWN))

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
                if r.read(1)[0] > 5:
                    raise NotPickle("unknown pickle protocol")
            elif code == 0x95:  # FRAME: a length hint, the frame's opcodes follow inline
                if _u("<Q", r.read(8)) > r.end - r.pos:
                    raise NotPickle(f"a frame at offset {r.pos} runs past the end of the file")
            elif code == 0x63 or code == 0x69:  # GLOBAL / INST "module\nname\n"
                module, name = r.line().decode("utf-8", "replace"), r.line().decode("utf-8", "replace")
                full = f"{module}.{name}"
                self.note(full)
                if code == 0x63:
                    push(_Global(full))
                else:
                    push(_Obj(full, tuple(pop_mark()[:MAX_CONTAINER])))
            elif code == 0x93:  # STACK_GLOBAL
                name, module = pop(), pop()
                plain = isinstance(module, str) and isinstance(name, str)
                full = f"{module}.{name}" if plain else UNKNOWN_GLOBAL
                self.note(full)
                push(_Global(full))
            elif code in (0x82, 0x83, 0x84):  # EXT1/2/4: the copyreg extension registry
                r.read({0x82: 1, 0x83: 2, 0x84: 4}[code])
                self.note(UNKNOWN_GLOBAL)
                push(_Global(UNKNOWN_GLOBAL))
            elif code == 0x52:  # REDUCE
                args, func = pop(), pop()
                push(_Obj(func.name if isinstance(func, _Global) else "?", args))
            elif code == 0x81:  # NEWOBJ
                args, cls = pop(), pop()
                push(_Obj(cls.name if isinstance(cls, _Global) else "?", args))
            elif code == 0x92:  # NEWOBJ_EX
                _kwargs, args, cls = pop(), pop(), pop()
                push(_Obj(cls.name if isinstance(cls, _Global) else "?", args))
            elif code == 0x6F:  # OBJ: MARK cls args...
                items = pop_mark()
                if not items:
                    raise NotPickle(f"OBJ without a class at offset {r.pos}")
                cls = items[0]
                push(_Obj(cls.name if isinstance(cls, _Global) else "?", tuple(items[1:MAX_CONTAINER])))
            elif code == 0x62:  # BUILD
                state = pop()
                obj = top()
                if isinstance(obj, _Obj):
                    obj.state = state
                    if obj.kind.endswith(".NumpyArrayWrapper") and obj.kind.startswith(("joblib.", "sklearn.")):
                        stack.pop()
                        push(self._skip_array(state, depth))
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
                put(_int_line(r.line()))
            elif code == 0x71:
                put(r.read(1)[0])
            elif code == 0x72:
                put(_u("<I", r.read(4)))
            elif code == 0x67:  # GET
                get(_int_line(r.line()))
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
                _extend(top(), [value])
            elif code == 0x65:  # APPENDS
                items = pop_mark()
                _extend(top(), items)
            elif code == 0x90:  # ADDITEMS
                pop_mark()
                top()
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
                push(r.read(1)[0])
            elif code == 0x4D:
                push(_u("<H", r.read(2)))
            elif code == 0x49:  # INT (also True/False as 01/00)
                push(_int_line(r.line()))
            elif code == 0x4C:  # LONG
                push(_int_line(r.line().rstrip(b"L")))
            elif code == 0x8A:  # LONG1
                push(int.from_bytes(r.read(r.read(1)[0]), "little", signed=True))
            elif code == 0x8B:  # LONG4
                n = _u("<i", r.read(4))
                if n > 1 << 16:
                    raise NotPickle(f"an integer of {n} bytes")
                push(int.from_bytes(r.read(n), "little", signed=True))
            elif code == 0x46:  # FLOAT
                r.line()
                push(0.0)
            elif code == 0x47:  # BINFLOAT
                push(_u(">d", r.read(8)))
            elif code == 0x53:  # STRING (protocol 0, quoted)
                push(r.line()[1:-1].decode("latin-1"))
            elif code == 0x56:  # UNICODE (raw-unicode-escape; kept as text for names only)
                push(r.line().decode("latin-1"))
            elif code == 0x54:  # BINSTRING
                push(_latin(r.value(_u("<i", r.read(4)), False)))
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
                raise NotPickle(f"unknown opcode 0x{code:02x} at offset {r.pos - 1}")

    def _skip_array(self, state: Any, depth: int) -> _Obj:
        """The array bytes joblib wrote right after a NumpyArrayWrapper (see the module docstring)."""
        if not isinstance(state, dict):
            raise NotPickle(f"a NumpyArrayWrapper without a state dict before offset {self.r.pos}")
        shape, dtype = state.get("shape"), state.get("dtype")
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise NotPickle(f"a NumpyArrayWrapper with an unreadable shape before offset {self.r.pos}")
        itemsize = _itemsize(dtype)
        if itemsize is None:  # object dtype: a nested pickle follows
            self.walk(depth + 1)
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


def joblib_arrays(read: Any, size: int, fingerprint: tuple[int, int, int, int] | None = None) -> list[ArrayInfo]:
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


_KIND_SIZES = {"b": 1, "?": 1, "B": 1, "h": 2, "H": 2, "e": 2, "l": 8, "L": 8, "q": 8, "Q": 8, "d": 8, "g": 16}


def _itemsize(dtype: Any) -> int | None:
    """The element size of a pickled numpy.dtype placeholder; None for object dtype; NotPickle otherwise."""
    if not isinstance(dtype, _Obj) or not dtype.kind.endswith(".dtype") or not isinstance(dtype.args, tuple):
        raise NotPickle("a NumpyArrayWrapper whose dtype is not a numpy.dtype")
    code = dtype.args[0] if dtype.args else None
    if not isinstance(code, str) or not code:
        raise NotPickle("a dtype without a type code")
    if code[0] == "O":
        return None
    state = dtype.state
    if isinstance(state, tuple) and len(state) >= 6 and isinstance(state[5], int) and state[5] > 0:
        return state[5]  # flexible types (S, U, V, structured) carry their element size
    if code[0] in "fiucbMm" and code[1:].isdigit() and 0 < int(code[1:]) <= 64:
        return int(code[1:])
    if code in _KIND_SIZES:
        return _KIND_SIZES[code]
    raise NotPickle(f"an array of dtype {code[:20]!r}, whose size the walker does not know")


def _int_line(line: bytes) -> int:
    text = line.strip()
    if text in (b"00", b"01"):
        return int(text)
    if len(text) > 4300:
        raise NotPickle("an integer too long to read")
    try:
        return int(text)
    except ValueError:
        raise NotPickle(f"an invalid integer {text[:20]!r}") from None


def _latin(value: Any) -> Any:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _extend(target: Any, items: list[Any]) -> None:
    if isinstance(target, list):
        target.extend(items[: max(0, MAX_CONTAINER - len(target))])


def _set_items(target: Any, items: list[Any]) -> None:
    if len(items) % 2:
        raise NotPickle("an odd number of values for a dict")
    if not isinstance(target, dict):
        return
    for i in range(0, len(items), 2):
        key = items[i]
        if len(target) < MAX_CONTAINER and isinstance(key, (str, int, bytes, bool, type(None))):
            target[key] = items[i + 1]


def looks_like_pickle(head: bytes) -> bool:
    """A pickle of protocol 2-5 starts with the PROTO opcode; joblib writes protocol 2 or higher too."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def scan_stream(f: BinaryIO, size: int) -> Scan:
    """Walk every pickle in `f` (`size` bytes; consecutive pickles too). Never raises NotPickle."""
    scan = Scan()
    reader = _Reader(f, size)
    walker = _Walker(reader, scan)
    try:
        while reader.pos < size:
            walker.walk()
    except NotPickle as exc:
        scan.complete = False
        scan.error = str(exc)
    except (RecursionError, MemoryError, OverflowError, ValueError, struct.error) as exc:
        scan.complete = False
        scan.error = f"{type(exc).__name__} while reading"
    return scan


def scan_bytes(data: bytes) -> Scan:
    import io

    return scan_stream(io.BytesIO(data), len(data))


PICKLE_SUFFIXES = {".pkl", ".pickle", ".pck", ".joblib", ".sav", ".dill"}


def scan_file(path: Path) -> Scan | None:
    """The scan of `path` when it starts like a pickle of protocol 2+ or is named like a pickle (protocols
    0 and 1 have no magic bytes); None otherwise, or when it is not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        os.set_blocking(fd, True)
        if not looks_like_pickle(f.read(2)) and path.suffix.lower() not in PICKLE_SUFFIXES:
            return None
        f.seek(0)
        scan = scan_stream(f, st.st_size)
        scan.fingerprint = fingerprint(st)
        _RECENT[scan.fingerprint] = scan  # for joblib_arrays, while the caller keeps the scan
        return scan


_RECENT: weakref.WeakValueDictionary[tuple[int, int, int, int], Scan] = weakref.WeakValueDictionary()


def fingerprint(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def unchanged(path: Path, scan: Scan) -> bool:
    """Whether `path` is still the file that was scanned (a save checks this after storing it)."""
    try:
        return fingerprint(os.stat(path, follow_symlinks=False)) == scan.fingerprint
    except OSError:
        return False


def scan_source(items: list[tuple[str, Path, bool]]) -> dict[str, tuple[Path, Scan]]:
    """Relative path -> (path, scan), for every file of a model (as listed by ingest.scan) that starts like a pickle.

    A file that starts like a pickle but whose walk found no global at all and stopped early is opaque
    bytes that merely begin with 0x80, not a pickle: it is left out.
    """
    out = {}
    for rel, full, is_dir in items:
        if is_dir:
            continue
        scan = scan_file(full)
        if scan is not None and (scan.complete or scan.globals):
            out[rel] = (full, scan)
    return out
