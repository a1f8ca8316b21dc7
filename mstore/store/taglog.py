"""Tag history: an append-only, hash-chained log of every move of a tag (`refs/history/<tag>`).

One JSON line per move: `{"prev": <blake3 of the previous line, or null for the first>, "record":
{"from", "to", "time", "who", "message"}}`, plus `"sig": {"keyid", "sig", "prev"}` when the move was signed
(`tag --sign`; the signature itself is made and checked in ops/tagsign.py, this layer only carries it).
`from`/`to` are version IDs (null when the tag was created or
deleted). A record is identified by the blake3 of its canonical JSON, so two stores' histories merge by
appending the records one lacks (in the other's order, re-chained here): records are never rewritten,
and a line removed or changed in the middle breaks the chain of the lines after it (fsck reports it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import blake3

from ..errors import CorruptRef
from .ids import is_version_id

MAX_HISTORY_BYTES = 16 << 20  # ~100,000 moves of one tag
MAX_MESSAGE = 1000
MAX_WHO = 200
FIELDS = ("from", "to", "time", "who", "message")
SIG_FIELDS = ("keyid", "sig", "prev")
MAX_SIG = 400  # base64 of a DER ECDSA signature (P-384: at most 104 bytes)
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class RecordSig:
    """A signature of one move: by the key whose fingerprint is `keyid`, over `signed_payload(tag, move,
    prev)` where `prev` is the chain hash the record followed when it was signed (a merge may re-chain it)."""

    keyid: str
    sig: str  # base64
    prev: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"keyid": self.keyid, "sig": self.sig, "prev": self.prev}


@dataclass(frozen=True)
class Move:
    """One move of a tag: `source` -> `target` (None: created / deleted)."""

    source: str | None
    target: str | None
    time: str  # ISO 8601 UTC, e.g. 2026-12-03T07:00:00.123Z
    who: str
    message: str | None = None
    signature: RecordSig | None = field(default=None, compare=False)  # not part of the record or its id

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "time": self.time, "who": self.who, "message": self.message}

    @property
    def id(self) -> str:
        return blake3.blake3(canonical(self.as_dict())).hexdigest()

    @property
    def when(self) -> datetime:
        return parse_time(self.time)


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def new_move(source: str | None, target: str | None, who: str, message: str | None = None) -> Move:
    if message is not None:
        message = " ".join(message.split())[:MAX_MESSAGE] or None
    return Move(source, target, now_text(), " ".join(who.split())[:MAX_WHO], message)


def _move_of(doc: Any, where: str) -> Move:
    if not isinstance(doc, dict) or set(doc) != set(FIELDS):
        raise CorruptRef(f"{where}: a record has other fields than {', '.join(FIELDS)}")
    for key in ("from", "to"):
        if doc[key] is not None and not is_version_id(doc[key]):
            raise CorruptRef(f"{where}: a record's {key!r} is not a version ID")
    if not isinstance(doc["who"], str) or len(doc["who"]) > MAX_WHO:
        raise CorruptRef(f"{where}: a record's 'who' is not a short text")
    if doc["message"] is not None and (not isinstance(doc["message"], str) or len(doc["message"]) > MAX_MESSAGE):
        raise CorruptRef(f"{where}: a record's 'message' is not a short text")
    try:
        parse_time(doc["time"])
    except (TypeError, ValueError):
        raise CorruptRef(f"{where}: a record's 'time' is not an ISO UTC time") from None
    return Move(doc["from"], doc["to"], doc["time"], doc["who"], doc["message"])


Signer = Callable[[str, Move, "str | None"], RecordSig]  # (tag, move, prev) -> its signature


def line_of(prev: str | None, move: Move) -> bytes:
    doc: dict[str, Any] = {"prev": prev, "record": move.as_dict()}
    if move.signature is not None:
        doc["sig"] = move.signature.as_dict()
    return canonical(doc) + b"\n"


def signed_payload(tag: str, move: Move, prev: str | None) -> bytes:
    """What a signature of a move covers: the tag's name, the whole record and the hash it followed."""
    return canonical({"type": "mstore-tag-move/v1", "tag": tag, "record": move.as_dict(), "prev": prev})


def with_signature(move: Move, signature: RecordSig) -> Move:
    return replace(move, signature=signature)


def _sig_of(doc: Any, where: str) -> RecordSig:
    if not isinstance(doc, dict) or set(doc) != set(SIG_FIELDS):
        raise CorruptRef(f"{where}: a signature has other fields than {', '.join(SIG_FIELDS)}")
    if not isinstance(doc["keyid"], str) or not _HEX64.fullmatch(doc["keyid"]):
        raise CorruptRef(f"{where}: a signature's keyid is not a key fingerprint")
    if not isinstance(doc["sig"], str) or len(doc["sig"]) > MAX_SIG:
        raise CorruptRef(f"{where}: a signature's 'sig' is not a short text")
    if doc["prev"] is not None and (not isinstance(doc["prev"], str) or not _HEX64.fullmatch(doc["prev"])):
        raise CorruptRef(f"{where}: a signature's 'prev' is not a chain hash")
    return RecordSig(doc["keyid"], doc["sig"], doc["prev"])


def parse(data: bytes | None, where: str) -> list[Move]:
    """The moves, oldest first, after checking every line and the chain; raises CorruptRef."""
    if not data:
        return []
    if len(data) > MAX_HISTORY_BYTES:
        raise CorruptRef(f"{where} is larger than {MAX_HISTORY_BYTES} bytes")
    if not data.endswith(b"\n"):
        raise CorruptRef(f"{where} is damaged (its last line is cut short)")
    moves, prev = [], None
    for number, line in enumerate(data.split(b"\n")[:-1], 1):
        try:
            doc = json.loads(line)
        except (UnicodeDecodeError, ValueError):
            raise CorruptRef(f"{where}: line {number} is not JSON") from None
        if not isinstance(doc, dict) or set(doc) - {"sig"} != {"prev", "record"}:
            raise CorruptRef(f"{where}: line {number} is not a history record")
        if doc["prev"] != prev:
            raise CorruptRef(
                f"{where}: line {number} does not follow line {number - 1} (the history was rewritten or cut)"
                if number > 1
                else f"{where}: line 1 does not start the history (its beginning was cut)"
            )
        move = _move_of(doc["record"], f"{where}: line {number}")
        if "sig" in doc:
            move = with_signature(move, _sig_of(doc["sig"], f"{where}: line {number}"))
        if line_of(prev, move) != line + b"\n":
            raise CorruptRef(f"{where}: line {number} is not in canonical form (it was edited)")
        moves.append(move)
        prev = blake3.blake3(line + b"\n").hexdigest()
    return moves


def last_hash(data: bytes | None) -> str | None:
    if not data:
        return None
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[-1] + b"\n"
    return blake3.blake3(last).hexdigest()


def append(data: bytes | None, moves: list[Move]) -> bytes:
    """`data` (a verified history, or None) with `moves` appended, chained."""
    out, prev = bytearray(data or b""), last_hash(data)
    for move in moves:
        line = line_of(prev, move)
        out += line
        prev = blake3.blake3(line).hexdigest()
    return bytes(out)


def merge(ours: bytes | None, theirs: bytes | None, where: str) -> bytes | None:
    """Our history with the records of `theirs` we lack appended (in their order); None if nothing is new.
    Both are verified first (CorruptRef)."""
    have = {m.id for m in parse(ours, where)}
    new = [m for m in parse(theirs, where) if m.id not in have]
    return append(ours, new) if new else None


def ordered(moves: list[Move]) -> list[Move]:
    """Oldest first by the time each mover's clock recorded (a merged record may arrive after newer ones)."""
    return [m for _, _, m in sorted((m.when, i, m) for i, m in enumerate(moves))]


def at_steps(moves: list[Move], steps: int, name: str) -> str:
    """What the tag named `steps` moves ago (0: after the newest move), in time order."""
    moves = ordered(moves)
    if steps >= len(moves):
        raise LookupError(f"tag {name!r} has {len(moves)} recorded move(s); there is no {name}@{{{steps}}}")
    target = moves[len(moves) - 1 - steps].target
    if target is None:
        raise LookupError(f"{name}@{{{steps}}}: the tag did not exist then (it had been deleted)")
    return target


def at_time(moves: list[Move], when: datetime, name: str) -> str:
    """What the tag named at `when` (UTC): the target of the last move made at or before it."""
    best: Move | None = None
    for move in moves:
        if move.when <= when and (best is None or move.when >= best.when):
            best = move
    if best is None:
        raise LookupError(f"tag {name!r} did not exist at {when:%Y-%m-%d %H:%M:%S} UTC (no move recorded before)")
    if best.target is None:
        raise LookupError(f"tag {name!r} was deleted at {when:%Y-%m-%d %H:%M:%S} UTC")
    return best.target


def parse_when(text: str) -> datetime | None:
    """`2026-11-30 12:00`, `2026-11-30T12:00:00`, `2026-11-30` (UTC), or None if `text` is no date."""
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text.strip().removesuffix("Z"), fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


def problem(data: bytes | None, where: str, current: str | None) -> str | None:
    """Why this history does not verify, or does not account for the tag naming `current`; None if it does.

    A cut at the end is seen only when it took the record of the tag's present target (so a history that
    ends in a move to where the tag is now proves nothing about moves that may have followed it elsewhere)."""
    try:
        moves = parse(data, where)
    except CorruptRef as exc:
        return str(exc)
    if moves and current is not None and current not in {m.target for m in moves}:
        return f"{where} has no record of the tag's move to {current} (its newest records were cut?)"
    return None
