"""What users type: every command end to end, JSON on stdout only, one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mstore import Repository
from mstore.cli import app

from helpers import write_tree

runner = CliRunner()


class Cli:
    def __init__(self, store: Path) -> None:
        self.store = store

    def __call__(self, *args: str, code: int = 0) -> tuple[str, str]:
        result = runner.invoke(app, ["--store", str(self.store), *args])
        assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
        return result.stdout, result.stderr

    def json(self, *args: str, code: int = 0) -> object:
        out, _ = self(*args, "--json", code=code)
        return json.loads(out)  # exactly one JSON document on stdout


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "store")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.joblib"
    # random bytes, led by one that is no pickle opcode: not a pickle (a random first byte could make it one,
    # of unknown verdict, which checkout and path refuse)
    path.write_bytes(b"\x00" + os.urandom(99_999))
    return path


@pytest.mark.slow
def test_full_workflow(cli: Cli, model: Path, tmp_path: Path) -> None:
    out, _ = cli("init")
    assert "Initialized" in out
    first = cli.json(
        "save",
        str(model),
        "-M",
        "accuracy=0.9",
        "--metric",
        "f1=0.8",
        "-m",
        "nightly",
        "--training-file",
        "train.csv",
        "--set",
        "num_samples=1200",
        "--set",
        'categories=["a","b"]',
    )
    assert isinstance(first, dict)
    assert first["metrics"] == {"accuracy": 0.9, "f1": 0.8}
    assert first["num_samples"] == 1200 and first["categories"] == ["a", "b"] and first["message"] == "nightly"
    assert first["training_file"] == "train.csv"
    model.write_bytes(model.read_bytes() + b"more")
    meta_file = tmp_path / "meta.json"
    meta_file.write_text(json.dumps({"metrics": {"accuracy": 0.95}, "categories": ["a", "b", "c"]}))
    out, err = cli("save", str(model), "--metadata-file", str(meta_file), "--tag", "candidate")
    assert out.startswith("saved version ") and "new" in err
    second_id = out.split()[-1]

    log_lines = cli("log", "--oneline")[0].splitlines()
    assert len(log_lines) == 2 and log_lines[0].startswith(second_id) and "latest" in log_lines[0]
    assert "tag: candidate" in log_lines[0] and "accuracy=0.95" in log_lines[0] and "nightly" in log_lines[1]
    assert "f1=0.8" in log_lines[1]  # default metrics: those of every version shown
    assert "accuracy=0.95" not in cli("log", "--oneline", "-M", "f1")[0]
    assert len(cli("log", "--oneline", "-n", "1")[0].splitlines()) == 1
    block = cli("log")[0]
    assert f"version {second_id}" in block and "Message:  nightly" in block and "Stored:" in block
    entries = cli.json("log")
    assert [m["timestamp"] for m in entries] == [second_id, first["timestamp"]]  # type: ignore[index]
    assert entries[0]["tags"] == ["candidate"]  # type: ignore[index]
    jsonl = [json.loads(line) for line in cli("log", "--jsonl")[0].splitlines()]
    assert [m["timestamp"] for m in jsonl] == [second_id, first["timestamp"]]
    assert [m["timestamp"] for m in cli.json("log", "--tag", "candidate")] == [second_id]  # type: ignore[index]
    assert cli.json("log", "--since", "2000-01-01", "--until", "1d") == []
    assert len(cli.json("log", "--since", "1h")) == 2  # type: ignore[arg-type]
    cli("log", "--since", "yesterday-ish", code=2)

    shown = cli.json("show", "candidate")
    assert shown["metadata"]["timestamp"] == second_id and shown["files"][0]["path"] == "model.joblib"  # type: ignore[index]
    assert shown["parent"] == first["timestamp"] and shown["shared_with_parent_bytes"] == 0  # type: ignore[index]
    assert "model.joblib" in cli("show", "latest~1")[0]

    diff = cli.json("diff", "latest~1", "latest")
    assert diff["metrics"]["accuracy"]["delta"] == pytest.approx(0.05)  # type: ignore[index]
    assert diff["categories"] == {"added": ["c"], "removed": []}  # type: ignore[index]
    text = cli("diff")[0]
    assert "accuracy" in text and "+0.05" in text and "model changed" in text and "+c" in text
    stat = cli("diff", "--stat")[0]
    assert "2 metric(s) changed (1 better, 0 worse)" in stat and "1 changed" in stat  # f1 was dropped

    usage = cli.json("du")
    assert usage["versions"] == 2 and usage["logical_bytes"] == 200_004  # type: ignore[index]
    assert usage["largest"][0]["exclusive_bytes"] > 100_000  # type: ignore[index]
    assert "versions" in cli("du")[0]

    restored = tmp_path / "restored.joblib"
    cli("checkout", first["timestamp"][:15], "-o", str(restored))
    assert restored.read_bytes() == model.read_bytes()[:-4]
    cli("checkout", "latest", "-o", str(restored), code=2)
    cli("checkout", "latest", "-o", str(restored), "--force")
    assert restored.read_bytes() == model.read_bytes()

    cli("tag", "prod", "latest~1")
    assert cli.json("tag") == {"candidate": second_id, "prod": first["timestamp"]}
    cli("tag", "prod", "latest", code=2)
    cli("tag", "-d", "prod")
    cli("rm", "candidate", code=2)  # tagged
    assert cli.json("rm", "candidate", "--force") == {"removed": second_id, "tags_removed": ["candidate"]}

    report = cli.json("fsck")
    assert report["ok"] is True and report["versions"] == 1  # type: ignore[index]
    plan = cli.json("gc", "--dry-run", "--grace", "0")
    assert plan["objects"] >= 1 and plan["dry_run"] is True  # type: ignore[index]
    out, err = cli("gc", "--grace", "0")
    assert "freed" in out and "warning" in err
    assert cli.json("fsck")["problems"] == []  # type: ignore[index]


def test_checkout_defaults_to_the_saved_name_in_the_current_directory(
    cli: Cli, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("save", str(model))
    tree = tmp_path / "hf-checkpoint"
    tree.mkdir()
    (tree / "config.json").write_text("{}")
    cli("save", str(tree))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cli("checkout", "latest~1")
    assert (work / "model.joblib").read_bytes() == model.read_bytes()
    cli("checkout", "latest")
    assert (work / "hf-checkpoint" / "config.json").read_text() == "{}"
    cli("checkout", "latest~1", code=2)  # exists already: needs --force


def test_directory_model(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "hf"
    (src / "tokenizer").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(os.urandom(5000))
    (src / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    meta = cli.json("save", str(src))
    assert meta["mstore"]["kind"] == "dir" and meta["mstore"]["files"] == 3  # type: ignore[index]
    cli("checkout", "latest", "-o", str(tmp_path / "out"))
    assert (tmp_path / "out" / "tokenizer" / "vocab.txt").read_text() == "a\nb\n"


@pytest.mark.parametrize(
    "args",
    [
        ["save", "missing.joblib"],
        ["save", "MODEL", "--metric", "accuracy"],
        ["save", "MODEL", "--metric", "accuracy=high"],
        ["save", "MODEL", "--metric", "accuracy=nan"],
        ["save", "MODEL", "--set", "mstore=1"],
        ["save", "MODEL", "--metadata-file", "missing.json"],
        ["save", "MODEL", "--tag", "../evil"],
        ["show", "nosuchversion"],
        ["show", "2026"],
        ["show", "../../etc/passwd"],
        ["show", "/etc/passwd"],
        ["show", "latest~99"],
        ["tag", "a/b"],
        ["tag", ".."],
        ["tag", "bad\x00name"],
        ["tag", "x" * 5000],
        ["checkout", "latest\x00", "-o", "out"],
        ["gc", "--grace", "soon"],
        ["rm", "nosuch"],
        ["diff", "latest", "nope"],
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    cli: Cli, model: Path, tmp_path: Path, args: list[str]
) -> None:
    cli("save", str(model))
    cli("save", str(model))  # two versions on one day make '2026' ambiguous
    before = sorted(p.relative_to(cli.store).as_posix() for p in cli.store.rglob("*"))
    args = [str(model) if a == "MODEL" else a for a in args]
    _, err = cli(*args, code=2)
    assert err.startswith("mstore: error: ") and err.count("\n") == 1
    assert sorted(p.relative_to(cli.store).as_posix() for p in cli.store.rglob("*")) == before
    assert not any(p.name in ("evil", "passwd") for p in tmp_path.rglob("*"))


def test_missing_store_and_newer_format(cli: Cli, model: Path) -> None:
    _, err = cli("log", code=2)
    assert "no mstore store" in err
    cli("save", str(model))
    config = cli.store / "mstore.json"
    config.write_text(json.dumps({"format": 99, "chunker": {"name": "fixed", "size": 4194304}}))
    _, err = cli("log", code=2)
    assert "format 99" in err and "upgrade" in err
    cli("save", str(model), code=2)


def test_fsck_exits_1_on_corruption(cli: Cli, model: Path) -> None:
    cli("save", str(model))
    obj = max((p for p in (cli.store / "objects").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    os.chmod(obj, 0o644)
    data = bytearray(obj.read_bytes())
    data[500] ^= 1
    obj.write_bytes(bytes(data))
    out, _ = cli("fsck", code=1)
    assert "error" in out and "affects" in out
    assert cli.json("fsck", code=1)["ok"] is False  # type: ignore[index]
    _, err = cli("checkout", "latest", "-o", str(model.parent / "x"), code=1)
    assert "corrupt" in err
    assert not (model.parent / "x").exists()


def test_store_from_environment(tmp_path: Path, model: Path) -> None:
    result = runner.invoke(app, ["save", str(model)], env={"MSTORE_DIR": str(tmp_path / "envstore")})
    assert result.exit_code == 0 and (tmp_path / "envstore" / "mstore.json").is_file()


@pytest.mark.parametrize("command", ["", "init", "save", "log", "show", "diff", "checkout", "tag", "rm", "fsck", "gc"])
def test_help_everywhere(command: str) -> None:
    result = runner.invoke(app, [command, "--help"] if command else ["--help"])
    assert result.exit_code == 0 and "Usage" in result.stdout


def test_console_script_runs_as_a_real_process(tmp_path: Path, model: Path) -> None:
    env = {**os.environ, "MSTORE_DIR": str(tmp_path / "s")}
    ok = subprocess.run(
        [sys.executable, "-m", "mstore", "save", str(model), "--json"], env=env, capture_output=True, text=True
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["mstore"]["size"] == 100_000
    # random bytes named .joblib: not a pickle (its first byte is no opcode), or one whose globals are unknown
    assert ok.stderr == "" or ok.stderr.endswith("its globals are unknown\n") and ok.stderr.count("\n") == 1
    bad = subprocess.run([sys.executable, "-m", "mstore", "show", "nope"], env=env, capture_output=True, text=True)
    assert (
        bad.returncode == 2
        and bad.stdout == ""
        and bad.stderr.startswith("mstore: error:")
        and "Traceback" not in bad.stderr
    )


def test_the_command_families_list_every_command_in_the_order_of_help() -> None:
    """`mstore.cli.FAMILIES` decides what `run` registers; a command missing from it would only be found
    by `mstore --help`, so it must name every command, in the order the help lists them."""
    from mstore.cli import FAMILIES

    commands = [c.name or c.callback.__name__ for c in app.registered_commands]  # type: ignore[union-attr]
    groups = [g.name for g in app.registered_groups]  # listed after the commands
    listed = [c for family in FAMILIES.values() for c in family]
    assert [c for c in listed if c not in groups] == commands and [c for c in listed if c in groups] == groups


@pytest.mark.parametrize(
    ("args", "family"),
    [
        (["save", "x"], "versions"),
        (["--store", "s", "-q", "log"], "history"),
        (["-s", "s", "remote", "add"], "sharing"),
        (["--store=s", "fsck", "--json"], "maintenance"),
        (["cache", "ls"], "models"),
        (["--help"], None),
        (["--version"], None),
        (["sav"], None),  # mistyped: every command, for the suggestion
        (["--bogus", "save"], None),
        ([], None),
    ],
)
def test_family_of_the_command_line(args: list[str], family: str | None) -> None:
    from mstore.cli import family_of

    assert family_of(args) == family


@pytest.mark.slow
def test_a_command_run_as_a_process_registers_only_its_family_and_behaves_the_same(tmp_path: Path) -> None:
    """Start-up: `mstore log` builds only the history commands, and its output is the complete app's."""
    store = tmp_path / "s"
    Repository.init(store)

    from mstore.cli import FAMILIES

    env = {**os.environ, "COLUMNS": "100"}

    def words(text: str) -> list[str]:  # help wraps one column differently under CliRunner
        return text.split()

    probe = (
        "import sys, atexit; "
        "atexit.register(lambda: print(','.join(m for m in sys.modules if m.startswith('mstore.cli.')),"
        " file=sys.stderr));"
        "from mstore.cli import run; sys.argv = ['mstore'] + sys.argv[1:]; run()"
    )
    for args, loaded in (
        (["--store", str(store), "log", "--help"], "mstore.cli.history"),
        (["--store", str(store), "gc", "--dry-run", "--json"], "mstore.cli.maintenance"),
    ):
        done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60, env=env)
        modules = done.stderr.splitlines()[-1].split(",")
        assert {m for m in modules if m.split(".")[-1] in FAMILIES} == {loaded}, done.stderr
        assert words(done.stdout) == words(runner.invoke(app, args, prog_name="mstore").stdout)
    everything = subprocess.run(
        [sys.executable, "-c", probe, "--help"], capture_output=True, text=True, timeout=60, env=env
    )
    assert words(everything.stdout) == words(runner.invoke(app, ["--help"], prog_name="mstore").stdout)
    assert "cache" in everything.stdout


def test_save_dot_leaves_out_the_store_inside_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "data" / "raw").mkdir(parents=True)
    (project / "model.joblib").write_bytes(os.urandom(50_000))
    (project / "data" / "raw" / "train.csv").write_text("a,b\n")
    monkeypatch.chdir(project)
    cli = Cli(Path("data/models"))  # the default store, inside the folder being saved
    for _ in range(2):  # the second save runs against a store that already holds objects
        out, err = cli("save", ".")
        assert out.startswith("saved version ")
        notes = [line for line in err.splitlines() if line.startswith("note:")]
        assert notes == ["note: leaving out data/models: it is the store this version is saved to"]
    files = [f["path"] for f in cli.json("show")["files"]]  # type: ignore[index]
    assert files == ["data/raw/train.csv", "model.joblib"]
    assert [e.path for e in Repository.open("data/models").manifest("latest").entries] == [
        "data",
        "data/raw",
        "data/raw/train.csv",
        "model.joblib",
    ]


def test_folders_that_only_hold_the_store_are_left_out(tmp_path: Path) -> None:
    project = write_tree(tmp_path / "project", {"model.bin": b"weights"})
    cli = Cli(project / "a" / "b" / "store")
    cli("save", str(project))
    assert [e.path for e in Repository.open(cli.store).manifest("latest").entries] == ["model.bin"]


def test_saving_a_path_inside_the_store_is_refused(cli: Cli, model: Path) -> None:
    cli("save", str(model))
    for inner in (cli.store, cli.store / "objects"):
        _, err = cli("save", str(inner), code=2)
        assert err.startswith("mstore: error: cannot save ") and "inside the store" in err and err.count("\n") == 1
    assert len(cli.json("log")) == 1  # type: ignore[arg-type]


def test_log_shows_the_metrics_of_every_version_shown(cli: Cli, model: Path) -> None:
    from mstore import ModelVersioning

    versioning = ModelVersioning(cli.store)
    versioning.save_model_version(model, {"metrics": {"accuracy": 0.91, "f1": 0.88}})
    versioning.save_model_version(model, {"metrics": {"eval_loss": 0.31}})
    versioning.save_model_version(model, {"metrics": {"accuracy": "0.9", "notes": "ok"}})  # strings, via the API
    newest, middle, oldest = cli("log", "--oneline")[0].splitlines()
    assert "accuracy=0.91" in oldest and "f1=0.88" in oldest
    assert "eval_loss=0.31" in middle
    assert "accuracy=0.9" in newest  # a string is shown as it is
    assert "notes" not in newest  # columns come from numeric values only
    assert "accuracy=0.91" not in cli("log", "--oneline", "-n", "2")[0]  # only the versions shown count
    assert "eval_loss=0.31" in cli("log", "--oneline", "-n", "2")[0]


@pytest.mark.slow
def test_log_sort_names_the_best_model(cli: Cli, model: Path) -> None:
    ids = {}
    for name, metrics in [
        ("a", "accuracy=0.8 -M eval_loss=0.5 -M throughput=90"),
        ("b", "accuracy=0.95 -M eval_loss=0.2 -M throughput=70"),
        ("c", "accuracy=0.9 -M eval_loss=0.3 -M throughput=80"),
        ("d", "eval_loss=0.1"),
    ]:
        model.write_bytes(name.encode())
        ids[name] = cli("save", str(model), "-M", *metrics.split())[0].split()[-1]

    def order(*args: str) -> list[str]:
        names = {v: k for k, v in ids.items()}
        return [names[e["timestamp"]] for e in cli.json("log", *args)]  # type: ignore[index,union-attr]

    assert order("--sort", "accuracy", "-n", "1") == ["b"]
    assert order("--sort", "accuracy") == ["b", "c", "a", "d"]  # without the metric: last
    assert order("--sort", "accuracy", "--asc") == ["a", "c", "b", "d"]
    assert order("--sort", "eval_loss") == ["d", "b", "c", "a"]  # a loss: lowest first
    assert order("--sort", "eval_loss", "--desc", "-n", "2") == ["a", "c"]
    top = cli("log", "--oneline", "--sort", "accuracy", "-n", "1", "-M", "eval_loss")[0]
    assert top.startswith(ids["b"]) and "accuracy=0.95" in top  # the sort metric is always shown
    _, err = cli("log", "--sort", "throughput", code=2)
    assert (
        err == "mstore: error: cannot tell whether a higher or a lower 'throughput' is better: add --desc "
        "(highest first) or --asc (lowest first)\n"
    )
    assert order("--sort", "throughput", "--desc") == ["a", "c", "b", "d"]
    for bad in (["--asc"], ["--sort", "accuracy", "--asc", "--desc"]):
        _, err = cli("log", *bad, code=2)
        assert err.startswith("mstore: error: ") and err.count("\n") == 1


def test_unknown_filters_are_errors_with_a_suggestion(cli: Cli, model: Path) -> None:
    cli("save", str(model), "-M", "accuracy=0.9", "--set", 'metrics={"accuracy": 0.9, "macro avg": {"f1": 0.8}}')
    cli("tag", "prod")
    model.write_bytes(b"newer")
    cli("save", str(model), "-M", "eval_loss=0.3")
    cases = {
        ("--tag", "prdo"): "no tag named 'prdo' (did you mean 'prod'?)",
        ("--tag", "zzz"): "no tag named 'zzz'",
        ("-M", "acuracy"): "no version has a metric named 'acuracy' (did you mean 'accuracy'?)",
        ("-M", "macro avg.f2"): "no version has a metric named 'macro avg.f2' (did you mean 'macro avg.f1'?)",
        ("--sort", "acuracy"): "no version has a metric named 'acuracy' (did you mean 'accuracy'?)",
    }
    for args, message in cases.items():
        _, err = cli("log", *args, code=2)
        assert err == f"mstore: error: {message}\n", args
    # a metric only an older version has is a fine thing to ask for, also when that version is not shown
    assert "accuracy" not in cli("log", "--oneline", "-n", "1", "-M", "accuracy")[0]
    assert "accuracy=0.9" in cli("log", "--oneline", "-M", "accuracy", "-M", "macro avg.f1")[0]
    assert [e["tags"] for e in cli.json("log", "--tag", "prod")] == [["prod"]]  # type: ignore[index]


def test_errors_in_the_cli_name_its_options(cli: Cli, model: Path) -> None:
    cli("save", str(model), "--tag", "prod")
    cli("save", str(model))
    assert "(use --force to move it)" in cli("tag", "prod", "latest", code=2)[1]
    assert "(use --force to remove it and its tags)" in cli("rm", "prod", code=2)[1]
    assert "(use --force to overwrite)" in cli("checkout", "latest", "-o", str(model), code=2)[1]
    assert "needs --keep-last N and/or --keep-within DURATION" in cli("prune", code=2)[1]
    assert "add one with `mstore remote add nas URL`" in cli("checkout", "latest", "--remote", "nas", code=2)[1]


def test_diff_shows_the_config_keys_that_changed(cli: Cli, tmp_path: Path) -> None:
    config = {"model_type": "bert", "num_labels": 3, "id2label": {"0": "a", "1": "b", "2": "c"}, "dropout": 0.1}
    src = write_tree(
        tmp_path / "hf",
        {
            "config.json": json.dumps(config).encode(),
            "train.toml": b"lr = 0.001\n[data]\nbatch = 32\n",
            "params.yaml": b"lr: 0.001\n",
            "broken.json": b"{not json",
            "tokenizer.json": json.dumps({"vocab": "x" * (1 << 20)}).encode(),
            "weights.bin": b"w" * 100,
        },
    )
    cli("save", str(src))
    config.update(num_labels=4, id2label={"0": "a", "1": "b", "2": "c", "3": "d"}, use_cache=True)
    del config["dropout"]
    write_tree(
        src,
        {
            "config.json": json.dumps(config).encode(),
            "train.toml": b"lr = 0.002\n[data]\nbatch = 32\n",
            "params.yaml": b"lr: 0.002\n",
            "broken.json": b"{still not",
            "tokenizer.json": json.dumps({"vocab": "y" * (1 << 20)}).encode(),
        },
    )
    cli("save", str(src))
    files = {f["path"]: f for f in cli.json("diff")["files"]["changed"]}  # type: ignore[index]
    assert files["config.json"]["keys"] == {
        "added": {"id2label.3": "d", "use_cache": True},
        "removed": {"dropout": 0.1},
        "changed": {"num_labels": {"old": 3, "new": 4}},
    }
    if sys.version_info >= (3, 11):
        assert files["train.toml"]["keys"]["changed"] == {"lr": {"old": 0.001, "new": 0.002}}
    for plain_file in ("params.yaml", "broken.json", "tokenizer.json"):  # no YAML parser; not JSON; over 1 MiB
        assert "keys" not in files[plain_file]
    text = cli("diff")[0].splitlines()
    at = next(i for i, line in enumerate(text) if line.startswith("~ file config.json ("))
    assert text[at + 1 : at + 5] == [
        "      num_labels: 3 -> 4",
        '      + id2label.3: "d"',
        "      + use_cache: true",
        "      - dropout: 0.1",
    ]


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.slow
def test_lineage_training_data_and_code_are_recorded_and_compared(
    cli: Cli, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from blake3 import blake3

    code = tmp_path / "code"
    write_tree(code, {"train.py": b"fit()\n", "data.csv": b"a,b\n1,2\n"})
    _git(code, "init", "-q")
    _git(code, "add", "train.py")
    _git(code, "commit", "-q", "-m", "one")
    first_commit = _git(code, "rev-parse", "HEAD")
    monkeypatch.chdir(code)

    meta = cli.json("save", str(model), "--training-file", "data.csv")
    lineage = meta["mstore"]["lineage"]  # type: ignore[index]
    assert lineage == {
        "training_file": {"path": "data.csv", "blake3": blake3(b"a,b\n1,2\n").hexdigest(), "size": 8},
        "git": {"commit": first_commit, "dirty": False},
    }
    (code / "train.py").write_text("fit(epochs=2)\n")  # uncommitted change to tracked code
    model.write_bytes(b"retrained")
    cli("save", str(model), "--training-file", "data.csv")
    assert cli.json("show")["metadata"]["mstore"]["lineage"]["git"] == {"commit": first_commit, "dirty": True}  # type: ignore[index]
    text = cli("diff")[0]
    assert f"trained on the same data: data.csv ({lineage['training_file']['blake3'][:12]})" in text
    assert f"same code: commit {first_commit[:7]} (uncommitted changes in the newer)" in text

    _git(code, "commit", "-q", "-am", "two")
    second_commit = _git(code, "rev-parse", "HEAD")
    (code / "data.csv").write_text("a,b\n3,4\n")
    model.write_bytes(b"retrained again")
    cli("save", str(model), "--training-file", "data.csv")
    text = cli("diff")[0]
    assert "training data changed: data.csv (" in text
    assert f"code changed: {first_commit[:7]}-dirty -> {second_commit[:7]}" in text
    d = cli.json("diff")["lineage"]  # type: ignore[index]
    assert d["git"]["same"] is False and d["training_file"]["same"] is False  # type: ignore[index]
    assert d["git"]["new"] == {"commit": second_commit, "dirty": False}  # type: ignore[index]
    show = cli("show")[0]
    assert f"  code: git commit {second_commit}" in show and "  trained on: data.csv (blake3 " in show
    assert "Lineage:  data data.csv (" in cli("log", "-n", "1")[0] and second_commit[:7] in cli("log", "-n", "1")[0]

    # Never a reason to fail a save: a missing training file, no git at all
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    meta = cli.json("save", str(model), "--training-file", "missing.csv")
    assert meta["mstore"]["lineage"] == {}  # type: ignore[index]
    assert "Lineage" not in cli("log", "-n", "1")[0]
    assert "training data: data.csv" in cli("diff")[0] and "-> unknown" in cli("diff")[0]


@pytest.mark.parametrize(
    "args",
    [
        ["log"],
        ["show"],
        ["diff"],
        ["du"],
        ["checkout", "latest"],
        ["tag"],
        ["tag", "prod"],
        ["rm", "latest"],
        ["fsck"],
        ["gc"],
        ["prune", "--keep-last", "1"],
        ["remote"],
        ["remote", "add", "nas", "/tmp/nas"],
        ["push"],
        ["pull"],
    ],
)
def test_commands_other_than_save_and_init_never_create_a_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)  # the default store, data/models, does not exist
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.stderr == (
        f"mstore: error: no mstore store at {tmp_path / 'data' / 'models'} (nothing was saved there yet; save a "
        "model to create it, or point to another store with --store DIR or MSTORE_DIR)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_fsck_summarises_unused_objects_in_one_line(cli: Cli, tmp_path: Path) -> None:
    for i in range(3):
        cli("save", str(write_tree(tmp_path / f"m{i}", {f"f{j}.bin": os.urandom(3000) for j in range(4)})))
    cli("rm", "latest~1")
    out, _ = cli("fsck")
    lines = out.splitlines()
    unused = [line for line in lines if "not used by any version" in line]
    assert len(unused) == 1, out  # not one line per object
    assert unused[0].startswith("info: 5 object(s) (") and "`mstore gc` frees them in " in unused[0]
    assert unused[0].endswith("(grace period 1h)")
    report = cli.json("fsck")
    assert report["unused_objects"] == 5 and report["unused_bytes"] > 12_000  # type: ignore[index]
    assert sum(p["code"] == "unreachable" for p in report["problems"]) == 5  # type: ignore[index]
    old = time.time() - 7200
    for obj in (cli.store / "objects").rglob("*"):
        if obj.is_file():
            os.utime(obj, (old, old))
    assert "info: 5 object(s) (" in cli("fsck")[0] and "`mstore gc` frees them now" in cli("fsck")[0]


@pytest.mark.slow
def test_local_commands_do_not_import_boto3(tmp_path: Path) -> None:
    """boto3 costs ~0.25 s of start-up: only commands that talk to an S3 remote may load it."""
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights" * 1000)
    store = tmp_path / "store"
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['mstore', '--store', sys.argv[1], *sys.argv[2:]]\n"
        "try:\n"
        "    runpy.run_module('mstore', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto3 was imported'\n"
    )
    for args in (["save", str(model)], ["log"], ["fsck"], ["checkout", "latest", "-o", str(tmp_path / "out.bin")]):
        result = subprocess.run(
            [sys.executable, "-c", probe, str(store), *args], capture_output=True, text=True, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr


def test_newcomer_messages_say_what_happened(tmp_path: Path, model: Path) -> None:
    """`init` twice says the store was already there; `diff` on one version says there is none before it;
    `rm --force` names the tags it removed."""
    store = tmp_path / "s"
    first = runner.invoke(app, ["--store", str(store), "init"])
    again = runner.invoke(app, ["--store", str(store), "init"])
    assert first.stdout.startswith("Initialized") and again.stdout.startswith("Store already in")
    assert json.loads(runner.invoke(app, ["--store", str(store), "init", "--json"]).stdout)["existed"] is True
    runner.invoke(app, ["--store", str(store), "save", str(model), "--tag", "prod"])
    diff = runner.invoke(app, ["--store", str(store), "diff", "latest~1", "latest"])
    assert diff.exit_code == 2 and "is the oldest version; there is none before it" in diff.stderr
    removed = runner.invoke(app, ["--store", str(store), "rm", "prod", "--force"])
    assert removed.exit_code == 0 and "and its tag(s) prod" in removed.stdout


@pytest.mark.slow
def test_import_mstore_and_its_lazy_names_import_no_ml_framework() -> None:
    """mstore never requires torch, transformers or lightning: `mstore.log_model` and `mstore.open_tensors`
    load without them (an integration module imports its framework only when it is imported itself)."""
    probe = (
        "import sys, mstore\n"
        "mstore.log_model, mstore.open_tensors, mstore.model_path\n"
        "import mstore.integrations.checkpoints\n"
        "loaded = [m for m in ('torch', 'transformers', 'lightning', 'safetensors', 'sklearn') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
