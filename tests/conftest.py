"""Shared fixtures: a fresh store per test, and helpers that build model files and trees."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from mstore import Repository

from s3helpers import moto_server, s3_client

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.large_base_example],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the S3 server (its fixture, or the `s3` case of a remote parametrized over both
    kinds) is slow, a server round trip per request: out of the quick loop."""
    for item in items:
        if "s3_endpoint" in getattr(item, "fixturenames", ()) or "[s3" in item.name:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.init(tmp_path / "store")


# -- a real S3 API on 127.0.0.1 ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The S3 server's URL: the one `.ci/run` started (MSTORE_TEST_S3_ENDPOINT), or a moto server of our own."""
    given = os.environ.get("MSTORE_TEST_S3_ENDPOINT")
    if given:
        yield given
        return
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_url(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty bucket on the test server, with the AWS settings a user would export."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    bucket = f"mstore-{uuid.uuid4().hex[:16]}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/team/models"
