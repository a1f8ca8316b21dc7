"""A small store for the web UI tests: safetensors models whose tensors and metrics change over versions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mstore import Repository

from helpers import safetensors_bytes

XSS = "<script>alert(1)</script>"
XSS_FILE = "<img src=x onerror=alert(2)>.txt"
XSS_METRIC = "<b onmouseover=alert(3)>f1</b>"
ACCURACY = [0.71, 0.74, 0.78, 0.77, 0.83]  # one per version, oldest first; the XSS one has none
CHANGED_TENSOR = "classifier.weight"


def build_store(root: Path) -> tuple[Repository, list[str]]:
    """Five versions with accuracy and loss (only `classifier.weight` changes between the fourth and the
    fifth, the fourth is tagged `prod`), then a sixth whose message, metric name, note and one file name
    are XSS attempts. Returns (repo, IDs oldest first)."""
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
    ids.append(repo.save(folder, {"metrics": {XSS_METRIC: 0.5}, "note": XSS}, message=XSS)["timestamp"])
    return repo, ids
