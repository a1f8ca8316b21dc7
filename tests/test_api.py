"""The seed's usage runs with only its import line changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mstore import ModelVersioning
from mstore.errors import VersionNotFound


def test_seed_workflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("model.joblib").write_bytes(b"first model")
    versioning = ModelVersioning()  # default base_dir, as in the seed
    assert not Path("data").exists()  # nothing is written before the first save
    metadata = {
        "training_file": "data/train.csv",
        "metrics": {"accuracy": 0.91, "weighted avg": {"f1-score": 0.9}},
        "num_samples": 1200,
        "categories": ["billing", "bug"],
    }
    saved = versioning.save_model_version("model.joblib", metadata)
    assert Path("data/models/mstore.json").is_file()
    assert metadata["timestamp"] == saved["timestamp"]  # the seed updated the caller's dict in place
    assert saved["model_hash"] == metadata["model_hash"]
    Path("model.joblib").write_bytes(b"second model")
    second = versioning.save_model_version(
        "model.joblib",
        {
            "training_file": "data/train.csv",
            "metrics": {"accuracy": 0.93},
            "num_samples": 1500,
            "categories": ["billing", "bug", "account"],
        },
    )
    assert Path(f"data/models/version_{second['timestamp']}/metadata.json").is_file()
    assert [v["timestamp"] for v in versioning.list_versions()] == [second["timestamp"], saved["timestamp"]]
    assert versioning.get_latest_version() == second
    assert versioning.get_model_version(saved["timestamp"]) == saved
    comparison = versioning.compare_versions(saved["timestamp"], second["timestamp"])
    assert comparison["metrics"]["accuracy"]["delta"] == pytest.approx(0.02)
    assert comparison["categories"]["added"] == ["account"]
    assert comparison["same_model"] is False
    assert versioning.diff(saved["timestamp"], second["timestamp"]) == comparison
    assert [e["timestamp"] for e in versioning.log(limit=1)] == [second["timestamp"]]
    assert versioning.show("latest")["parent"] == saved["timestamp"]
    assert versioning.du()["versions"] == 2
    versioning.tag("prod", saved["timestamp"])
    restored = versioning.checkout("prod", tmp_path / "restored.joblib")
    assert restored.read_bytes() == b"first model"
    versioning.delete_version("latest")
    assert versioning.get_latest_version() == saved
    with pytest.raises(VersionNotFound):
        versioning.get_model_version(second["timestamp"])


def test_empty_store_has_no_latest(tmp_path: Path) -> None:
    assert ModelVersioning(tmp_path / "s").get_latest_version() is None
    assert ModelVersioning(tmp_path / "s").list_versions() == []


def test_reading_never_creates_a_store(tmp_path: Path) -> None:
    from mstore.errors import StoreNotFound

    versioning = ModelVersioning(tmp_path / "typo")
    for read in (
        lambda: versioning.get_model_version("latest"),
        lambda: versioning.log(),
        lambda: versioning.show(),
        lambda: versioning.du(),
        lambda: versioning.fsck(),
        lambda: versioning.checkout("latest", tmp_path / "out"),
    ):
        with pytest.raises(StoreNotFound) as caught:
            read()
        assert str(caught.value) == (
            f"no mstore store at {tmp_path / 'typo'} (nothing was saved there yet; save a model to create it, "
            "or point to another store with base_dir=)"
        )
    assert versioning.get_latest_version() is None and versioning.list_versions() == []
    assert not (tmp_path / "typo").exists()


def test_choose_the_best_model_and_list_versions_carry_tags(tmp_path: Path) -> None:
    from mstore.errors import BadInput

    versioning = ModelVersioning(tmp_path / "s")
    model = tmp_path / "model.joblib"
    saved = []
    for acc in (0.8, 0.93, 0.9):
        model.write_bytes(str(acc).encode())
        saved.append(versioning.save_model_version(model, {"metrics": {"accuracy": acc, "speed": acc}}))
    versioning.tag("prod", saved[1]["timestamp"])
    best = versioning.log(sort="accuracy", limit=1)[0]
    assert best["timestamp"] == saved[1]["timestamp"] and best["tags"] == ["prod"]
    assert [v["tags"] for v in versioning.list_versions()] == [[], ["prod"], []]
    assert [v["metrics"]["accuracy"] for v in versioning.log(sort="speed", descending=False)] == [0.8, 0.9, 0.93]
    with pytest.raises(BadInput, match=r"add descending=True \(highest first\) or descending=False"):
        versioning.log(sort="speed")


def test_errors_raised_through_python_speak_python(tmp_path: Path) -> None:
    from mstore.errors import MStoreError

    versioning = ModelVersioning(tmp_path / "s")
    model = tmp_path / "model.joblib"
    model.write_bytes(b"one")
    versioning.save_model_version(model)
    model.write_bytes(b"two")
    versioning.save_model_version(model)
    versioning.tag("prod", "latest~1")
    attempts = [
        lambda: versioning.tag("prod", "latest"),
        lambda: versioning.delete_version("prod"),
        lambda: versioning.checkout("latest", model),
        lambda: versioning.prune(),
        lambda: versioning.repo.push(),
        lambda: versioning.repo.pull("nas"),
    ]
    for attempt in attempts:
        with pytest.raises(MStoreError) as caught:
            attempt()
        assert "--" not in str(caught.value) and "`mstore" not in str(caught.value), str(caught.value)
    with pytest.raises(MStoreError, match=r"use force=True to move it"):
        versioning.tag("prod", "latest")
    with pytest.raises(MStoreError, match=r"keep_last=N and/or keep_within=SECONDS"):
        versioning.prune()
    with pytest.raises(MStoreError, match=r"add one with remote_add\('nas', URL\)"):
        versioning.repo.pull("nas")
