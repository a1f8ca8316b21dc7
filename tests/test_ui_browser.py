"""`mstore ui` in a real browser: Debian's headless chromium driven by Playwright, against `mstore ui` run as
a user runs it. Skipped (saying why) only when no chromium is installed; `.ci/run` installs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mstore import Repository

from uihelpers import (
    ACCURACY,
    CHANGED_TENSOR,
    XSS,
    XSS_FILE,
    XSS_METRIC,
    XSS_PARAM,
    build_choosing_store,
    build_store,
)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


CHROMIUM = chromium_path()
pytestmark = [
    pytest.mark.slow,  # `pytest -m 'not slow'` leaves the browser out of the quick loop
    pytest.mark.skipif(
        CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium; .ci/run installs it)"
    ),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Repository, list[str]]:
    return build_store(tmp_path_factory.mktemp("ui-browser"))


@pytest.fixture(scope="module")
def server(store: tuple[Repository, list[str]]) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mstore", "--store", str(store[0].root), "ui", "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    try:
        assert url.startswith("http://127.0.0.1:"), url + (proc.stderr.read() if proc.stderr else "")
        for _ in range(200):
            try:
                urllib.request.urlopen(url + "api/versions?limit=1", timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        yield url.rstrip("/")
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A fresh page that records every request it makes, every dialog and every script error."""

    def __init__(self, browser: object) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

        def on_dialog(d: object) -> None:
            self.dialogs.append(d.message)  # type: ignore[attr-defined]
            d.dismiss()  # type: ignore[attr-defined]

        self.page.on("dialog", on_dialog)


@pytest.fixture
def page(browser: object) -> Iterator[Page]:
    p = Page(browser)
    yield p
    p.page.close()


def wait_for_chart(page: Page) -> None:
    page.page.wait_for_selector("#chart[data-ready='1'] canvas", timeout=15000)


def test_table_lists_the_versions_newest_first(server: str, page: Page, store: tuple[Repository, list[str]]) -> None:
    _, ids = store
    page.page.goto(server + "/")
    rows = page.page.locator("#versions tbody tr")
    assert rows.count() == len(ids)
    assert [rows.nth(i).get_attribute("data-version") for i in range(len(ids))] == ids[::-1]
    assert "latest" in rows.nth(0).inner_text() and "prod" in rows.nth(2).inner_text()
    page.page.wait_for_selector("#du-table:not([hidden]) tbody tr", timeout=15000)
    assert "on disk" in page.page.inner_text("#du-summary")
    assert page.errors == []


def test_chart_is_drawn_with_one_point_per_version(server: str, page: Page) -> None:
    page.page.goto(server + "/")
    wait_for_chart(page)
    box = page.page.locator("#chart canvas").bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100
    assert page.page.get_attribute("#chart", "data-points") == str(len(ACCURACY))
    drawn = page.page.evaluate("window.mstoreChart.data[1].filter(v => v != null).length")
    assert drawn == len(ACCURACY)
    # a second metric at once: both series, as many points again
    page.page.check("input[name=chart][value=loss]")
    page.page.wait_for_selector("#chart[data-ready='1'] canvas", timeout=15000)
    assert page.page.evaluate("window.mstoreCharts.map(c => c.series.length)") == [2, 2]  # a panel each
    assert page.page.get_attribute("#chart", "data-points") == str(2 * len(ACCURACY))
    assert page.errors == []


def test_hovering_shows_and_clicking_opens_the_version(
    server: str, page: Page, store: tuple[Repository, list[str]]
) -> None:
    _, ids = store
    page.page.goto(server + "/")
    wait_for_chart(page)
    index = 2  # the third version: accuracy 0.78
    x, y = page.page.evaluate(
        """(i) => { const u = window.mstoreChart; const r = u.over.getBoundingClientRect();
                    return [r.left + u.valToPos(u.data[0][i], 'x'), r.top + u.valToPos(u.data[1][i], 'y')]; }""",
        index,
    )
    page.page.mouse.move(x, y)
    page.page.wait_for_function(
        "(v) => document.getElementById('chart-hover').textContent.includes(v)", arg=ids[index], timeout=5000
    )
    page.page.mouse.click(x, y)
    page.page.wait_for_url(f"**/versions/{ids[index]}", timeout=10000)
    assert page.page.inner_text("#version-id") == ids[index]
    assert "nightly retrain 3" in page.page.inner_text("#message")


def test_diff_page_names_the_changed_tensor(server: str, page: Page, store: tuple[Repository, list[str]]) -> None:
    _, ids = store
    page.page.goto(f"{server}/diff?old={ids[3]}&new={ids[4]}")
    names = page.page.locator(".tensors .tensor-name").all_inner_texts()
    assert names == [CHANGED_TENSOR]
    assert "accuracy" in page.page.inner_text("#diff-metrics tr.good")


def test_stored_markup_shows_as_text_and_runs_nothing(
    server: str, page: Page, store: tuple[Repository, list[str]]
) -> None:
    _, ids = store
    for path in ["/", f"/versions/{ids[5]}", f"/diff?old={ids[4]}&new={ids[5]}", f"/compare?v={ids[4]}&v={ids[5]}"]:
        page.page.goto(server + path)
        if path == "/":
            wait_for_chart(page)
        text = page.page.inner_text("main")
        assert XSS in text, path
        assert page.page.locator("main script, main img, main b").count() == 0, path
    page.page.goto(f"{server}/versions/{ids[5]}")
    assert XSS_FILE in page.page.inner_text("#files")
    page.page.goto(server + "/")
    head = page.page.inner_text("#versions thead")
    assert XSS_METRIC in head and XSS_PARAM in head
    page.page.hover("#versions thead")
    page.page.click("#columns summary")  # the column chooser names it as text too
    assert XSS_PARAM in page.page.inner_text("#columns")
    page.page.click(f"#versions th[data-col='param:{XSS_PARAM}']")  # sorting by it runs nothing either
    page.page.goto(f"{server}/versions/{ids[5]}")
    assert XSS in page.page.inner_text("#tag-history")
    assert page.dialogs == [] and page.errors == []


def test_no_request_leaves_127_0_0_1(server: str, page: Page, store: tuple[Repository, list[str]]) -> None:
    _, ids = store
    for path in ["/", f"/versions/{ids[4]}", f"/diff?old={ids[3]}&new={ids[4]}", "/?tag=prod", "/versions/nope"]:
        page.page.goto(server + path)
        page.page.wait_for_load_state("networkidle")
    assert len(page.requests) >= 5
    hosts = {urlsplit(u).hostname for u in page.requests if not u.startswith("data:")}
    assert hosts == {"127.0.0.1"}, sorted(page.requests)


# -- choosing and comparing (issue 24): one page load per feature group ------------------------------------


@pytest.fixture(scope="module")
def choosing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    repo, ids = build_choosing_store(tmp_path_factory.mktemp("ui-browser-choosing"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mstore", "--store", str(repo.root), "ui", "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip().rstrip("/")
    try:
        assert url.startswith("http://127.0.0.1:"), url
        yield url, ids
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def _column(page: Page, col: str) -> list[str]:
    return page.page.locator(f"#versions tbody td[data-col='{col}']").all_inner_texts()


def test_table_sorts_numerically_hides_columns_and_picks_rows(choosing: tuple[str, dict[str, str]], page: Page) -> None:
    url, ids = choosing
    page.page.goto(url + "/")
    page.page.click("#versions th[data-col='param:epochs']")
    assert _column(page, "param:epochs") == ["9", "10", "20", "100"]  # as numbers, not as text
    page.page.click("#versions th[data-col='param:epochs']")
    assert _column(page, "param:epochs") == ["100", "20", "10", "9"]
    page.page.click("#versions th[data-col='metric:accuracy']")
    assert _column(page, "metric:accuracy") == ["0.8", "0.85", "0.88", "0.9"]
    # the column chooser: a hidden column stays hidden on the next visit (localStorage)
    page.page.click("#columns summary")
    page.page.uncheck("#columns input[data-col='param:kernel']")
    assert page.page.locator("#versions th[data-col='param:kernel']").is_hidden()
    page.page.reload()
    assert page.page.locator("#versions th[data-col='param:kernel']").is_hidden()
    assert page.page.locator("#versions td[data-col='param:kernel']").first.is_hidden()
    assert page.page.locator("#versions th[data-col='param:C']").is_visible()
    page.page.click("#columns summary")
    page.page.check("#columns input[data-col='param:kernel']")
    assert page.page.locator("#versions th[data-col='param:kernel']").is_visible()
    # two rows: Diff (older first); three: Compare
    assert page.page.is_disabled("#diff-picked") and page.page.is_disabled("#compare-picked")
    page.page.check(f"input.pick[value='{ids['d']}']")
    page.page.check(f"input.pick[value='{ids['b']}']")
    assert page.page.is_enabled("#diff-picked") and page.page.is_enabled("#compare-picked")
    page.page.click("#diff-picked")
    page.page.wait_for_url("**/diff?**", timeout=10000)
    assert page.page.locator("h1 a.id").all_inner_texts() == [ids["b"], ids["d"]]
    page.page.go_back()
    page.page.check(f"input.pick[value='{ids['a']}']")
    page.page.check(f"input.pick[value='{ids['b']}']")
    page.page.check(f"input.pick[value='{ids['d']}']")
    assert page.page.is_disabled("#diff-picked")
    page.page.click("#compare-picked")
    page.page.wait_for_url("**/compare?**", timeout=10000)
    assert page.page.locator("#compare thead a").all_inner_texts() == [ids["a"], ids["b"], ids["d"]]
    assert page.page.inner_text("#compare tr[data-metric='accuracy'] td.best") == "★ 0.9"
    assert page.errors == []


def test_charts_panels_log_scale_time_axis_and_promotion_marks(
    choosing: tuple[str, dict[str, str]], page: Page
) -> None:
    url, ids = choosing
    page.page.goto(url + "/?chart=accuracy&chart=loss")
    wait_for_chart(page)
    assert page.page.locator("#chart .panel canvas").count() == 2  # one panel per metric
    assert page.page.evaluate("window.mstoreCharts.map(c => c.series.length)") == [2, 2]
    marks = page.page.get_attribute("#chart", "data-marks")
    assert marks is not None
    assert sorted(map(tuple, json.loads(marks))) == [("candidate", ids["d"]), ("prod", ids["b"]), ("prod", ids["c"])]
    assert page.page.evaluate("window.mstoreCharts.map(c => Number(c.root.dataset.marksDrawn))") == [3, 3]
    page.page.select_option("select[name=layout]", "shared")
    wait_for_chart(page)
    assert page.page.evaluate("window.mstoreCharts.length") == 1
    assert page.page.evaluate("window.mstoreChart.series.length") == 3  # x + accuracy + loss on one axis
    page.page.check("input[name=log]")
    wait_for_chart(page)
    assert page.page.evaluate("window.mstoreChart.scales.y.distr") == 3  # logarithmic
    page.page.select_option("select[name=x]", "time")
    wait_for_chart(page)
    assert page.page.evaluate("window.mstoreChart.scales.x.time") is True
    xs = page.page.evaluate("Array.from(window.mstoreChart.data[0])")
    assert xs == sorted(xs) and xs[0] > 1.7e9  # seconds since 1970, in save order
    assert "log=1" in page.page.url and "x=time" in page.page.url and "layout=shared" in page.page.url
    page.page.goto(url + "/?chart=accuracy&where=C<0.3")  # the chart follows the table's filter
    wait_for_chart(page)
    assert json.loads(page.page.get_attribute("#chart", "data-versions") or "") == [ids["c"], ids["d"]]
    assert page.errors == []


@pytest.mark.parametrize("width", [420])
def test_every_page_fits_a_narrow_screen(choosing: tuple[str, dict[str, str]], browser: object, width: int) -> None:
    url, ids = choosing
    narrow = browser.new_page(viewport={"width": width, "height": 800})  # type: ignore[attr-defined]
    try:
        for path in [
            "/",
            f"/versions/{ids['d']}",
            f"/diff?old={ids['a']}&new={ids['d']}",
            f"/compare?v={ids['a']}&v={ids['b']}&v={ids['c']}&v={ids['d']}",
        ]:
            narrow.goto(url + path)
            narrow.wait_for_load_state("networkidle")
            assert narrow.evaluate("document.documentElement.scrollWidth") <= width, path
            # a table wider than the screen scrolls inside its own box
            wide = narrow.evaluate(
                "Array.from(document.querySelectorAll('.scroll')).some(b => b.scrollWidth > b.clientWidth)"
            )
            assert wide, path
    finally:
        narrow.close()
