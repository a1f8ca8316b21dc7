"""Choosing a model: order versions by a metric, best first, and refuse names that match nothing.

"Best" uses the same judgement as `diff` (`compare.metric_direction`: accuracy/f1 higher, loss/error
lower), so `mstore log --sort accuracy -n 1` names the best model without the user spelling out a
direction; a metric whose name says nothing needs one. Only numbers are compared: a version without
the metric, or with a non-number there, is listed after the ranked ones (newest first), never dropped,
so a sorted log still shows every version that matched.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import BadInput
from ..store.metadata import is_number
from .compare import declared_directions, flatten_metrics, metric_direction


def default_metrics(entries: list[dict[str, Any]]) -> list[str]:
    """Every top-level metric that holds a number in at least one of the versions shown, in the order
    they first appear (newest first). Taking them from all shown versions, not the newest alone, keeps
    an older version's accuracy visible after a save that logged only eval_loss."""
    names: dict[str, None] = {}
    for meta in entries:
        metrics = meta.get("metrics")
        if isinstance(metrics, dict):
            names.update((k, None) for k, v in metrics.items() if is_number(v))
    return list(names)


def metric_value(meta: dict[str, Any], name: str) -> float | None:
    """The metric `name` (dotted names reach nested ones) when it is a number, else None."""
    value: Any = flatten_metrics(meta.get("metrics") or {}).get(name)
    return float(value) if is_number(value) else None


def best_first(name: str, descending: bool | None, declared: dict[str, str] | None = None) -> bool:
    """Whether higher values of `name` rank first: `descending` when given, else the metric's direction
    (declared by a save, or judged by its name)."""
    if descending is not None:
        return descending
    direction = metric_direction(name, declared)
    if direction is None:
        raise BadInput(
            f"cannot tell whether a higher or a lower {name!r} is better: add {{desc}} (highest first) "
            "or {asc} (lowest first)",
            desc=("--desc", "descending=True"),
            asc=("--asc", "descending=False"),
        )
    return direction == "higher"


def sort_by_metric(entries: list[dict[str, Any]], name: str, descending: bool | None) -> list[dict[str, Any]]:
    """`entries` (newest first) ranked by metric `name`, best first; ties and unranked keep newest first."""
    higher_first = best_first(name, descending, declared_directions(*reversed(entries)))  # the newest declaration wins
    ranked = [(value, meta) for meta in entries if (value := metric_value(meta, name)) is not None]
    ranked.sort(key=lambda pair: -pair[0] if higher_first else pair[0])  # stable: ties stay newest first
    unranked = [meta for meta in entries if metric_value(meta, name) is None]
    return [meta for _, meta in ranked] + unranked


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when one candidate is close to `word`, else ``."""
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_metric_names(
    names: list[str], shown: list[dict[str, Any]], everything: Callable[[], Iterable[dict[str, Any]]]
) -> None:
    """Refuse a metric name that no version has: a typo (`-M acuracy`) would otherwise show an empty
    column that looks like an answer. The versions `shown` are looked at first; only a name missing
    from them costs reading `everything` (a metric of an older version is a fine thing to ask for)."""
    known: set[str] = set()
    for meta in shown:
        known.update(flatten_metrics(meta.get("metrics") or {}))
    missing = [n for n in names if n not in known]
    if not missing:
        return
    for meta in everything():
        known.update(flatten_metrics(meta.get("metrics") or {}))
    for name in missing:
        if name not in known:
            raise BadInput(f"no version has a metric named {name!r}{did_you_mean(name, known)}")
