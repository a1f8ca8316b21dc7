"""From S3 (a real S3 API on 127.0.0.1), only what was asked for travels: the bytes fetched say so.

`mstore path --include config.json` fetches the manifest and that file's chunk, not the weights, and a
later call for the weights adds them to the same folder; `open_tensors(...)["w"]` fetches the header and
the chunks of `w` alone; `show --tensors --remote` fetches no weight bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mstore
from mstore import Repository
from mstore.formats.tensors import safetensors_bytes

from helpers import cli, write_tree

pytestmark = pytest.mark.slow  # an S3 server

W = np.random.default_rng(1).standard_normal((256, 256)).astype(np.float32)  # 256 KiB
BACKBONE = np.random.default_rng(2).standard_normal(1 << 20).astype(np.float32)  # 4 MiB


def test_include_and_one_tensor_fetch_only_their_objects(
    tmp_path: Path, s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSTORE_CACHE", str(tmp_path / "cache"))
    team = Repository.init(tmp_path / "team")
    team.remote_add("origin", s3_url)
    weights = safetensors_bytes({"backbone": ("F32", BACKBONE), "w": ("F32", W)})
    config = b'{"hidden_size": 256}'
    team.save(write_tree(tmp_path / "ckpt", {"config.json": config, "model.safetensors": weights}))
    team.tag("prod", "latest")
    team.push("origin")
    nobody = tmp_path / "no-store"

    doc = json.loads(cli(nobody, "path", "prod", "--remote", s3_url, "--include", "config.json", "--json").stdout)
    folder = Path(doc["path"])
    assert [p.name for p in folder.iterdir()] == ["config.json"] and (folder / "config.json").read_bytes() == config
    assert doc["objects_fetched"] == 2 and doc["bytes_fetched"] < 4096, doc  # the manifest and config.json
    assert doc["files"] == ["config.json"] and doc["complete"] is False

    more = json.loads(cli(nobody, "path", "prod", "--remote", s3_url, "--json").stdout)
    assert (
        more["path"] == doc["path"]
        and more["complete"] is True
        and (folder / "model.safetensors").read_bytes() == weights
    )
    assert more["bytes_fetched"] > 3 << 20 and more["objects_fetched"] >= 2  # now the weights, not config again

    listed = json.loads(cli(nobody, "show", "prod", "--tensors", "--remote", s3_url, "--json").stdout)
    assert listed["files"][0]["tensors"][1]["name"] == "w" and listed["bytes_fetched"] < 4096  # its own cache

    tensors = mstore.open_tensors("prod", remote=s3_url, cache_dir=tmp_path / "cold")
    header = tensors.bytes_fetched
    assert np.array_equal(tensors["w"], W)
    assert (
        W.nbytes // 2 < tensors.bytes_fetched - header <= W.nbytes + 4096
    )  # w's chunks (compressed), never the backbone
    assert not (tmp_path / "no-store").exists()
