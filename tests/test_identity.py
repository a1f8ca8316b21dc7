"""The actor's name recorded with saves and tag moves."""

from __future__ import annotations

import getpass
import socket

import pytest

from mstore.store.identity import who


def test_mstore_user_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSTORE_USER", "  ci-bot  ")
    assert who() == "ci-bot"


def test_user_at_host_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSTORE_USER", raising=False)
    assert who() == f"{getpass.getuser()}@{socket.gethostname()}"


def test_one_bounded_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSTORE_USER", "a\nb\tc" + "x" * 500)
    name = who()
    assert "\n" not in name and "\t" not in name and name.startswith("a b c") and len(name) == 200
