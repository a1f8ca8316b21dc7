"""The remotes a store knows (`mstore.json`'s `remotes`), and the rules for naming one.

A remote is named (`origin`), or given as a URL: `s3://BUCKET/PREFIX`, `file:///PATH` or a directory
path, made absolute so the remote works from anywhere. Push and pull use the only remote, else `origin`,
as git does; commands that also take a URL (`mstore path --remote`) resolve a name first.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import BadInput, RemoteExists, RemoteNotFound
from ..ops.revparse import resolve_in
from ..store.layout import CONFIG, Store
from ..store.refs import check_tag_name
from .bucket import parse_s3_url
from .remotes import Remote, open_remote, remote_path, tag_of


def settings(store: Store) -> dict[str, dict[str, Any]]:
    """name -> {"url": ..., "endpoint_url": ... (when one was given)}, sorted by name."""
    remotes = store.config.get("remotes") or {}
    return {name: dict(info) for name, info in sorted(remotes.items()) if isinstance(info, dict)}


def urls(store: Store) -> dict[str, str]:
    return {name: str(info.get("url")) for name, info in settings(store).items()}


def normalise_url(url: str) -> str:
    """Validate a remote URL; a directory path is made absolute so the remote works from anywhere."""
    if url.startswith("s3://"):
        parse_s3_url(url)
        return url
    return str(remote_path(url).resolve())


def add(store: Store, name: str, url: str, *, endpoint_url: str | None = None) -> None:
    check_tag_name(name, what="remote")  # remote names follow the rules of tag names
    url = normalise_url(url)
    if endpoint_url and not url.startswith("s3://"):
        raise BadInput("{endpoint} only applies to s3:// remotes", endpoint=("--endpoint-url", "endpoint_url"))
    with store.write_lock():
        remotes = store.config.setdefault("remotes", {})
        if name in remotes:
            raise RemoteExists(f"remote {name!r} already exists")
        remotes[name] = {"url": url, **({"endpoint_url": endpoint_url} if endpoint_url else {})}
        store.save_config()


def remove(store: Store, name: str) -> None:
    with store.write_lock():
        remotes = store.config.get("remotes") or {}
        if name not in remotes:
            raise RemoteNotFound(f"no remote named {name!r}")
        del remotes[name]
        store.save_config()


def open_named(store: Store, name: str) -> Remote:
    info = settings(store).get(name)
    if info is None:
        raise RemoteNotFound(
            f"no remote named {name!r} (add one with {{add}})",
            add=(f"`mstore remote add {name} URL`", f"remote_add({name!r}, URL)"),
        )
    return open_remote(str(info["url"]), endpoint_url=info.get("endpoint_url"))


def default(store: Store) -> str:
    """The remote push and pull use when none is named: the only one, else `origin` (as git does)."""
    names = list(settings(store))
    if len(names) == 1:
        return names[0]
    if "origin" in names:
        return "origin"
    if not names:
        add = ("`mstore remote add NAME URL`", "remote_add(NAME, URL)")
        raise BadInput("no remote configured (add one with {add})", add=add)
    raise BadInput(f"{len(names)} remotes are configured ({', '.join(names)}): name the one to use")


def split_remote_and_refs(store: Store, args: list[str]) -> tuple[str, list[str]]:
    """Split `push`/`pull` arguments `[NAME] [REF]...`: a first word that names a remote is the remote
    (a remote wins over a tag of the same name); otherwise every word is a version and the remote is
    `default()`, so with one remote `mstore push prod` needs no name."""
    if args and args[0] in settings(store):
        return args[0], args[1:]
    return default(store), args


def locate(name_or_url: str, root: str | os.PathLike[str]) -> tuple[str, str | None]:
    """(URL, endpoint) of a remote named in the store at `root` (if there is one), or of a URL or directory
    given as is: what `--remote NAME|URL` means wherever no local store is needed."""
    if os.path.lexists(Path(root) / CONFIG):
        named = settings(Store.open(Path(root))).get(name_or_url)
        if named is not None:
            endpoint = named.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL") or None
            return str(named["url"]), endpoint
    if name_or_url.startswith("s3://"):
        return name_or_url, os.environ.get("AWS_ENDPOINT_URL") or None
    if "://" in name_or_url or "/" in name_or_url or name_or_url.startswith("."):
        return str(remote_path(name_or_url).resolve()), None
    raise RemoteNotFound(
        f"no remote named {name_or_url!r} in the store at {root} (give a URL: s3://BUCKET/PREFIX or a directory)"
    )


def resolve_on(other: Remote, refs: list[str]) -> list[str]:
    """The version IDs `refs` name on a remote (its tags and their histories, its `latest`), from one listing."""
    from .promote import remote_moves

    ids = other.version_ids()
    return [resolve_in(ref, ids, partial(tag_of, other), partial(remote_moves, other)) for ref in refs]
