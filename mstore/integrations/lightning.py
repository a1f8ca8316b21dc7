"""`MstoreCallback`: a Lightning `Callback` that saves the module's weights as a version every epoch.

    from mstore.integrations.lightning import MstoreCallback
    trainer = L.Trainer(max_epochs=10, callbacks=[MstoreCallback(store="models", metric="val_loss")])

At the end of each training epoch (after that epoch's validation), `pl_module.state_dict()` is written
as one safetensors file (never a pickled `.ckpt`: loading a pickle can run code) and saved with
`trainer.callback_metrics` as metrics, the module's `hparams` and the trainer's settings as `params`,
`global_step` and `epoch`, and the run's previous version as its parent; the best by `metric` is tagged
`tag_best`. Only the global-zero process saves. Importing this module imports lightning.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback

from .checkpoints import RunLog, numbers, plain_params
from .logmodel import TORCH_FILE, write_state_dict

TRAINER_PARAMS = ("max_epochs", "max_steps", "accumulate_grad_batches", "gradient_clip_val", "precision")


class MstoreCallback(Callback):  # type: ignore[misc]  # lightning is not analysed (pyproject)
    """Save the weights every `every_n_epochs` epochs; tag the best by `metric` (default val_loss)."""

    def __init__(
        self,
        store: str | os.PathLike[str] | None = None,
        tag_best: str | None = "candidate",
        metric: str = "val_loss",
        *,
        greater_is_better: bool | None = None,
        every_n_epochs: int = 1,
    ) -> None:
        self.run = RunLog(store, tag_best=tag_best, metric=metric, greater_is_better=greater_is_better)
        self.every_n_epochs = max(1, every_n_epochs)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        params = plain_params(dict(getattr(pl_module, "hparams", {}) or {}))
        params.update(plain_params({k: getattr(trainer, k, None) for k in TRAINER_PARAMS}))
        metadata = {
            "metrics": numbers(trainer.callback_metrics),
            "params": params,
            "global_step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "framework": "lightning",
        }
        with tempfile.TemporaryDirectory(prefix=".mstore-lightning-") as tmp:
            path = write_state_dict(pl_module.state_dict(), Path(tmp) / TORCH_FILE)
            self.run.save(path, metadata, message=f"epoch {trainer.current_epoch} (step {trainer.global_step})")
