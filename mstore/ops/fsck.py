"""fsck: read-only check of the whole store that collects every problem instead of stopping at the first.

Errors mean some saved data cannot be given back bit-exact (or a ref/record is damaged); info is
harmless (unreachable objects, leftovers of an interrupted command) and is cleaned up by `gc`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import workers
from ..errors import (
    CorruptManifest,
    CorruptObject,
    CorruptRef,
    DamagedDeltaBase,
    IntegrityError,
    InvalidName,
    MissingObject,
    MStoreError,
)
from ..store import codec, fsutil, signatures, taglog
from ..store.layout import Store, config_problems, layout_problems, manifest_id
from ..store.manifest import Manifest
from ..store.objects import ObjectStore, decode_chain, is_oid, stored_limit
from ..store.refs import check_tag_name
from .problems import ERROR, INFO, Problem, summary_json


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    versions: int = 0
    objects: int = 0
    bytes_checked: int = 0
    unused_bytes: int = 0  # on disk, of the objects no version uses (the "unreachable" problems)
    unused_mtimes: list[float] = field(default_factory=list, repr=False)  # when gc may free them (grace)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def damaged_versions(self) -> list[str]:
        return sorted({v for p in self.errors for v in p.versions})

    def to_json(self) -> dict[str, Any]:
        doc = summary_json(
            self.problems, versions=self.versions, objects=self.objects, bytes_checked=self.bytes_checked
        )
        return doc | {"unused_objects": len(self.unused_mtimes), "unused_bytes": self.unused_bytes}


def fsck(store: Store, *, verify_data: bool = True, progress: Callable[[int], None] | None = None) -> Report:
    report = Report()
    add = report.problems.append
    for message in layout_problems(store.root):
        add(Problem(ERROR, "unsafe-layout", str(store.root), message))
    for message in config_problems(store.root):
        add(Problem(ERROR, "bad-config", "mstore.json", message))
    users: dict[str, set[str]] = {}  # object id -> versions that need it
    expected_size: dict[str, int] = {}
    ids = store.versions.ids()
    report.versions = len(ids)

    for vid in ids:
        try:
            meta = store.versions.read(vid)
            moid = manifest_id(meta, vid)
        except MStoreError as exc:
            add(Problem(ERROR, "bad-metadata", f"version_{vid}", str(exc), (vid,)))
            continue
        users.setdefault(moid, set()).add(vid)
        try:
            manifest = store.read_manifest(moid)
        except IntegrityError as exc:
            add(Problem(ERROR, _code(exc), moid, f"manifest of version_{vid}: {exc}", (vid,)))
            continue
        except OSError as exc:
            add(Problem(ERROR, "unreadable", moid, f"manifest of version_{vid} could not be read: {exc}", (vid,)))
            continue
        if meta.get("model_hash") != manifest.model_hash:
            add(
                Problem(ERROR, "bad-metadata", f"version_{vid}", "model_hash does not match the stored content", (vid,))
            )
        _collect_chunks(manifest, vid, users, expected_size)

    _add_delta_bases(store, users)
    on_disk = set(store.objects)
    report.objects = len(on_disk)
    reported = {p.subject for p in report.problems if p.code == "missing-object"}  # a missing manifest, once
    for oid in sorted(set(users) - on_disk - reported):
        add(Problem(ERROR, "missing-object", oid, f"object {oid} is missing", _vs(users, oid)))
    for oid in sorted(on_disk & set(expected_size)):
        try:
            claimed = store.objects.claimed_size(oid)
        except OSError:
            continue  # verify() reports it as unreadable
        if claimed != expected_size[oid]:
            message = f"object {oid} holds {claimed} bytes, the manifest expects {expected_size[oid]}"
            add(Problem(ERROR, "corrupt-object", oid, message, _vs(users, oid)))
    if verify_data:
        known = {p.subject for p in report.errors}  # one error per cause: a bad manifest is reported once

        def add_new(problem: Problem) -> None:
            if problem.subject not in known:
                add(problem)

        report.bytes_checked = _verify_all(store, sorted(on_disk), users, expected_size, add_new, progress)
    for oid in sorted(on_disk - set(users)):
        add(Problem(INFO, "unreachable", oid, f"object {oid} is not used by any version (gc removes it)"))
        try:
            st = store.objects.path(oid).stat()
        except FileNotFoundError:  # gc took it meanwhile
            continue
        report.unused_bytes += st.st_size
        report.unused_mtimes.append(st.st_mtime)

    _check_refs(store, ids, add)
    for name in orphan_signatures(store, ids):
        add(Problem(INFO, "orphan-signature", f"signatures/{name}", "signatures of no version here (gc removes them)"))
    for path in store.objects.stray_files():
        add(
            Problem(INFO, "leftover", str(path.relative_to(store.root)), "leftover file under objects/ (gc removes it)")
        )
    if store.tmp.is_dir() and not store.tmp.is_symlink():
        for name in sorted(os.listdir(store.tmp)):
            add(Problem(INFO, "leftover", f"tmp/{name}", "leftover of an interrupted command (gc removes it)"))
    return report


def orphan_signatures(store: Store, ids: list[str] | None = None) -> list[str]:
    """Names under signatures/ that are no version of the store (never fatal: a signature proves nothing alone)."""
    present = set(store.versions.ids() if ids is None else ids)
    return [name for name in signatures.version_dirs(store.root) if name not in present]


def unused_summary(report: Report, now: float, grace_seconds: float) -> tuple[int, int, float | None]:
    """(objects gc may free now, of how many, seconds until the youngest may be freed or None if all may):
    fsck states this once rather than listing every unused object on its own line."""
    cutoff = now - grace_seconds
    ready = sum(1 for m in report.unused_mtimes if m < cutoff)
    wait = None if ready == len(report.unused_mtimes) else max(report.unused_mtimes) - cutoff
    return ready, len(report.unused_mtimes), wait


def _code(exc: Exception) -> str:
    if isinstance(exc, MissingObject):
        return "missing-object"
    if isinstance(exc, CorruptManifest):
        return "bad-manifest"
    return "corrupt-object"


def _vs(users: dict[str, set[str]], oid: str) -> tuple[str, ...]:
    return tuple(sorted(users.get(oid, ())))


def _add_delta_bases(store: Store, users: dict[str, set[str]]) -> None:
    """A delta object's base is needed by every version that needs the delta."""
    for oid in list(users):
        seen = {oid}
        base = store.objects.delta_base(oid)
        while base is not None and base not in seen:
            users.setdefault(base, set()).update(users[oid])
            seen.add(base)
            base = store.objects.delta_base(base)


def _collect_chunks(manifest: Manifest, vid: str, users: dict[str, set[str]], sizes: dict[str, int]) -> None:
    for entry in manifest.files:
        for chunk in entry.chunks:
            users.setdefault(chunk.oid, set()).add(vid)
            sizes[chunk.oid] = chunk.size


def _verify_all(
    store: Store,
    oids: list[str],
    users: dict[str, set[str]],
    sizes: dict[str, int],
    add: Callable[[Problem], None],
    progress: Callable[[int], None] | None,
) -> int:
    """Decode and re-hash every object on disk, on all cores, each object once.

    Objects are checked as trees: a raw or plain object (a root), then the deltas made against it with
    its verified content in hand, and so on down the chain, so no delta base is decoded twice. Memory
    stays bounded by the pieces on one chain per worker. Anything not reachable from a root (a cycle in
    a crafted store) is checked on its own, where the read's depth limit refuses it.
    """
    on_disk = set(oids)
    children: dict[str, list[str]] = {}
    roots: list[str] = []
    for oid in oids:
        base = store.objects.delta_base(oid)
        if base is None or base == oid or base not in on_disk:
            roots.append(oid)
        else:
            children.setdefault(base, []).append(oid)
    reached = set(roots)
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in reached:
                reached.add(child)
                todo.append(child)
    loose = [oid for oid in oids if oid not in reached]

    def check_tree(root: str, follow: bool = True) -> list[tuple[str, tuple[str, str] | None, int]]:
        results = []
        stack: list[tuple[str, _Verified | None]] = [(root, None)]
        while stack:
            oid, base = stack.pop()
            problem, verified, stored = _verify_one(store.objects, oid, sizes.get(oid), base)
            results.append((oid, problem, stored))
            below = children.get(oid, ()) if follow else ()
            if below:
                # the content is handed down only when verified; a damaged base leaves its deltas to
                # find it so themselves (damaged-base), exactly as a lone read would
                stack.extend((child, verified) for child in below)
        return results

    total = 0
    found = []
    tasks = [(root, True) for root in roots] + [(oid, False) for oid in loose]
    with workers.pool(workers.CORES) as pool:
        for results in pool.map(lambda task: check_tree(*task), tasks):
            for oid, problem, size in results:
                total += size
                if progress:
                    progress(size)
                if problem:
                    found.append((oid, problem))
    for oid, problem in sorted(found):  # reported in object id order, as before
        add(Problem(ERROR, problem[0], oid, problem[1], _vs(users, oid)))
    return total


@dataclass
class _Verified:
    """An object's content, verified against its id: as bytes, or as its byte planes (codec 4/5)."""

    oid: str
    size: int
    width: int = 1
    planes: list[bytes | memoryview] | None = None
    content: bytes | None = None

    def as_content(self) -> bytes:
        if self.content is None:
            assert self.planes is not None
            self.content = bytes(codec.ungroup(b"".join(self.planes), self.width))
        return self.content


def _verify_one(
    objects: ObjectStore, oid: str, size: int | None, base: _Verified | None
) -> tuple[tuple[str, str] | None, _Verified | None, int]:
    """(problem or None, the verified content, bytes on disk) of one object, read once.

    A codec 4/5 object is verified in plane space: its envelope checksum, its planes decompressed, a
    delta's XORed with its verified base's planes (XOR commutes with the byte transpose), then the
    planes interleaved block by block into the blake3 that must give its id. That is exactly what
    reading it proves (the same bytes are hashed), without assembling the content or a base's content.
    Anything else (raw objects, codecs 1-3, a delta whose base was not verified here or has other
    planes) goes through `decode_chain`, as every read does, which names a damaged base `damaged-base`.
    """
    try:
        blob = objects.stored(oid, stored_limit(size))
    except IntegrityError as exc:
        return ("corrupt-object", str(exc)), None, _disk_size(objects, oid)
    except OSError as exc:
        return ("unreadable", f"object {oid} could not be read: {exc.strerror or exc}"), None, _disk_size(objects, oid)
    try:
        header = codec.parse_header(blob) if objects.envelopes else None
    except IntegrityError:
        header = None  # decode_chain reports it
    if header is not None and header.codec in codec.PLANE_CODECS:
        fits = header.codec == codec.PLANES or (
            base is not None
            and base.oid == header.base
            and base.planes is not None
            and base.width == header.width
            and base.size == header.size
        )
        if fits:
            return (*_verify_planes(oid, blob, size, base), len(blob))
    known = None
    if base is not None:

        def known(wanted: str, want_size: int) -> bytes | None:
            return base.as_content() if wanted == base.oid and base.size == want_size else None

    def get_blob(wanted: str, limit: int) -> bytes:
        return blob if wanted == oid else objects.stored(wanted, limit)

    try:
        content, _ = decode_chain(
            oid, size, get_blob, objects.header, envelopes=objects.envelopes, known=known, buffer=True
        )
    except DamagedDeltaBase as exc:
        return ("damaged-base", str(exc)), None, len(blob)
    except IntegrityError as exc:
        return ("corrupt-object", str(exc)), None, len(blob)
    except OSError as exc:
        return ("unreadable", f"object {oid} could not be read: {exc.strerror or exc}"), None, len(blob)
    return None, _Verified(oid, len(content), content=content), len(blob)


def _verify_planes(
    oid: str, blob: bytes, size: int | None, base: _Verified | None
) -> tuple[tuple[str, str] | None, _Verified | None]:
    try:
        header = codec.verify_envelope(blob, size, oid)
        assert header is not None
        try:
            planes = codec.payload_planes(memoryview(blob)[header.payload_offset :], header.width, header.size)
            if header.codec == codec.PLANES_XOR_DELTA:
                assert base is not None and base.planes is not None
                planes = codec.xor_planes(planes, base.planes)
        except CorruptObject as exc:
            raise CorruptObject(f"object {oid}: {exc}") from None
        if codec.hash_planes(planes, header.width) != oid:
            raise CorruptObject(f"object {oid} is corrupt: its bytes do not match its hash")
    except IntegrityError as exc:
        return ("corrupt-object", str(exc)), None
    return None, _Verified(oid, header.size, header.width, planes=planes)


def _disk_size(objects: ObjectStore, oid: str) -> int:
    try:
        return objects.size(oid)
    except OSError:
        return 0


def _check_refs(store: Store, ids: list[str], add: Callable[[Problem], None]) -> None:
    existing = set(ids)
    try:
        latest = store.refs.latest()
    except CorruptRef as exc:
        add(Problem(ERROR, "bad-ref", "refs/latest", str(exc)))
    else:
        if latest is None and ids:
            add(Problem(INFO, "stale-ref", "refs/latest", "refs/latest is missing (the next write restores it)"))
        elif latest is not None and latest not in existing:
            add(Problem(ERROR, "bad-ref", "refs/latest", f"refs/latest names version {latest}, which does not exist"))
        elif latest is not None and latest != ids[-1]:
            add(
                Problem(
                    INFO, "stale-ref", "refs/latest", f"refs/latest names {latest}, not the newest version {ids[-1]}"
                )
            )
    for name in store.refs.tag_names():
        where = f"refs/tags/{name}"
        try:
            check_tag_name(name)
            target = store.refs.tag(name)
        except InvalidName as exc:
            add(Problem(ERROR, "unsafe-name", where, str(exc)))
            continue
        except CorruptRef as exc:
            add(Problem(ERROR, "bad-ref", where, str(exc)))
            continue
        if target not in existing:
            add(Problem(ERROR, "bad-ref", where, f"tag {name!r} names version {target}, which does not exist"))
    _check_histories(store, add)


def _check_histories(store: Store, add: Callable[[Problem], None]) -> None:
    for name in store.refs.history_names():
        where = f"refs/history/{name}"
        try:
            check_tag_name(name)
            raw = store.refs.history_raw(name)
            current = store.refs.tag(name)
        except InvalidName as exc:
            add(Problem(ERROR, "unsafe-name", where, str(exc)))
            continue
        except CorruptRef as exc:
            if str(exc).startswith("refs/history"):
                add(Problem(ERROR, "bad-history", where, str(exc)))
            continue  # a damaged tag is reported above
        reason = taglog.problem(raw, where, current)
        if reason is not None:
            add(Problem(ERROR, "bad-history", where, reason))


QUARANTINE = "quarantine"


def quarantine(store: Store, report: Report) -> list[str]:
    """Move every object fsck found corrupt to `<root>/quarantine/` (never patch or zero-fill it).

    The damaged versions stay listed; saving the same model file again restores the object, which
    heals every version that shares it.
    """
    moved = []
    target_dir = store.root / QUARANTINE
    for problem in report.errors:
        if problem.code != "corrupt-object" or not is_oid(problem.subject):
            continue
        source = store.objects.path(problem.subject)
        if source.exists():
            fsutil.make_dir(target_dir)
            fsutil.rename(source, target_dir / problem.subject)
            moved.append(problem.subject)
    if moved:
        fsutil.fsync_dir(target_dir)
    return moved
