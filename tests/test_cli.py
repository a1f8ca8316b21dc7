"""What users type: every command end to end, JSON on stdout only, one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mstore.cli import app

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
    path.write_bytes(os.urandom(100_000))
    return path


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
    assert "f1=0.8" not in log_lines[1]  # default metrics: the newest version's
    assert "f1=0.8" in cli("log", "--oneline", "-M", "f1")[0]
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
    assert cli.json("rm", "candidate", "--force") == {"removed": second_id}

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
    assert ok.returncode == 0 and json.loads(ok.stdout)["mstore"]["size"] == 100_000 and ok.stderr == ""
    bad = subprocess.run([sys.executable, "-m", "mstore", "show", "nope"], env=env, capture_output=True, text=True)
    assert (
        bad.returncode == 2
        and bad.stdout == ""
        and bad.stderr.startswith("mstore: error:")
        and "Traceback" not in bad.stderr
    )


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
