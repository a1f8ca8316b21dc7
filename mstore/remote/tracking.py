"""What this store last saw of each remote's tags: the lease a push moves a remote tag under.

`refs/remotes/<key>.json` (`key`: the first 16 hex digits of the blake3 of the remote's URL, so a remote
reached by name or by URL shares one record): `{"format": 1, "url": URL, "tags": {name: version ID}}`,
updated after every push and pull that read or moved those tags. A push moves a remote tag only while
the remote still names what this record says (else someone else moved it since: a conflict); a pull
moves a local tag only while the local one still names it (else the user moved it here).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import blake3

from ..errors import BadInput, IntegrityError
from ..store import fsutil
from ..store.layout import Store
from ..store.refs import check_tag_name, is_version_id

FORMAT = 1
MAX_BYTES = 4 << 20


def _path(store: Store, url: str) -> Path:
    return store.refs.root / "remotes" / f"{blake3.blake3(url.encode()).hexdigest()[:16]}.json"


def seen(store: Store, url: str) -> dict[str, str]:
    """name -> version ID as this store last saw it on the remote at `url` (empty when never synced)."""
    path = _path(store, url)
    try:
        raw = fsutil.read_regular(path, MAX_BYTES)
    except FileNotFoundError:
        return {}
    except IntegrityError:
        return {}  # damaged: behave as if never synced (the safe side: no lease, so no silent move)
    try:
        doc = json.loads(raw)
        tags = doc["tags"] if isinstance(doc, dict) and doc.get("format") == FORMAT else {}
    except (UnicodeDecodeError, ValueError, KeyError):
        return {}
    out = {}
    for name, vid in tags.items() if isinstance(tags, dict) else []:
        try:
            check_tag_name(name)
        except BadInput:  # an unsafe name: ignored
            continue
        if is_version_id(vid):
            out[name] = vid
    return out


def update(store: Store, url: str, changes: Mapping[str, str | None]) -> None:
    """Record what the remote now names (None: the tag is gone there). Caller holds the write lock."""
    if not changes:
        return
    tags = seen(store, url)
    for name, vid in changes.items():
        if vid is None:
            tags.pop(name, None)
        else:
            tags[name] = vid
    path = _path(store, url)
    fsutil.make_dir(path.parent)
    doc = {"format": FORMAT, "url": url, "tags": dict(sorted(tags.items()))}
    fsutil.atomic_write(path, json.dumps(doc, indent=1).encode() + b"\n")
