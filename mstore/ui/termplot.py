"""`mstore log --plot METRIC`: one metric across versions as a chart in the terminal (plotext)."""

from __future__ import annotations

import shutil
from typing import Any

from ..diff.compare import flatten_metrics
from ..errors import BadInput
from ..store.metadata import is_number

MAX_WIDTH = 120


def points(entries: list[dict[str, Any]], metric: str) -> list[tuple[str, float]]:
    """(version ID, value) for each version (entries newest first) where `metric` is a number, oldest first."""
    out = []
    for meta in reversed(entries):
        metrics = meta.get("metrics")
        value: Any = flatten_metrics(metrics).get(metric) if isinstance(metrics, dict) else None
        if is_number(value):
            out.append((str(meta["timestamp"]), float(value)))
    return out


def plot(entries: list[dict[str, Any]], metric: str, *, width: int | None = None, height: int = 18) -> str:
    """The chart as text (no colour codes: it may be piped), x = versions oldest to newest."""
    try:
        import plotext as plt
    except ImportError:
        raise BadInput(
            "--plot draws with plotext: pip install 'mstore[ui]' (in a clone: pip install -e '.[ui]')"
        ) from None
    pts = points(entries, metric)
    if not pts:
        raise BadInput(f"no version shown has a number for metric {metric!r}")
    width = width or min(shutil.get_terminal_size((100, 24)).columns, MAX_WIDTH)
    xs = list(range(1, len(pts) + 1))
    ys = [v for _, v in pts]
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    plt.plot(xs, ys, marker="dot")
    plt.scatter(xs, ys, marker="o")
    ticks = sorted({0, len(pts) // 2, len(pts) - 1})
    plt.xticks([xs[i] for i in ticks], [pts[i][0] for i in ticks])
    plt.title(f"{metric} across {len(pts)} version(s), oldest to newest")
    chart: str = plt.build()
    plt.clear_figure()
    return chart
