"""Helpers shared by the tests: build model files and trees, read them back, measure the store."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st

from mstore import Repository
from mstore.formats.tensors import safetensors_bytes

__all__ = ["format_2_store", "read_tree", "safetensors_bytes", "store_bytes", "write_tree"]


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


def examples(n: int) -> int:
    """`n` hypothesis examples under the default profile, scaled with the loaded one: a test's own
    `max_examples` would otherwise override HYPOTHESIS_PROFILE=thorough (1000, ten times the default 100)."""
    return max(n, n * settings.default.max_examples // 100)


def format_2_store(root: Path) -> Repository:
    """A new store as an mstore before format 3 wrote it: format 2, no `planes`, no config checksum."""
    Repository.init(root)
    config_path = root / "mstore.json"
    config = json.loads(config_path.read_text())
    config["format"] = 2
    del config["compression"]["planes"]
    config.pop("b3")
    config_path.write_text(json.dumps(config))
    return Repository.open(root)


def mutations(sample: bytes) -> st.SearchStrategy[bytes]:
    """`sample` damaged the ways a file is: bits flipped, a few bytes inserted, then cut short."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(sample)
        for at, bit in draw(st.lists(st.tuples(st.integers(0, len(sample) - 1), st.integers(0, 7)), max_size=8)):
            data[at] ^= 1 << bit
        at, extra = draw(st.tuples(st.integers(0, len(sample)), st.binary(max_size=12)))
        data[at:at] = extra
        return bytes(data[: draw(st.integers(0, len(sample))) + len(extra)])

    return mutate()
