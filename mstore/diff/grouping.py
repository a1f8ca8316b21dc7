"""Readable lists of many names: natural order (`[2]` before `[10]`) and long runs that share a prefix
folded into one line with a count (`estimators_[0..49]`). Pure functions; `--json` keeps every name."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

GROUP_MIN = 10  # more than this many names under one prefix become one group

_PART = re.compile(r"(\d+)")
_FIRST_INDEX = re.compile(r"^(.*?)(\d+)(\]?)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that compares digit runs as numbers: `a[2]` < `a[10]`."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in _PART.split(name) if p != "")


def natural_sorted(names: Sequence[str]) -> list[str]:
    return sorted(names, key=natural_key)


@dataclass(frozen=True)
class Group:
    """One line of a folded list: a single name (`count == 1`, `label == name`) or a run of names
    sharing a prefix, labelled `prefix[lo..hi]`."""

    label: str
    names: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.names)


def _prefix(name: str) -> tuple[str, str, int] | None:
    """(text before the first number, `]` if it closes it, the number), or None without a number."""
    m = _FIRST_INDEX.match(name)
    return (m.group(1), m.group(3), int(m.group(2))) if m else None


def group_names(names: Sequence[str], min_group: int = GROUP_MIN) -> list[Group]:
    """Names in natural order; more than `min_group` names with the same prefix (the text before their
    first number) fold into one Group at the place of the first of them. `min_group <= 0`: no folding."""
    ordered = natural_sorted(names)
    by_prefix: dict[tuple[str, str], list[str]] = {}
    for name in ordered:
        p = _prefix(name)
        if p is not None:
            by_prefix.setdefault((p[0], p[1]), []).append(name)
    folded = {k: v for k, v in by_prefix.items() if min_group > 0 and len(v) > min_group}
    out: list[Group] = []
    placed: set[tuple[str, str]] = set()
    for name in ordered:
        p = _prefix(name)
        key = (p[0], p[1]) if p is not None else None
        if key is None or key not in folded:
            out.append(Group(name, (name,)))
            continue
        if key in placed:
            continue
        placed.add(key)
        members = folded[key]
        numbers = [n[2] for n in (_prefix(m) for m in members) if n is not None]
        lo, hi = min(numbers), max(numbers)
        label = f"{key[0]}{lo}..{hi}{key[1]}" if lo != hi else f"{key[0]}{lo}{key[1]}*"
        out.append(Group(label, tuple(members)))
    return out
