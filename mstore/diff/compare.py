"""What changed between two versions: time, model hash, metadata, metrics, categories, lineage and files."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Collection
from typing import Any

from ..content import verdict as _verdict
from ..content.storedfile import StoredFile, stored_external_tensors
from ..errors import UnsafeToLoad
from ..store.layout import Store
from ..store.manifest import KIND_FILE, Entry, Manifest
from ..store.metadata import is_number
from ..store.objects import ObjectStore
from ..store.versions import parse_id_time
from .configdiff import diff_config_files
from .environment import diff_environment
from .tensordiff import diff_tensor_files

# Keys compared in their own sections rather than as plain metadata.
_SPECIAL = {"timestamp", "model_hash", "mstore", "metrics", "params", "categories"}


def flatten_metrics(metrics: Any, prefix: str = "") -> dict[str, Any]:
    """Nested metric dicts (e.g. a per-class classification report) become dotted names."""
    if not isinstance(metrics, dict):
        return {prefix: metrics} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten_metrics(value, name))
        else:
            out[name] = value
    return out


_HIGHER = re.compile(r"acc|f1|precision|recall|auc|\bmap\b|bleu|rouge|\br2\b|score|iou|dice")
_LOWER = re.compile(r"loss|error|\berr\b|rmse|mae|mse|perplexity|\bppl\b|\bwer\b|\bcer\b|latency")


DIRECTIONS_KEY = "metric_directions"  # user metadata: {"f1": "higher", "latency": "lower"} (save --higher-is-better)


def _direction_by_name(name: str) -> str | None:
    words = name.lower().replace("-", "_").replace("_", " ")
    if _LOWER.search(words):
        return "lower"
    if _HIGHER.search(words):
        return "higher"
    return None


def metric_direction(name: str, declared: dict[str, str] | None = None) -> str | None:
    """'higher' or 'lower' is better; None when unknown. A direction the user declared for the metric or
    for the nearest key above it (`per_class` covers `per_class.9`) wins; else the name judges, the leaf
    first, then each key above it (`loss.by_class.3` is a loss)."""
    parts = name.split(".")
    prefixes = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
    for prefix in prefixes:
        said = (declared or {}).get(prefix)
        if said in ("higher", "lower"):
            return said
    for prefix in prefixes:
        found = _direction_by_name(prefix.rsplit(".", 1)[-1])
        if found:
            return found
    return None


def declared_directions(*metas: dict[str, Any]) -> dict[str, str]:
    """The directions the versions declared (later ones win); anything malformed in stored metadata is ignored."""
    out: dict[str, str] = {}
    for meta in metas:
        value = meta.get(DIRECTIONS_KEY)
        if isinstance(value, dict):
            out.update({str(k): v for k, v in value.items() if v in ("higher", "lower")})
    return out


def _metric_row(name: str, old: Any, new: Any, declared: dict[str, str] | None = None) -> dict[str, Any]:
    direction = metric_direction(name, declared)
    row: dict[str, Any] = {"old": old, "new": new, "delta": None, "relative": None, "direction": direction}
    row["improved"] = None
    if is_number(old) and is_number(new):
        delta = float(new) - float(old)  # in floats: two huge ints must not overflow a division
        if math.isfinite(delta):
            row["delta"] = new - old
            row["relative"] = delta / abs(float(old)) if old else None
        if direction and new != old:
            row["improved"] = (new > old) == (direction == "higher")
    return row


def _categories(value: Any) -> set[str]:
    if isinstance(value, dict):
        return {str(k) for k in value}
    if isinstance(value, list):
        return {v if isinstance(v, str) else repr(v) for v in value}
    return set() if value is None else {str(value)}


def diff_metadata(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    keys_old = set(old) - _SPECIAL
    keys_new = set(new) - _SPECIAL
    return {
        "added": {k: new[k] for k in sorted(keys_new - keys_old)},
        "removed": {k: old[k] for k in sorted(keys_old - keys_new)},
        "changed": {k: {"old": old[k], "new": new[k]} for k in sorted(keys_old & keys_new) if old[k] != new[k]},
    }


def diff_params(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Params key by key (nested ones as dotted names), in the shape of a config file's key diff."""
    a, b = flatten_metrics(old.get("params") or {}), flatten_metrics(new.get("params") or {})
    return {
        "added": {k: b[k] for k in sorted(set(b) - set(a))},
        "removed": {k: a[k] for k in sorted(set(a) - set(b))},
        "changed": {k: {"old": a[k], "new": b[k]} for k in sorted(set(a) & set(b)) if a[k] != b[k]},
    }


def diff_metrics(old: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every metric of either version, with both values and, where both are numbers, the delta."""
    a, b = flatten_metrics(old.get("metrics") or {}), flatten_metrics(new.get("metrics") or {})
    names = list(a) + [n for n in b if n not in a]
    declared = declared_directions(old, new)
    return {n: _metric_row(n, a.get(n), b.get(n), declared) for n in names}


def lineage_of(meta: dict[str, Any]) -> dict[str, Any]:
    """The `mstore.lineage` block of a version's metadata ({} for versions saved before it existed)."""
    block = meta.get("mstore")
    value = block.get("lineage") if isinstance(block, dict) else None
    return value if isinstance(value, dict) else {}


def unsafe_globals_of(meta: dict[str, Any]) -> list[str]:
    """`mstore.unsafe_globals` of a version (pickle globals outside the known-safe set); [] when none or
    not recorded. Metadata comes from stores others can write: anything but a list of strings is ignored."""
    block = meta.get("mstore")
    value = block.get("unsafe_globals") if isinstance(block, dict) else None
    return [g for g in value if isinstance(g, str)] if isinstance(value, list) else []


def pickle_verdict_of(meta: dict[str, Any]) -> tuple[str | None, str]:
    """(verdict, why) of a version's pickles: ("unsafe", "loading it imports os.system"), ("unknown",
    "pickle 'm.pkl' could not be read to its end (...)": treated as unsafe), ("safe", "") or (None, "")
    for a version without pickles. Metadata of odd types counts as unknown, never as safe."""
    block = meta.get("mstore")
    if not isinstance(block, dict) or "pickle_globals" not in block:
        return None, ""
    unsafe = unsafe_globals_of(meta)
    if unsafe:
        return "unsafe", "loading it imports " + ", ".join(unsafe[:5]) + (" and more" if len(unsafe) > 5 else "")
    incomplete = block.get("pickle_incomplete")
    if incomplete:
        if isinstance(incomplete, dict) and incomplete:
            rel, why = next(iter(incomplete.items()))
            return "unknown", f"pickle {str(rel)!r} could not be read to its end ({why}); treated as unsafe"
        return "unknown", "a pickle could not be read to its end; treated as unsafe"
    if not isinstance(block.get("pickle_globals"), dict) or not isinstance(block.get("unsafe_globals"), list):
        return "unknown", "the pickle scan recorded in this version is unreadable; treated as unsafe"
    return "safe", ""


def pickle_claim_of(meta: dict[str, Any]) -> str:
    """ " (its metadata claimed safe)" when the verdict found in the bytes is not the one the version's
    metadata claimed (content/verdict.py keeps the claim as `mstore.pickle_claimed`); "" otherwise."""
    block = meta.get("mstore")
    claimed = block.get("pickle_claimed") if isinstance(block, dict) else None
    if not isinstance(claimed, str) or not claimed.isidentifier():
        return ""
    return f" (its metadata claimed {claimed})"


ALLOW_UNSAFE_ENV = "MSTORE_ALLOW_UNSAFE"


def allow_unsafe_from(allow_unsafe: bool | None) -> bool:
    """The caller's switch, else MSTORE_ALLOW_UNSAFE (1/true/yes allow; anything else does not)."""
    if allow_unsafe is not None:
        return bool(allow_unsafe)
    return os.environ.get(ALLOW_UNSAFE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def load_refusal(meta: dict[str, Any], version: str, files: Collection[str] | None = None) -> str | None:
    """Why handing `version`'s model to a loader is refused (one line; `{allow}` stands for the switch), or
    None when it may be handed over:
    a version without pickles, one whose pickles are all known-safe, or a partial load (`files`, manifest
    paths) that leaves out every pickle that is not. The first offending global is named."""
    verdict, why = pickle_verdict_of(meta)
    if verdict in (None, "safe"):
        return None
    block = meta.get("mstore")
    per_file = block.get("pickle_globals") if isinstance(block, dict) else None
    incomplete = block.get("pickle_incomplete") if isinstance(block, dict) else None
    if (
        files is not None
        and per_file
        and isinstance(per_file, dict)
        and (incomplete is None or isinstance(incomplete, dict))
    ):
        unsafe = set(unsafe_globals_of(meta))
        scope = block.get("pickle_scope") if isinstance(block, dict) else None  # a partial scan read only these
        bad = []
        for rel in sorted(files):
            names = per_file.get(rel)
            unscanned = scope is not None and (not isinstance(scope, list) or rel not in scope)
            if unscanned or rel in (incomplete or {}) or (rel in per_file and not isinstance(names, list)):
                bad.append((rel, None))
            elif isinstance(names, list):
                bad.extend((rel, g) for g in names if g in unsafe)
        if not bad:
            return None
        rel, first = bad[0]
        why = f"pickle {rel!r} imports {first}" if first else f"pickle {rel!r} could not be read to its end"
    else:
        first_unsafe = unsafe_globals_of(meta)[:1]
        if first_unsafe:
            why = f"loading it imports {first_unsafe[0]}"
    return (
        f"refused: version {version} is {verdict} ({why}); nothing was written. Loading runs what its pickles "
        "import: pass {allow} if you trust it"
    )


# How the refusal names the switch: in the CLI's terms and in Python's (MStoreError's options)
ALLOW_WORDS = (f"--allow-unsafe (or {ALLOW_UNSAFE_ENV}=1)", f"allow_unsafe=True (or {ALLOW_UNSAFE_ENV}=1)")


def check_loadable(
    meta: dict[str, Any], version: str, allow_unsafe: bool | None = None, files: Collection[str] | None = None
) -> None:
    """Raise UnsafeToLoad (an UnsafeModel) for a version `load_refusal` refuses, unless allowed."""
    if allow_unsafe_from(allow_unsafe):
        return
    why = load_refusal(meta, version, files)
    if why is not None:
        raise UnsafeToLoad(why, allow=ALLOW_WORDS)


def diff_lineage(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Training data and code of both versions, and whether each is the same (None: not known for both)."""
    a, b = lineage_of(old), lineage_of(new)

    def same(x: Any, y: Any, key: str) -> bool | None:
        if not (isinstance(x, dict) and isinstance(y, dict) and key in x and key in y):
            return None
        return bool(x[key] == y[key])

    data_old, data_new = a.get("training_file"), b.get("training_file")
    code_old, code_new = a.get("git"), b.get("git")
    return {
        "training_file": {"old": data_old, "new": data_new, "same": same(data_old, data_new, "blake3")},
        "git": {"old": code_old, "new": code_new, "same": same(code_old, code_new, "commit")},
    }


def diff_files(old: Manifest, new: Manifest, objects: ObjectStore | None = None) -> dict[str, Any]:
    """Files added / removed / changed (by content hash) / unchanged; a single-file model keeps its slot.

    With `objects`, a changed safetensors / npz / torch zip / ONNX / GGUF file (or ONNX external-data
    file) also gets its tensor-level diff, and a
    changed small config (config.json, *.toml) the keys that changed (`configdiff`).
    """

    def files(m: Manifest) -> dict[str, Entry]:
        return {e.path: e for e in m.files}

    a, b = files(old), files(new)
    if old.kind == new.kind == KIND_FILE:  # one file each: compare them even if renamed
        (a_entry,), (b_entry,) = a.values(), b.values()
        a = {b_entry.path: a_entry}
    changed = []
    ext_a = stored_external_tensors(old, objects) if objects is not None else {}
    ext_b = stored_external_tensors(new, objects) if objects is not None else {}
    for p in sorted(set(a) & set(b)):
        if a[p].digest == b[p].digest:
            continue
        row: dict[str, Any] = {"path": p, "old_size": a[p].size, "new_size": b[p].size}
        if objects is not None:
            old_file, new_file = StoredFile(a[p], objects), StoredFile(b[p], objects)
            tensors = diff_tensor_files(old_file, new_file, p, ext_a.get(p, ()), ext_b.get(p, ()))
            if tensors is not None:
                row["tensors"] = tensors
            keys = diff_config_files(old_file, new_file, p)
            if keys is not None:
                row["keys"] = keys
        changed.append(row)
    return {
        "added": [{"path": p, "size": b[p].size} for p in sorted(set(b) - set(a))],
        "removed": [{"path": p, "size": a[p].size} for p in sorted(set(a) - set(b))],
        "changed": changed,
        "unchanged": len(set(a) & set(b)) - len(changed),
    }


def compare(store: Store, id1: str, id2: str) -> dict[str, Any]:
    """The full comparison of version `id1` (old) with `id2` (new), as plain JSON-ready data."""
    m1, m2 = store.versions.read(id1), store.versions.read(id2)
    m1, m2 = _verdict.local(store, id1, m1), _verdict.local(store, id2, m2)  # verdicts of the bytes
    cats1, cats2 = _categories(m1.get("categories")), _categories(m2.get("categories"))
    return {
        "version1": id1,
        "version2": id2,
        "time_diff": (parse_id_time(id2) - parse_id_time(id1)).total_seconds(),
        "model_hash": {"version1": m1.get("model_hash"), "version2": m2.get("model_hash")},
        "same_model": m1.get("model_hash") == m2.get("model_hash"),
        "metadata": diff_metadata(m1, m2),
        "params": diff_params(m1, m2),
        "metrics": diff_metrics(m1, m2),
        "categories": {"added": sorted(cats2 - cats1), "removed": sorted(cats1 - cats2)},
        "lineage": diff_lineage(m1, m2),
        "environment": diff_environment(m1, m2),
        "unsafe_globals": {"version1": unsafe_globals_of(m1), "version2": unsafe_globals_of(m2)},
        "files": diff_files(store.version_manifest(id1, m1), store.version_manifest(id2, m2), store.objects),
    }
