"""A small store for the web UI tests: safetensors models whose tensors and metrics change over versions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mstore import Repository

from helpers import safetensors_bytes

XSS = "<script>alert(1)</script>"
XSS_FILE = "<img src=x onerror=alert(2)>.txt"
XSS_METRIC = "<b onmouseover=alert(3)>f1</b>"
XSS_PARAM = "<i onmouseover=alert(4)>C</i>"
ACCURACY = [0.71, 0.74, 0.78, 0.77, 0.83]  # one per version, oldest first; the XSS one has none
CHANGED_TENSOR = "classifier.weight"


def build_store(root: Path) -> tuple[Repository, list[str]]:
    """Five versions with accuracy and loss (only `classifier.weight` changes between the fourth and the
    fifth, the fourth is tagged `prod`), then a sixth whose message, metric name, param name and value,
    note, one file name and the message of its tag `hostile` are XSS attempts. Returns (repo, IDs oldest first)."""
    repo = Repository.init(root / "store")
    rng = np.random.default_rng(12)
    embed = rng.standard_normal((16, 8)).astype(np.float32)
    head = rng.standard_normal((4, 8)).astype(np.float32)
    model = root / "model.safetensors"
    ids = []
    for i, acc in enumerate(ACCURACY):
        head = head.copy()
        head[i % 4, :] += 0.5  # a real change in one row of the head each retrain
        if i < 3:
            embed = embed + np.float32(0.01)
        model.write_bytes(safetensors_bytes({"embed.weight": ("F32", embed), CHANGED_TENSOR: ("F32", head)}))
        meta = {"metrics": {"accuracy": acc, "loss": round(1 - acc, 3)}, "num_samples": 1000 + 100 * i}
        ids.append(repo.save(model, meta, message=f"nightly retrain {i + 1}")["timestamp"])
    repo.tag("prod", ids[3])
    folder = root / "hostile"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(model.read_bytes())
    (folder / XSS_FILE).write_text(XSS)
    meta = {"metrics": {XSS_METRIC: 0.5}, "params": {XSS_PARAM: XSS}, "note": XSS}
    ids.append(repo.save(folder, meta, message=XSS)["timestamp"])
    repo.tag("hostile", ids[-1], message=XSS)
    return repo, ids


TENSOR_LAYERS = 12  # more than diff/grouping.GROUP_MIN: the version page and the diff fold them into one row


def build_choosing_store(root: Path) -> tuple[Repository, dict[str, str]]:
    """Versions to choose between, by name -> ID (oldest first: a, b, c, d): params C, kernel and
    epochs (numbers whose text order differs from their numeric order), accuracy (higher is better), loss
    (lower) and tps (a name with no direction: the saves declare it lower-is-better); `a`'s parent was
    removed; `prod` was created on b then moved to c, `candidate` created on d; d adds 12 tensors
    `extra.N` to the model's `layers.N.weight` and `head.weight`."""
    repo = Repository.init(root / "store")
    rng = np.random.default_rng(3)
    tensors = {
        f"layers.{i}.weight": ("F32", rng.standard_normal((4, 8)).astype(np.float32)) for i in range(TENSOR_LAYERS)
    }
    tensors["head.weight"] = ("F32", rng.standard_normal((3, 8)).astype(np.float32))
    model = root / "model.safetensors"
    rows = {
        "gone": (0.70, 0.5, 9.0, {"C": 2.0, "kernel": "rbf", "epochs": 1}),
        "a": (0.80, 0.3, 5.0, {"C": 1.0, "kernel": "rbf", "epochs": 9}),
        "b": (0.90, 0.2, 3.0, {"C": 0.5, "kernel": "rbf", "epochs": 10}),
        "c": (0.85, 0.1, 4.0, {"C": 0.1, "kernel": "linear", "epochs": 100}),
        "d": (0.88, 0.15, 6.0, {"C": 0.1, "kernel": "linear", "epochs": 20}),
    }
    ids: dict[str, str] = {}
    for name, (acc, loss, tps, params) in rows.items():
        if name == "d":
            tensors.update({f"extra.{i}": ("F32", np.full((2,), i, dtype=np.float32)) for i in range(TENSOR_LAYERS)})
        tensors["head.weight"] = ("F32", tensors["head.weight"][1] + np.float32(0.1))
        model.write_bytes(safetensors_bytes(tensors))
        meta = {
            "metrics": {"accuracy": acc, "loss": loss, "tps": tps},
            "params": params,
            "metric_directions": {"tps": "lower"},
        }
        ids[name] = repo.save(model, meta, message=f"run {name}")["timestamp"]
    repo.remove(ids.pop("gone"))
    repo.tag("prod", ids["b"])
    repo.tag("prod", ids["c"], force=True, message="c is better on loss")
    repo.tag("candidate", ids["d"])
    return repo, ids
