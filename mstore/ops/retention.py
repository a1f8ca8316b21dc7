"""Retention rules for `prune`: which versions to keep, as a pure function of IDs, tags and time.

Kept: the newest `keep_last` versions, every version younger than `keep_within` seconds, every tagged
version (a tag is how a user archives a version), always the newest version, and the version a store's
`latest` ref names when it is given (a remote's `latest` is a ref others pull by).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..errors import BadInput
from ..store.versions import parse_id_time


@dataclass(frozen=True)
class PrunePlan:
    keep: tuple[str, ...]
    remove: tuple[str, ...]
    reasons: Mapping[str, tuple[str, ...]]  # kept version -> why ("last", "within", "tag:NAME", "newest", "latest")


def plan_prune(
    ids: Sequence[str],
    tags: Mapping[str, str],
    now: datetime,
    *,
    keep_last: int | None = None,
    keep_within: float | None = None,
    latest: str | None = None,
) -> PrunePlan:
    """Decide what `prune` keeps and removes; `ids` are oldest first, as the store lists them."""
    if keep_last is None and keep_within is None:
        raise BadInput(
            "prune needs {last} and/or {within}",
            last=("--keep-last N", "keep_last=N"),
            within=("--keep-within DURATION", "keep_within=SECONDS"),
        )
    if keep_last is not None and keep_last < 0:
        raise BadInput("{last} must be 0 or more", last=("--keep-last", "keep_last"))
    reasons: dict[str, list[str]] = {}
    if ids:
        reasons.setdefault(ids[-1], []).append("newest")
    if latest is not None and latest in ids:
        reasons.setdefault(latest, []).append("latest")
    if keep_last:
        for vid in ids[-keep_last:]:
            reasons.setdefault(vid, []).append("last")
    if keep_within is not None:
        for vid in ids:
            if (now - parse_id_time(vid)).total_seconds() <= keep_within:
                reasons.setdefault(vid, []).append("within")
    for name, vid in sorted(tags.items()):
        if vid in ids:
            reasons.setdefault(vid, []).append(f"tag:{name}")
    keep = tuple(v for v in ids if v in reasons)
    remove = tuple(v for v in ids if v not in reasons)
    return PrunePlan(keep, remove, {v: tuple(r) for v, r in reasons.items()})
