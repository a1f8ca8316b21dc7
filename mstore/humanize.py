"""Human-friendly units for the CLI: byte sizes, durations, and terminal-safe text."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from .errors import BadInput

_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def parse_duration(text: str) -> float:
    """`0`, `90s`, `15m`, `2h`, `30d`, `1w` -> seconds."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if not match:
        raise BadInput(f"invalid duration {text!r}: use a number with s, m, h, d or w (e.g. 2h, 30d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_size(text: str) -> int:
    """`20G`, `500M`, `1.5GiB`, `800k`, `1024` -> bytes (powers of 1024)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise BadInput(f"invalid size {text!r}: use a number with K, M, G or T (e.g. 20G, 500M)")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


def parse_time(text: str, now: datetime) -> datetime:
    """`2026-11-01`, `2026-11-01T08:00`, `2026-11-01 08:00:00` (UTC) or a duration ago (`7d`, `12h`)."""
    try:
        return now - timedelta(seconds=parse_duration(text))
    except BadInput:
        pass
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    raise BadInput(f"invalid time {text!r}: use YYYY-MM-DD[THH:MM[:SS]] (UTC) or an age such as 7d or 12h")


def format_bytes(n: float) -> str:
    """`1.5 MiB`; a value no float can hold (from crafted metadata) prints as `?`, never raises."""
    try:
        n = float(n)
    except (OverflowError, TypeError, ValueError):
        return "?"
    if not math.isfinite(n):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """A short human form: `45s`, `12m 5s`, `3h 20m`, `2d 4h`."""
    sign = "-" if seconds < 0 else ""
    s = int(round(abs(seconds)))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h" if hours else f"{sign}{days}d"
    if hours:
        return f"{sign}{hours}h {minutes}m" if minutes else f"{sign}{hours}h"
    if minutes:
        return f"{sign}{minutes}m {secs}s" if secs else f"{sign}{minutes}m"
    return f"{sign}{secs}s"


def safe(text: object) -> str:
    """Escape control characters so stored text cannot drive the user's terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def nearest(word: str, candidates: Iterable[str], n: int = 3) -> str:
    """` (nearest: 'a', 'b')` naming the candidates closest to a mistyped `word`; when none is close,
    ` (it has: 'x', 'y', ...)` naming the first few, so the one line always says what would have worked."""
    names = sorted(set(candidates))
    close = difflib.get_close_matches(word, names, n=n, cutoff=0.5)
    if close:
        return " (nearest: " + ", ".join(repr(c) for c in close) + ")"
    if not names:
        return ""
    more = ", ..." if len(names) > n else ""
    return " (it has: " + ", ".join(repr(c) for c in names[:n]) + more + ")"
