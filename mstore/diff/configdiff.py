"""Key-level diff of the small text configs inside a model folder (config.json, generation_config.json,
*.toml), so `diff` says `num_labels: 3 -> 4` instead of only `~ file config.json (84 B -> 84 B)`.

Only data formats with a safe parser in the standard library are read: JSON always, TOML with `tomllib`
(Python 3.11+). YAML is not parsed (no YAML parser is a dependency, and mstore adds none for this).
Files larger than MAX_CONFIG_BYTES (a tokenizer.json can be tens of MiB) and files that do not parse to
an object are left to the plain file diff. Parsing never executes anything.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from ..content.storedfile import StoredFile

MAX_CONFIG_BYTES = 1 << 20


def _json(data: bytes) -> Any:
    return json.loads(data.decode("utf-8"), parse_constant=str)  # NaN/Infinity kept as text: output stays JSON


def _parser(path: str) -> Callable[[bytes], Any] | None:
    name = path.rsplit("/", 1)[-1].lower()
    if name.endswith(".json"):
        return _json
    if name.endswith(".toml") and sys.version_info >= (3, 11):
        import tomllib

        return lambda data: tomllib.loads(data.decode("utf-8"))
    return None


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects become dotted keys; lists and scalars are compared as whole values."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def _load(stored: StoredFile, parse: Callable[[bytes], Any]) -> dict[str, Any] | None:
    try:
        doc = parse(stored.read(0, stored.size))
    except (ValueError, UnicodeDecodeError, RecursionError):  # tomllib's error is a ValueError too
        return None
    if not isinstance(doc, dict):
        return None
    try:
        json.dumps(doc)  # TOML dates and times are not JSON: give up rather than print half of it
    except (TypeError, ValueError):
        return None
    return flatten(doc)


def _text(value: Any) -> str:
    """Canonical JSON: `true` and `1`, or `1` and `1.0`, are different settings although Python's == says equal."""
    return json.dumps(value, sort_keys=True)


def diff_config_files(old: StoredFile, new: StoredFile, path: str) -> dict[str, Any] | None:
    """{added: {key: value}, removed: {key: value}, changed: {key: {old, new}}} for a changed config file,
    or None when `path` is not a config mstore reads, is too large, or does not parse."""
    parse = _parser(path)
    if parse is None or max(old.size, new.size) > MAX_CONFIG_BYTES:
        return None
    a, b = _load(old, parse), _load(new, parse)  # a damaged object raises, as everywhere: loud, never wrong
    if a is None or b is None:
        return None
    return {
        "added": {k: b[k] for k in sorted(set(b) - set(a))},
        "removed": {k: a[k] for k in sorted(set(a) - set(b))},
        "changed": {k: {"old": a[k], "new": b[k]} for k in sorted(set(a) & set(b)) if _text(a[k]) != _text(b[k])},
    }
