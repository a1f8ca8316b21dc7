"""Training-loop integrations against the real frameworks: tiny models built from a config (no download).

A transformers Trainer run and a Lightning run each leave one version per checkpoint with the metrics,
params, step and epoch, parents chained, and the best tagged; `log_model` writes torch weights as
safetensors (never a pickle) and scikit-learn estimators with joblib (scanned like every pickle).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mstore
from mstore import Repository
from mstore.errors import BadInput
from mstore.integrations.checkpoints import RunLog

torch = pytest.importorskip("torch")


def _chain(repo: Repository) -> list[dict[str, Any]]:
    """The versions oldest first, each one's parent the one before."""
    versions = repo.log()[::-1]
    for before, after in zip(versions, versions[1:], strict=False):
        assert after["mstore"]["parent"] == before["timestamp"]
    return versions


def _best(versions: list[dict[str, Any]], metric: str, tag: str) -> None:
    best = min(versions, key=lambda m: m["metrics"][metric])
    assert [m["timestamp"] for m in versions if tag in m["tags"]] == [best["timestamp"]]


@pytest.mark.slow
def test_a_transformers_trainer_run_leaves_a_version_per_checkpoint(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from mstore.integrations.transformers import MstoreCallback

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16,
    )  # fmt: skip
    model = transformers.BertForSequenceClassification(config)

    class Tokens(torch.utils.data.Dataset):  # type: ignore[misc]
        def __init__(self, n: int) -> None:
            self.x = torch.randint(0, 64, (n, 8))

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"input_ids": self.x[i], "labels": (self.x[i, 0] > 32).long()}

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), num_train_epochs=2, eval_strategy="epoch", save_strategy="epoch",
        per_device_train_batch_size=8, report_to=[], use_cpu=True, logging_steps=2, disable_tqdm=True,
        hub_token="hf_secret",
    )  # fmt: skip
    store = tmp_path / "models"
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=Tokens(32), eval_dataset=Tokens(16),
        callbacks=[MstoreCallback(store=store, tag_best="candidate", metric="eval_loss")],
    )  # fmt: skip
    trainer.train()

    repo = Repository.open(store)
    versions = _chain(repo)
    assert [(m["global_step"], m["epoch"]) for m in versions] == [(4, 1.0), (8, 2.0)]
    for m in versions:
        assert {"eval_loss", "train_loss"} <= set(m["metrics"]) and "epoch" not in m["metrics"]
        assert m["params"]["learning_rate"] == args.learning_rate and m["params"]["num_train_epochs"] == 2
        assert "hub_token" not in m["params"] and "hf_secret" not in str(m)
        assert m["checkpoint"].endswith(f"checkpoint-{m['global_step']}")
        files = {f["path"] for f in repo.show(m["timestamp"])["files"]}
        assert files == {"config.json", "model.safetensors"}  # the Trainer's own state (pickles) stays out
        assert not m["mstore"].get("unsafe_globals")
    _best(versions, "eval_loss", "candidate")

    last = transformers.BertForSequenceClassification.from_pretrained(mstore.model_path("latest", store=store))
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(last.state_dict()[name], value), name
    assert "wrote" not in str(list((tmp_path / "out").iterdir()))  # no staging folder left behind
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint-4", "checkpoint-8"]


@pytest.mark.slow
def test_a_lightning_run_leaves_a_version_per_epoch(tmp_path: Path) -> None:
    L = pytest.importorskip("lightning")
    from mstore.integrations.lightning import MstoreCallback

    class Regressor(L.LightningModule):  # type: ignore[misc]
        def __init__(self, hidden: int = 8, lr: float = 0.1) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

        def training_step(self, batch: Any, _: int) -> Any:
            loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Any, _: int) -> None:
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    torch.manual_seed(0)
    x = torch.randn(64, 4)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)
    store = tmp_path / "models"
    module = Regressor()
    trainer = L.Trainer(
        max_epochs=2, callbacks=[MstoreCallback(store=store)], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, data, data)

    repo = Repository.open(store)
    versions = _chain(repo)
    assert [(m["epoch"], m["global_step"]) for m in versions] == [(0, 4), (1, 8)]
    for m in versions:
        assert {"val_loss", "train_loss"} <= set(m["metrics"])
        assert m["params"] | {"hidden": 8, "lr": 0.1, "max_epochs": 2} == m["params"]
        assert [f["path"] for f in repo.show(m["timestamp"])["files"]] == ["model.safetensors"]
    _best(versions, "val_loss", "candidate")
    with mstore.open_tensors("latest", store=store) as weights:
        for name, value in module.state_dict().items():
            assert np.array_equal(weights[name], value.numpy()), name


def test_log_model_writes_torch_weights_as_safetensors_never_a_pickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10))
    model[1].weight = model[0].weight  # tied weights: safetensors refuses shared storage as it is
    model.half_copy = torch.nn.Parameter(torch.randn(3).to(torch.bfloat16))  # type: ignore[assignment]
    store = tmp_path / "models"
    meta = mstore.log_model(model, metrics={"loss": torch.tensor(0.5)}, params={"lr": 0.1}, tag="run", store=store)
    assert meta["metrics"] == {"loss": 0.5} and meta["params"] == {"lr": 0.1} and meta["tags"] == ["run"]
    from safetensors.torch import load_file

    path = mstore.model_path("run", store=store)
    assert path.name == "model.safetensors" and not Repository.open(store).get("run")["mstore"].get("pickle_globals")
    loaded = load_file(path)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded[name], value), name

    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # without the package: mstore's own writer
    again = mstore.log_model(model.state_dict(), tag="run", store=store)  # the tag moves to the new version
    monkeypatch.undo()
    assert Repository.open(store).resolve("run") == again["timestamp"]
    own = load_file(mstore.model_path("run", store=store))
    assert own.keys() == loaded.keys() and all(torch.equal(own[k], loaded[k]) for k in own)


def test_log_model_saves_paths_and_sklearn_estimators_and_refuses_anything_else(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    store = tmp_path / "models"
    estimator = LogisticRegression().fit(np.eye(4), [0, 1, 0, 1])
    meta = mstore.log_model(estimator, metrics={"accuracy": 1.0}, store=store)
    assert meta["original_path"].endswith("model.joblib") and "model.joblib" in meta["mstore"]["pickle_globals"]
    file = tmp_path / "weights.bin"
    file.write_bytes(b"w" * 100)
    assert mstore.log_model(file, store=store, metadata={"note": "x"})["note"] == "x"
    with pytest.raises(BadInput, match="got builtins.object"):
        mstore.log_model(object(), store=store)
    with pytest.raises(BadInput, match="'step' are not tensors"):
        mstore.log_model({"w": torch.zeros(2), "step": 3}, store=store)
    with pytest.raises(BadInput, match="cannot tell whether a higher or a lower 'widgets'"):
        RunLog(store, metric="widgets")


def test_two_runs_in_one_store_each_chain_their_own_checkpoints_and_tag_their_best(tmp_path: Path) -> None:
    store, model = tmp_path / "models", tmp_path / "w.bin"
    a, b = RunLog(store, tag_best="a-best", metric="val_loss"), RunLog(store, tag_best="b-best", metric="accuracy")
    saved = []
    for i, (run, value) in enumerate([(a, 0.5), (b, 0.7), (a, 0.4), (b, 0.6), (a, 0.45)]):
        model.write_bytes(bytes([i]) * 1000)
        name = "val_loss" if run is a else "accuracy"
        saved.append(run.save(model, {"metrics": {name: value}})["timestamp"])
    repo = Repository.open(store)
    assert [repo.get(v)["mstore"].get("parent") for v in saved[2:]] == saved[:3]  # its own run's previous
    assert repo.resolve("a-best") == saved[2] and repo.resolve("b-best") == saved[1]
