"""Issue 21, the property: a pickle the verdict calls safe never makes the loader import a callable outside
the allowlist. Pickles are generated from allowed and disallowed globals and a mix of the opcodes that
name them (GLOBAL, STACK_GLOBAL through the memo, escaped STRING / UNICODE operands, every integer form,
protocol changes), then loaded in a child process (one per batch) twice:

- by pickle's pure-Python unpickler whose `find_class` records what it is asked for, resolved as
  `find_class` resolves it, and imports only allowlisted pairs (a disallowed one is recorded and refused);
- by the C unpickler `pickle.loads` itself, untouched, under `sys.addaudithook`: the hook observes the
  `pickle.find_class` audit event the loader raises before every import, records it and aborts the load
  on a pair outside the allowlist (so nothing disallowed is ever imported, in either pass).

Either loader asking for a pair outside the allowlist in a file the verdict calls safe fails the test."""

from __future__ import annotations

import _compat_pickle
import json
import struct
import subprocess
import sys
from pathlib import Path

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

recorded = []
for hexdata in cases:
    r = Recorder(io.BytesIO(bytes.fromhex(hexdata)))
    r.seen = []
    try:
        r.load()
    except BaseException:
        pass
    recorded.append(r.seen)

def resolved(module, name):
    # the event carries the names as the pickle spells them; the C loader then applies the protocol-2
    # renames of _compat_pickle (proto < 3), so a pair is allowed when either spelling is
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name

audited = []
def hook(event, args):
    if event == "pickle.find_class":
        module, name = args
        audited[-1].append([module, name])
        if (module, name) not in allowed and resolved(module, name) not in allowed:
            raise RuntimeError("refused by the audit hook")

sys.addaudithook(hook)
for hexdata in cases:
    audited.append([])
    try:
        pickle.loads(bytes.fromhex(hexdata))
    except BaseException:
        pass
print(json.dumps([recorded, audited]))
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


Pairs = list[tuple[str, str]]


def _load_in_child(cases: list[bytes], allowed: list[tuple[str, str]]) -> tuple[list[Pairs], list[Pairs]]:
    """What the recording unpickler asked for, and what the C unpickler's audit events named, per case."""
    stdin = json.dumps(allowed) + "\n" + json.dumps([c.hex() for c in cases]) + "\n"
    done = subprocess.run([sys.executable, "-c", CHILD], input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    recorded, audited = json.loads(done.stdout)
    return [[(m, n) for m, n in seen] for seen in recorded], [[(m, n) for m, n in seen] for seen in audited]


def _allowed(pair: tuple[str, str]) -> bool:
    """An audit event's pair (as spelled in the pickle) is allowed in either spelling, as the hook allows it."""
    module, name = pair
    mapped = _compat_pickle.NAME_MAPPING.get(pair, (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
    return pair in A.ALLOWED or mapped in A.ALLOWED


@settings(
    max_examples=examples(4), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(st.lists(programs(), min_size=25, max_size=25))
def test_a_pickle_called_safe_never_imports_outside_the_allowlist(cases: list[bytes]) -> None:
    loaded, audited = _load_in_child(cases, ALLOWED)
    for data, seen, events in zip(cases, loaded, audited, strict=True):
        scan = P.scan_bytes(data)
        if scan.verdict == "safe":
            assert all(pair in A.ALLOWED for pair in seen), (data, seen, scan.globals)
            assert all(_allowed(pair) for pair in events), (data, events, scan.globals)
        outside = [pair for pair in seen if pair not in A.ALLOWED]
        if outside:  # and the name the loader was refused is the one the verdict names
            assert A.display(*outside[0]) in scan.unsafe, (data, seen, scan.globals)


def test_the_audit_hook_sees_what_the_c_unpickler_imports_and_stops_it(tmp_path: Path) -> None:
    """The child's second pass is a real observer: the C unpickler's events name the pairs as spelled
    (before the protocol-2 renames), a disallowed one is stopped before it is imported or called."""
    marker = tmp_path / "RAN"
    cmd = f"touch {marker}".encode()
    system = b"\x80\x02cos\nsystem\nX" + struct.pack("<I", len(cmd)) + cmd + b"\x85R."
    renamed = b"\x80\x02c__builtin__\nset\n)R."
    _recorded, audited = _load_in_child([system, renamed], ALLOWED)
    assert audited == [[("os", "system")], [("__builtin__", "set")]]
    assert not marker.exists()
    _recorded, audited = _load_in_child([system], [*ALLOWED, ("os", "system")])  # allowed: it runs
    assert audited == [[("os", "system")]] and marker.exists()
