"""Removing versions: one by name (`rm`), or every version outside the retention rules (`prune`).

Refs go first and the version by one rename (store/commit.py); the objects only it used are freed by gc.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..store import commit
from ..store.layout import Store
from . import gc
from .retention import PrunePlan, plan_prune
from .revparse import resolve


def remove(store: Store, ref: str, *, force: bool = False) -> tuple[str, list[str]]:
    """Delete a version; returns (its ID, the tags removed with it). A tagged version needs `force`."""
    with store.write_lock():
        version_id = resolve(store, ref)
        return version_id, commit.remove(store, version_id, force=force)


def prune(
    store: Store,
    *,
    keep_last: int | None = None,
    keep_within: float | None = None,
    dry_run: bool = False,
    grace_seconds: float = gc.DEFAULT_GRACE_SECONDS,
) -> tuple[PrunePlan, gc.GcPlan | None]:
    """Remove the versions outside the retention rules (tagged ones are always kept), then gc."""
    now = datetime.now(timezone.utc)
    if dry_run:
        plan = plan_prune(store.versions.ids(), store.refs.tags(), now, keep_last=keep_last, keep_within=keep_within)
        return plan, None
    with store.write_lock():
        plan = plan_prune(store.versions.ids(), store.refs.tags(), now, keep_last=keep_last, keep_within=keep_within)
        for version_id in plan.remove:
            commit.remove(store, version_id)
    return plan, gc.collect(store, grace_seconds=grace_seconds)
