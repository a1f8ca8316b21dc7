"""Helpers shared by the tests: build model files and trees, read them back, measure the store."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mstore import Repository


def write_tree(root: Path, files: dict[str, bytes], executable: frozenset[str] = frozenset()) -> Path:
    """Create `files` (relative path -> bytes) under `root`; returns `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o755 if rel in executable else 0o644)
    return root


def read_tree(root: Path) -> dict[str, tuple[bytes, bool]]:
    """Every file under `root` as relative path -> (bytes, executable)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out[path.relative_to(root).as_posix()] = (path.read_bytes(), bool(path.stat().st_mode & 0o100))
    return out


def store_bytes(repo: Repository) -> int:
    """Bytes held in objects/."""
    return sum(repo.store.objects.size(oid) for oid in repo.store.objects)


def safetensors_bytes(tensors: dict[str, tuple[str, np.ndarray]]) -> bytes:
    """A safetensors file: 8-byte header length, JSON header, then the tensors' bytes in order."""
    import json

    header: dict[str, object] = {}
    blobs, offset = [], 0
    for name, (dtype, array) in tensors.items():
        raw = array.tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + b"".join(blobs)
