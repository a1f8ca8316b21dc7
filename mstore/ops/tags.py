"""Naming versions: a tag points at one version; moving it needs `force`, and every change is under the write lock."""

from __future__ import annotations

from ..errors import TagExists, TagNotFound
from ..store import taglog
from ..store.layout import Store
from ..store.refs import check_tag_name
from .revparse import resolve


def tag(
    store: Store,
    name: str,
    ref: str = "latest",
    *,
    force: bool = False,
    message: str | None = None,
    signer: taglog.Signer | None = None,
) -> str:
    """Point tag `name` at the version `ref` names; returns its ID. Moving an existing tag needs `force`.
    The move is recorded in the tag's history, with `message`, signed by `signer` when given."""
    check_tag_name(name)
    with store.write_lock():
        version_id = resolve(store, ref)
        current = store.refs.tag(name)
        if current is not None and current != version_id and not force:
            raise TagExists(
                f"tag {name!r} already names version {current} (use {{force}} to move it)",
                force=("--force", "force=True"),
            )
        if signer is not None and current == version_id:
            raise TagExists(f"tag {name!r} already names {version_id}: there is no move to sign")
        store.refs.set_tag(name, version_id, message=message, signer=signer)
    return version_id


def untag(store: Store, name: str, *, message: str | None = None) -> str:
    """Delete a tag; returns the version it named (the deletion is recorded in its history)."""
    with store.write_lock():
        current = store.refs.tag(name)
        if current is None:
            raise TagNotFound(f"no tag named {name!r}")
        store.refs.delete_tag(name, message=message)
    return current


def history(store: Store, name: str) -> list[taglog.Move]:
    """The tag's recorded moves, oldest first (verified: CorruptRef when its chain does not verify)."""
    check_tag_name(name)
    moves = taglog.parse(store.refs.history_raw(name), f"refs/history/{name}")
    if not moves and store.refs.tag(name) is None:
        raise TagNotFound(f"no tag named {name!r} and no history of one")
    return moves
