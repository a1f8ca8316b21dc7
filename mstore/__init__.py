"""mstore: content-addressed, verifiable versioning for trained ML models.

The names below load on first use (PEP 562), so `mstore <command>` imports only what that command
needs: the model cache and the remote side stay unloaded for local commands.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "ModelVersioning",
    "MStoreError",
    "Repository",
    "__version__",
    "log_model",
    "model_path",
    "open_tensors",
]

_WHERE = {
    "ModelVersioning": "api",
    "MStoreError": "errors",
    "model_path": "modelpath",
    "open_tensors": "tensorfile",
    "log_model": "integrations.logmodel",
    "Repository": "repository",
}

if TYPE_CHECKING:
    from .api import ModelVersioning
    from .errors import MStoreError
    from .integrations.logmodel import log_model
    from .modelpath import model_path
    from .repository import Repository
    from .tensorfile import open_tensors


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
