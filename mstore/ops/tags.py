"""Naming versions: a tag points at one version; moving it needs `force`, and every change is under the write lock."""

from __future__ import annotations

from ..errors import TagExists, TagNotFound
from ..store.layout import Store
from ..store.refs import check_tag_name
from .revparse import resolve


def tag(store: Store, name: str, ref: str = "latest", *, force: bool = False) -> str:
    """Point tag `name` at the version `ref` names; returns its ID. Moving an existing tag needs `force`."""
    check_tag_name(name)
    with store.write_lock():
        version_id = resolve(store, ref)
        current = store.refs.tag(name)
        if current is not None and current != version_id and not force:
            raise TagExists(
                f"tag {name!r} already names version {current} (use {{force}} to move it)",
                force=("--force", "force=True"),
            )
        store.refs.set_tag(name, version_id)
    return version_id


def untag(store: Store, name: str) -> str:
    """Delete a tag; returns the version it named."""
    with store.write_lock():
        current = store.refs.tag(name)
        if current is None:
            raise TagNotFound(f"no tag named {name!r}")
        store.refs.delete_tag(name)
    return current
