"""One version per checkpoint of a training run: metrics, params, step and epoch, parent, best tagged.

Both callbacks (transformers, Lightning) and `log_model` save through `RunLog`, so a run looks the same
in `mstore log` whichever loop made it. The parent of each checkpoint is the run's previous one, so the
tensors that training moved little are stored as XOR deltas against it; the first checkpoint's parent is
the store's newest version, as for any save (a fine-tune of `prod` deltas against it). "Best" is judged
within the run, by the same rule `mstore log --sort` uses (loss, error: lower is better; accuracy, f1:
higher), and the tag moves to each new best as the run goes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..diff.compare import flatten_metrics, metric_direction
from ..errors import BadInput
from ..modelpath import default_store
from ..repository import Repository
from ..store.layout import CONFIG
from ..store.metadata import is_number


def open_store(store: str | os.PathLike[str] | None) -> Repository:
    """The store to save into ($MSTORE_DIR, else data/models, as everywhere), created by its first save."""
    root = Path(store if store is not None else default_store())
    return Repository.open(root) if (root / CONFIG).exists() else Repository.init(root)


def numbers(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """The metrics that are finite numbers (a framework's logs also hold strings, tensors, NaN)."""
    out: dict[str, float] = {}
    for name, value in (metrics or {}).items():
        value = value.item() if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 else value
        if is_number(value) and math.isfinite(float(value)):
            out[str(name)] = value
    return out


def plain_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-able, flat-ish subset: numbers, strings, booleans, None, and lists of those; secrets
    (`*_token`, `*password*`, `*secret*`) and private names (`_x`) left out."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        low = str(name).lower()
        if low.startswith("_") or low.endswith("token") or "password" in low or "secret" in low:
            continue
        if isinstance(value, (list, tuple)) and all(_scalar(v) for v in value):
            out[str(name)] = list(value)
        elif _scalar(value):
            out[str(name)] = value
        elif hasattr(value, "value") and _scalar(value.value):  # an Enum (transformers' strategies)
            out[str(name)] = value.value
    return out


def _scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (str, bool, int))


class RunLog:
    """The versions of one training run in one store."""

    def __init__(
        self,
        store: str | os.PathLike[str] | Repository | None = None,
        *,
        tag_best: str | None = "candidate",
        metric: str | None = None,
        greater_is_better: bool | None = None,
    ) -> None:
        self._store = store
        self._repo: Repository | None = store if isinstance(store, Repository) else None
        self.tag_best, self.metric = tag_best, metric
        self.higher = greater_is_better
        if tag_best is not None and metric is not None and greater_is_better is None:
            direction = metric_direction(metric)
            if direction is None:
                raise BadInput(f"cannot tell whether a higher or a lower {metric!r} is better: pass greater_is_better=")
            self.higher = direction == "higher"
        self.previous: str | None = None  # the run's last version: the next one's parent
        self.best: tuple[float, str] | None = None  # (value, version)
        self.versions: list[str] = []

    @property
    def repo(self) -> Repository:
        if self._repo is None:  # opened (or created) at the first save, not when the callback is made
            assert not isinstance(self._store, Repository)
            self._repo = open_store(self._store)
        return self._repo

    def save(
        self, path: str | os.PathLike[str], metadata: Mapping[str, Any], *, message: str | None = None
    ) -> dict[str, Any]:
        """Save `path` as the run's next version and move the best tag when its metric is the run's best."""
        meta = self.repo.save(path, metadata, message=message, parent=self.previous)
        vid = str(meta["timestamp"])
        self.previous = vid
        self.versions.append(vid)
        found: Any = flatten_metrics(meta.get("metrics") or {}).get(self.metric) if self.metric else None
        if self.tag_best is not None and is_number(found):
            value = float(found)
            better = self.best is None or (value > self.best[0] if self.higher else value < self.best[0])
            if better:
                self.best = (value, vid)
                self.repo.tag(self.tag_best, vid, force=True)
                meta.setdefault("tags", []).append(self.tag_best)
        return meta
