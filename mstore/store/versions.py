"""Version directories: `version_<ID>/metadata.json` plus `metadata.b3`, published by one rename.

A version is staged complete in `tmp/` and renamed into place, so readers see all of it or none of
it. `metadata.b3` holds the blake3 of metadata.json's exact bytes in `b3sum` format (so
`b3sum --check metadata.b3` works inside the directory) and makes any damage to the metadata visible.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import blake3

from ..errors import CorruptVersion, IntegrityError, InvalidName, VersionNotFound
from . import fsutil, metadata
from .refs import describe_bad, is_version_id

PREFIX = "version_"
METADATA = "metadata.json"
CHECKSUM = "metadata.b3"
ID_FORMAT = "%Y%m%d_%H%M%S"
MAX_SUFFIX = 999
MAX_CHECKSUM_BYTES = 256  # "<64 hex>  metadata.json\n"
FUTURE_SKEW = timedelta(days=1)  # an ID further ahead of the clock came from a broken clock or an attacker


def parse_id_time(version_id: str) -> datetime:
    """The UTC time a version ID encodes (its suffix only orders saves within one second)."""
    return datetime.strptime(version_id[:15], ID_FORMAT).replace(tzinfo=timezone.utc)


def next_version_id(now: datetime, newest: str | None) -> str:
    """`YYYYMMDD_HHMMSS` in UTC; saves in the same second (or with a clock behind the newest version)
    continue after the newest ID with `_001`, `_002`, ... so plain string order is save order."""
    base = now.astimezone(timezone.utc).strftime(ID_FORMAT)
    if newest is None or base > newest[:15] or is_future(newest, now):
        return base  # a stored ID from the far future must never block saving
    second, suffix = newest[:15], newest[16:]
    n = int(suffix) + 1 if suffix else 1
    if n > MAX_SUFFIX:  # 1000 saves in one second: borrow the next second
        return (parse_id_time(second) + timedelta(seconds=1)).strftime(ID_FORMAT)
    return f"{second}_{n:03d}"


def is_future(version_id: str, now: datetime) -> bool:
    """True when the ID names a time more than FUTURE_SKEW ahead of `now` (refused from remotes)."""
    return parse_id_time(version_id) > now + FUTURE_SKEW


def saved_name(meta: dict[str, Any], version_id: str) -> str:
    """The directory name a directory model is checked out under by default: the last part of its
    `original_path`, which must be one safe path component (metadata may come from anyone's remote)."""
    original = meta.get("original_path")
    if original is None:
        return f"model-{version_id}"
    name = original.replace("\\", "/").rstrip("/").rpartition("/")[2] if isinstance(original, str) else ""
    if describe_bad(name) is not None or name in (".", "..") or name.startswith("-"):
        raise InvalidName(
            f"version {version_id} was saved from {safe_repr(original)}, which gives no safe directory name; "
            "choose one with -o PATH"
        )
    return name


def safe_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def newest(ids: list[str], now: datetime | None = None) -> str | None:
    """What `latest` means: the newest version not from the far future (a forged or mis-clocked ID must
    not stay `latest` forever); the newest of all only when every one is."""
    now = now or datetime.now(timezone.utc)
    return next((i for i in reversed(ids) if not is_future(i, now)), ids[-1] if ids else None)


def checksum_line(data: bytes) -> bytes:
    return f"{blake3.blake3(data).hexdigest()}  {METADATA}\n".encode()


def verified_metadata(version_id: str, data: bytes, recorded: bytes) -> dict[str, Any]:
    """Parse metadata.json's bytes after checking them against metadata.b3's (wherever both came from)."""
    where = f"{PREFIX}{version_id}"
    if recorded != checksum_line(data):
        raise CorruptVersion(f"{where}: {METADATA} does not match {CHECKSUM} (edited or damaged)")
    meta = metadata.loads(data, where)
    if meta.get("timestamp") != version_id:
        raise CorruptVersion(f"{where}: metadata timestamp {meta.get('timestamp')!r} does not match")
    return meta


class VersionStore:
    """The `version_*` directories at the store root; staging and trash live in `tmp/`."""

    def __init__(self, root: Path, tmp: Path, *, list_once: bool = False) -> None:
        self.root = root
        self.tmp = tmp
        self._list_once = list_once
        self._listing: list[str] | None = None

    def listed_once(self) -> VersionStore:
        """The same directory, listed at most once: one consistent view for one page or one request (listing
        parses and checks every ID, most of a page's time on a big store)."""
        return VersionStore(self.root, self.tmp, list_once=True)

    def ids(self) -> list[str]:
        """All published version IDs, oldest first (string order is save order)."""
        if self._listing is not None:
            return list(self._listing)
        out = []
        for name in os.listdir(self.root):
            if name.startswith(PREFIX) and is_version_id(name[len(PREFIX) :]):
                out.append(name[len(PREFIX) :])
        out.sort()
        if self._list_once:
            self._listing = list(out)
        return out

    def path(self, version_id: str) -> Path:
        if not is_version_id(version_id):
            raise VersionNotFound(f"{version_id!r} is not a version ID")
        return self.root / f"{PREFIX}{version_id}"

    def exists(self, version_id: str) -> bool:
        return self.path(version_id).is_dir()

    def read(self, version_id: str) -> dict[str, Any]:
        """The version's metadata, verified against metadata.b3."""
        return self._load(version_id)[1]

    def raw_metadata(self, version_id: str) -> bytes:
        """metadata.json's exact bytes, verified (for copying a version to another store unchanged)."""
        return self._load(version_id)[0]

    def _load(self, version_id: str) -> tuple[bytes, dict[str, Any]]:
        """metadata.json's bytes and their parse, read once and checked against metadata.b3."""
        where = f"{PREFIX}{version_id}"
        directory = self.path(version_id)
        try:
            data = fsutil.read_regular(directory / METADATA, metadata.MAX_METADATA_BYTES)
            recorded = fsutil.read_regular(directory / CHECKSUM, MAX_CHECKSUM_BYTES)
        except FileNotFoundError:
            if not directory.is_dir():
                raise VersionNotFound(f"version {version_id} does not exist") from None
            raise CorruptVersion(f"{where}: {METADATA} or {CHECKSUM} is missing") from None
        except NotADirectoryError:
            raise CorruptVersion(f"{where} is not a directory") from None
        except IntegrityError as exc:
            raise CorruptVersion(f"{where}: {exc}") from None
        return data, verified_metadata(version_id, data, recorded)

    def stage(self, meta: Mapping[str, Any] | bytes) -> Path:
        """Write a complete version directory under tmp/ (fsynced), ready for `publish`."""
        staged = self.tmp / f"{fsutil.TMP_PREFIX}stage-{os.getpid()}-{secrets.token_hex(6)}"
        fsutil.make_dir(staged)
        data = meta if isinstance(meta, bytes) else metadata.dumps(meta)
        fsutil.write_file(staged / METADATA, data)
        fsutil.write_file(staged / CHECKSUM, checksum_line(data))
        fsutil.fsync_dir(staged)
        return staged

    def publish(self, staged: Path, version_id: str) -> None:
        """Rename the staged directory into place: the moment the version exists. Caller holds the write lock."""
        target = self.path(version_id)
        if target.exists():
            raise FileExistsError(f"{target} already exists")
        fsutil.rename(staged, target)
        try:
            fsutil.fsync_dir(self.root)
        except OSError:  # not durable: take it back out of sight so a failed save publishes nothing
            with suppress(OSError):
                fsutil.rename(target, staged)
            raise

    def remove(self, version_id: str) -> None:
        """Remove a version all-or-nothing: one rename moves it out of sight, then it is deleted."""
        trash = self.tmp / f"{fsutil.TMP_PREFIX}trash-{version_id}-{secrets.token_hex(4)}"
        fsutil.rename(self.path(version_id), trash)
        fsutil.fsync_dir(self.root)
        fsutil.remove_tree(trash)
