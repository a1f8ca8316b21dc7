"""The on-disk store: its layout, its config (format version, chunker) and its locks.

<root>/mstore.json        format version and chunker parameters
<root>/objects/ab/cdef…   content-addressed objects
<root>/version_<ID>/      metadata.json + metadata.b3
<root>/refs/latest        newest version ID
<root>/refs/tags/<name>   tags
<root>/tmp/               staging and trash (same filesystem, so renames are atomic)
<root>/locks/             flock files: `write` (publishing, refs) and `gc` (shared by saves)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import fsutil
from .chunking import Chunker, ModelAwareChunker, chunker_from_config
from .errors import CorruptVersion, StoreNotFound, UnsupportedFormat
from .ingest import Compression
from .manifest import Manifest
from .objects import ObjectStore, is_oid
from .refs import Refs
from .versions import PREFIX, VersionStore

# 2: encoded objects (zstd, byte groups, deltas) and model-aware chunking; 3: byte planes stored raw or
# compressed each on its own (codecs 4 and 5), which format-2 readers cannot decode
STORE_FORMAT = 3
CONFIG = "mstore.json"


class Store:
    """An opened store directory. Higher layers go through its parts, never through raw paths."""

    def __init__(self, root: Path, config: dict[str, Any]) -> None:
        self.root = root
        self.config = config
        self.format = int(config["format"])
        self.objects = ObjectStore(root / "objects", envelopes=self.format >= 2)
        self.tmp = root / "tmp"
        self.versions = VersionStore(root, self.tmp)
        self.refs = Refs(root / "refs")
        self.locks = root / "locks"

    @property
    def chunker(self) -> Chunker:
        return chunker_from_config(self.config["chunker"])

    @property
    def compression(self) -> Compression | None:
        """How new objects are encoded (None: raw, as in format-1 stores)."""
        cfg = self.config.get("compression")
        if self.format < 2 or not isinstance(cfg, dict):
            return None
        return Compression(
            level=int(cfg.get("tensor_level") or cfg.get("zstd_level") or 1),
            opaque_level=int(cfg.get("opaque_level", 3)),
            delta=bool(cfg.get("delta", True)),
            planes=self.format >= 3 and bool(cfg.get("planes", False)),
        )

    @classmethod
    def init(cls, root: Path, like: Store | Mapping[str, Any] | None = None) -> Store:
        """Create a store at `root` (an empty or new directory); opening an existing store is fine.

        `like` (a store or its config) gives the format, chunker and compression, so the two dedup
        against each other.
        """
        root = Path(root)
        if (root / CONFIG).exists():
            return cls.open(root)
        if root.exists() and not root.is_dir():
            raise StoreNotFound(f"{root} exists and is not a directory")
        if root.is_dir() and any(n.startswith(PREFIX) for n in os.listdir(root)):
            raise StoreNotFound(
                f"{root} holds version_* folders but no {CONFIG}: it is not an mstore store "
                "(choose another directory, or move those folders away)"
            )
        fsutil.make_dir(root, parents=True)
        for sub in ("objects", "refs", "refs/tags", "tmp", "locks"):
            fsutil.make_dir(root / sub)
        config = {
            "format": STORE_FORMAT,
            "chunker": ModelAwareChunker().config(),
            "compression": {
                "codec": "zstd",
                "tensor_level": 1,
                "opaque_level": 3,
                "byte_grouping": True,
                "delta": True,
                "planes": True,
            },
        }
        if like is not None:
            source = like.config if isinstance(like, Store) else like
            config = {k: v for k, v in source.items() if k != "remotes"}
            fmt = config.get("format")
            if not isinstance(fmt, int) or fmt > STORE_FORMAT:
                raise UnsupportedFormat(f"the other store uses format {fmt!r}: upgrade mstore")
        with fsutil.file_lock(root / "locks" / "write"):
            if not (root / CONFIG).exists():
                fsutil.atomic_write(root / CONFIG, _config_bytes(config))
        return cls.open(root)

    @classmethod
    def open(cls, root: Path) -> Store:
        root = Path(root)
        try:
            raw = (root / CONFIG).read_bytes()
        except FileNotFoundError:
            raise StoreNotFound(f"no mstore store at {root} (run `mstore init` or save a model first)") from None
        except NotADirectoryError:
            raise StoreNotFound(f"no mstore store at {root}") from None
        try:
            config = json.loads(raw)
            fmt = config["format"]
            chunker_from_config(config["chunker"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreNotFound(f"{root / CONFIG} is not a valid mstore config ({exc})") from None
        if not isinstance(fmt, int) or fmt > STORE_FORMAT:
            raise UnsupportedFormat(
                f"the store at {root} uses format {fmt!r}; this mstore understands format {STORE_FORMAT} "
                "or older: upgrade mstore"
            )
        return cls(root, config)

    def save_config(self) -> None:
        """Rewrite mstore.json atomically (callers hold the write lock)."""
        fsutil.atomic_write(self.root / CONFIG, _config_bytes(self.config))

    def read_manifest(self, oid: str) -> Manifest:
        """A manifest object, hash-verified and strictly decoded."""
        return Manifest.decode(self.objects.read(oid))

    def version_manifest(self, version_id: str, meta: dict[str, Any] | None = None) -> Manifest:
        """The manifest a version's metadata points at."""
        meta = self.versions.read(version_id) if meta is None else meta
        return self.read_manifest(manifest_id(meta, version_id))

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Serialises publishing versions and changing refs."""
        with fsutil.file_lock(self.locks / "write"):
            yield

    @contextmanager
    def gc_lock(self, *, exclusive: bool = False) -> Iterator[None]:
        """Saves hold it shared for their whole run; gc holds it exclusive, so gc never sees half a save."""
        with fsutil.file_lock(self.locks / "gc", shared=not exclusive):
            yield


def manifest_id(meta: dict[str, Any], version_id: str) -> str:
    """The manifest object id recorded in a version's metadata (`mstore.manifest`)."""
    block = meta.get("mstore")
    oid = block.get("manifest") if isinstance(block, dict) else None
    if not is_oid(oid):
        raise CorruptVersion(f"version_{version_id}: metadata has no valid mstore.manifest")
    assert isinstance(oid, str)
    return oid


def _config_bytes(config: dict[str, Any]) -> bytes:
    return (json.dumps(config, indent=2) + "\n").encode()
