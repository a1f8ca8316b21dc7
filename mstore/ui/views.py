"""What the pages show, computed from `Repository` answers: pure functions the templates render.

Param columns of the version table, the side-by-side comparison of N versions (the best value of each metric
marked, by the metric's declared or judged direction, as `diff` colours it), the tensors of a version's
tensor files (names, dtypes, shapes and parameter counts from the headers alone: no weight bytes are read),
and every tag's moves (the promotions the chart marks).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from ..content.storedfile import StoredFile
from ..diff.compare import declared_directions, flatten_metrics, metric_direction
from ..diff.grouping import GROUP_MIN, group_names
from ..errors import MStoreError
from ..formats.tensors import BYTES, index_tensors
from ..repository import Repository
from ..store.manifest import KIND_FILE
from ..store.metadata import is_number
from ..store.versions import parse_id_time
from ..tensorfile import TENSOR_SUFFIXES

TENSOR_FILE_SUFFIXES = (*TENSOR_SUFFIXES, ".pt", ".pth", ".bin")  # torch zips are listed too (headers only)
MAX_COMPARED = 50
SCALARS = (str, int, float, bool)


def absolute_time(version_id: str) -> str:
    """`2026-12-03 07:00:00 UTC`: the save time the ID encodes ("" for an ID that is not a time)."""
    try:
        return parse_id_time(version_id).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return ""


def param_values(meta: dict[str, Any]) -> dict[str, Any]:
    """The version's params (nested ones as dotted names)."""
    params = meta.get("params")
    return flatten_metrics(params) if isinstance(params, dict) else {}


def param_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every param that holds a plain value (number, string, boolean) in one of the rows, in the order
    they first appear."""
    names: dict[str, None] = {}
    for meta in rows:
        names.update((k, None) for k, v in param_values(meta).items() if isinstance(v, SCALARS))
    return list(names)


def _best(values: list[Any], direction: str | None) -> set[int]:
    """The columns holding the best number (all of them on a tie); none when the direction is unknown,
    fewer than two columns hold numbers, or every number is the same."""
    numbers = {i: float(v) for i, v in enumerate(values) if is_number(v)}
    if direction not in ("higher", "lower") or len(numbers) < 2 or len(set(numbers.values())) < 2:
        return set()
    best = max(numbers.values()) if direction == "higher" else min(numbers.values())
    return {i for i, v in numbers.items() if v == best}


def compare_table(metas: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows of a side-by-side comparison of `metas` (one column each, in the order given): metrics with
    their direction and the best columns marked, params and other plain metadata with `differs` set when
    the columns disagree."""
    declared = declared_directions(*metas)
    flat = [flatten_metrics(m.get("metrics")) if isinstance(m.get("metrics"), dict) else {} for m in metas]
    metric_names = list(dict.fromkeys(n for f in flat for n in f))
    metrics = []
    for name in metric_names:
        values = [f.get(name) for f in flat]
        direction = metric_direction(name, declared)
        metrics.append({"name": name, "values": values, "direction": direction, "best": _best(values, direction)})

    def plain_rows(columns: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = list(dict.fromkeys(n for c in columns for n in c))
        out = []
        for name in names:
            values = [c.get(name) for c in columns]
            shown = {repr(v) for v in values}
            out.append({"name": name, "values": values, "differs": len(shown) > 1})
        return out

    params = plain_rows([param_values(m) for m in metas])
    skip = {"metrics", "params", "mstore", "message", "timestamp", "model_hash", "tags"}
    other = plain_rows([{k: v for k, v in m.items() if k not in skip and isinstance(v, SCALARS)} for m in metas])
    return {"metrics": metrics, "params": params, "metadata": other}


def _count(shape: list[int]) -> int:
    return math.prod(int(d) for d in shape) if shape else 1


def tensor_listing(repo: Repository, version_id: str) -> list[dict[str, Any]]:
    """Each tensor file of the version (a single-file model, or in a folder model the files with a tensor
    suffix) with its tensors (name, dtype, shape, params) in natural order, grouped as `diff` groups them,
    and the file's parameter count. Only the headers are read (the chunker cut the files at tensor
    boundaries, so no weight bytes); a file that is not a tensor container is left out."""
    try:
        manifest = repo.manifest(version_id)
    except (MStoreError, OSError):  # e.g. a metadata-only mirror of a remote: no tensor view, the rest shows
        return []
    out = []
    for entry in manifest.files:
        if manifest.kind != KIND_FILE and not entry.path.endswith(TENSOR_FILE_SUFFIXES):
            continue
        if entry.size == 0:
            continue
        try:
            found = index_tensors(entry.path, StoredFile(entry, repo.store.objects).read, entry.size)
        except (MStoreError, OSError):  # an unreadable object costs this view only (fsck reports it)
            continue
        if not found:
            continue
        by_name: dict[str, dict[str, Any]] = {}
        counts: dict[str, int] = {}
        for t in found:
            shape = [int(d) for d in t.shape]
            count = None if t.dtype == BYTES else _count(shape)  # a torch storage: bytes of unknown type
            by_name[t.name] = {"name": t.name, "dtype": t.dtype, "shape": shape, "params": count}
            counts[t.name] = count or 0
        groups = []
        for g in group_names(list(by_name), GROUP_MIN):
            rows = [by_name[n] for n in g.names]
            groups.append({"label": g.label, "rows": rows, "params": sum(counts[n] for n in g.names)})
        out.append(
            {
                "path": entry.path,
                "count": len(by_name),
                "params": sum(counts.values()),
                "groups": groups,
            }
        )
    return out


def human_count(n: int) -> str:
    """`124M`, `1.3B`, `4,096`: a parameter count as the Hugging Face file view writes it."""
    for size, unit in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "k")):
        if n >= size:
            value = n / size
            return f"{value:.3g}{unit}"
    return f"{n:,}"


def promotions(repo: Repository) -> list[dict[str, Any]]:
    """Every recorded move of every tag (deleted tags too), newest first, each with its `tag`: what the
    chart marks and the version pages list. A damaged history is left out (fsck reports it)."""
    out: list[dict[str, Any]] = []
    for name in repo.store.refs.history_names():
        try:
            moves = repo.tag_history(name)
        except MStoreError:
            continue
        out.extend({"tag": name, **move} for move in moves)
    out.sort(key=lambda m: _sort_time(m.get("time")), reverse=True)
    return out


def _sort_time(text: Any) -> float:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def tag_histories(moves: list[dict[str, Any]], version_id: str, current: list[str]) -> list[dict[str, Any]]:
    """For the version page: each tag that names `version_id` now or once did (the current ones first),
    with all its moves newest first."""
    names = list(dict.fromkeys([*current, *(m["tag"] for m in moves if version_id in (m["from"], m["to"]))]))
    return [{"tag": n, "current": n in current, "moves": [m for m in moves if m["tag"] == n]} for n in names]


def tensor_diff_rows(t: dict[str, Any]) -> list[dict[str, Any]]:
    """The diff page's tensor rows: changed tensors by relative L2 (largest first), then added, then
    removed; more than GROUP_MIN of one kind sharing a prefix fold into one row (`kind` "group", with
    `word` and `rows`) that the page expands on a click, as `diff` folds them."""
    out: list[dict[str, Any]] = []
    for kind, mark, cls, rows in (
        ("changed", "~", "", t["changed"]),
        ("added", "+", "good", t["added"]),
        ("removed", "−", "bad", t["removed"]),
    ):
        by_name = {r["name"]: r for r in rows}
        singles = []
        for g in group_names(list(by_name), GROUP_MIN):
            if g.count == 1:
                singles.append(by_name[g.label])
            else:
                rows_of = [by_name[n] for n in g.names]
                out.append({"kind": "group", "word": kind, "mark": mark, "cls": cls, "label": g.label, "rows": rows_of})
        if kind == "changed":
            singles.sort(key=lambda r: -(r["rel_l2"] if is_number(r["rel_l2"]) else float("inf")))
        out.extend({"kind": kind, "mark": mark, "cls": cls, "row": r} for r in singles)
    return out
