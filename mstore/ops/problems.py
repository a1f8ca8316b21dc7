"""What fsck finds, local or remote: one problem type, one vocabulary of codes, one JSON shape.

A check collects problems as values instead of stopping at the first (restic's checker does the same).
Errors mean some saved data cannot be given back bit-exact, or a record or ref is damaged; information is
harmless (unused objects, leftovers of an interrupted command) and `gc` or the next write clears it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ERROR, INFO = "error", "info"

# Every code fsck can report, local or remote (docs/guarantees.md lists them too).
CODES = {
    "bad-config": "mstore.json is unreadable, invalid, or does not match its checksum",
    "unsafe-layout": "a directory of the store is a symlink or not a directory",
    "bad-metadata": "a version's metadata is unreadable, fails metadata.b3, or its model_hash contradicts its content",
    "bad-manifest": "a manifest object does not decode to a valid manifest",
    "missing-object": "an object a version needs is not there",
    "corrupt-object": "an object's bytes do not decode to its hash (or are not a regular file)",
    "unreadable": "an object could not be read (permissions, I/O error): not proof of damage, never quarantined",
    "damaged-base": "an intact delta whose base is damaged or missing",
    "bad-ref": "a ref is damaged, or names a version that does not exist",
    "bad-history": "a tag's history does not verify (a record was changed, removed or cut)",
    "unsafe-name": "a tag file whose name mstore would never write",
    "no-store": "no mstore store at the remote's address",
    "unreachable": "(info) an object no version uses; gc frees it after the grace period",
    "leftover": "(info) a file left by an interrupted command; gc removes it",
    "stale-ref": "(info) refs/latest lags behind the newest version; the next write repairs it",
    "pending-version": "(info) a remote version record whose push was interrupted; pushing again finishes it",
    "orphan-signature": "(info) signatures of a version that is not in the store (an interrupted rm); gc removes them",
}


@dataclass(frozen=True)
class Problem:
    severity: str  # ERROR or INFO
    code: str  # a key of CODES
    subject: str  # what is at fault: an object id, version_<ID>, refs/..., mstore.json
    message: str
    versions: tuple[str, ...] = ()  # the versions it affects, when known

    def __post_init__(self) -> None:
        assert self.code in CODES, self.code
        assert self.severity in (ERROR, INFO), self.severity

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "subject": self.subject,
            "message": self.message,
            "versions": list(self.versions),
        }


def summary_json(problems: list[Problem], *, versions: int, objects: int, bytes_checked: int) -> dict[str, Any]:
    """The JSON document `fsck --json` prints, for a local store and a remote alike."""
    errors = [p for p in problems if p.severity == ERROR]
    return {
        "ok": not errors,
        "versions": versions,
        "objects": objects,
        "bytes_checked": bytes_checked,
        "errors": len(errors),
        "damaged_versions": sorted({v for p in errors for v in p.versions}),
        "problems": [p.to_json() for p in problems],
    }
