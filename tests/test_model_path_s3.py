"""`mstore path --remote` straight from S3 (a real S3 API on 127.0.0.1), with no local store.

A fine-tune after a cached base downloads only its new chunks (the bytes are reported in --json);
offline mode answers a cached ref with the S3 server stopped and without loading boto3 at all, and
fails in one line for a ref never resolved; `auto` falls back with a warning on stderr only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from mstore import Repository

from helpers import head_model
from s3helpers import moto_server, s3_client

pytestmark = pytest.mark.slow  # an S3 server of its own, stopped and started: not in the quick loop


def _run(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, code: int = 0
) -> subprocess.CompletedProcess[str]:
    """`mstore ARGS` in a directory with no store, the cache in tmp_path/cache."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("MSTORE_")}
    full.update(MSTORE_CACHE=str(tmp_path / "cache"), MSTORE_DIR=str(tmp_path / "no-store"), **(env or {}))
    result = subprocess.run(
        [sys.executable, "-m", "mstore", *args], capture_output=True, text=True, env=full, timeout=120, cwd=tmp_path
    )
    assert result.returncode == code, (args, result.stdout, result.stderr)
    return result


def _path(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_run(tmp_path, "path", *args, "--json", env=env).stdout)
    return doc


def test_a_fine_tune_after_a_cached_base_fetches_only_the_new_chunks(tmp_path: Path, s3_url: str) -> None:
    team = Repository.init(tmp_path / "team")
    team.remote_add("origin", s3_url)
    src = tmp_path / "model.safetensors"
    src.write_bytes(head_model(1, backbone=1 << 20))  # a 4 MiB backbone, a 4 KiB head
    team.save(src)
    team.tag("prod", "latest")
    team.push("origin")

    base = _path(tmp_path, "prod", "--remote", s3_url)
    assert Path(base["path"]).read_bytes() == src.read_bytes() and base["cached"] is False
    assert base["bytes_fetched"] > 1 << 20 and base["objects_fetched"] >= 2  # the whole model, compressed
    assert not (tmp_path / "no-store").exists()  # no local store needed, none created
    again = _path(tmp_path, "prod", "--remote", s3_url)
    assert again["cached"] is True and again["bytes_fetched"] == 0 and again["path"] == base["path"]

    src.write_bytes(head_model(2, backbone=1 << 20))  # fine-tuned: the head changed
    team.save(src)
    team.push("origin")
    tuned = _path(tmp_path, "latest", "--remote", s3_url)
    assert Path(tuned["path"]).read_bytes() == src.read_bytes()
    assert tuned["path"] != base["path"] and tuned["version"] == team.ids()[-1]
    assert 0 < tuned["bytes_fetched"] < 16 * 1024, tuned  # the head chunk and the manifest, not the backbone
    assert tuned["objects_fetched"] <= 3

    # a named remote of a local store works the same, and finds the same entry
    named = json.loads(
        _run(tmp_path, "--store", str(tmp_path / "team"), "path", "prod", "--remote", "origin", "--json").stdout
    )
    assert named["path"] == base["path"] and named["cached"] is True

    # a cached chunk damaged behind mstore's back is fetched again, never used
    for oid_file in (tmp_path / "cache" / "objects").rglob("*"):
        if oid_file.is_file() and oid_file.stat().st_size > 1 << 20:
            os.chmod(oid_file, 0o644)
            data = bytearray(oid_file.read_bytes())
            data[len(data) // 2] ^= 1
            oid_file.write_bytes(bytes(data))
    _run(tmp_path, "cache", "rm", "--all")
    rebuilt = _path(tmp_path, "prod", "--remote", s3_url)
    assert Path(rebuilt["path"]).read_bytes() == head_model(1, backbone=1 << 20) and rebuilt["bytes_fetched"] > 1 << 20


def test_offline_needs_no_network_and_auto_falls_back_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "model.safetensors"
    src.write_bytes(head_model(1, backbone=1 << 16))
    with moto_server() as endpoint:  # a server of this test's own: it is stopped halfway through
        bucket = f"mstore-{uuid.uuid4().hex[:16]}"
        s3_client(endpoint).create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/models"
        aws = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        for name, value in aws.items():
            monkeypatch.setenv(name, value)
        team = Repository.init(tmp_path / "team")
        team.remote_add("origin", url, endpoint_url=endpoint)
        team.save(src)
        team.tag("prod", "latest")
        team.push("origin")
        online = _path(tmp_path, "prod", "--remote", url, env=aws)
        _run(tmp_path, "path", "latest", "--remote", url, "--offline", env=aws, code=1)  # never resolved
    # the server is gone
    offline = {**aws, "MSTORE_OFFLINE": "1"}
    answered = _path(tmp_path, "prod", "--remote", url, env=offline)
    assert answered["path"] == online["path"] and answered["offline"] is True
    assert answered["version"] == online["version"] and Path(answered["path"]).read_bytes() == src.read_bytes()
    # no network call at all: boto3 is never even imported
    probe = (
        "import sys, mstore\n"
        f"path = mstore.model_path('prod', remote={url!r}, offline=True)\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto3 was loaded'\n"
        "print(path)\n"
    )
    full = {k: v for k, v in os.environ.items() if not k.startswith("MSTORE_")}
    full.update(aws, MSTORE_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=full, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == online["path"], out.stderr
    # tampered while offline: rebuilt from the cache's own objects, still without the server
    cached = Path(online["path"])
    os.chmod(cached, 0o644)
    cached.write_bytes(b"changed")
    rebuilt = _path(tmp_path, "prod", "--remote", url, env=offline)
    assert rebuilt["cached"] is False and cached.read_bytes() == src.read_bytes()

    missing = _run(tmp_path, "path", "latest", "--remote", url, env=offline, code=1)
    assert missing.stderr.count("\n") == 1 and "is not in the cache" in missing.stderr
    unreachable = _run(tmp_path, "path", "prod", "--remote", url, env=aws, code=1)  # online: a clear failure
    assert unreachable.stderr.count("\n") == 1 and "cannot reach" in unreachable.stderr
    auto = _run(tmp_path, "path", "prod", "--remote", url, env={**aws, "MSTORE_OFFLINE": "auto"})
    assert auto.stdout.strip() == online["path"]
    assert auto.stderr.startswith("mstore: warning: ") and online["version"] in auto.stderr
    _run(tmp_path, "path", "latest", "--remote", url, env={**aws, "MSTORE_OFFLINE": "auto"}, code=1)
    _run(tmp_path, "path", "prod", "--remote", url, env={**aws, "MSTORE_OFFLINE": "maybe"}, code=2)
