"""Training-loop integrations: versions saved where models are made, each framework imported lazily.

- `logmodel.py`: `mstore.log_model(obj_or_path, metrics=, params=, tag=)` for a plain loop: a path, a torch
  `nn.Module` / `state_dict` (written as safetensors, never pickled) or a scikit-learn estimator (joblib).
- `checkpoints.py`: what both callbacks share: one version per checkpoint, parent = the previous one (so
  deltas apply), the best by the monitored metric tagged.
- `transformers.py`: `MstoreCallback`, a Hugging Face `TrainerCallback`.
- `lightning.py`: `MstoreCallback`, a Lightning `Callback`.

mstore itself never requires any of these frameworks: a module here imports its framework only when it
is imported itself, and `import mstore` imports none of them.
"""
