"""The model cache: verified, read-only copies of models, keyed by content, for `mstore.model_path`.

<cache>/CACHEDIR.TAG           marks the directory as a cache (backup tools skip it)
<cache>/models/<manifest id>/  the model: a directory model is this folder; a file model is the one file in it
<cache>/stamps/<manifest id>   what was written: type, size, mode, inode, mtime and ctime of every file and folder
<cache>/objects/ab/cdef…       objects fetched from remotes, and every entry's manifest (a store of its own)
<cache>/refs/<key>.json        the last resolution of (source, ref): version, manifest, model_hash, time, the pickle
                               scan, and (trusted calls) ids of the metadata and signature bundles kept as objects
<cache>/locks/<id>.build       held while an entry is written: concurrent callers wait for that one writer
<cache>/locks/<id>.use         held shared by every process that got a path to the entry, until it exits
<cache>/locks/gc               held shared while entries are built, exclusively while prune sweeps objects
<cache>/tmp/                   entries being written or deleted

An entry is named by its manifest id, so the same model from two stores or two refs is there once. It is
written under tmp/, each file verified against its blake3 while written (restore.py), made read-only
(files 0444, 0555 when executable; folders 0555), renamed into place, and only then stamped. A repeat
call compares the stamp with `lstat` of each path (no reading, no hashing): anything changed behind
mstore's back (a chmod, an edit, a replaced or added file) changes a ctime or a folder's mtime, so the
entry is rebuilt, never returned. `verify` re-hashes everything. The cache is untrusted input like a
store: its files are read with bounded, no-follow reads, its layout directories must be real
directories, and names are validated.

Partial entries (`model_path(ref, include=[...])`). An entry of a directory model may hold some of its
files: the stamp (format 2) says `complete: false` and its records list exactly the files (and the
folders that hold them) that are there; a file is in the entry if and only if the stamp lists it. A call
for files the entry lacks adds them, under the entry's build lock: they are written and verified in a
folder of their own under tmp/ and sealed, then each is renamed into the entry (never over an existing
name), and only then is the stamp rewritten to list them. So a reader of the files the entry held never
sees them change (their inodes and ctimes stay; the old stamp still vouches for them), and a reader of
the new files finds them only once the new stamp lists them all, so never a half-added set. Before the
new stamp is written, every record of the old one must still match `lstat` (only the folders that
received files may differ), and the files present must be exactly the old ones plus the new ones: an
edit behind mstore's back while files were added is not vouched for, the entry is rebuilt instead. A
process killed while adding leaves folders whose mtime no longer matches the stamp, so the next use
rebuilds the entry (from the cache's objects: nothing is fetched twice). The call that adds the last
missing files (and the model's empty folders) marks the entry complete. Stamps of format 1 (always
whole entries) are read as complete.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import blake3

from ..errors import BadInput, CorruptObject, IntegrityError, NotACache
from ..store import fsutil
from ..store.manifest import KIND_DIR, KIND_FILE, Manifest, check_relpath
from ..store.objects import ObjectStore, check_oid, is_oid
from ..store.refs import is_version_id

CACHE_ENV = "MSTORE_CACHE"
TAG_FILE = "CACHEDIR.TAG"
TAG_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
TAG_BYTES = (
    TAG_SIGNATURE + b"\n# This file is a cache directory tag created by mstore (read-only model copies).\n"
    b"# For information about cache directory tags see https://bford.info/cachedir/\n"
)
LAYOUT = ("models", "stamps", "objects", "refs", "locks", "tmp")
MAX_STAMP_BYTES = 64 << 20
MAX_RESOLUTION_BYTES = 64 << 10
STAMP_VERSION = 2  # 2: stamps say whether the entry holds every file of the model (1: always whole)
_RESOLUTION_RE = re.compile(r"[0-9a-f]{40}\.json")

_held: dict[str, int] = {}  # use-lock path -> descriptor, held until the process exits


class EntrySource(Protocol):
    """Where an entry's content comes from (a store, a remote, the cache's own objects)."""

    def manifest(self) -> Manifest:
        """The model's manifest, verified (and kept in the cache's objects: `verify` needs it)."""
        ...

    def write(self, manifest: Manifest, dest: Path, only: frozenset[str] | None) -> None:
        """Write the files `only` names (None: the whole model) into the new folder `dest`, each verified."""
        ...


class _Changed(Exception):
    """The entry changed behind mstore's back while files were added to it: rebuild it instead."""


def default_dir() -> Path:
    """$MSTORE_CACHE, else $XDG_CACHE_HOME/mstore (when absolute, as the XDG spec asks), else ~/.cache/mstore."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "mstore"
    return Path.home() / ".cache" / "mstore"


def check_owned(path: Path) -> None:
    """A cache hands out bytes it verified once, on the strength of its stamps: a directory another user
    owns, or that anyone may write, lets them forge a stamp and an entry, so it is refused (git's "dubious
    ownership" rule; group-writable is allowed, as user-private groups make it by default)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if st.st_uid != os.geteuid():
        raise NotACache(
            f"cache directory {path} belongs to another user (uid {st.st_uid}): its entries could be forged; "
            f"use a directory of your own ({CACHE_ENV}, or cache_dir=)"
        )
    if st.st_mode & stat.S_IWOTH:
        raise NotACache(
            f"cache directory {path} may be written by anyone: its entries could be forged; "
            f"run chmod o-w on it, or use another directory ({CACHE_ENV}, or cache_dir=)"
        )


@dataclass
class EntryInfo:
    key: str  # the manifest id
    path: Path | None  # the model's path (None when the entry is damaged and will be rebuilt)
    size: int
    last_used: float
    intact: bool  # the stamp matches what is on disk
    refs: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0  # how many of the model's files the entry holds (0 when not intact)
    complete: bool = True  # it holds every file of the model (False: a partial entry, `include=`)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "path": str(self.path) if self.path else None,
            "size": self.size,
            "last_used": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_used)),
            "intact": self.intact,
            "complete": self.complete,
            "files": self.files,
            "refs": self.refs,
        }


class Cache:
    """One cache directory. `Cache.open(root)` creates it (with CACHEDIR.TAG) unless `create` is False."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = ObjectStore(root / "objects", envelopes=True)
        self.tmp = root / "tmp"

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None, *, create: bool = True) -> Cache:
        path = Path(os.path.abspath(root if root is not None else default_dir()))
        if any(ord(c) < 32 or ord(c) == 127 for c in str(path)):
            raise BadInput(f"cache directory {str(path)!r} contains a control character")
        cache = cls(path)
        if os.path.lexists(path) and not path.is_dir():
            raise NotACache(f"cache directory {path} exists and is not a directory")
        tag = path / TAG_FILE
        if path.is_dir():
            # Look, then read the tag: every open publishes the tag before it makes anything else, and never
            # replaces one (see `_publish_tag`), so whatever this look saw of a first open racing this one
            # came after its tag, which is there for good. Temp names are files being made.
            with os.scandir(path) as scan:
                used = any(not fsutil.is_temp_name(e.name) for e in scan)
            found = _read_tag(tag)
            if found is None and used:
                raise NotACache(
                    f"{path} is not an mstore cache (it is not empty and has no {TAG_FILE}); "
                    f"choose an empty or new directory ({CACHE_ENV}, or cache_dir=)"
                )
            if found is not None and not found.startswith(TAG_SIGNATURE):
                raise NotACache(f"{tag} is not a cache directory tag")
            check_owned(path)  # before anything is written into it
        if not create:
            if path.is_dir():
                cache.check_layout()
            return cache
        fsutil.make_dir(path, parents=True)
        if not os.path.lexists(tag):
            _publish_tag(tag)
        for sub in LAYOUT:
            if not fsutil.check_real_dir(path / sub, f"the cache's {sub}/"):
                fsutil.make_dir(path / sub)
        cache.check_layout()
        return cache

    def check_layout(self) -> None:
        """Every layout directory that exists is a real directory (never a link out of the cache), and the
        cache and its directories are the user's own (see `check_owned`)."""
        check_owned(self.root)
        for sub in LAYOUT:
            if fsutil.check_real_dir(self.root / sub, f"the cache's {sub}/", "remove it"):
                check_owned(self.root / sub)

    # -- entries ---------------------------------------------------------------------------------

    def entry_dir(self, key: str) -> Path:
        return self.root / "models" / check_oid(key)

    def _stamp_path(self, key: str) -> Path:
        return self.root / "stamps" / check_oid(key)

    def load_stamp(self, key: str) -> dict[str, Any] | None:
        """The entry's stamp as written, if well formed (not compared with the disk), else None."""
        try:
            raw = fsutil.read_regular(self._stamp_path(key), MAX_STAMP_BYTES)
            return _valid_stamp(json.loads(raw), key)
        except (OSError, ValueError, RecursionError, IntegrityError, BadInput, TypeError):
            return None

    def read_stamp(self, key: str) -> dict[str, Any] | None:
        """The entry's stamp if it matches what is on disk now (lstat only), else None."""
        stamp = self.load_stamp(key)
        if stamp is None:
            return None
        entry = self.entry_dir(key)
        if any(_now(entry, rec) != rec for rec in stamp["entries"]):
            return None
        return stamp

    def model_of(self, key: str, stamp: dict[str, Any]) -> Path:
        entry = self.entry_dir(key)
        return entry / stamp["target"] if stamp["kind"] == KIND_FILE else entry

    def hold(self, key: str) -> None:
        """Take the entry's use lock (shared) for the rest of this process: prune and rm skip it."""
        path = self.root / "locks" / f"{check_oid(key)}.use"
        if str(path) in _held:
            return
        try:
            fd = fsutil.try_lock(path, shared=True)
        except OSError:  # a read-only cache (a shared, pre-filled mount): nobody can prune it either
            return
        if fd is not None:
            _held[str(path)] = fd

    def _touch(self, key: str) -> None:
        """Record a use (the stamp's mtime is the entry's last use); a read-only cache still answers."""
        with suppress(OSError, IntegrityError):
            fd = fsutil.open_regular(self._stamp_path(key))
            try:
                os.utime(fd)
            finally:
                os.close(fd)

    @contextmanager
    def _lock(self, name: str, *, shared: bool = False) -> Iterator[None]:
        with fsutil.file_lock(self.root / "locks" / name, shared=shared):
            yield

    def lookup(self, key: str, model_hash: str | None = None, wanted: frozenset[str] | None = None) -> Path | None:
        """The model's path if the entry is intact and holds the files `wanted` (None: every file; stamp
        check only, no hashing), recording a use."""
        stamp = self.read_stamp(key)
        if stamp is None or (model_hash is not None and stamp["model_hash"] != model_hash):
            return None
        if not _holds(stamp, wanted):
            return None
        self._touch(key)
        return self.model_of(key, stamp)

    def materialise(
        self, key: str, model_hash: str, source: EntrySource, wanted: frozenset[str] | None = None
    ) -> tuple[Path, bool]:
        """The entry's model path, writing first what it lacks of the files `wanted` (None: the whole model).

        Returns (path, whether this call wrote anything). An entry that was changed is rebuilt; one that
        holds some files gains the others in place (see the module docstring). Concurrent callers for the
        same entry wait for one writer (the build lock) and then find it done. `source.write` must verify
        what it writes (restore does).
        """
        self.hold(key)
        found = self.lookup(key, model_hash, wanted)
        if found is not None:
            return found, False
        with self._lock("gc", shared=True), self._lock(f"{key}.build"):
            found = self.lookup(key, model_hash, wanted)
            if found is not None:
                return found, False
            manifest = source.manifest()
            if manifest.model_hash != model_hash:
                raise CorruptObject(f"cache entry {key}: the manifest does not hold model {model_hash[:16]}...")
            every = frozenset(e.path for e in manifest.files)
            stamp = self.read_stamp(key)
            if stamp is not None and stamp["model_hash"] == model_hash and not stamp["complete"]:
                try:
                    stamp = self._add(key, stamp, manifest, source, wanted, every)
                except _Changed:
                    stamp = None
            else:
                stamp = None
            if stamp is None:  # missing, changed behind mstore's back, or whole: build afresh what it held and more
                before = self.load_stamp(key)
                if wanted is not None and before is not None and not before["complete"]:
                    wanted = wanted | (frozenset(r[0] for r in before["entries"] if r[1] == "f") & every)
                self._discard(key)
                stamp = self._build(key, manifest, source, None if wanted is None or wanted >= every else wanted)
            return self.model_of(key, stamp), True

    def _new_tmp(self, key: str) -> Path:
        tmp = self.tmp / f"{fsutil.TMP_PREFIX}build-{key}-{os.getpid()}-{secrets.token_hex(6)}"
        fsutil.make_dir(tmp)
        return tmp

    def _build(self, key: str, manifest: Manifest, source: EntrySource, only: frozenset[str] | None) -> dict[str, Any]:
        """Write a new entry holding the files `only` names (None: all), seal it, rename it in, stamp it."""
        tmp = self._new_tmp(key)
        try:
            source.write(manifest, tmp, None if manifest.kind == KIND_FILE else only)
            _seal(tmp)
            fsutil.rename(tmp, self.entry_dir(key))  # moving a folder needs it writable (its `..`)
        except BaseException:
            _remove_tree(tmp)
            raise
        os.chmod(self.entry_dir(key), 0o555)
        stamp = _make_stamp(self.entry_dir(key), key, manifest, complete=only is None or manifest.kind == KIND_FILE)
        fsutil.atomic_write(self._stamp_path(key), json.dumps(stamp).encode())
        return stamp

    def _add(
        self,
        key: str,
        old: dict[str, Any],
        manifest: Manifest,
        source: EntrySource,
        wanted: frozenset[str] | None,
        every: frozenset[str],
    ) -> dict[str, Any]:
        """Add the files `wanted` names that the partial entry lacks (its stamp `old` was just checked)."""
        held = frozenset(r[0] for r in old["entries"] if r[1] == "f")
        target = every if wanted is None else (wanted | held) & every
        complete = target == every
        missing = sorted(target - held)
        entry = self.entry_dir(key)
        tmp = self._new_tmp(key)
        try:
            source.write(manifest, tmp, frozenset(missing))
            _seal(tmp, folders=False)  # its folders stay writable: the files are renamed out of them
            touched = self._move_in(
                entry, tmp, missing, [e.path for e in manifest.entries if e.is_dir] if complete else []
            )
        finally:
            _remove_tree(tmp)
        stamp = _make_stamp(entry, key, manifest, complete=complete)
        records = {r[0]: r for r in stamp["entries"]}
        files = {r[0] for r in stamp["entries"] if r[1] == "f"}
        unchanged = all(records.get(r[0]) == r for r in old["entries"] if r[0] not in touched)
        if files != held | set(missing) or not unchanged:
            raise _Changed()
        fsutil.atomic_write(self._stamp_path(key), json.dumps(stamp).encode())
        return stamp

    def _move_in(self, entry: Path, tmp: Path, missing: list[str], folders: list[str]) -> set[str]:
        """Rename each written file of `tmp` into the entry (making the folders it needs), re-seal the
        folders that changed; returns their relative paths ("" for the entry itself)."""
        touched: set[str] = set()

        def open_folder(rel: str) -> Path:
            path = entry / rel if rel else entry
            if rel not in touched:
                if not os.path.lexists(path):
                    os.mkdir(path, 0o700)
                elif not fsutil.check_real_dir(path, f"cache folder {rel or '.'}", "run `mstore cache verify`"):
                    raise _Changed()
                _make_writable(path)
                touched.add(rel)
            return path

        try:
            for rel in [*missing, *folders]:
                parts = rel.split("/")
                for depth in range(len(parts)):
                    open_folder("/".join(parts[:depth]))
                out = entry.joinpath(*parts)
                if rel in folders:
                    open_folder(rel)
                    continue
                if os.path.lexists(out):  # the old stamp vouched for no such file: never replace it
                    raise _Changed()
                fsutil.rename(tmp.joinpath(*parts), out)
        finally:
            for rel in sorted(touched, key=lambda r: -r.count("/") - bool(r)):  # deepest first, the entry last
                path = entry / rel if rel else entry
                with suppress(OSError):
                    fsutil.fsync_dir(path)
                    os.chmod(path, 0o555)
        return touched

    def _discard(self, key: str) -> None:
        """Move a damaged or partial entry out of sight and delete it (callers hold its build lock)."""
        fsutil.remove_file(self._stamp_path(key))
        entry = self.entry_dir(key)
        if os.path.lexists(entry):
            _make_writable(entry)  # moving a folder to another parent rewrites its `..`
            trash = fsutil.temp_name(self.tmp, f"trash-{key[:16]}")
            fsutil.rename(entry, trash)  # a planted symlink moves as a link; nothing outside is touched
            _remove_tree(trash)

    def in_use(self, key: str) -> bool:
        """True while a running process holds the entry (it got a path to it): eviction skips it."""
        fd = fsutil.try_lock(self.root / "locks" / f"{check_oid(key)}.use", wait=False)
        if fd is None:
            return True
        os.close(fd)
        return False

    def forget_stamp(self, key: str) -> None:
        """Drop the entry's stamp: its next use rebuilds it instead of trusting it."""
        fsutil.remove_file(self._stamp_path(key))

    @contextmanager
    def gc_lock(self) -> Iterator[None]:
        """Held exclusively while entries and objects are deleted: no entry is being built meanwhile."""
        with self._lock("gc"):
            yield

    def keys(self) -> list[str]:
        models = self.root / "models"
        if not models.is_dir():
            return []
        return sorted(n for n in os.listdir(models) if is_oid(n))

    def entries(self) -> list[EntryInfo]:
        refs = self.resolutions()
        out = []
        for key in self.keys():
            stamp = self.read_stamp(key)
            try:
                last = os.lstat(self._stamp_path(key)).st_mtime
            except OSError:
                last = 0.0
            size = sum(r[2] for r in stamp["entries"]) if stamp else _tree_size(self.entry_dir(key))
            path = self.model_of(key, stamp) if stamp else None
            named = [r for r in refs if r["manifest"] == key]
            files = sum(r[1] == "f" for r in stamp["entries"]) if stamp else 0
            complete = bool(stamp["complete"]) if stamp else True
            out.append(EntryInfo(key, path, size, last, stamp is not None, named, files, complete))
        return out

    def remove(self, key: str) -> bool:
        """Delete an entry unless a running process holds it (then False); its resolutions go with it."""
        use = fsutil.try_lock(self.root / "locks" / f"{check_oid(key)}.use", wait=False)
        if use is None:
            return False
        try:
            build = fsutil.try_lock(self.root / "locks" / f"{key}.build", wait=False)
            if build is None:
                return False
            try:
                self._discard(key)
            finally:
                os.close(build)
        finally:
            os.close(use)
        for res in self.resolutions():
            if res["manifest"] == key:
                fsutil.remove_file(self.root / "refs" / res["file"])
        return True

    # -- resolutions (what offline mode answers from) ----------------------------------------------

    @staticmethod
    def _resolution_name(source: str, ref: str) -> str:
        return blake3.blake3(f"{source}\0{ref}".encode()).hexdigest()[:40] + ".json"

    def record(
        self,
        source: str,
        ref: str,
        version: str,
        key: str,
        model_hash: str,
        pickle: dict[str, Any] | None = None,
        trust: dict[str, Any] | None = None,
    ) -> None:
        """Remember that `ref` on `source` named this version and entry, with the version's pickle scan
        (`pickle`: what an offline answer needs to refuse an unsafe model) and, when trusted keys were
        asked for, the cache objects an offline answer verifies their signature from (`trust`: the
        metadata's and the bundles' ids, never a verdict); rewritten only when it changed."""
        path = self.root / "refs" / self._resolution_name(source, ref)
        old = self.resolution(source, ref)
        model = (version, key, model_hash)
        if trust is None and old is not None and (old["version"], old["manifest"], old["model_hash"]) == model:
            trust = old.get("trust")  # a call without trust keeps what a trusted one kept, for offline
        same = (version, key, model_hash, pickle or {}, trust)
        if old is not None and (
            (old["version"], old["manifest"], old["model_hash"], old.get("pickle"), old.get("trust")) == same
        ):
            return
        doc: dict[str, Any] = {"source": source, "ref": ref, "version": version, "manifest": key}
        doc.update(model_hash=model_hash, resolved_at=time.time(), pickle=pickle or {})
        if trust is not None:
            doc["trust"] = trust
        with suppress(OSError):  # best effort: a read-only cache still answers, it just cannot learn
            fsutil.atomic_write(path, json.dumps(doc).encode(), sync_dir=False)

    def resolution(self, source: str, ref: str) -> dict[str, Any] | None:
        found = self._read_resolution(self._resolution_name(source, ref))
        if found is None or found["source"] != source or found["ref"] != ref:
            return None
        return found

    def _read_resolution(self, name: str) -> dict[str, Any] | None:
        try:
            doc = json.loads(fsutil.read_regular(self.root / "refs" / name, MAX_RESOLUTION_BYTES))
        except (OSError, ValueError, RecursionError, IntegrityError):
            return None
        if not (
            isinstance(doc, dict)
            and all(isinstance(doc.get(k), str) for k in ("source", "ref", "model_hash"))
            and is_version_id(doc.get("version"))
            and is_oid(doc.get("manifest"))
            and isinstance(doc.get("resolved_at"), (int, float))
        ):
            return None
        return {**doc, "file": name}

    def resolutions(self) -> list[dict[str, Any]]:
        refs = self.root / "refs"
        if not refs.is_dir():
            return []
        found = (self._read_resolution(n) for n in sorted(os.listdir(refs)) if _RESOLUTION_RE.fullmatch(n))
        return [r for r in found if r is not None]

    def clear_tmp(self) -> None:
        """Delete what killed builds left in tmp/ (an in-progress build holds its build lock; skip those)."""
        if not self.tmp.is_dir():
            return
        for name in os.listdir(self.tmp):
            path = self.tmp / name
            key = _build_key(name)
            if key is not None:
                fd = fsutil.try_lock(self.root / "locks" / f"{key}.build", wait=False)
                if fd is None:
                    continue
                os.close(fd)
            _remove_tree(path)


def _publish_tag(tag: Path) -> None:
    """Write CACHEDIR.TAG unless another open already has: an exclusive create (a hard link of a complete
    temp file), never a replace. Several first opens of one new cache race to here; had the later ones
    replaced the first's tag, a reader that already saw the first's folders could, on a filesystem where a
    rename over a file is not atomic to lookups, find no tag and refuse the cache as someone else's (the
    flake of eight processes opening one new cache). A filesystem without hard links gets the atomic replace."""
    try:
        fsutil.create_exclusive(tag, TAG_BYTES, mode=0o644)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS):
            raise
        if not os.path.lexists(tag):
            fsutil.atomic_write(tag, TAG_BYTES, sync_dir=False)
    fsutil.fsync_dir(tag.parent)


def _read_tag(tag: Path) -> bytes | None:
    """CACHEDIR.TAG's bytes (bounded, never a FIFO or a link), or None when there is none."""
    try:
        return fsutil.read_regular(tag, 4096)
    except FileNotFoundError:
        return None
    except IntegrityError as exc:
        raise NotACache(f"{tag.parent} is not an mstore cache: {exc}") from None


def _build_key(name: str) -> str | None:
    """The entry a tmp/ name belongs to while it is built (`.tmp-build-<key>-…`); None otherwise."""
    m = re.match(r"\.tmp-build-([0-9a-f]{64})-", name)
    return None if m is None else m.group(1)


def _seal(root: Path, *, folders: bool = True) -> None:
    """Make a freshly written tree read-only and durable: files 0444 (0555 executable), folders 0555
    (the top folder is sealed after it is renamed into place); `folders=False` seals the files only."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                raise CorruptObject(f"{path} is not a regular file")
            os.chmod(path, 0o555 if st.st_mode & 0o100 else 0o444)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for name in dirnames if folders else ():
            os.chmod(os.path.join(dirpath, name), 0o555)


def _now(entry: Path, rec: list[Any]) -> list[Any] | None:
    """The stamp record `rec` as `lstat` finds its path now (None when it is gone or another kind)."""
    rel, kind = rec[0], rec[1]
    try:
        st = os.lstat(entry / rel if rel else entry)
    except OSError:
        return None
    if not (stat.S_ISDIR(st.st_mode) if kind == "d" else stat.S_ISREG(st.st_mode)):
        return None
    return [rel, kind, st.st_size if kind == "f" else 0, st.st_mode, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def _holds(stamp: dict[str, Any], wanted: frozenset[str] | None) -> bool:
    """Whether an entry with this stamp holds the files `wanted` (None: every file of the model)."""
    if stamp["complete"]:
        return True
    if wanted is None:
        return False
    return wanted <= {r[0] for r in stamp["entries"] if r[1] == "f"}


def _make_stamp(entry: Path, key: str, manifest: Manifest, *, complete: bool = True) -> dict[str, Any]:
    records = []
    for dirpath, dirnames, filenames in os.walk(entry):
        dirnames.sort()
        rel = os.path.relpath(dirpath, entry)
        rel = "" if rel == "." else rel
        st = os.lstat(dirpath)
        records.append([rel, "d", 0, st.st_mode, st.st_ino, st.st_mtime_ns, st.st_ctime_ns])
        for name in sorted(filenames):
            st = os.lstat(os.path.join(dirpath, name))
            path = f"{rel}/{name}" if rel else name
            records.append([path, "f", st.st_size, st.st_mode, st.st_ino, st.st_mtime_ns, st.st_ctime_ns])
    target = manifest.entries[0].path if manifest.kind == KIND_FILE else ""
    return {
        "v": STAMP_VERSION,
        "manifest": key,
        "model_hash": manifest.model_hash,
        "kind": manifest.kind,
        "target": target,
        "complete": complete,
        "entries": records,
    }


def _valid_stamp(doc: Any, key: str) -> dict[str, Any] | None:
    """The stamp if it is well formed (paths clean, parents listed before children), else None."""
    if not isinstance(doc, dict) or doc.get("v") not in (1, STAMP_VERSION) or doc.get("manifest") != key:
        return None
    if doc.get("kind") not in (KIND_FILE, KIND_DIR) or not isinstance(doc.get("model_hash"), str):
        return None
    if doc["v"] == 1:
        doc["complete"] = True  # format 1 entries were always whole
    if not isinstance(doc.get("complete"), bool) or (doc["kind"] == KIND_FILE and not doc["complete"]):
        return None
    records = doc.get("entries")
    if not isinstance(records, list) or not records:
        return None
    dirs: set[str] = set()
    for i, rec in enumerate(records):
        if not (isinstance(rec, list) and len(rec) == 7 and isinstance(rec[0], str) and rec[1] in ("d", "f")):
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in rec[2:]):
            return None
        if i == 0:
            if rec[0] != "" or rec[1] != "d":
                return None
        else:
            check_relpath(rec[0])
            if rec[0].rpartition("/")[0] not in dirs:
                return None
        if rec[1] == "d":
            dirs.add(rec[0])
    target = doc.get("target")
    if doc["kind"] == KIND_FILE:
        files = [r[0] for r in records if r[1] == "f"]
        if len(records) != 2 or files != [target] or not isinstance(target, str) or "/" in target:
            return None
    elif target != "":
        return None
    return doc


def _tree_size(path: Path) -> int:
    total = 0
    with suppress(OSError):
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            return 0
        for dirpath, _, filenames in os.walk(path):
            for name in filenames:
                with suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _remove_tree(path: Path) -> None:
    """Delete a tree mstore made read-only, never following a link (a link itself is just unlinked)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        fsutil.remove_file(path)
        return
    for dirpath, dirnames, _ in os.walk(path):
        _make_writable(Path(dirpath))
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    fsutil.remove_tree(path)


def _make_writable(path: Path) -> None:
    """chmod 0700 a folder mstore sealed; a link is never followed (O_NOFOLLOW), anything else is left."""
    with suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
