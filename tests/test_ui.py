"""`mstore ui` without a browser: the JSON API has the CLI's --json shapes, the pages escape what they show,
refs are validated, nothing but GET/HEAD is served, and `log --plot` draws in the terminal."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from markupsafe import escape as html_escape
from starlette.testclient import TestClient
from typer.testing import CliRunner

from mstore import Repository
from mstore.cli import app as cli_app
from mstore.ui.app import create_app

from uihelpers import (
    ACCURACY,
    CHANGED_TENSOR,
    TENSOR_LAYERS,
    XSS,
    XSS_FILE,
    XSS_METRIC,
    XSS_PARAM,
    build_choosing_store,
    build_store,
)

runner = CliRunner()
BASE = "http://127.0.0.1"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Repository, list[str]]:
    return build_store(tmp_path_factory.mktemp("ui"))


@pytest.fixture(scope="module")
def client(built: tuple[Repository, list[str]]) -> TestClient:
    return TestClient(create_app(built[0].root), base_url=BASE)


def cli_json(repo: Repository, *args: str) -> object:
    result = runner.invoke(cli_app, ["--store", str(repo.root), *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_api_has_the_cli_json_shapes(built: tuple[Repository, list[str]], client: TestClient) -> None:
    repo, ids = built
    assert client.get("/api/versions").json() == cli_json(repo, "log")
    assert client.get("/api/versions?limit=2&offset=1").json() == cli_json(repo, "log", "-n", "3")[1:]
    assert client.get("/api/versions?tag=prod").json() == cli_json(repo, "log", "--tag", "prod")
    assert client.get(f"/api/versions/{ids[2]}").json() == cli_json(repo, "show", ids[2])
    assert client.get("/api/versions/prod").json() == cli_json(repo, "show", "prod")
    assert client.get("/api/diff?old=latest~2&new=latest~1").json() == cli_json(repo, "diff", "latest~2", "latest~1")


def test_api_metric_series_is_oldest_first_and_numbers_only(
    built: tuple[Repository, list[str]], client: TestClient
) -> None:
    _, ids = built
    points = client.get("/api/metrics/accuracy").json()
    assert [p["version"] for p in points] == ids[:5]  # the sixth version has no accuracy
    assert [p["value"] for p in points] == ACCURACY
    assert all(isinstance(p["timestamp"], float) for p in points)
    assert [p["version"] for p in client.get("/api/metrics/accuracy?limit=3").json()] == ids[3:5]
    assert client.get("/api/metrics/no-such-metric").json() == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/versions/nope",
        "/api/versions/..%2F..%2Fetc%2Fpasswd",
        "/api/versions/../mstore.json",
        "/api/versions/version_..",
        "/api/versions/latest~99",
        "/api/diff?old=../x&new=latest",
        "/api/diff?old=latest&new=%00",
        "/api/no-such-endpoint",
    ],
)
def test_bad_refs_are_404_with_a_json_error(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]


@pytest.mark.parametrize("path", ["/versions/..%2F..%2Fetc%2Fpasswd", "/versions/nope", "/diff?old=nope&new=latest"])
def test_bad_refs_are_404_pages(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/", "/api/versions", "/api/versions/latest", "/versions/latest", "/nowhere"])
def test_read_only(client: TestClient, built: tuple[Repository, list[str]], method: str, path: str) -> None:
    before = built[0].ids()
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert built[0].ids() == before


def test_head_works(client: TestClient) -> None:
    assert client.head("/").status_code == 200
    assert client.head("/api/versions").status_code == 200


def test_other_hosts_are_refused(built: tuple[Repository, list[str]]) -> None:
    """A page on another site that rebinds its DNS name to 127.0.0.1 must not read the store."""
    client = TestClient(create_app(built[0].root), base_url="http://attacker.example")
    assert client.get("/api/versions").status_code == 400
    assert TestClient(create_app(built[0].root), base_url="http://localhost:8765").get("/").status_code == 200


def test_cross_site_requests_are_refused_before_any_work(client: TestClient) -> None:
    """A page on the web can fire no-cors GETs at 127.0.0.1 (it cannot read the answer, but the UI would do
    the work: a diff of two large versions). Browsers mark such requests; they are refused at the door."""
    for path in ("/", "/api/versions", "/diff?old=latest~1&new=latest"):
        refused = client.get(path, headers={"Sec-Fetch-Site": "cross-site"})
        assert refused.status_code == 403 and "cross-site" in refused.json()["error"], path
    for site in ("same-origin", "none"):  # the UI's own fetches, and a URL typed or opened by `mstore ui`
        assert client.get("/api/versions", headers={"Sec-Fetch-Site": site}).status_code == 200


def test_pages_escape_every_stored_string(client: TestClient, built: tuple[Repository, list[str]]) -> None:
    _, ids = built
    raw_strings = [XSS, XSS_FILE, XSS_METRIC, XSS_PARAM]
    pages = ["/", f"/versions/{ids[5]}", f"/diff?old={ids[4]}&new={ids[5]}", f"/compare?v={ids[4]}&v={ids[5]}"]
    for path in pages:
        html = client.get(path).text
        for raw in raw_strings:
            assert raw not in html, (path, raw)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;.txt" in client.get(f"/versions/{ids[5]}").text


def test_pages_forbid_inline_scripts_and_load_nothing_from_elsewhere(client: TestClient) -> None:
    response = client.get("/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'self'" in csp
    assert "http://" not in response.text.replace(BASE, "") and "https://" not in response.text
    for asset in ["/static/uPlot.iife.min.js", "/static/app.js", "/static/uPlot.min.css", "/static/style.css"]:
        assert client.get(asset).status_code == 200, asset


def test_index_lists_filters_and_pages(client: TestClient, built: tuple[Repository, list[str]]) -> None:
    _, ids = built
    html = client.get("/").text
    assert all(f'data-version="{v}"' in html for v in ids)
    assert html.index(f'data-version="{ids[5]}"') < html.index(f'data-version="{ids[0]}"')  # newest first
    tagged = client.get("/?tag=prod").text
    assert f'data-version="{ids[3]}"' in tagged and f'data-version="{ids[4]}"' not in tagged
    found = client.get("/?q=retrain+3").text
    assert f'data-version="{ids[2]}"' in found and f'data-version="{ids[1]}"' not in found
    first = client.get("/?limit=2").text
    assert f'data-version="{ids[4]}"' in first and f'data-version="{ids[3]}"' not in first and 'id="older"' in first
    second = client.get("/?limit=2&offset=2").text
    assert f'data-version="{ids[3]}"' in second and f'data-version="{ids[4]}"' not in second
    assert client.get("/?tag=nosuchtag").status_code == 404
    assert client.get("/?offset=-1").status_code == 400


def test_version_page_shows_parent_share_and_a_snippet(client: TestClient, built: tuple[Repository, list[str]]) -> None:
    repo, ids = built
    html = client.get(f"/versions/{ids[4]}").text
    shown = repo.show(ids[4])
    assert f'href="/versions/{ids[3]}"' in html  # the parent
    assert "model.safetensors" in html
    assert f"mstore.model_path(&#34;{ids[4]}&#34;" in html or f'mstore.model_path("{ids[4]}"' in html
    assert f"path {ids[4]}</code>" in html and f"checkout {ids[4]} -o model_{ids[4]}" in html
    assert shown["shared_with_parent_bytes"] > 0 and "shares" in html


def test_diff_page_names_the_changed_tensor_and_colours_metrics(
    client: TestClient, built: tuple[Repository, list[str]]
) -> None:
    _, ids = built
    html = client.get(f"/diff?old={ids[3]}&new={ids[4]}").text
    assert CHANGED_TENSOR in html and "embed.weight" not in html.split("Tensors", 1)[1].split("unchanged")[0]
    assert '<tr class="good">' in html  # accuracy went up, loss went down
    only = client.get(f"/diff?old={ids[3]}&new={ids[4]}&changed=1").text
    assert "num_samples" in only


def test_first_page_is_fast_and_says_how_long_it_took(client: TestClient) -> None:
    response = client.get("/")
    assert response.headers["server-timing"].startswith("app;dur=")


def test_log_plot_draws_the_metric(built: tuple[Repository, list[str]]) -> None:
    repo, ids = built
    result = runner.invoke(cli_app, ["--store", str(repo.root), "log", "--plot", "accuracy"])
    assert result.exit_code == 0, result.output
    assert "accuracy across 5 version(s)" in result.stdout
    axis = next(line for line in result.stdout.splitlines() if ids[0] in line)
    assert axis.index(ids[0]) < axis.index(ids[4])  # oldest on the left, newest on the right
    assert "0.83" in result.stdout or "0.82" in result.stdout  # the y axis reaches the best value
    limited = runner.invoke(cli_app, ["--store", str(repo.root), "log", "--plot", "accuracy", "-n", "3"])
    assert "accuracy across 2 version(s)" in limited.stdout
    typo = runner.invoke(cli_app, ["--store", str(repo.root), "log", "--plot", "acuracy"])
    assert typo.exit_code == 2 and "accuracy" in typo.stderr
    both = runner.invoke(cli_app, ["--store", str(repo.root), "log", "--plot", "accuracy", "--json"])
    assert both.exit_code == 2


def test_without_the_extra_ui_says_what_to_install(
    built: tuple[Repository, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mstore.ui
    import mstore.ui.server

    def must_not_serve(*args: object, **kwargs: object) -> None:
        raise AssertionError("served without its packages")

    monkeypatch.setattr(mstore.ui, "UI_PACKAGES", ("starlette", "no_such_package_mstore_test"))
    monkeypatch.setattr(mstore.ui.server, "serve", must_not_serve)
    result = runner.invoke(cli_app, ["--store", str(built[0].root), "ui", "--no-browser"])
    assert result.exit_code == 2
    assert (
        result.stderr.strip() == "mstore: error: mstore ui needs no_such_package_mstore_test: "
        "pip install 'mstore[ui]' (in a clone: pip install -e '.[ui]')"
    )


def _start(store: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mstore", "--store", str(store), "ui", "--port", "0", "--no-browser", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_ui_prints_its_url_and_binds_loopback(built: tuple[Repository, list[str]]) -> None:
    import urllib.request

    proc, url = _start(built[0].root)
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        for _ in range(100):
            try:
                body = urllib.request.urlopen(url + "api/versions?limit=1", timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        assert json.loads(body)[0]["timestamp"] == built[1][-1]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "warning" not in err


def test_another_loopback_address_answers_at_the_url_it_prints(built: tuple[Repository, list[str]]) -> None:
    import urllib.request

    proc, url = _start(built[0].root, "--host", "127.0.0.2")
    try:
        assert url.startswith("http://127.0.0.2:")
        with urllib.request.urlopen(url + "api/versions?limit=1", timeout=10) as answer:
            assert answer.status == 200 and json.loads(answer.read())[0]["timestamp"] == built[1][-1]
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_an_explicit_public_host_warns(built: tuple[Repository, list[str]]) -> None:
    proc, url = _start(built[0].root, "--host", "0.0.0.0")
    try:
        assert url.startswith("http://0.0.0.0:")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "warning: listening on 0.0.0.0: anyone who can reach it can read every version" in err


def test_diff_page_says_whether_the_training_data_changed(tmp_path: Path) -> None:
    """The page shows the same lineage sentences as `mstore diff` (one wording, in mstore.diff.lineage), escaped."""
    repo = Repository.init(tmp_path / "store")
    model = tmp_path / "model.bin"
    train = tmp_path / "<b>train.csv"
    ids = []
    for i in range(3):
        model.write_bytes(bytes([i]) * 1000)
        if i < 2:
            train.write_text(f"x,y\n{i},1\n")
        ids.append(repo.save(model, {"training_file": str(train)})["timestamp"])
    app = TestClient(create_app(repo.root), base_url=BASE)
    changed = app.get(f"/diff?old={ids[0]}&new={ids[1]}").text
    assert 'id="diff-lineage"' in changed and "training data changed:" in changed
    assert "&lt;b&gt;train.csv" in changed and "<b>train" not in changed
    same = app.get(f"/diff?old={ids[1]}&new={ids[2]}").text
    assert "trained on the same data:" in same
    cli = runner.invoke(cli_app, ["--store", str(repo.root), "diff", ids[0], ids[1]])
    assert "training data changed:" in cli.stdout


# os.system("true") under pickle.load, written opcode by opcode and never loaded; and a plain dict (safe)
UNSAFE_PICKLE = b"cos\nsystem\n(S'true'\ntR."
SAFE_PICKLE = b"\x80\x04}\x94\x8c\x01a\x94K\x01s."
HTML_PICKLE = b"cos\n<b>x\n(S'true'\ntR."  # a global whose name is markup: shown escaped


@pytest.fixture(scope="module")
def pickles(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, dict[str, str]]:
    """A store with `bad` (an os.system pickle), `good` (a plain dict pickle), `cut` (that pickle without its
    STOP: verdict unknown) and `html` (a global named with markup)."""
    tmp = tmp_path_factory.mktemp("ui-pickles")
    repo = Repository.init(tmp / "store")
    ids = {}
    cases = (("bad", UNSAFE_PICKLE), ("good", SAFE_PICKLE), ("cut", SAFE_PICKLE[:-1]), ("html", HTML_PICKLE))
    for tag, data in cases:
        (tmp / tag).mkdir()
        (tmp / tag / "model.pkl").write_bytes(data)
        ids[tag] = str(repo.save(tmp / tag / "model.pkl", tag=tag)["timestamp"])
    return TestClient(create_app(repo.root), base_url=BASE), ids


def _row(html: str, vid: str) -> str:
    start = html.index(f'<tr data-version="{vid}">')
    return html[start : html.index("</tr>", start)]


def test_an_unsafe_version_is_marked_and_shows_no_load_snippet(pickles: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = pickles
    assert '<span class="badge unsafe"' in _row(client.get("/").text, ids["bad"])
    page = client.get(f"/versions/{ids['bad']}").text
    assert 'id="unsafe">UNSAFE</span>' in page
    assert "<li><code>os.system</code></li>" in page
    assert 'id="snippet"' not in page and "mstore.model_path(" not in page
    assert 'id="no-snippet"' in page and "--allow-unsafe" in page


def test_a_safe_version_has_the_load_snippet_and_no_badge(pickles: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = pickles
    assert "unsafe" not in _row(client.get("/").text, ids["good"])
    page = client.get(f"/versions/{ids['good']}").text
    assert 'id="snippet"' in page and f'mstore.model_path("{ids["good"]}"' in page.replace("&#34;", '"')
    assert "UNSAFE" not in page and 'id="no-snippet"' not in page


def test_an_unknown_verdict_is_marked_and_globals_are_escaped(pickles: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = pickles
    assert ">UNSAFE?</span>" in _row(client.get("/").text, ids["cut"])
    cut = client.get(f"/versions/{ids['cut']}").text
    assert 'id="unsafe">UNSAFE?</span>' in cut and 'id="snippet"' not in cut
    html = client.get(f"/versions/{ids['html']}").text
    assert "<li><code>os.&lt;b&gt;x</code></li>" in html and "<b>x" not in html


# -- choosing and comparing versions (issue 24): params, --where, compare, lineage, tags, tensors -----------


@pytest.fixture(scope="module")
def choosing(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, dict[str, str]]:
    repo, ids = build_choosing_store(tmp_path_factory.mktemp("ui-choosing"))
    return TestClient(create_app(repo.root), base_url=BASE), ids


def _shown(html: str) -> list[str]:
    return re.findall(r'<tr data-version="([^"]+)"', html)


def _cells(html: str, marker: str) -> list[str]:
    """The cells (inner HTML) of the table row whose opening tag contains `marker`."""
    start = html.index(marker)
    row = html[start : html.index("</tr>", start)]
    return re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)


def test_index_shows_params_as_sortable_columns(choosing: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = choosing
    html = client.get("/").text
    for name in ("C", "kernel", "epochs"):
        assert f'data-col="param:{name}" data-sort="num">{name}</th>' in html
        assert f'<input type="checkbox" data-col="param:{name}" checked>' in html  # in the column chooser
    assert 'data-col="param:epochs" data-value="100"' in html  # what the browser sorts by, as a number
    assert 'data-col="metric:accuracy" data-sort="num"' in html
    assert _shown(html) == [ids["d"], ids["c"], ids["b"], ids["a"]]


def test_index_filters_with_the_where_language(choosing: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = choosing
    answer = client.get("/", params={"where": "accuracy>0.82 and C<0.3"})
    assert answer.status_code == 200 and _shown(answer.text) == [ids["d"], ids["c"]]
    assert _shown(client.get("/", params={"where": "kernel = 'rbf' or epochs >= 100"}).text) == [
        ids["c"],
        ids["b"],
        ids["a"],
    ]
    older = client.get("/", params={"where": "C<1", "limit": 1}).text  # the pager keeps the filter
    assert 'id="older" href="/?offset=1&limit=1&amp;where=C%3C1"' in older


@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("accuracy >", "where: expected"),
        ("accuracy > 0.8 )", "where: "),
        ("acurracy > 0.8", "accuracy"),  # a typo: did you mean
        ("__import__('os')", "where: "),
    ],
)
def test_a_bad_where_shows_its_one_line_error(
    choosing: tuple[TestClient, dict[str, str]], where: str, said: str
) -> None:
    client, _ = choosing
    answer = client.get("/", params={"where": where})
    assert answer.status_code == 400
    error = re.search(r'<p class="error" id="where-error">(.*?)</p>', answer.text, re.S)
    assert error is not None, answer.text[:500]
    assert said in error.group(1) and "\n" not in error.group(1) and "Traceback" not in answer.text
    assert f'name="where" value="{html_escape(where)}"' in answer.text  # kept in the box to fix it
    assert _shown(answer.text) == []


def test_compare_puts_versions_side_by_side_and_marks_the_best(choosing: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = choosing
    answer = client.get("/compare", params=[("v", ids["c"]), ("v", "prod~1"), ("v", ids["a"])])  # any refs
    assert answer.status_code == 200
    html = answer.text
    order = re.findall(r'<th class="id"><a href="/versions/([^"]+)">', html)
    assert order == [ids["a"], ids["b"], ids["c"]]  # oldest first, whatever order they were asked in

    def best(metric: str) -> list[int]:
        cells = _cells(html, f'data-metric="{metric}"')
        return [i for i, c in enumerate(cells) if c.startswith("★")]

    assert best("accuracy") == [1]  # b: 0.90, higher is better
    assert best("loss") == [2]  # c: 0.1, lower is better
    assert best("tps") == [1]  # b: 3.0, lower as the saves declared (the name says nothing)
    assert 'class="param differs" data-param="C"' in html and 'class="param differs" data-param="kernel"' in html
    assert f'<a id="diff-ends" href="/diff?old={ids["a"]}&new={ids["c"]}">' in html
    assert client.get("/compare", params={"v": ids["a"]}).status_code == 400
    assert client.get("/compare", params=[("v", ids["c"]), ("v", "prod")]).status_code == 400  # one version twice
    assert client.get("/compare", params=[("v", ids["a"]), ("v", "nosuch")]).status_code == 404


def test_compare_leaves_a_metric_without_direction_unmarked(tmp_path: Path) -> None:
    from mstore.ui.views import compare_table

    table = compare_table([{"metrics": {"tps": 1.0, "loss": 2}}, {"metrics": {"tps": 2.0, "loss": 2}}])
    assert [(r["name"], r["best"]) for r in table["metrics"]] == [("tps", set()), ("loss", set())]  # ties: none


def test_two_picked_rows_open_the_diff_older_first(choosing: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = choosing
    html = client.get("/diff", params=[("v", ids["d"]), ("v", ids["c"])]).text
    assert f'<h1>Diff <a class="id" href="/versions/{ids["c"]}">' in html
    assert client.get("/diff", params=[("v", ids["d"])]).status_code == 400


def test_version_page_shows_lineage_date_tag_history_and_tensors(choosing: tuple[TestClient, dict[str, str]]) -> None:
    from mstore.store.versions import parse_id_time

    client, ids = choosing
    first = client.get(f"/versions/{ids['a']}").text
    assert 'id="parent-removed"' in first and "none: the first version" not in first
    html = client.get(f"/versions/{ids['c']}").text
    when = parse_id_time(ids["c"]).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f'<time id="saved-at">{when}</time>' in html
    history = html[html.index('data-tag="prod"') : html.index("</table>", html.index('data-tag="prod"'))]
    moves = re.findall(r'<td class="id">(.*?)</td>', history, re.S)
    assert len(moves) == 2 and ids["c"] in moves[0] and "(created)" in moves[1]  # newest first
    assert "c is better on loss" in history
    once = client.get(f"/versions/{ids['b']}").text
    assert 'data-tag="prod"' in once and "named this version once" in once
    tensors = html[html.index('id="tensors"') :]
    count = TENSOR_LAYERS * 32 + 24
    assert f"{TENSOR_LAYERS + 1} tensor(s)" in tensors and f'title="{count:,} parameters"' in tensors
    assert f'<code class="tensor-name">layers.0..{TENSOR_LAYERS - 1}</code>' in tensors  # folded
    assert tensors.count("layers.") == 1 + TENSOR_LAYERS  # the group's label, then each name inside it
    assert '<td>F32</td><td class="shape">[3, 8]</td><td class="num">24</td>' in tensors  # head.weight


def test_version_page_reads_no_weight_bytes_for_the_tensor_list(
    choosing: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mstore.store.objects import ObjectStore

    client, ids = choosing
    repo = client.app.state.repository  # type: ignore[attr-defined]
    header, *weights = repo.manifest(ids["d"]).files[0].chunks  # the chunker cut at tensor boundaries
    assert len(weights) == 2 * TENSOR_LAYERS + 1
    read: list[str] = []
    real = ObjectStore.read

    def recording(self: ObjectStore, oid: str, expected_size: int | None = None) -> bytes:
        read.append(oid)
        return real(self, oid, expected_size)

    monkeypatch.setattr(ObjectStore, "read", recording)
    assert 'id="tensors"' in client.get(f"/versions/{ids['d']}").text
    assert header.oid in read and not {c.oid for c in weights} & set(read)


def test_diff_page_folds_a_run_of_added_tensors(choosing: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = choosing
    html = client.get("/diff", params={"old": ids["c"], "new": ids["d"]}).text
    label = f"extra.0..{TENSOR_LAYERS - 1}"
    summary = f'<summary>+{TENSOR_LAYERS} tensors added in <code class="group-label">{label}</code></summary>'
    assert summary in html
    folded = html[html.index(summary) : html.index("</details>", html.index(summary))]
    assert [f"+ extra.{i}" for i in range(TENSOR_LAYERS)] == re.findall(r'class="tensor-name">(.*?)</code>', folded)
    assert '<code class="tensor-name">head.weight</code>' in html  # the one changed tensor, unfolded


def test_api_promotions_lists_every_tag_move_newest_first(choosing: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = choosing
    moves = client.get("/api/promotions").json()
    assert [(m["tag"], m["from"], m["to"]) for m in moves] == [
        ("candidate", None, ids["d"]),
        ("prod", ids["b"], ids["c"]),
        ("prod", None, ids["b"]),
    ]


def test_the_chart_series_follow_the_where_filter(choosing: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = choosing
    points = client.get("/api/metrics/accuracy", params={"where": "C<0.3"}).json()
    assert [p["version"] for p in points] == [ids["c"], ids["d"]]
    bad = client.get("/api/metrics/accuracy", params={"where": "C <"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("where: expected")
    assert 'data-where="C&lt;0.3"' in client.get("/", params={"where": "C<0.3"}).text


def test_the_table_ranks_every_version_by_a_metric(choosing: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = choosing
    assert _shown(client.get("/", params={"sort": "accuracy"}).text) == [ids["b"], ids["d"], ids["c"], ids["a"]]
    assert _shown(client.get("/", params={"sort": "loss"}).text) == [ids["c"], ids["d"], ids["b"], ids["a"]]
    assert _shown(client.get("/", params={"sort": "loss", "order": "desc"}).text)[0] == ids["a"]
    ranked = client.get("/", params={"sort": "accuracy", "limit": 1}).text  # across pages, not within one
    assert _shown(ranked) == [ids["b"]] and "sort=accuracy" in ranked[ranked.index('id="older"') :]
    assert _shown(client.get("/", params={"sort": "tps"}).text) == [ids["b"], ids["c"], ids["a"], ids["d"]]
    unknown = client.get("/", params={"sort": "nosuch"})
    assert unknown.status_code == 400 and 'id="where-error"' in unknown.text


def test_ranking_by_a_metric_without_direction_asks_for_an_order(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "store")
    model = tmp_path / "m.bin"
    for i, speed in enumerate([3.0, 5.0]):
        model.write_bytes(bytes([i]) * 10)
        repo.save(model, {"metrics": {"speed": speed}})
    client = TestClient(create_app(repo.root), base_url=BASE)
    answer = client.get("/", params={"sort": "speed"})
    error = re.search(r'id="where-error">(.*?)</p>', answer.text)
    assert answer.status_code == 400 and error is not None
    said = "cannot tell whether a higher or a lower &#39;speed&#39; is better: choose highest or lowest first"
    assert error.group(1) == said
    newest_first = [m["timestamp"] for m in repo.log()]  # speed 5.0, then 3.0
    assert _shown(client.get("/", params={"sort": "speed", "order": "asc"}).text) == newest_first[::-1]
    assert _shown(client.get("/", params={"sort": "speed", "order": "desc"}).text) == newest_first
