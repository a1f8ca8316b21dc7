"""Server time of `mstore ui`'s pages and API on a store with many versions (default 10,000).

Builds the store with real saves (as scripts/bench_log.py does; kept in --dir for reruns), then asks the
app in-process (Starlette's TestClient: no network, no browser) for each URL several times and prints the
median wall time of each request next to the app's own `Server-Timing`. The first request is timed
separately: it includes opening templates.

    python scripts/bench_ui.py [--versions 10000] [--dir /tmp/mstore-bench-ui] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from starlette.testclient import TestClient

from mstore.ui.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_log import build  # noqa: E402  (the same store builder as the log benchmark)


def timed(client: TestClient, url: str, runs: int) -> tuple[float, float]:
    walls, apps = [], []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(url)
        walls.append(time.perf_counter() - start)
        response.raise_for_status()
        apps.append(float(response.headers["server-timing"].split("dur=")[1]) / 1000)
    return statistics.median(walls), statistics.median(apps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/mstore-bench-ui"))
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    store = args.dir / "store"
    args.dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    build(store, args.versions)
    print(f"store with {args.versions} versions ready ({time.perf_counter() - started:.0f}s)")
    client = TestClient(create_app(store), base_url="http://127.0.0.1")
    start = time.perf_counter()
    client.get("/").raise_for_status()
    print(f"\nfirst request of a fresh app, GET /: {time.perf_counter() - start:.3f} s")
    urls = [
        ("/", "the first page: 50 newest versions (the chart and disk use load after it)"),
        ("/?offset=5000", "a page deep in the history"),
        ("/?q=nightly", "a text filter that reads every version"),
        ("/versions/latest", "one version"),
        ("/diff", "latest~1 against latest"),
        ("/api/versions?limit=50", "log --json -n 50"),
        ("/api/metrics/accuracy?limit=200", "the chart's default: the newest 200"),
        ("/api/metrics/accuracy", "the chart over every version"),
        ("/api/du", "disk use (reads every manifest)"),
    ]
    print(f"\n| request ({args.versions} versions, median of {args.runs}) | | wall s | server s |")
    print("|---|---|---|---|")
    for url, what in urls:
        wall, app = timed(client, url, args.runs)
        print(f"| `GET {url}` | {what} | {wall:.3f} | {app:.3f} |")


if __name__ == "__main__":
    main()
