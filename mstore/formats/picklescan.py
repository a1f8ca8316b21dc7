"""What a scan of one file found, and its verdict: the globals it imports, whether the walk reached the
end, and which of them are exact pairs of the allowlist (`allowlist.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import allowlist as _allow

UNKNOWN_GLOBAL = "?"  # a STACK_GLOBAL whose operands are not plain strings (computed names): always unsafe


def is_safe(name: str, allowed: frozenset[tuple[str, str]] = _allow.ALLOWED) -> bool:
    """Whether the recorded global `name` (`module.Name` or `module:dotted.name`) is an exact allowlist pair."""
    pair = _allow.from_display(name)
    return pair is not None and pair in allowed


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
