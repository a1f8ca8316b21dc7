"""`rm --remote` and `prune --remote`: remove versions from a remote through the `Remote` interface only.

Both run under the remote's exclusive `rm` lock (no push or gc beside them) and only remove version
records and refs; the objects they alone used stay until `gc --remote NAME` collects them.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime
from functools import partial

from ..errors import BadInput, CorruptRef, StoreNotFound, VersionNotFound
from ..ops.retention import PrunePlan, plan_prune
from ..ops.revparse import resolve_in
from ..store.refs import LATEST, is_version_id
from ..store.versions import PREFIX
from .remotes import Remote, tag_of


def _require_store(remote: Remote) -> None:
    if remote.config() is None:
        raise StoreNotFound(f"remote {remote.url}: no mstore store there (push to it first)")


def remove(remote: Remote, ref: str, *, force: bool = False) -> tuple[str, list[str]]:
    """Remove the version `ref` names on the remote; returns (its ID, the tags removed with it)."""
    _require_store(remote)
    with remote.lock("rm"):
        try:
            version_id = resolve_in(ref, remote.version_ids(), partial(tag_of, remote))
        except VersionNotFound:
            bare = ref[len(PREFIX) :] if ref.startswith(PREFIX) else ref
            if not (is_version_id(bare) and bare in remote.pending_version_ids()):
                raise
            version_id = bare  # a record left by an interrupted rm (or push): finish removing it
        return version_id, remote.remove_version(version_id, force=force)


def _plan(remote: Remote, now: datetime, keep_last: int | None, keep_within: float | None) -> PrunePlan:
    ids = remote.version_ids()
    tags = {}
    for name in remote.tag_names():
        with suppress(BadInput, CorruptRef):  # an unreadable tag protects nothing; fsck --remote reports it
            target = remote.get_ref(f"tags/{name}")[0]
            if target is not None:
                tags[name] = target
    latest = None
    with suppress(CorruptRef):
        latest = remote.get_ref(LATEST)[0]
    return plan_prune(ids, tags, now, keep_last=keep_last, keep_within=keep_within, latest=latest)


def prune(
    remote: Remote,
    now: datetime,
    *,
    keep_last: int | None = None,
    keep_within: float | None = None,
    dry_run: bool = False,
) -> PrunePlan:
    """Remove the remote's versions outside the retention rules (tags, `latest` and the newest are kept)."""
    _require_store(remote)
    if dry_run:
        return _plan(remote, now, keep_last, keep_within)
    with remote.lock("rm"):
        plan = _plan(remote, now, keep_last, keep_within)
        for version_id in plan.remove:
            remote.remove_version(version_id)
    return plan
