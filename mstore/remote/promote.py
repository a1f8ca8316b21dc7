"""Promotions that travel: tags moved by push and pull under a lease, and tags moved on a remote directly.

The lease is what this store last saw of the remote's tag (tracking.py). Push moves a remote tag only
while the remote still names that version (or with `force`); pull moves a local tag only while the
local one still names it (the user did not move it here since). Otherwise the tag is a conflict, left
as it was on both sides. Every move is recorded in the tag's history (taglog.py), and histories merge
both ways: the records one side lacks are appended, never rewritten.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..errors import BadInput, CorruptRef, IntegrityError, TagExists, TagNotFound
from ..ops.revparse import resolve_in
from ..store import taglog
from ..store.identity import who
from ..store.layout import Store
from ..store.refs import check_tag_name
from . import tracking
from .bucket import PreconditionFailed
from .remotes import CAS_ATTEMPTS, Remote, tag_of


@dataclass(frozen=True)
class TagConflict:
    """A tag both sides moved (or that names different versions with no sync in between)."""

    tag: str
    ours: str | None
    theirs: str | None
    seen: str | None  # what this store last saw on the remote

    def message(self, verb: str, url: str) -> str:
        seen = f"last seen there: {self.seen}" if self.seen else "never synced before"
        if verb == "push":
            how = "`mstore pull` to take theirs, or `mstore push --force` to overwrite it"
        else:
            how = f"`mstore tag -f {self.tag} {self.theirs}` to take theirs, or `mstore push --force` to keep ours"
        return (
            f"tag {self.tag!r} moved on both sides: {url} names {self.theirs}, this store names {self.ours} "
            f"({seen}); left as it was: run {how}"
        )


def remote_moves(remote: Remote, tag: str) -> list[taglog.Move]:
    raw, _ = remote.get_history(tag)
    return taglog.parse(raw, f"{remote.url}: refs/history/{tag}")


def _merge_into_remote(remote: Remote, tag: str, ours: bytes | None, extra: list[taglog.Move]) -> None:
    """Append to the remote's history the records of `ours` it lacks, then `extra` (compare-and-swap)."""
    for _ in range(CAS_ATTEMPTS):
        theirs, token = remote.get_history(tag)
        try:
            merged = taglog.merge(theirs, ours, f"{remote.url}: refs/history/{tag}") or theirs
        except CorruptRef:
            return  # a damaged history there is never chained onto (fsck --remote reports it)
        if extra:
            merged = taglog.append(merged, extra)
        if merged == theirs or merged is None:
            return
        try:
            remote.set_history(tag, merged, token)
            return
        except PreconditionFailed:
            time.sleep(0.01)
    raise PreconditionFailed(f"{remote.url}: refs/history/{tag} keeps changing under us; try again")


def _merge_into_local(store: Store, remote: Remote, tag: str) -> list[taglog.Move]:
    """Append the remote's records we lack to our history (caller holds the write lock); returns our moves."""
    where = f"refs/history/{tag}"
    ours = store.refs.history_raw(tag)
    try:
        theirs, _ = remote.get_history(tag)
        merged = taglog.merge(ours, theirs, where)
    except CorruptRef:
        return taglog.parse(ours, where) if ours else []
    if merged is not None:
        store.refs.write_history(tag, merged)
        ours = merged
    return taglog.parse(ours, where)


def push_tags(
    store: Store, remote: Remote, wanted: set[str], *, force: bool = False
) -> tuple[list[str], list[TagConflict]]:
    """Create or move (under the lease) the remote tags of local tags naming `wanted` versions; returns
    (tags created or moved there, conflicts)."""
    seen = tracking.seen(store, remote.url)
    moved, conflicts, changes = [], [], {}
    for name, target in sorted(store.refs.tags().items()):
        if target not in wanted:
            continue
        lease, forced_over, behind = seen.get(name), None, False
        for _ in range(CAS_ATTEMPTS):
            current, token = remote.get_ref(f"tags/{name}")
            if current == target:
                break
            if current is not None and target == lease and not force:
                behind = True  # moved there, not here: nothing of ours to push (a pull takes theirs)
                break
            if current is not None and current != lease and not force:
                conflicts.append(TagConflict(name, target, current, lease))
                break
            try:
                remote.set_ref(f"tags/{name}", target, token)
            except PreconditionFailed:
                time.sleep(0.01)
                continue
            moved.append(name)
            forced_over = current if current is not None and current != lease else None
            break
        else:
            raise PreconditionFailed(f"{remote.url}: refs/tags/{name} keeps changing under us; try again")
        if behind or (conflicts and conflicts[-1].tag == name):
            continue
        extra = []
        if forced_over is not None:  # the remote's own history says what was overwritten, and by whom
            extra = [taglog.new_move(forced_over, target, who(), f"push --force over {forced_over}")]
        _merge_into_remote(remote, name, store.refs.history_raw(name), extra)
        changes[name] = target
    with store.write_lock():
        tracking.update(store, remote.url, changes)
    return moved, conflicts


def pull_tags(store: Store, remote: Remote, wanted: set[str]) -> tuple[list[str], list[TagConflict]]:
    """Create or move (when not moved here since the last sync) the local tags of remote tags naming
    `wanted` versions; returns (tags created or moved here, conflicts). A damaged or unsafe tag there is
    skipped."""
    theirs = {}
    for name in remote.tag_names():
        try:
            target = remote.get_ref(f"tags/{check_tag_name(name)}")[0]
        except (BadInput, IntegrityError):
            continue
        if target in wanted:
            theirs[name] = target
    changed, conflicts, changes = [], [], {}
    with store.write_lock():
        seen = tracking.seen(store, remote.url)
        for name, target in sorted(theirs.items()):
            try:
                current = store.refs.tag(name)
            except IntegrityError:  # a damaged tag here: left for fsck
                continue
            lease = seen.get(name)
            if current is not None and current != target and target == lease:
                continue  # moved here, not there: ours stays (a push sends it)
            if current is not None and current != target and current != lease:
                conflicts.append(TagConflict(name, current, target, lease))
                continue
            moves = _merge_into_local(store, remote, name)
            if current != target:
                explained = bool(moves) and moves[-1].target == target
                message = None if explained else f"pulled from {remote.url}"
                store.refs.set_tag(name, target, message=message, record=not explained)
                changed.append(name)
            changes[name] = target
        tracking.update(store, remote.url, changes)
    return changed, conflicts


def set_remote_tag(
    remote: Remote,
    name: str,
    ref: str,
    *,
    force: bool = False,
    message: str | None = None,
    signer: taglog.Signer | None = None,
) -> tuple[str, str | None]:
    """Point tag `name` on the remote at the version `ref` names there (moving one needs `force`), with a
    history record (signed by `signer` when given); returns (version ID, what it named before)."""
    check_tag_name(name)
    vid = resolve_in(ref, remote.version_ids(), partial(tag_of, remote), partial(remote_moves, remote))
    for _ in range(CAS_ATTEMPTS):
        current, token = remote.get_ref(f"tags/{name}")
        if current == vid:
            return vid, current
        if current is not None and not force:
            raise TagExists(
                f"tag {name!r} already names version {current} on {remote.url} (use {{force}} to move it)",
                force=("--force", "force=True"),
            )
        try:
            remote.set_ref(f"tags/{name}", vid, token)
        except PreconditionFailed:
            time.sleep(0.01)
            continue
        move = taglog.new_move(current, vid, who(), message)
        if signer is not None:  # `prev`: the remote's newest line as read now (a signature verifies either way)
            move = taglog.with_signature(move, signer(name, move, taglog.last_hash(remote.get_history(name)[0])))
        _merge_into_remote(remote, name, None, [move])
        return vid, current
    raise PreconditionFailed(f"{remote.url}: refs/tags/{name} keeps changing under us; try again")


def delete_remote_tag(remote: Remote, name: str, *, message: str | None = None) -> str:
    """Delete tag `name` on the remote, with a history record; returns the version it named."""
    check_tag_name(name)
    for _ in range(CAS_ATTEMPTS):
        current, token = remote.get_ref(f"tags/{name}")
        if current is None:
            raise TagNotFound(f"no tag named {name!r} on {remote.url}")
        try:
            remote.delete_ref(f"tags/{name}", token)
        except PreconditionFailed:
            time.sleep(0.01)
            continue
        _merge_into_remote(remote, name, None, [taglog.new_move(current, None, who(), message)])
        return current
    raise PreconditionFailed(f"{remote.url}: refs/tags/{name} keeps changing under us; try again")


def history_dicts(moves: list[taglog.Move]) -> list[dict[str, Any]]:
    """Newest first, as `tag --history --json` prints them."""
    return [m.as_dict() for m in reversed(taglog.ordered(moves))]
