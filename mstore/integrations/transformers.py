"""`MstoreCallback`: every checkpoint a Hugging Face `Trainer` writes, saved as an mstore version.

    from mstore.integrations.transformers import MstoreCallback
    trainer = Trainer(model, args, ..., callbacks=[MstoreCallback(store="models", tag_best="candidate")])

At each save (`on_save`, after the Trainer wrote `checkpoint-<step>/`), the files `save_pretrained` wrote
there (config, weights, tokenizer) become one version: the Trainer's own state (optimizer, scheduler,
RNG, `training_args.bin`: pickles, and optimizer moments twice the model's size) is left out. The
version carries the latest evaluation metrics (and the last training loss), the TrainingArguments as
`params` (a JSON-able subset, tokens left out), `global_step` and `epoch`, and the run's previous
checkpoint as its parent; the best by `metric` is tagged `tag_best`. Only the main process saves.
Importing this module imports transformers (mstore itself never does).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .checkpoints import RunLog, numbers, plain_params

# What Trainer writes beside the model in a checkpoint folder (transformers' trainer.py names them)
TRAINER_STATE = (
    "optimizer.pt",
    "optimizer.bin",
    "scheduler.pt",
    "scaler.pt",
    "training_args.bin",
    "trainer_state.json",
)
TRAINER_STATE_PREFIXES = ("rng_state", "optimizer_", "pytorch_model_fsdp_")


class MstoreCallback(TrainerCallback):  # type: ignore[misc]  # transformers is not analysed (pyproject)
    """Save each checkpoint as a version; tag the best by `metric` (default eval_loss: lower is better)."""

    def __init__(
        self,
        store: str | os.PathLike[str] | None = None,
        tag_best: str | None = "candidate",
        metric: str = "eval_loss",
        *,
        greater_is_better: bool | None = None,
        trainer_state: bool = False,
    ) -> None:
        self.run = RunLog(store, tag_best=tag_best, metric=metric, greater_is_better=greater_is_better)
        self.trainer_state = trainer_state  # True: keep the Trainer's own files in the version too
        self.metrics: dict[str, float] = {}

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        self.metrics = {k: v for k, v in numbers(metrics).items() if k != "epoch"}  # epoch is its own key

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not folder.is_dir():
            return  # a hyperparameter search writes elsewhere: nothing of ours to save
        metrics = dict(self.metrics)
        losses = [e["loss"] for e in state.log_history if "loss" in e]
        if losses:
            metrics.setdefault("train_loss", losses[-1])
        metadata = {
            "metrics": numbers(metrics),
            "params": plain_params(args.to_dict()),
            "global_step": state.global_step,
            "epoch": state.epoch,
            "checkpoint": str(folder.resolve()),
            "framework": "transformers",
        }
        message = f"{folder.name} (epoch {state.epoch:.2f})" if state.epoch is not None else folder.name
        if self.trainer_state:
            self.run.save(folder, metadata, message=message)
            return
        with _model_files(folder) as staged:
            self.run.save(staged, metadata, message=message)


class _model_files:
    """The checkpoint's model files, hard-linked (copied across filesystems) into a folder of the same
    name beside it, without the Trainer's own state; removed afterwards."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.tmp = Path(tempfile.mkdtemp(prefix=".mstore-", dir=folder.parent))

    def __enter__(self) -> Path:
        staged = self.tmp / self.folder.name
        for src in sorted(self.folder.rglob("*")):
            rel = src.relative_to(self.folder)
            if rel.parts[0] in TRAINER_STATE or rel.parts[0].startswith(TRAINER_STATE_PREFIXES):
                continue
            out = staged / rel
            if src.is_dir() and not src.is_symlink():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, out, follow_symlinks=False)
            except OSError:
                shutil.copy2(src, out, follow_symlinks=False)
        staged.mkdir(exist_ok=True)
        return staged

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
