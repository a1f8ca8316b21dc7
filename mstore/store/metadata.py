"""metadata.json: the seed's familiar, user-owned JSON document, checked strictly on the way in and out.

User keys sit at the top level as in the seed (`training_file`, `metrics`, `num_samples`,
`categories`, ...). mstore adds `timestamp`, `model_hash`, `original_path` and its own `mstore` block.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from typing import Any

from ..errors import CorruptVersion, InvalidMetadata

RESERVED_KEY = "mstore"
MAX_METADATA_BYTES = 16 << 20
MAX_DEPTH = 64
MAX_FLOAT_INT = int(sys.float_info.max)


def _numpy_to_python(value: Any) -> Any:
    """numpy scalars and arrays (as sklearn metrics return) become plain JSON values; numpy is never imported."""
    module = type(value).__module__
    if module == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _check_depth(value: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for v in value.values():
            _check_depth(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_depth(v, depth + 1)


def normalize(user: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a JSON-clean copy of the user's metadata or raise InvalidMetadata with the reason."""
    if user is None:
        return {}
    if not isinstance(user, Mapping):
        raise InvalidMetadata(f"metadata must be a dict, not {type(user).__name__}")
    if RESERVED_KEY in user:
        raise InvalidMetadata(f"metadata key {RESERVED_KEY!r} is reserved for mstore")
    try:
        text = json.dumps(dict(user), default=_numpy_to_python, allow_nan=False, ensure_ascii=False)
        clean = json.loads(text)
        _check_depth(clean)
        _check_numbers(clean)
    except ValueError as exc:
        reason = "NaN or infinite numbers are not valid JSON" if "Out of range float" in str(exc) else str(exc)
        raise InvalidMetadata(f"metadata is not storable as JSON: {reason}") from None
    except (TypeError, RecursionError) as exc:
        raise InvalidMetadata(f"metadata is not JSON-serializable: {exc}") from None
    if len(text.encode("utf-8")) > MAX_METADATA_BYTES:
        raise InvalidMetadata(f"metadata is larger than {MAX_METADATA_BYTES >> 20} MiB")
    assert isinstance(clean, dict)
    check_fields(clean)
    return clean


MAPPING_FIELDS = ("metrics", "params")  # names -> values; `log`, `diff` and queries read them key by key
_EXAMPLES = {"metrics": "{'accuracy': 0.9}", "params": "{'C': 0.3}"}
DIRECTIONS_FIELD = "metric_directions"  # metric name -> "higher" or "lower" (which is better)


def check_fields(meta: dict[str, Any]) -> None:
    """The fields mstore reads by key must have their shape: a `metrics` of 0.9 would vanish from every
    table and ranking without a word."""
    for key in MAPPING_FIELDS:
        if meta.get(key) is not None and not isinstance(meta[key], dict):  # None: none recorded, as absent
            raise InvalidMetadata(
                f"metadata field {key!r} must be a mapping of names to values, not {type(meta[key]).__name__} "
                f"(e.g. {{{key!r}: {_EXAMPLES[key]}}})"
            )
    directions = meta.get(DIRECTIONS_FIELD)
    if directions is None:
        return
    if not isinstance(directions, dict):
        raise InvalidMetadata(f"metadata field {DIRECTIONS_FIELD!r} must map metric names to 'higher' or 'lower'")
    for name, value in directions.items():
        if value not in ("higher", "lower"):
            raise InvalidMetadata(
                f"metadata field {DIRECTIONS_FIELD!r}: {name!r} must be 'higher' or 'lower', not {value!r}"
            )


def dumps(metadata: Mapping[str, Any]) -> bytes:
    return (json.dumps(metadata, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes, where: str) -> dict[str, Any]:
    """Parse metadata read from the store; anything odd is a CorruptVersion naming `where`."""
    if len(data) > MAX_METADATA_BYTES:
        raise CorruptVersion(f"{where}: metadata.json is larger than {MAX_METADATA_BYTES >> 20} MiB")
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
        _check_depth(value)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CorruptVersion(f"{where}: metadata.json is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise CorruptVersion(f"{where}: metadata.json is not a JSON object")
    problem = shape_problem(value)
    if problem:
        raise CorruptVersion(f"{where}: metadata.json {problem}")
    return value


_INT, _STR, _OPT_STR, _DICT = "an integer", "a string", "a string or null", "an object"
# The mstore-owned fields every reader relies on, and what each must be. A version that came from a remote
# or an archive is only as well-formed as its writer made it: checked here, once, every reader may trust them.
MSTORE_FIELDS = {
    "format": _INT,
    "manifest": _STR,
    "kind": _STR,
    "size": _INT,
    "files": _INT,
    "parent": _OPT_STR,
    "new_bytes": _INT,
    "new_content_bytes": _INT,
    "reused_bytes": _INT,
    "delta_objects": _INT,
    "lineage": _DICT,
    "saved_by": _STR,
    "environment": _DICT,
}
LINEAGE_FIELDS = {"training_file": {"path": _STR, "blake3": _STR, "size": _INT}, "git": {"commit": _STR}}
ENVIRONMENT_FIELDS = {"python": _STR, "platform": _STR, "packages": _DICT}  # packages: name -> version string


def _is(value: Any, kind: str) -> bool:
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _STR:
        return isinstance(value, str)
    if kind == _OPT_STR:
        return value is None or isinstance(value, str)
    return isinstance(value, dict)


def shape_problem(meta: Mapping[str, Any]) -> str | None:
    """Why metadata's mstore-owned fields are not the types mstore writes, or None when they are."""
    if not isinstance(meta.get("timestamp", ""), str):
        return "has a 'timestamp' that is not a string"
    if not isinstance(meta.get("model_hash", ""), str):
        return "has a 'model_hash' that is not a string"
    block = meta.get(RESERVED_KEY, {})
    if not isinstance(block, dict):
        return f"has an {RESERVED_KEY!r} block that is not an object"
    for key, kind in MSTORE_FIELDS.items():
        if key in block and not _is(block[key], kind):
            return f"has {RESERVED_KEY}.{key} that is not {kind}"
    for part, fields in LINEAGE_FIELDS.items():
        entry = block.get("lineage", {}).get(part)
        if entry is None:
            continue
        if not isinstance(entry, dict):
            return f"has {RESERVED_KEY}.lineage.{part} that is not an object"
        for key, kind in fields.items():
            if key in entry and not _is(entry[key], kind):
                return f"has {RESERVED_KEY}.lineage.{part}.{key} that is not {kind}"
    return _environment_problem(block.get("environment", {}))


def _environment_problem(env: dict[str, Any]) -> str | None:
    for key, kind in ENVIRONMENT_FIELDS.items():
        if key in env and not _is(env[key], kind):
            return f"has {RESERVED_KEY}.environment.{key} that is not {kind}"
    for name, version in env.get("packages", {}).items():
        if not isinstance(version, str):
            return f"has {RESERVED_KEY}.environment.packages.{name[:40]} that is not {_STR}"
    return None


def is_number(value: Any) -> bool:
    """A finite number a float can hold (a 400-digit integer from crafted metadata is not one)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -MAX_FLOAT_INT <= value <= MAX_FLOAT_INT
    return isinstance(value, float) and math.isfinite(value)


def _check_numbers(value: Any) -> None:
    """Integers beyond float range break every reader that does arithmetic on metrics: refuse them."""
    if isinstance(value, dict):
        for v in value.values():
            _check_numbers(v)
    elif isinstance(value, list):
        for v in value:
            _check_numbers(v)
    elif isinstance(value, int) and not isinstance(value, bool) and not is_number(value):
        raise ValueError("a number is too large (beyond the range of a float)")
