"""`fsck --remote` and `gc --remote`: check and clean a remote through the `Remote` interface only.

fsck reads every ref and version record, downloads and hash-checks every manifest, and checks that every
chunk and delta base a version needs is present (object headers are read for the bases); with
`verify_data` it downloads, decodes and hashes every object too. gc marks from every committed version,
keeps anything younger than the grace period, never runs while a push does (the remote's lock), and
deletes only with an explicit `gc --remote NAME`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadInput, CorruptObject, DamagedDeltaBase, IntegrityError, MissingObject
from ..ops.problems import ERROR, INFO, Problem, summary_json
from ..store import codec, taglog
from ..store.codec import stored_form
from ..store.layout import Store, check_model_hash, manifest_id
from ..store.manifest import Manifest
from ..store.metadata import loads as load_metadata
from ..store.objects import decode_chain, is_oid
from ..store.refs import LATEST
from ..workers import remote_workers, run_all
from .remotes import Remote


def _error(code: str, subject: str, message: str, version: str | None = None) -> Problem:
    return Problem(ERROR, code, subject, message, (version,) if version else ())


@dataclass
class RemoteReport:
    url: str
    versions: int = 0
    objects: int = 0
    objects_verified: int = 0
    bytes_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)

    def to_json(self) -> dict[str, Any]:
        """The same document as a local `fsck --json`, plus the remote's address and objects re-hashed."""
        doc = summary_json(
            self.problems, versions=self.versions, objects=self.objects, bytes_checked=self.bytes_checked
        )
        return doc | {"remote": self.url, "objects_verified": self.objects_verified}


class _Reader:
    """Verified reads of remote objects: decoded (bases fetched from the remote too) and hashed."""

    def __init__(self, remote: Remote, envelopes: bool) -> None:
        self.remote, self.envelopes = remote, envelopes

    def content(self, oid: str, size: int | None = None) -> bytes:
        try:
            get_blob, get_header = self.remote.get_object, self.remote.object_header
            return decode_chain(oid, size, get_blob, get_header, envelopes=self.envelopes)[0]
        except CorruptObject as exc:
            raise CorruptObject(f"{self.remote.url}: corrupt object ({exc})") from None

    def base(self, oid: str) -> str | None:
        if not self.envelopes:
            return None
        try:
            header = codec.parse_header(self.remote.object_header(oid))
        except CorruptObject:
            return None  # the data check reports it
        return header.base if header else None


def _needed(remote: Remote, reader: _Reader, report: RemoteReport | None) -> tuple[dict[str, int | None], set[str]]:
    """Every object the committed versions need (id -> content size when known), and the version IDs."""
    needed: dict[str, int | None] = {}
    ids = remote.version_ids()
    for vid in ids:
        moid: str | None = None
        try:
            meta = load_metadata(remote.raw_version(vid), f"version_{vid}")
            moid = manifest_id(meta, vid)
            needed[moid] = None
            manifest = Manifest.decode(reader.content(moid))
            check_model_hash(meta, manifest, vid)
        except MissingObject as exc:
            if report is None:
                raise
            report.problems.append(_error("missing-object", moid or f"version_{vid}", f"version {vid}: {exc}", vid))
            continue
        except CorruptObject as exc:
            if report is None:
                raise
            report.problems.append(_error("corrupt-object", moid or f"version_{vid}", f"version {vid}: {exc}", vid))
            continue
        except IntegrityError as exc:
            if report is None:
                raise
            report.problems.append(_error("bad-metadata", f"version_{vid}", f"version {vid}: {exc}", vid))
            continue
        for f in manifest.files:
            for chunk in f.chunks:
                needed[chunk.oid] = chunk.size
    return needed, set(ids)


def _with_bases(remote: Remote, reader: _Reader, oids: set[str], present: set[str], workers: int) -> dict[str, str]:
    """Delta bases of `oids` (transitively), as object -> base, reading each present object's header once."""
    bases: dict[str, str] = {}
    lock = threading.Lock()
    todo = sorted(o for o in oids if o in present)
    seen = set(todo)
    found: list[tuple[str, str]] = []

    def look(oid: str) -> None:
        base = reader.base(oid)
        if base is not None:
            with lock:
                found.append((oid, base))

    while todo:
        found.clear()
        run_all(todo, look, workers)
        todo = []
        for oid, base in found:
            bases[oid] = base
            if base not in seen and base in present:
                seen.add(base)
                todo.append(base)
    return bases


def check(
    remote: Remote,
    *,
    verify_data: bool = False,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> RemoteReport:
    """`fsck --remote`; `workers`: requests in flight (default: MSTORE_TRANSFER_WORKERS or REMOTE_WORKERS)."""
    workers = workers or remote_workers()
    report = RemoteReport(remote.url)
    config = remote.config()
    if config is None:
        report.problems.append(_error("no-store", remote.url, f"{remote.url}: no mstore store there"))
        return report
    reader = _Reader(remote, int(config["format"]) >= 2)
    index = remote.object_index()
    report.objects = len(index)
    needed, ids = _needed(remote, reader, report)
    report.versions = len(ids)
    for vid in remote.pending_version_ids():
        report.problems.append(
            Problem(
                INFO,
                "pending-version",
                f"version_{vid}",
                f"version {vid} was being pushed when the push stopped; push again",
            )
        )
    for vid in sorted(set(remote.signature_index()) - set(ids) - set(remote.pending_version_ids())):
        report.problems.append(
            Problem(INFO, "orphan-signature", f"signatures/{vid}", "signatures of no version (gc --remote drops them)")
        )
    for name in [LATEST] + [f"tags/{t}" for t in remote.tag_names()]:
        try:
            target = remote.get_ref(name)[0]
        except IntegrityError as exc:
            report.problems.append(_error("bad-ref", f"refs/{name}", str(exc)))
            continue
        except BadInput as exc:  # a tag file whose name mstore would never write (`-rf`, `a b`)
            report.problems.append(_error("unsafe-name", f"refs/{name}", f"refs/{name}: {exc}"))
            continue
        if target is not None and target not in ids:
            report.problems.append(
                _error("bad-ref", f"refs/{name}", f"refs/{name} names {target}, which is not on the remote")
            )
        if name != LATEST:
            tag = name.partition("/")[2]
            try:
                reason = taglog.problem(remote.get_history(tag)[0], f"refs/history/{tag}", target)
            except IntegrityError as exc:
                reason = str(exc)
            if reason is not None:
                report.problems.append(_error("bad-history", f"refs/history/{tag}", reason))
    bases = _with_bases(remote, reader, set(needed), set(index), workers)
    for oid, base in bases.items():
        needed.setdefault(base, None)
        if base not in index:
            report.problems.append(_error("missing-object", base, f"delta base {base} of object {oid} is missing"))
    for oid in sorted(needed):
        if oid not in index and oid not in bases.values():
            report.problems.append(_error("missing-object", oid, f"object {oid} is missing"))
    if verify_data:
        lock = threading.Lock()

        def verify(item: tuple[str, int | None]) -> None:
            oid, size = item
            try:
                data = reader.content(oid, size)
            except DamagedDeltaBase as exc:  # its own bytes may be fine: the base is reported on its own
                with lock:
                    report.problems.append(_error("damaged-base", oid, str(exc)))
                return
            except IntegrityError as exc:
                with lock:
                    report.problems.append(_error("corrupt-object", oid, str(exc)))
                return
            with lock:
                report.objects_verified += 1
                report.bytes_checked += len(data)
            if progress is not None:
                progress(len(data))

        run_all(sorted((o, s) for o, s in needed.items() if o in index), verify, workers)
    return report


def repair(remote: Remote, store: Store, report: RemoteReport) -> tuple[list[str], list[str]]:
    """Upload good copies from `store` of every object the report found missing or corrupt on the remote.

    Only verified bytes are written, to content-addressed keys, and nothing is deleted, so a repair can
    only make the remote better. Returns (repaired, not repairable from this store).
    """
    config = remote.config() or {}
    target_envelopes = int(config.get("format", 2)) >= 2
    wanted = sorted(
        {p.subject for p in report.problems if is_oid(p.subject) and p.code in ("missing-object", "corrupt-object")}
    )
    repaired, missing = [], []
    for oid in wanted:
        try:
            content, blob = store.objects.read_with_blob(oid)
        except IntegrityError:
            missing.append(oid)
            continue
        stored = stored_form(
            content, blob, store.objects.envelopes, target_envelopes, int(config.get("format", 2)) >= 3
        )
        remote.put_object(oid, content, stored)
        repaired.append(oid)
    return repaired, missing


@dataclass
class RemoteGcPlan:
    live: int = 0
    garbage: list[str] = field(default_factory=list)
    garbage_bytes: int = 0
    kept_young: int = 0
    deleted: bool = False
    orphan_signatures: list[str] = field(default_factory=list)  # versions not there whose signatures are


def collect(remote: Remote, *, grace_seconds: float, dry_run: bool = False, workers: int | None = None) -> RemoteGcPlan:
    """Delete objects no committed version needs, older than the grace period, while no push runs."""
    workers = workers or remote_workers()
    config = remote.config()
    if config is None:
        return RemoteGcPlan()
    reader = _Reader(remote, int(config["format"]) >= 2)
    with remote.lock("gc"):
        index = remote.object_index()
        needed, _ = _needed(remote, reader, None)  # any unreadable version stops gc: fail closed
        live = set(needed)
        live.update(_with_bases(remote, reader, live, set(index), workers).values())
        now, plan = time.time(), RemoteGcPlan(live=len(live))
        for oid, entry in sorted(index.items()):
            if oid in live:
                continue
            if now - entry.modified < grace_seconds:
                plan.kept_young += 1
                continue
            plan.garbage.append(oid)
            plan.garbage_bytes += entry.size
        # signatures go after their version (rm) and arrive after it (push, which gc excludes): no grace
        committed = set(remote.version_ids()) | set(remote.pending_version_ids())
        plan.orphan_signatures = sorted(set(remote.signature_index()) - committed)
        if not dry_run:
            run_all(plan.garbage, remote.delete_object, workers)
            for vid in plan.orphan_signatures:
                remote.delete_signatures(vid)
            plan.deleted = True
    return plan
