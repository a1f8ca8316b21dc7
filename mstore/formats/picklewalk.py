"""The walker: one pickle stream from its first opcode to STOP, as joblib's unpickler or as a plain
unpickler reads it, tracking data and placeholders (never importing or calling anything), and
`scan_stream`, which walks a file once as each loader that may read it."""

from __future__ import annotations

import codecs
import functools
import importlib.util
import io
import struct
import sys
from typing import Any, BinaryIO

from . import allowlist as _allow
from .joblibwrap import WRAPPER, dtype_name, element_size, mentions_wrapper, wrapper_state
from .pickleops import (
    MAX_CONTAINER,
    MAX_MARKS,
    MAX_MEMO,
    MAX_NESTED,
    MAX_OPS,
    MAX_STACK,
    UNKNOWN,
    Big,
    Global,
    LoaderStops,
    NotPickle,
    Obj,
    Reader,
    int_line,
    latin,
    resolve_global,
    string_operand,
    unpack,
    utf8,
)
from .picklescan import UNKNOWN_GLOBAL, ArrayInfo, Scan, is_safe

_RECONSTRUCTORS = {("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__")}


_STR_MAKERS = {"builtins.str", "_codecs.encode", UNKNOWN_GLOBAL, "?"}


def _maybe_str(value: Any) -> bool:
    """Whether a STACK_GLOBAL operand may be an exact `str` (the unpickler refuses anything else): a known
    string, one too long to keep, what an unmodelled or str-making callable returned, a persistent id."""
    if isinstance(value, (str, Big)) or value is UNKNOWN:
        return True
    return isinstance(value, Obj) and (value.kind in _STR_MAKERS or not is_safe(value.kind))


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


class _Walker:
    def __init__(self, reader: Reader, scan: Scan) -> None:
        self.r = reader
        self.scan = scan
        self.ops = 0
        self.plain_pass = False  # the second walk of a joblib file, as pickle.load reads it

    def note(self, name: str) -> None:
        if name not in self.scan.globals:
            if len(self.scan.globals) >= 10_000:
                raise NotPickle("more than 10000 distinct globals")
            self.scan.globals.append(name)

    def note_pair(self, module: str, name: str, proto: int) -> Global:
        module, name = resolve_global(module, name, proto)
        shown = _allow.display(module, name) if module and name else f"{module}:{name}"
        if self.plain_pass and (module, name) not in self.scan.allowed and not _top_level_exists(module):
            # pickle.load reading joblib's array bytes as opcodes: an import that fails ends the load
            raise LoaderStops(f"pickle.load stops at {shown}: there is no module {module.split('.')[0]!r}")
        self.note(shown)
        return Global(shown, (module, name))

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
            if isinstance(target, Global):  # benign pickles never patch a class while loading
                raise NotPickle(f"{what} on the class {target.name} at offset {r.pos}")
            return target

        def construct(cls: Any, args: Any, via: str) -> Obj:
            if isinstance(cls, (int, float, str, bytes, tuple, list, dict, type(None), Big)):
                raise LoaderStops(f"{via} of a {type(cls).__name__}, not a callable, at offset {r.pos}")
            pair = cls.pair if isinstance(cls, Global) else None
            wrapper = pair == WRAPPER
            if pair in _RECONSTRUCTORS and isinstance(args, tuple) and args and mentions_wrapper(args[0]):
                wrapper, args = True, args[1:]
            if mentions_wrapper(args):
                raise NotPickle(f"joblib's array wrapper passed to {via} at offset {r.pos}")
            if isinstance(args, tuple):
                args = args[:MAX_CONTAINER]
            return Obj(cls.name if isinstance(cls, Global) else "?", args, wrapper)

        start = -1
        while True:
            if start < frame_end < r.pos:  # CPython never writes this; its C and Python unpicklers read it differently
                raise NotPickle(f"the opcode at offset {start} reads past the end of its frame (offset {frame_end})")
            start = r.pos
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
                if start < frame_end:
                    raise NotPickle(f"a frame opened inside another at offset {start}")
                n = unpack("<Q", r.read(8))
                if n > r.end - r.pos:
                    raise LoaderStops(f"a frame at offset {r.pos} runs past the end of the file")
                frame_end = r.pos + n
            elif code == 0x63 or code == 0x69:  # GLOBAL / INST "module\nname\n"
                module, name = utf8(r.line()), utf8(r.line())
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
                    push(Global(UNKNOWN_GLOBAL))
                else:
                    raise LoaderStops(f"STACK_GLOBAL of non-strings at offset {r.pos}")
            elif code in (0x82, 0x83, 0x84):  # EXT1/2/4: the copyreg extension registry
                r.read({0x82: 1, 0x83: 2, 0x84: 4}[code])
                self.note(UNKNOWN_GLOBAL)
                push(Global(UNKNOWN_GLOBAL))
            elif code == 0x52:  # REDUCE
                args, func = pop(), pop()
                push(construct(func, args, "REDUCE"))
            elif code == 0x81:  # NEWOBJ
                args, cls = pop(), pop()
                push(construct(cls, args, "NEWOBJ"))
            elif code == 0x92:  # NEWOBJ_EX
                kwargs, args, cls = pop(), pop(), pop()
                if mentions_wrapper(kwargs):
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
                if isinstance(obj, Obj):
                    if obj.wrapper and joblib:
                        obj.state = wrapper_state(obj.state, state)
                        if r.pos < frame_end:
                            raise NotPickle(f"a joblib array inside a pickle frame at offset {r.pos}")
                        stack.pop()
                        push(self._skip_array(obj.state, depth))
                        frame_end = -1  # the frame ended before the array (checked above)
                    elif obj.wrapper:
                        obj.state = wrapper_state(obj.state, state)
                    else:
                        obj.state = state
            elif code in (0x50, 0x51):  # PERSID / BINPERSID: resolved by the loader's persistent_load
                if code == 0x50:
                    r.line()
                else:
                    pop()
                push(UNKNOWN)
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
                put(int_line(r.line(), 10))
            elif code == 0x71:
                put(r.read(1)[0])
            elif code == 0x72:
                put(unpack("<I", r.read(4)))
            elif code == 0x67:  # GET
                get(int_line(r.line(), 10))
            elif code == 0x68:
                get(r.read(1)[0])
            elif code == 0x6A:
                get(unpack("<I", r.read(4)))
            elif code == 0x5D:  # EMPTY_LIST
                push([])
            elif code == 0x29:  # EMPTY_TUPLE
                push(())
            elif code == 0x7D:  # EMPTY_DICT
                push({})
            elif code == 0x8F:  # EMPTY_SET
                push(Obj("builtins.set"))
            elif code == 0x61:  # APPEND
                value = pop()
                _extend(mutable(top(), "APPEND"), [value])
            elif code == 0x65:  # APPENDS
                items = pop_mark()
                _extend(mutable(top(), "APPENDS"), items)
            elif code == 0x90:  # ADDITEMS
                items = pop_mark()
                mutable(top(), "ADDITEMS")
                if any(mentions_wrapper(v) for v in items):
                    raise NotPickle(f"joblib's array wrapper added to a set at offset {r.pos}")
            elif code == 0x6C:  # LIST
                push(pop_mark()[:MAX_CONTAINER])
            elif code == 0x74:  # TUPLE
                push(tuple(pop_mark()[:MAX_CONTAINER]))
            elif code == 0x91:  # FROZENSET
                pop_mark()
                push(Obj("builtins.frozenset"))
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
                push(unpack("<i", r.read(4)))
            elif code == 0x4B:
                push(r.read(1)[0])
            elif code == 0x4D:
                push(unpack("<H", r.read(2)))
            elif code == 0x49:  # INT (also True/False as 00/01)
                text = r.line()
                push(True if text == b"01" else False if text == b"00" else int_line(text, 0))
            elif code == 0x4C:  # LONG
                text = r.line()
                push(int_line(text[:-1] if text.endswith(b"L") else text, 0))
            elif code == 0x8A:  # LONG1
                push(int.from_bytes(r.read(r.read(1)[0]), "little", signed=True))
            elif code == 0x8B:  # LONG4
                n = unpack("<i", r.read(4))
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
                push(string_operand(r.line(), r.pos))
            elif code == 0x56:  # UNICODE (raw-unicode-escape)
                try:
                    push(codecs.raw_unicode_escape_decode(r.line())[0])
                except UnicodeDecodeError:
                    raise LoaderStops(f"an undecodable UNICODE operand before offset {r.pos}") from None
            elif code == 0x54:  # BINSTRING
                n = unpack("<i", r.read(4))
                if n < 0:
                    raise LoaderStops("BINSTRING with a negative byte count")
                push(latin(r.value(n, False)))
            elif code == 0x55:  # SHORT_BINSTRING
                push(latin(r.value(r.read(1)[0], False)))
            elif code == 0x8C:  # SHORT_BINUNICODE
                push(r.value(r.read(1)[0], True))
            elif code == 0x58:  # BINUNICODE
                push(r.value(unpack("<I", r.read(4)), True))
            elif code == 0x8D:  # BINUNICODE8
                push(r.value(unpack("<Q", r.read(8)), True))
            elif code == 0x43:  # SHORT_BINBYTES
                push(r.value(r.read(1)[0], False))
            elif code == 0x42:  # BINBYTES
                push(r.value(unpack("<I", r.read(4)), False))
            elif code in (0x8E, 0x96):  # BINBYTES8, BYTEARRAY8
                push(r.value(unpack("<Q", r.read(8)), False))
            elif code == 0x97:  # NEXT_BUFFER (out-of-band data the loader supplies)
                push(UNKNOWN)
            elif code == 0x98:  # READONLY_BUFFER
                top()
            else:
                raise LoaderStops(f"unknown opcode 0x{code:02x} at offset {r.pos - 1}")

    def _skip_array(self, state: Any, depth: int) -> Obj:
        """The array bytes joblib reads right after a NumpyArrayWrapper (see the module docstring)."""
        if not isinstance(state, dict) or len(state) >= MAX_CONTAINER:
            raise NotPickle(f"a NumpyArrayWrapper without a readable state before offset {self.r.pos}")
        shape, dtype = state.get("shape"), state.get("dtype")
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise NotPickle(f"a NumpyArrayWrapper with an unreadable shape before offset {self.r.pos}")
        itemsize = element_size(dtype)
        if itemsize is None:  # the dtype has objects: joblib reads a nested pickle with a plain unpickler
            self.walk(depth + 1, joblib=False)
            self.scan.arrays += 1
            return Obj("numpy.ndarray")
        if state.get("numpy_array_alignment_bytes") is not None:
            self.r.skip(self.r.read(1)[0])
        count = 1
        for n in shape:
            count *= n
            if count * itemsize > self.r.end:
                raise NotPickle(f"an array of shape {shape} larger than the file before offset {self.r.pos}")
        array = Obj("numpy.ndarray")
        assert isinstance(dtype, Obj)  # element_size refused anything else
        array.args = ArrayInfo(dtype_name(dtype), shape, self.r.pos, count * itemsize, depth)
        self.r.skip(count * itemsize)
        self.scan.arrays += 1
        self.scan.found.append(array.args)
        return array


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


def walk_all(f: BinaryIO, size: int, scan: Scan, joblib: bool, plain_pass: bool = False, once: bool = False) -> None:
    reader = Reader(f, size)
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
    walk_all(f, size, scan, joblib=True)
    if scan.arrays:
        found, roots, complete, error = scan.found, scan.roots, scan.complete, scan.error
        f.seek(0)
        walk_all(f, size, scan, joblib=False, plain_pass=True)
        scan.found, scan.roots = found, roots
        if not complete:
            scan.complete, scan.error = False, error
    return scan


def scan_bytes(data: bytes) -> Scan:
    return scan_stream(io.BytesIO(data), len(data))
