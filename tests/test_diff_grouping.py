"""`mstore diff` reads across model types: tensor names in natural order, long runs folded by prefix with
counts, `--full` lists every name, `--json` stays complete."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from mstore import Repository
from mstore.cli import app
from mstore.diff.grouping import group_names, natural_sorted

from helpers import safetensors_bytes


def test_natural_order_compares_numbers_as_numbers() -> None:
    names = [f"estimators_[{i}]" for i in (10, 1, 0, 2, 11)] + ["coef_", "layers.9.w", "layers.10.w"]
    assert natural_sorted(names) == [
        "coef_",
        "estimators_[0]",
        "estimators_[1]",
        "estimators_[2]",
        "estimators_[10]",
        "estimators_[11]",
        "layers.9.w",
        "layers.10.w",
    ]


def test_long_runs_fold_into_one_group_with_a_count() -> None:
    names = [f"estimators_[{i}].tree_.{f}" for i in range(50) for f in ("value", "threshold", "feature", "left")]
    names += ["coef_", "intercept_", "head.0.w"]
    groups = group_names(names)
    assert [(g.label, g.count) for g in groups] == [
        ("coef_", 1),
        ("estimators_[0..49]", 200),
        ("head.0.w", 1),
        ("intercept_", 1),
    ]
    assert set(groups[1].names) == {n for n in names if n.startswith("estimators_")}
    # ten or fewer under one prefix stay one per line; no folding at all with min_group=0
    few = [f"layers.{i}.w" for i in range(10)]
    assert [g.label for g in group_names(few)] == few
    assert [g.label for g in group_names(names, 0)] == natural_sorted(names)


def _save(repo: Repository, tmp_path: Path, name: str, tensors: dict[str, tuple[str, np.ndarray]]) -> str:
    d = tmp_path / name
    d.mkdir()
    (d / "model.safetensors").write_bytes(safetensors_bytes(tensors))
    return str(repo.save(d / "model.safetensors")["timestamp"])


def test_cli_diff_folds_and_full_shows_every_name(tmp_path: Path, repo: Repository) -> None:
    w = np.ones(4, np.float32)
    v1 = _save(repo, tmp_path, "a", {"coef_": ("F32", w)})
    v2 = _save(repo, tmp_path, "b", {f"estimators_[{i}].value": ("F32", w * i) for i in range(50)})
    base = ["--store", str(repo.root), "diff", v1, v2]
    short = CliRunner().invoke(app, base)
    assert short.exit_code == 0, short.output
    assert "+50 tensors in estimators_[0..49]" in short.stdout
    assert "estimators_[7].value" not in short.stdout
    assert "- coef_" in short.stdout

    full = CliRunner().invoke(app, [*base, "--full"])
    assert full.exit_code == 0, full.output
    listed = [line.split()[1] for line in full.stdout.splitlines() if line.strip().startswith("+ estimators_")]
    assert listed == [f"estimators_[{i}].value" for i in range(50)]  # every name, natural order
    assert "tensors in" not in full.stdout

    as_json = json.loads(CliRunner().invoke(app, [*base, "--json"]).stdout)
    (changed,) = as_json["files"]["changed"]
    assert len(changed["tensors"]["added"]) == 50
