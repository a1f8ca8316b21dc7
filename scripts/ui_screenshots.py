"""Regenerate the screenshots in docs/ui/ (shown by docs/ui.md): builds a store of nightly retrains of a
small safetensors model, starts `mstore ui` on it, and photographs each page in headless chromium.

Needs Debian's chromium (`apt-get install chromium`) and the test extra (Playwright drives it).

    python scripts/ui_screenshots.py [--out docs/ui] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

from mstore import Repository
from mstore.formats.tensors import safetensors_bytes

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
ARGS += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
NIGHTS = 30


def build(root: Path) -> tuple[Repository, list[str]]:
    """A month of nightly retrains: accuracy climbs with noise, loss falls, one bad night, a tagged release."""
    repo = Repository.init(root / "store")
    rng = np.random.default_rng(7)
    tensors = {
        "encoder.embed.weight": rng.standard_normal((512, 64)).astype(np.float32),
        **{f"encoder.layers.{i}.weight": rng.standard_normal((32, 64)).astype(np.float32) for i in range(12)},
        "classifier.weight": rng.standard_normal((5, 64)).astype(np.float32),
        "classifier.bias": np.zeros(5, dtype=np.float32),
    }
    src = root / "model"
    src.mkdir()
    ids = []
    for night in range(NIGHTS):
        tensors["classifier.weight"] = tensors["classifier.weight"] + rng.normal(0, 0.05, (5, 64)).astype(np.float32)
        tensors["classifier.bias"] = tensors["classifier.bias"] + np.float32(0.01)
        if night % 7 == 6:  # a weekly full fine-tune also moves the encoder
            for i in range(12):  # 12 layers: the diff and version pages fold them into one row
                tensors[f"encoder.layers.{i}.weight"] = tensors[f"encoder.layers.{i}.weight"] * np.float32(1.01)
        (src / "model.safetensors").write_bytes(safetensors_bytes({k: ("F32", v) for k, v in tensors.items()}))
        (src / "config.json").write_text(f'{{"num_labels": 5, "hidden": 64, "dropout": {0.1 if night < 20 else 0.2}}}')
        dropout = 0.1 if night < 20 else 0.2
        accuracy = 0.78 + 0.12 * (1 - math.exp(-night / 10)) + rng.normal(0, 0.006) - (0.05 if night == 17 else 0)
        f1 = accuracy - 0.03 + rng.normal(0, 0.004)
        meta = {
            "metrics": {"accuracy": round(accuracy, 4), "f1": round(f1, 4), "loss": round(1.1 - accuracy, 4)},
            "params": {"lr": [3e-4, 1e-4, 5e-5][night % 3], "epochs": 3 + night // 10, "dropout": dropout},
            "num_samples": 12000 + 400 * night,
            "categories": ["billing", "technical", "account", "shipping"] + (["returns"] if night >= 20 else []),
        }
        message = "nightly retrain" + (" (bad labels batch)" if night == 17 else "")
        ids.append(repo.save(src, meta, message=message)["timestamp"])
    repo.tag("prod", ids[9], message="first release")
    repo.tag("prod", ids[19], force=True, message="weekly promotion")
    repo.tag("prod", ids[-4], force=True, message="weekly promotion")
    repo.tag("candidate", ids[-1])
    return repo, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/ui"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        repo, ids = build(Path(tmp))
        proc = subprocess.Popen(
            [sys.executable, "-m", "mstore", "--store", str(repo.root), "ui", "--port", "0", "--no-browser"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip().rstrip("/")
            for _ in range(100):
                try:
                    urllib.request.urlopen(url + "/api/versions?limit=1", timeout=5)
                    break
                except OSError:
                    time.sleep(0.1)
            metrics = {v: repo.get(v)["metrics"] for v in ids}
            best = [max(ids, key=lambda v: metrics[v][m]) for m in ("accuracy", "f1")]  # the best of each in view
            picked = "&".join(f"v={v}" for v in dict.fromkeys([ids[9], ids[17], *best, ids[-4], ids[-1]]))
            shots = {  # name: (path, what to wait for, viewport width)
                "index.png": ("/?chart=accuracy&chart=f1&chart=loss&limit=12", "#chart[data-ready='1'] canvas", 1280),
                "compare.png": (f"/compare?{picked}", "#compare", 1280),
                "version.png": (f"/versions/{ids[-4]}", "#files", 1280),
                # the bad night against the newest
                "diff.png": (f"/diff?old={ids[17]}&new={ids[-1]}", ".tensors", 1280),
                "narrow.png": ("/?chart=accuracy&chart=loss&limit=8", "#chart[data-ready='1'] canvas", 420),
            }
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
                for name, (path, ready, width) in shots.items():
                    page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
                    page.goto(url + path)
                    page.wait_for_selector(ready, timeout=15000)
                    page.wait_for_load_state("networkidle")
                    if name == "index.png":  # show the hover label on a point
                        x, y = page.evaluate(
                            """() => { const u = window.mstoreChart; const r = u.over.getBoundingClientRect();
                                       const i = u.data[0].length - 4;
                                       return [r.left + u.valToPos(u.data[0][i], 'x'),
                                               r.top + u.valToPos(u.data[1][i], 'y')]; }"""
                        )
                        page.mouse.move(x, y)
                    if name in ("diff.png", "version.png"):  # open the folded layers
                        page.click("tr.group summary")
                    if name == "index.png":  # two rows ticked, ready to diff
                        page.check(f"input.pick[value='{ids[-1]}']")
                        page.check(f"input.pick[value='{ids[-4]}']")
                    page.screenshot(path=str(args.out / name), full_page=True)
                    page.close()
                    print(f"wrote {args.out / name}")
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
