"""`mstore.log_model(obj_or_path, metrics=, params=, tag=)`: save a model from a plain training loop.

A path is saved as `mstore save` saves it. A torch `nn.Module` or `state_dict` is written as safetensors
(with the `safetensors` package when it is installed, else mstore's own writer; never pickled: a pickle
can run code when loaded), a scikit-learn estimator with joblib (and its pickle is scanned at save, as
every pickle is: `meta["mstore"]["unsafe_globals"]`). The frameworks are recognised by what the object is,
never imported to find out: an object of torch's exists only once the caller imported torch.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import BadInput
from ..formats.tensors import safetensors_bytes
from ..repository import Repository
from .checkpoints import RunLog, numbers

TORCH_FILE = "model.safetensors"
SKLEARN_FILE = "model.joblib"


def log_model(
    obj_or_path: Any,
    metrics: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    tag: str | None = None,
    store: str | os.PathLike[str] | Repository | None = None,
    *,
    message: str | None = None,
    parent: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    refuse_unsafe: bool = False,
) -> dict[str, Any]:
    """Save a model as a new version and return its metadata (as `save_model_version` does).

    `metrics` (numbers: what `log --sort` ranks), `params` (hyperparameters, stored under `params`) and
    `metadata` (anything else JSON-able) go into the version's metadata; `tag` names it, moved there if
    it named another version; `parent` is the version it was trained from (default: the newest). The
    store is `store`, else $MSTORE_DIR, else data/models, created by the first save.
    """
    doc: dict[str, Any] = dict(metadata or {})
    if metrics is not None:
        doc["metrics"] = numbers(metrics) if _has_tensors(metrics) else dict(metrics)
    if params is not None:
        doc["params"] = dict(params)
    run = RunLog(store, tag_best=None)
    if isinstance(obj_or_path, (str, os.PathLike)):
        meta = run.repo.save(obj_or_path, doc, message=message, parent=parent, refuse_unsafe=refuse_unsafe)
    else:
        with tempfile.TemporaryDirectory(prefix=".mstore-log-model-") as tmp:
            path = write_model(obj_or_path, Path(tmp))
            meta = run.repo.save(path, doc, message=message, parent=parent, refuse_unsafe=refuse_unsafe)
    if tag is not None:
        run.repo.tag(tag, str(meta["timestamp"]), force=True)
        meta.setdefault("tags", []).append(tag)
    return meta


def _has_tensors(metrics: Mapping[str, Any]) -> bool:
    return any(hasattr(v, "item") for v in metrics.values())


def write_model(obj: Any, folder: Path) -> Path:
    """Write a torch module / state_dict as safetensors or a scikit-learn estimator with joblib, into
    `folder`; returns the file written."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if (
        torch is not None
        and isinstance(obj, Mapping)
        and obj
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    ):
        return write_state_dict(obj, folder / TORCH_FILE)
    if isinstance(obj, Mapping) and torch is not None:
        odd = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))[:3]
        if odd:
            raise BadInput(
                f"log_model writes a state_dict of tensors; {', '.join(map(repr, odd))} are not tensors "
                "(save the file yourself and pass its path)"
            )
    if hasattr(obj, "fit") and hasattr(obj, "get_params") and type(obj).__module__.startswith("sklearn"):
        import joblib  # type: ignore[import-untyped]

        path = folder / SKLEARN_FILE
        joblib.dump(obj, path)
        return path
    raise BadInput(
        f"log_model takes a path, a torch nn.Module or state_dict, or a scikit-learn estimator; "
        f"got {type(obj).__module__}.{type(obj).__qualname__}"
    )


def write_state_dict(state: Mapping[str, Any], path: Path) -> Path:
    """A torch state_dict as safetensors. Tensors that share storage (tied weights) are written once
    each as copies (safetensors refuses shared storage; mstore stores the identical bytes once anyway)."""
    import torch

    tensors = {str(k): v.detach().to("cpu").contiguous() for k, v in state.items()}
    try:
        from safetensors.torch import save_file
    except ImportError:  # mstore's own writer below
        pass
    else:
        seen: set[int] = set()
        for name, t in tensors.items():
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen and t.numel():
                tensors[name] = t.clone()
            seen.add(ptr)
        save_file(tensors, str(path), metadata={"format": "pt"})
        return path
    names = {
        torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
        torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
        torch.bool: "BOOL",
    }  # fmt: skip
    out: dict[str, tuple[str, Any]] = {}
    for name, t in tensors.items():
        dtype = names.get(t.dtype)
        if dtype is None:
            raise BadInput(f"tensor {name!r} is {t.dtype}, which safetensors cannot hold")
        out[name] = (dtype, t.view(torch.int16).numpy() if dtype == "BF16" else t.numpy())
    path.write_bytes(safetensors_bytes(out))
    return path
