"""Issue 21, the property: a pickle the verdict calls safe never makes the loader import a callable outside
the allowlist. Pickles are generated from allowed and disallowed globals and a mix of the opcodes that
name them (GLOBAL, STACK_GLOBAL through the memo, escaped STRING / UNICODE operands, every integer form,
protocol changes), then loaded in a child process (one per batch) by pickle's own unpickler whose
`find_class` records what it is asked for, resolved as `find_class` resolves it, and imports only
allowlisted pairs (a disallowed one is recorded and refused, never imported)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mstore.formats import allowlist as A
from mstore.formats import pickles as P

from helpers import examples

ALLOWED = sorted(A.ALLOWED)
SAMPLE_ALLOWED = [("builtins", "set"), ("collections", "OrderedDict"), ("builtins", "list"), ("numpy", "dtype")]
DISALLOWED = [("os", "system"), ("builtins", "eval"), ("joblib.numpy_pickle", "os.popen"), ("numpy", "load")]
NAMES = SAMPLE_ALLOWED + DISALLOWED + [("__builtin__", "set"), ("copy_reg", "_reconstructor"), ("builtins", "str")]

CHILD = r"""
import io, json, pickle, sys, _compat_pickle
allowed = {tuple(p) for p in json.loads(sys.stdin.readline())}
cases = json.loads(sys.stdin.readline())

class Recorder(pickle._Unpickler):
    def find_class(self, module, name):
        if self.proto < 3 and self.fix_imports:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        self.seen.append([module, name])
        if (module, name) not in allowed:
            raise pickle.UnpicklingError("refused")
        return super().find_class(module, name)

out = []
for hexdata in cases:
    r = Recorder(io.BytesIO(bytes.fromhex(hexdata)))
    r.seen = []
    try:
        r.load()
    except BaseException:
        pass
    out.append(r.seen)
print(json.dumps(out))
"""


def _string(text: str, how: int) -> bytes:
    data = text.encode()
    if how == 0:
        return b"\x8c" + bytes([len(data)]) + data  # SHORT_BINUNICODE
    if how == 1:
        return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE
    if how == 2:  # STRING with every character escaped
        return b"S'" + "".join(f"\\x{ord(c):02x}" for c in text).encode() + b"'\n"
    return b"V" + "".join(f"\\u{ord(c):04x}" for c in text).encode() + b"\n"  # UNICODE, escaped


def _int(value: int, how: int) -> bytes:
    return [b"I%d\n" % value, b"I0x%x\n" % value, b"L%dL\n" % value, b"J" + struct.pack("<i", value)][how]


@st.composite
def programs(draw: st.DrawFn) -> bytes:
    out = bytearray(b"\x80" + bytes([draw(st.integers(0, 5))]))
    memo = 0
    for _ in range(draw(st.integers(1, 4))):
        module, name = draw(st.sampled_from(NAMES))
        kind = draw(st.integers(0, 3))
        if kind == 0:  # GLOBAL
            out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        elif kind == 1:  # STACK_GLOBAL of two strings
            out += _string(module, draw(st.integers(0, 3))) + _string(name, draw(st.integers(0, 3))) + b"\x93"
        else:  # STACK_GLOBAL through the memo, strings put first and fetched back
            out += _string(module, draw(st.integers(0, 3))) + b"\x94" + _string(name, draw(st.integers(0, 3)))
            out += b"\x94" + b"00" + b"h" + bytes([memo]) + b"h" + bytes([memo + 1]) + b"\x93"
            memo += 2
        if draw(st.booleans()):
            out += _int(draw(st.integers(0, 200)), draw(st.integers(0, 3))) + b"0"  # an integer, popped
        if draw(st.booleans()):
            out += b"\x80" + bytes([draw(st.integers(0, 5))])  # the protocol changes mid-stream
        out += b")R0" if draw(st.booleans()) else b"0"  # call it with no arguments, or drop it
    out += b"N."
    return bytes(out)


def _load_in_child(cases: list[bytes]) -> list[list[tuple[str, str]]]:
    stdin = json.dumps(ALLOWED) + "\n" + json.dumps([c.hex() for c in cases]) + "\n"
    done = subprocess.run([sys.executable, "-c", CHILD], input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [[(m, n) for m, n in seen] for seen in json.loads(done.stdout)]


@settings(
    max_examples=examples(4), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(st.lists(programs(), min_size=25, max_size=25))
def test_a_pickle_called_safe_never_imports_outside_the_allowlist(cases: list[bytes]) -> None:
    loaded = _load_in_child(cases)
    for data, seen in zip(cases, loaded, strict=True):
        scan = P.scan_bytes(data)
        if scan.verdict == "safe":
            assert all(pair in A.ALLOWED for pair in seen), (data, seen, scan.globals)
        outside = [pair for pair in seen if pair not in A.ALLOWED]
        if outside:  # and the name the loader was refused is the one the verdict names
            assert A.display(*outside[0]) in scan.unsafe, (data, seen, scan.globals)
