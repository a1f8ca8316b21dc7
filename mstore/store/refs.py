"""Refs: `refs/latest` and `refs/tags/<name>`, small text files naming a version ID.

Each ref file is two lines: the version ID, then `b3 <blake3 of the first line>`, so a damaged ref
is detected instead of silently naming another version. Names are validated before they touch a path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import blake3

from ..errors import CorruptRef, IntegrityError, InvalidName
from . import fsutil, taglog
from .identity import who
from .ids import VERSION_ID_RE as VERSION_ID_RE  # re-exported: refs was their home
from .ids import is_version_id as is_version_id

LATEST = "latest"
RESERVED_NAMES = {LATEST, "HEAD"}
MAX_NAME = 100
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_REF_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(@\{[0-9][0-9 :T-]{0,24}Z?\})?(~[0-9]{1,9})?")
MAX_REF_BYTES = 4096


def describe_bad(text: str) -> str | None:
    """Why `text` is unsafe as any name, or None."""
    if not text:
        return "it is empty"
    if len(text) > MAX_NAME * 2:
        return f"it is longer than {MAX_NAME * 2} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "it contains a control character"
    if "/" in text or "\\" in text:
        return "it contains a path separator"
    if ".." in text:
        return "it contains '..'"
    return None


def check_tag_name(name: str, *, what: str = "tag") -> str:
    """Tags (and remotes, `what`): letters, digits, `.`, `_`, `-`; not starting with `.` or `-`; not shaped
    like a version ID."""
    reason = describe_bad(name)
    if reason is None and len(name) > MAX_NAME:
        reason = f"it is longer than {MAX_NAME} characters"
    if reason is None and not _TAG_RE.fullmatch(name):
        reason = "use letters, digits, '.', '_' and '-', not starting with '.' or '-'"
    if reason is None and name in RESERVED_NAMES:
        reason = "that name is reserved"
    if reason is None and (re.fullmatch(r"[0-9_]+", name) or name.startswith("version_")):
        reason = "it looks like a version ID"
    if reason:
        raise InvalidName(f"invalid {what} name {name!r}: {reason}")
    return name


def check_ref_syntax(ref: str) -> str:
    """A version reference: ID, ID prefix, `version_<ID>`, tag or `latest`; a tag may be followed by `@{N}`
    (N moves ago) or `@{DATE}` (what it named then); any of them by `~N`."""
    reason = describe_bad(ref)
    if reason is None and not _REF_RE.fullmatch(ref):
        reason = (
            "expected a version ID or prefix, a tag (or TAG@{N}, TAG@{DATE}), or 'latest', optionally followed by ~N"
        )
    if reason:
        raise InvalidName(f"invalid version reference {ref!r}: {reason}")
    return ref


def encode_ref(version_id: str) -> bytes:
    line = f"{version_id}\n"
    return f"{line}b3 {blake3.blake3(line.encode()).hexdigest()}\n".encode()


def decode_ref(data: bytes, where: str) -> str:
    try:
        first, second, rest = data.decode("ascii").split("\n", 2)
    except (UnicodeDecodeError, ValueError):
        raise CorruptRef(f"{where} is damaged (not a ref file)") from None
    if rest or second != f"b3 {blake3.blake3((first + chr(10)).encode()).hexdigest()}":
        raise CorruptRef(f"{where} is damaged (checksum mismatch)")
    if not is_version_id(first):
        raise CorruptRef(f"{where} does not hold a version ID")
    return first


class Refs:
    """The `refs/` directory. Writers hold the store's write lock; readers take none (writes are atomic)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tags_dir = root / "tags"

    def _read(self, path: Path, where: str) -> str | None:
        raw = self.read_file(path, where)
        return None if raw is None else decode_ref(raw, where)

    @staticmethod
    def read_file(path: Path, where: str) -> bytes | None:
        """A ref file's bytes (bounded; never a FIFO, directory or link), or None when it does not exist."""
        try:
            return fsutil.read_regular(path, MAX_REF_BYTES)
        except FileNotFoundError:
            return None
        except IntegrityError as exc:  # a directory, FIFO, link or huge file where a ref belongs
            raise CorruptRef(f"{where} is damaged ({exc})") from None

    def latest(self) -> str | None:
        return self._read(self.root / LATEST, "refs/latest")

    def set_latest(self, version_id: str | None) -> None:
        path = self.root / LATEST
        if version_id is None:
            fsutil.remove_file(path)
        elif self.latest_raw() != encode_ref(version_id):
            fsutil.atomic_write(path, encode_ref(version_id))

    def latest_raw(self) -> bytes | None:
        return self.read_file(self.root / LATEST, "refs/latest")

    def tag(self, name: str) -> str | None:
        return self._read(self.tags_dir / check_tag_name(name), f"refs/tags/{name}")

    def tag_names(self) -> list[str]:
        """Names of the tag files present (whatever their content)."""
        if not self.tags_dir.is_dir():
            return []
        return sorted(n for n in os.listdir(self.tags_dir) if not fsutil.is_temp_name(n))

    def tags(self) -> dict[str, str]:
        """All tags that read cleanly: name -> version ID."""
        out = {}
        for name in self.tag_names():
            try:
                target = self.tag(name)
            except (CorruptRef, InvalidName):
                continue
            if target is not None:
                out[name] = target
        return out

    def set_tag(
        self,
        name: str,
        version_id: str,
        *,
        message: str | None = None,
        record: bool = True,
        signer: taglog.Signer | None = None,
    ) -> None:
        """Point the tag at `version_id`; unless `record` is False (the caller merged the records that explain
        the move), its history first gains a record of the move (a no-op move records nothing), signed by
        `signer` when given."""
        check_tag_name(name)
        if record:
            current = self._current(name)
            if current == version_id:
                return
            self._record(name, current, version_id, message, signer)
        fsutil.atomic_write(self.tags_dir / name, encode_ref(version_id))

    def delete_tag(self, name: str, *, message: str | None = None, record: bool = True) -> None:
        check_tag_name(name)
        if record:
            current = self._current(name)
            if current is not None:
                self._record(name, current, None, message)
        fsutil.remove_file(self.tags_dir / name)
        fsutil.fsync_dir(self.tags_dir)

    def _current(self, name: str) -> str | None:
        try:
            return self.tag(name)
        except CorruptRef:
            return None  # a damaged tag named nothing we can tell

    def _record(
        self,
        name: str,
        source: str | None,
        target: str | None,
        message: str | None,
        signer: taglog.Signer | None = None,
    ) -> None:
        raw = self.history_raw(name)
        taglog.parse(raw, f"refs/history/{name}")  # never chain onto a damaged history (fsck reports it)
        move = taglog.new_move(source, target, who(), message)
        if signer is not None:
            move = taglog.with_signature(move, signer(name, move, taglog.last_hash(raw)))
        self.write_history(name, taglog.append(raw, [move]))

    # -- tag history (see taglog.py) ------------------------------------------------------------------

    @property
    def history_dir(self) -> Path:
        return self.root / "history"

    def history_raw(self, name: str) -> bytes | None:
        path = self.history_dir / check_tag_name(name)
        try:
            return fsutil.read_regular(path, taglog.MAX_HISTORY_BYTES)
        except FileNotFoundError:
            return None
        except IntegrityError as exc:
            raise CorruptRef(f"refs/history/{name} is damaged ({exc})") from None

    def write_history(self, name: str, data: bytes) -> None:
        """Replace the history file (callers only ever append to it or merge into it). Under the write lock."""
        check_tag_name(name)
        fsutil.make_dir(self.history_dir)
        fsutil.atomic_write(self.history_dir / name, data)

    def history_names(self) -> list[str]:
        if not self.history_dir.is_dir():
            return []
        return sorted(n for n in os.listdir(self.history_dir) if not fsutil.is_temp_name(n))
