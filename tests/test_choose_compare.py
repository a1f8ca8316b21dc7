"""Issue 24, a user's second hour: the bugs found choosing, comparing and reading versions, and the
params, queries (`log --where`, `best:METRIC`) and scripting output (`save -q`, `log --format`) they asked for."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from mstore import ModelVersioning, Repository, model_path
from mstore.cli.render import du_lines
from mstore.errors import BadInput, InvalidMetadata, StoreNotFound
from mstore.ui.app import create_app

from helpers import cli

ROOT = Path(__file__).resolve().parent.parent


def _save(repo: Repository, tmp_path: Path, data: bytes, meta: dict | None = None) -> str:
    model = tmp_path / "model.bin"
    model.write_bytes(data)
    return repo.save(model, meta)["timestamp"]


# -- bugs ---------------------------------------------------------------------------------------------


def test_checkout_into_a_new_directory_named_with_a_slash(repo: Repository, tmp_path: Path) -> None:
    _save(repo, tmp_path, b"weights")
    target = tmp_path / "newdir"
    out = cli(repo.root, "checkout", "latest", "-o", f"{target}/").stdout
    assert target.is_dir() and (target / "model.bin").read_bytes() == b"weights", out
    written = repo.checkout("latest", f"{tmp_path / 'other'}/")  # the API says it the same way
    assert written == tmp_path / "other" / "model.bin" and written.read_bytes() == b"weights"


def test_checkout_without_a_slash_still_names_the_file(repo: Repository, tmp_path: Path) -> None:
    _save(repo, tmp_path, b"weights")
    cli(repo.root, "checkout", "latest", "-o", str(tmp_path / "renamed.bin"))
    assert (tmp_path / "renamed.bin").read_bytes() == b"weights"


def test_removed_parent_is_shown_as_removed_never_a_404_link(repo: Repository, tmp_path: Path) -> None:
    first = _save(repo, tmp_path, b"a" * 100)
    second = _save(repo, tmp_path, b"b" * 100)
    repo.remove(first)
    shown = repo.show(second)
    assert shown["parent"] is None and shown["parent_removed"] == first
    assert f"parent {first} (removed)" in cli(repo.root, "show", second).stdout
    client = TestClient(create_app(repo.root), base_url="http://127.0.0.1")
    page = client.get(f"/versions/{second}").text
    assert "(removed)" in page and "the first version" not in page
    assert f'href="/versions/{first}"' not in page
    index = client.get("/").text
    assert f'href="/versions/{first}"' not in index and f"{first} (removed)" in index


def test_a_first_version_still_says_so(repo: Repository, tmp_path: Path) -> None:
    first = _save(repo, tmp_path, b"a")
    shown = repo.show(first)
    assert shown["parent"] is None and shown["parent_removed"] is None
    client = TestClient(create_app(repo.root), base_url="http://127.0.0.1")
    assert "none: the first version" in client.get(f"/versions/{first}").text


def test_diff_with_one_ref_compares_it_with_its_parent(repo: Repository, tmp_path: Path) -> None:
    first = _save(repo, tmp_path, b"a", {"metrics": {"accuracy": 0.8}})
    second = _save(repo, tmp_path, b"b", {"metrics": {"accuracy": 0.9}})
    d = json.loads(cli(repo.root, "diff", "latest", "--json").stdout)
    assert (d["version1"], d["version2"]) == (first, second)
    assert d["metrics"]["accuracy"]["old"] == 0.8
    assert ModelVersioning(repo.root).compare_versions(second)["version1"] == first
    err = cli(repo.root, "diff", first, code=2).stderr
    assert "no parent" in err and "first version" in err
    repo.remove(first)
    assert f"its parent {first} was removed" in cli(repo.root, "diff", second, code=2).stderr
    assert json.loads(cli(repo.root, "diff", second, second, "--json").stdout)["same_model"]  # two refs: as asked


def test_remote_names_are_refused_as_remote_names(repo: Repository) -> None:
    err = cli(repo.root, "remote", "add", "my remote", "s3://bucket/models", code=2).stderr
    assert "invalid remote name 'my remote'" in err and "tag" not in err


def test_model_path_missing_store_names_its_own_parameter(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFound) as caught:
        model_path("latest", store=tmp_path / "nowhere")
    assert "store=" in str(caught.value) and "base_dir=" not in str(caught.value)


@pytest.mark.parametrize("field", ["metrics", "params"])
@pytest.mark.parametrize("value", [0.9, "0.9", [0.9], True])
def test_metrics_and_params_must_be_mappings(repo: Repository, tmp_path: Path, field: str, value: object) -> None:
    with pytest.raises(InvalidMetadata, match=f"'{field}' must be a mapping"):
        _save(repo, tmp_path, b"a", {field: value})
    assert repo.ids() == []
    err = cli(repo.root, "save", str(tmp_path / "model.bin"), "--set", f"{field}={json.dumps(value)}", code=2)
    assert "must be a mapping" in err.stderr


def test_a_metric_given_twice_is_refused(repo: Repository, tmp_path: Path) -> None:
    (tmp_path / "m.bin").write_bytes(b"a")
    err = cli(repo.root, "save", str(tmp_path / "m.bin"), "-M", "x=0.9", "-M", "x=0.8", code=2).stderr
    assert "--metric x is given more than once" in err
    err = cli(repo.root, "save", str(tmp_path / "m.bin"), "-P", "C=1", "-P", "C=2", code=2).stderr
    assert "--param C is given more than once" in err
    assert repo.ids() == []


def test_du_wording() -> None:
    usage = {"versions": 1, "logical_bytes": 100, "stored_bytes": 200, "unreachable_bytes": 0, "largest": []}
    line = du_lines({**usage, "savings_ratio": 0.5})[0]
    assert line.startswith("1 version, ") and "smaller" not in line and "2.0x the size of plain copies" in line
    line = du_lines({**usage, "versions": 3, "savings_ratio": 3.0})[0]
    assert line.startswith("3 versions, ") and "3.0x smaller than plain copies" in line
    assert "about the size of plain copies" in du_lines({**usage, "savings_ratio": 1.01})[0]


def test_readme_quick_start_holds_two_commands_and_nothing_else() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme[readme.index("## Quick start") : readme.index("\n## ", readme.index("## Quick start") + 5)]
    assert len(re.findall(r"```sh\n(.*?)\n```", quick, re.S)) == 2
    prose = re.sub(r"```.*?```", "", quick, flags=re.S)
    assert ".venv/bin" not in prose and "pip install" not in prose and "mstore ui" not in prose


# -- metric directions --------------------------------------------------------------------------------


def test_a_nested_metric_inherits_its_declared_direction(repo: Repository, tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"a")
    cli(repo.root, "save", str(model), "-M", "latency=10", "--set", 'metrics={"per_class": {"9": 0.9}}')
    model.write_bytes(b"b")
    args = ["--higher-is-better", "per_class", "--lower-is-better", "latency", "-M", "latency=12"]
    cli(repo.root, "save", str(model), "--set", 'metrics={"per_class": {"9": 0.2}}', *args)
    assert repo.get("latest")["metric_directions"] == {"per_class": "higher", "latency": "lower"}
    rows = repo.compare("latest~1", "latest")["metrics"]
    assert rows["per_class.9"]["direction"] == "higher" and rows["per_class.9"]["improved"] is False
    assert rows["latency"]["improved"] is False
    err = cli(repo.root, "save", str(model), "--higher-is-better", "f1", "--lower-is-better", "f1", code=2).stderr
    assert "cannot be both" in err
    with pytest.raises(InvalidMetadata, match="'higher' or 'lower'"):
        repo.save(model, {"metric_directions": {"f1": "up"}})


def test_a_declared_direction_ranks_the_log(repo: Repository, tmp_path: Path) -> None:
    for value in (3, 1, 2):
        meta = {"metrics": {"widgets": value}, "metric_directions": {"widgets": "lower"}}
        _save(repo, tmp_path, bytes([value]), meta)
    assert [e["metrics"]["widgets"] for e in repo.log(sort="widgets")] == [1, 2, 3]


# -- params, --where, best:METRIC, --format, save -q --------------------------------------------------


@pytest.fixture
def swept(repo: Repository, tmp_path: Path) -> tuple[Repository, list[str]]:
    """Four versions of a C sweep: accuracy rises, loss falls, kernel alternates."""
    model = tmp_path / "m.bin"
    ids = []
    for i in range(1, 5):
        model.write_bytes(bytes([i]))
        args = ["-M", f"accuracy=0.9{i}", "-M", f"loss=0.{5 - i}", "-P", f"C=0.{i}", "-P", f"kernel=k{i % 2}"]
        ids.append(cli(repo.root, "save", "-q", str(model), *args).stdout.strip())
    return repo, ids


def test_save_quiet_prints_the_bare_id_and_params_are_stored(swept: tuple[Repository, list[str]]) -> None:
    repo, ids = swept
    assert repo.ids() == ids
    assert repo.get(ids[0])["params"] == {"C": 0.1, "kernel": "k1"}


def test_params_through_the_api_are_validated(tmp_path: Path) -> None:
    mv = ModelVersioning(tmp_path / "store")
    (tmp_path / "m.bin").write_bytes(b"a")
    meta = {"metrics": {"accuracy": 0.9}, "params": {"C": 1.0, "penalty": "l2"}}
    saved = mv.save_model_version(tmp_path / "m.bin", meta, params={"C": 0.3})
    assert saved["params"] == {"C": 0.3, "penalty": "l2"} and "timestamp" in meta
    with pytest.raises(InvalidMetadata):
        mv.save_model_version(tmp_path / "m.bin", params=[("C", 1)])  # type: ignore[arg-type]


def test_params_in_log_show_and_a_key_level_diff(swept: tuple[Repository, list[str]]) -> None:
    repo, ids = swept
    assert "C=0.4  kernel=k0" in cli(repo.root, "log", "--oneline", "-n", "1").stdout
    assert "Params:   C=0.4  kernel=k0" in cli(repo.root, "log", "-n", "1").stdout
    assert "params" in cli(repo.root, "show", "latest").stdout
    d = repo.compare(ids[0], ids[1])
    assert d["params"]["changed"] == {"C": {"old": 0.1, "new": 0.2}, "kernel": {"old": "k1", "new": "k0"}}
    assert "params" not in d["metadata"]["changed"]
    out = cli(repo.root, "diff", ids[0], ids[1]).stdout
    assert "C: 0.1 -> 0.2" in out and 'kernel: "k1" -> "k0"' in out


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("accuracy>0.92 and C<0.4", [2]),
        ("accuracy >= 0.92", [3, 2, 1]),
        ("not (kernel='k1') or loss<=0.2", [3, 2, 1]),
        ('kernel == "k1" and (C < 0.2 or C > 0.25)', [2, 0]),
        ("metrics.accuracy>0.93 or params.C=0.1", [3, 0]),
        ("C != 0.1 and not C > 0.3", [2, 1]),
        ("kernel < 1", []),  # a string never compares with a number
    ],
)
def test_log_where(swept: tuple[Repository, list[str]], where: str, expected: list[int]) -> None:
    repo, ids = swept
    assert [e["timestamp"] for e in repo.log(where=where)] == [ids[i] for i in expected]
    listed = json.loads(cli(repo.root, "log", "--where", where, "--json").stdout)
    assert [e["timestamp"] for e in listed] == [ids[i] for i in expected]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("acuracy>0.9", "no version has a metric, param or field named 'acuracy' (did you mean 'accuracy'?)"),
        ("accuracy>", "expected a name, a number or a string, found the end"),
        ("(accuracy>0.9", "expected ')'"),
        ("accuracy>0.9 C<1", "expected 'and', 'or' or the end"),
        ("__import__('os').system('x')", "unexpected"),
        ("accuracy $ 1", "unexpected '$' at column 10"),
        ("", "the expression is empty"),
        ("(" * 60 + "C" + ")" * 60, "nested deeper than 50"),
    ],
)
def test_log_where_refuses_bad_expressions_in_one_line(
    swept: tuple[Repository, list[str]], where: str, message: str
) -> None:
    repo, _ = swept
    err = cli(repo.root, "log", "--where", where, code=2).stderr
    assert message in err and err.startswith("mstore: error: --where:") and len(err.strip().splitlines()) == 1
    with pytest.raises(BadInput) as caught:
        repo.log(where=where)
    assert "--where" not in str(caught.value)  # Python callers read `where:`


def test_best_metric_is_a_ref(swept: tuple[Repository, list[str]], tmp_path: Path) -> None:
    repo, ids = swept
    model = tmp_path / "m.bin"
    model.write_bytes(b"worse")
    cli(repo.root, "save", str(model), "-M", "accuracy=0.5", "-M", "loss=0.9")
    assert repo.resolve("best:accuracy") == ids[3] and repo.resolve("best:loss") == ids[3]
    assert json.loads(cli(repo.root, "show", "best:accuracy", "--json").stdout)["metadata"]["timestamp"] == ids[3]
    d = json.loads(cli(repo.root, "diff", "best:accuracy", "latest", "--json").stdout)
    assert d["version1"] == ids[3]
    cli(repo.root, "tag", "good", "best:accuracy")
    assert repo.tags()["good"] == ids[3]
    out = tmp_path / "best"
    cli(repo.root, "checkout", "best:loss", "-o", f"{out}/")
    assert (out / "m.bin").read_bytes() == bytes([4])
    assert model_path("best:accuracy", store=repo.root, cache_dir=tmp_path / "cache").read_bytes() == bytes([4])
    assert "did you mean 'accuracy'" in cli(repo.root, "show", "best:acuracy", code=2).stderr
    assert "no version has a metric named 'C'" in cli(repo.root, "show", "best:C", code=2).stderr  # a param


def test_log_format(swept: tuple[Repository, list[str]]) -> None:
    repo, ids = swept
    out = cli(repo.root, "log", "--format", "{id} {metrics.accuracy} {params.C} {kernel} {missing_here}", code=2)
    assert "no version listed has {missing_here}" in out.stderr
    lines = cli(repo.root, "log", "--format", "{id} {metrics.accuracy} {params.C} {kernel}").stdout.splitlines()
    assert lines == [f"{ids[i]} 0.9{i + 1} 0.{i + 1} k{(i + 1) % 2}" for i in (3, 2, 1, 0)]
    cli(repo.root, "log", "--format", "{id}", "--json", code=2)
