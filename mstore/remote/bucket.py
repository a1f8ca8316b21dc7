"""A bucket: the few key-value operations mstore needs from object storage, and an in-memory one.

The S3 implementation lives in `s3.py`; `MemoryBucket` is the reference the contract tests hold both
to. The operations are the ones every S3-compatible engine offers: whole-object get and put, a ranged
get (for object headers), delete, a paginated listing, and conditional puts (`If-None-Match: *` to
create only, `If-Match: <etag>` to replace only what was read), which is all refs need to change by
compare-and-swap without a server of our own.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ..errors import BadInput, IntegrityError, MStoreError

SMALL_VALUE_LIMIT = 17 << 20  # records, refs and configs are far smaller (metadata is at most 16 MiB)


class RemoteError(MStoreError):
    """The remote could not be used (unreachable, access denied, no such bucket…)."""


class KeyMissing(RemoteError):
    """The key does not exist."""


class PreconditionFailed(RemoteError):
    """A conditional put lost: the key exists (create-only) or changed since it was read."""


class ValueTooLarge(IntegrityError):
    """A value on the remote is larger than anything mstore writes under that key (never downloaded whole)."""


def too_large(url: str, key: str, size: int, limit: int) -> ValueTooLarge:
    return ValueTooLarge(f"{url}: {key} is {size} bytes, more than the {limit} such a file can have")


@dataclass(frozen=True)
class Entry:
    key: str
    size: int
    modified: float  # seconds since the epoch
    etag: str = ""  # as the bucket reports it; for a single-part put, the quoted MD5 of the value


class Bucket(Protocol):
    """Keys are relative to the remote's prefix (`objects/ab/cd…`, `refs/latest`, …)."""

    url: str

    def get(self, key: str, *, limit: int = SMALL_VALUE_LIMIT) -> bytes:
        """The value; raises KeyMissing, or ValueTooLarge (without downloading it) when over `limit` bytes."""
        ...

    def get_with_etag(self, key: str, *, limit: int = SMALL_VALUE_LIMIT) -> tuple[bytes, str] | None:
        """(value, etag) for a later `put(if_match=etag)`, or None when the key does not exist."""
        ...

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Up to `length` bytes from `start`; raises KeyMissing."""
        ...

    def put(self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None) -> str:
        """Store `data` atomically (readers see the old value or the new, never a mix); returns the etag.

        `if_absent`: only if the key does not exist; `if_match`: only if its etag is still that one.
        Either raises PreconditionFailed when the condition does not hold.
        """
        ...

    def delete(self, key: str) -> None:
        """Remove the key (no error if it is already gone)."""
        ...

    def list(self, prefix: str) -> Iterator[Entry]:
        """Every key starting with `prefix`, in key order."""
        ...


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix/")."""
    rest = url[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket or not all(c.isalnum() or c in ".-_" for c in bucket):
        raise BadInput(f"{url!r} is not an S3 URL (expected s3://BUCKET/PREFIX)")
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise BadInput(f"{url!r}: the prefix must not contain empty, '.' or '..' parts")
    return bucket, (prefix + "/" if prefix else "")


def md5_etag(data: bytes) -> str:
    """The ETag S3 gives a value stored by one plain PUT."""
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


class MemoryBucket:
    """A bucket in a dict, with S3's semantics (strong consistency, conditional puts); for tests."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._data: dict[str, tuple[bytes, str, float]] = {}
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}

    def _count(self, op: str) -> None:
        self.requests[op] = self.requests.get(op, 0) + 1

    def get(self, key: str, *, limit: int = SMALL_VALUE_LIMIT) -> bytes:
        found = self.get_with_etag(key, limit=limit)
        if found is None:
            raise KeyMissing(f"{self.url}{key} does not exist")
        return found[0]

    def get_with_etag(self, key: str, *, limit: int = SMALL_VALUE_LIMIT) -> tuple[bytes, str] | None:
        with self._lock:
            self._count("get")
            item = self._data.get(key)
        if item is not None and len(item[0]) > limit:
            raise too_large(self.url, key, len(item[0]), limit)
        return None if item is None else (item[0], item[1])

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.get(key)[start : start + length]

    def put(self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None) -> str:
        etag = md5_etag(data)
        with self._lock:
            self._count("put")
            current = self._data.get(key)
            if if_absent and current is not None:
                raise PreconditionFailed(f"{key} already exists")
            if if_match is not None and (current is None or current[1] != if_match):
                raise PreconditionFailed(f"{key} changed since it was read")
            self._data[key] = (bytes(data), etag, time.time())
        return etag

    def delete(self, key: str) -> None:
        with self._lock:
            self._count("delete")
            self._data.pop(key, None)

    def list(self, prefix: str) -> Iterator[Entry]:
        with self._lock:
            self._count("list")
            items = sorted((k, v) for k, v in self._data.items() if k.startswith(prefix))
        for key, (data, etag, modified) in items:
            yield Entry(key, len(data), modified, etag)
