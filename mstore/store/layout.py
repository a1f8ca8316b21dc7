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

import copy
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import blake3

from ..errors import (
    CorruptConfig,
    CorruptVersion,
    IntegrityError,
    MStoreError,
    StoreNotFound,
    UnsafeLayout,
    UnsupportedFormat,
)
from . import fsutil
from .chunking import JOBLIB_MIN, Chunker, ModelAwareChunker, chunker_from_config
from .codec import Compression
from .manifest import Manifest
from .objects import ObjectStore, is_oid
from .refs import Refs
from .versions import PREFIX, VersionStore

# 2: encoded objects (zstd, byte groups, deltas) and model-aware chunking; 3: byte planes stored raw or
# compressed each on its own (codecs 4 and 5), which format-2 readers cannot decode
STORE_FORMAT = 3
CONFIG = "mstore.json"
MAX_CONFIG_BYTES = 1 << 20
LAYOUT_DIRS = ("objects", "refs", "refs/tags", "tmp", "locks", "cache")  # never symlinks (cache: lazily made)


def layout_problems(root: Path) -> list[str]:
    """Why the store's fixed directories cannot be trusted (a symlink or a file where a directory
    belongs): writes and deletes there would land outside the store."""
    problems = []
    for sub in LAYOUT_DIRS:
        try:
            fsutil.check_real_dir(root / sub, f"{sub}/")
        except IntegrityError as exc:
            problems.append(str(exc))
    return problems


def validate_config(config: Any, where: str) -> dict[str, Any]:
    """Check a store config (local, or read from a remote) so that no later command trips over it."""

    def bad(reason: str) -> CorruptConfig:
        return CorruptConfig(f"{where} is not a valid mstore config ({reason})")

    if not isinstance(config, dict):
        raise bad("not a JSON object")
    fmt = config.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise bad("format must be a positive integer")
    if fmt > STORE_FORMAT:
        raise UnsupportedFormat(
            f"{where} uses format {fmt}; this mstore understands format {STORE_FORMAT} or older: upgrade mstore"
        )
    chunker = config.get("chunker")
    try:
        if not isinstance(chunker, dict):
            raise ValueError("chunker must be an object")
        chunker_from_config(chunker)
    except (ValueError, TypeError) as exc:
        raise bad(str(exc)) from None
    compression = config.get("compression")
    if compression is not None:
        if not isinstance(compression, dict):
            raise bad("compression must be an object")
        for key in ("tensor_level", "zstd_level", "opaque_level"):
            level = compression.get(key)
            if level is not None and (not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 22):
                raise bad(f"compression.{key} must be an integer from 1 to 22")
        for key in ("delta", "byte_grouping", "planes"):
            if key in compression and not isinstance(compression[key], bool):
                raise bad(f"compression.{key} must be true or false")
        if compression.get("codec", "zstd") != "zstd":
            raise bad("compression.codec must be 'zstd'")
    remotes = config.get("remotes")
    if remotes is not None and not (
        isinstance(remotes, dict)
        and all(isinstance(v, dict) and isinstance(v.get("url"), str) for v in remotes.values())
    ):
        raise bad("remotes must map names to {url: ...}")
    return config


class Store:
    """An opened store directory. Higher layers go through its parts, never through raw paths."""

    # True for a remote's metadata mirror (remote/mirror.py): it holds no model bytes, so readers show the
    # metadata's own claims (the pickle verdict) instead of fetching the model to check them.
    metadata_only = False

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
            grouping=bool(cfg.get("byte_grouping", True)),
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
            "chunker": ModelAwareChunker(joblib_min=JOBLIB_MIN).config(),
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
            validate_config(config, "the other store's config")
        with fsutil.file_lock(root / "locks" / "write"):
            if not (root / CONFIG).exists():
                fsutil.atomic_write(root / CONFIG, config_bytes(config))
        return cls.open(root)

    @classmethod
    def open(cls, root: Path, *, strict: bool = True, api_option: str = "base_dir=") -> Store:
        """Open an existing store. A layout with symlinks (or files) where its directories belong
        (UnsafeLayout) or an mstore.json that fails its checksum (CorruptConfig) is refused unless
        `strict` is False, which only fsck uses, to report them. `api_option` is the Python parameter a
        missing store's message suggests (`store=` for model_path)."""
        root = Path(root)
        fsutil.keep_freed_memory()  # every command that reads or writes objects opens its store first
        try:
            raw = fsutil.read_regular(root / CONFIG, MAX_CONFIG_BYTES)
        except (FileNotFoundError, NotADirectoryError):
            raise StoreNotFound(
                f"no mstore store at {os.path.abspath(root)} (nothing was saved there yet; save a model to create "
                "it, or point to another store with {where})",
                where=("--store DIR or MSTORE_DIR", api_option),
            ) from None
        except IntegrityError as exc:
            raise CorruptConfig(f"no usable mstore store at {root}: {exc}") from None
        config = parse_config(raw, str(root / CONFIG), check=strict)  # fsck reads on, and reports the damage
        if strict and (problems := layout_problems(root)):
            raise UnsafeLayout(f"the store at {root} is unsafe to use: {problems[0]}")
        return cls(root, config)

    def listed_once(self) -> Store:
        """This store with its versions listed at most once (see VersionStore.listed_once): for one request."""
        view = copy.copy(self)
        view.versions = self.versions.listed_once()
        return view

    def save_config(self) -> None:
        """Rewrite mstore.json atomically (callers hold the write lock)."""
        fsutil.atomic_write(self.root / CONFIG, config_bytes(self.config))

    def read_manifest(self, oid: str) -> Manifest:
        """A manifest object, hash-verified and strictly decoded."""
        return Manifest.decode(self.objects.read(oid))

    def version_manifest(self, version_id: str, meta: dict[str, Any] | None = None) -> Manifest:
        """The manifest a version's metadata points at, whose content must be the recorded `model_hash`."""
        meta = self.versions.read(version_id) if meta is None else meta
        manifest = self.read_manifest(manifest_id(meta, version_id))
        check_model_hash(meta, manifest, version_id)
        return manifest

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


def check_model_hash(meta: dict[str, Any], manifest: Manifest, version_id: str) -> None:
    """Refuse a version whose metadata claims other bytes than its manifest holds (a forged or
    mixed-up record): checkout, diff and pull would otherwise vouch for the wrong model."""
    if meta.get("model_hash") != manifest.model_hash:
        raise CorruptVersion(
            f"version_{version_id}: metadata says model_hash {str(meta.get('model_hash'))[:16]}..., "
            f"but its stored content hashes to {manifest.model_hash[:16]}... (run `mstore fsck`)"
        )


CHECKSUM_KEY = "b3"  # blake3 of the rest of mstore.json in canonical form; absent in files before it existed


def _canonical(config: dict[str, Any]) -> bytes:
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def config_bytes(config: dict[str, Any]) -> bytes:
    """mstore.json's content: the settings plus their checksum, so a flipped bit in a chunker size or
    codec flag is found (fsck) instead of silently changing how new versions are written."""
    settings = {k: v for k, v in config.items() if k != CHECKSUM_KEY}
    return (
        json.dumps({**settings, CHECKSUM_KEY: blake3.blake3(_canonical(settings)).hexdigest()}, indent=2) + "\n"
    ).encode()


def parse_config(raw: bytes, where: str, *, check: bool = True) -> dict[str, Any]:
    """Parse, checksum-verify (when the file carries a checksum and `check`) and validate a store config."""
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CorruptConfig(f"{where} is not a valid mstore config ({exc})") from None
    if isinstance(config, dict) and CHECKSUM_KEY in config:
        recorded = config.pop(CHECKSUM_KEY)
        if check and recorded != blake3.blake3(_canonical(config)).hexdigest():
            raise CorruptConfig(f"{where} does not match its checksum (edited or damaged); run `mstore fsck`")
    return validate_config(config, where)


def config_problems(root: Path) -> list[str]:
    """What is wrong with mstore.json on disk now (fsck re-reads it: the open store holds a parsed copy)."""
    try:
        parse_config(fsutil.read_regular(root / CONFIG, MAX_CONFIG_BYTES), f"{CONFIG}")
    except (MStoreError, OSError) as exc:
        return [str(exc)]
    return []
