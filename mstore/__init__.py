"""mstore: content-addressed, verifiable versioning for trained ML models."""

from .api import ModelVersioning
from .errors import MStoreError
from .modelpath import model_path
from .repository import Repository

__version__ = "0.1.0"
__all__ = ["ModelVersioning", "MStoreError", "Repository", "__version__", "model_path"]
