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

The parts, one job each (this module is their one public face: import from here):
`pickleops.py` (opcodes, operands, limits, the bounded reader), `picklescan.py` (what a scan found and its
verdict), `joblibwrap.py` (joblib's array wrapper as joblib reads it), `picklewalk.py` (the walker, and one
file walked as each loader reads it), `picklefiles.py` (which files are pickles, compressed joblib files,
torch zips, the stat fingerprint).
"""

from __future__ import annotations

from .joblibwrap import WRAPPER, name_arrays
from .picklefiles import (
    COMPRESSED_SUFFIXES,
    PICKLE_SUFFIXES,
    fingerprint,
    joblib_arrays,
    scan_file,
    scan_named,
    scan_source,
    unchanged,
)
from .pickleops import (
    MAX_CONTAINER,
    MAX_INFLATE_RATIO,
    MAX_INFLATED,
    MAX_KEPT_STRING,
    MAX_LINE,
    MAX_MARKS,
    MAX_MEMO,
    MAX_NESTED,
    MAX_OPS,
    MAX_STACK,
    MAX_ZIP_PICKLE,
    OPCODE_BYTES,
    LoaderStops,
    NotPickle,
    looks_like_pickle,
)
from .picklescan import UNKNOWN_GLOBAL, ArrayInfo, Scan, is_safe
from .picklewalk import scan_bytes, scan_stream

__all__ = [
    "COMPRESSED_SUFFIXES",
    "MAX_CONTAINER",
    "MAX_INFLATED",
    "MAX_INFLATE_RATIO",
    "MAX_KEPT_STRING",
    "MAX_LINE",
    "MAX_MARKS",
    "MAX_MEMO",
    "MAX_NESTED",
    "MAX_OPS",
    "MAX_STACK",
    "MAX_ZIP_PICKLE",
    "OPCODE_BYTES",
    "PICKLE_SUFFIXES",
    "UNKNOWN_GLOBAL",
    "WRAPPER",
    "ArrayInfo",
    "LoaderStops",
    "NotPickle",
    "Scan",
    "fingerprint",
    "is_safe",
    "joblib_arrays",
    "looks_like_pickle",
    "name_arrays",
    "scan_bytes",
    "scan_file",
    "scan_named",
    "scan_source",
    "scan_stream",
    "unchanged",
]
