"""Who and where (issue 24): each save records `saved_by` and its `environment` (Python, platform, the
versions of the packages that write models, read from their metadata and never imported); `show` prints
them, `diff` says what moved ("scikit-learn 1.5.2 -> 1.6.0"), and older versions without them show nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path

import pytest

from mstore import ModelVersioning, Repository
from mstore.diff import environment
from mstore.store.versions import checksum_line

from helpers import cli


def _save(repo: Repository, tmp_path: Path, data: bytes) -> str:
    model = tmp_path / "model.bin"
    model.write_bytes(data)
    return repo.save(model)["timestamp"]


def _fake_packages(monkeypatch: pytest.MonkeyPatch, versions: dict[str, str]) -> None:
    def version(name: str) -> str:
        if name not in versions:
            raise importlib_metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(environment._importlib_metadata, "version", version)


def test_a_save_records_who_and_where(repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSTORE_USER", "alice@ci")
    _fake_packages(monkeypatch, {"scikit-learn": "1.5.2", "numpy": "2.1.0"})
    vid = _save(repo, tmp_path, b"weights")
    block = ModelVersioning(base_dir=str(repo.root)).get_model_version(vid)["mstore"]  # the Python API
    assert block["saved_by"] == "alice@ci"
    env = block["environment"]
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["platform"] and isinstance(env["platform"], str)
    assert env["packages"] == {"scikit-learn": "1.5.2", "numpy": "2.1.0"}  # torch, ... not installed: left out
    out = cli(repo.root, "show", vid).stdout
    assert "  saved by: alice@ci\n" in out
    assert f"  environment: Python {env['python']} on {env['platform']}; numpy 2.1.0, scikit-learn 1.5.2\n" in out
    shown = json.loads(cli(repo.root, "show", vid, "--json").stdout)
    assert shown["metadata"]["mstore"]["environment"] == env


def test_without_mstore_user_it_is_user_at_host(repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MSTORE_USER", raising=False)
    monkeypatch.setenv("USER", "carol")
    monkeypatch.setenv("LOGNAME", "carol")
    monkeypatch.setattr(environment.platform, "system", lambda: "Linux")  # unrelated; keeps the record tidy
    vid = _save(repo, tmp_path, b"w")
    import socket

    assert repo.get(vid)["mstore"]["saved_by"] == f"carol@{socket.gethostname()}"


def test_package_versions_are_read_without_importing_them(tmp_path: Path) -> None:
    """A save in a fresh interpreter records the installed versions while none of those packages is imported."""
    code = (
        "import sys, pathlib\n"
        "from mstore import Repository\n"
        f"root = pathlib.Path({str(tmp_path)!r})\n"
        "(root / 'm.bin').write_bytes(b'x')\n"
        "meta = Repository.init(root / 'store').save(root / 'm.bin')\n"
        "print(sorted(meta['mstore']['environment']['packages']))\n"
        "print(sorted(m for m in ('torch', 'sklearn', 'transformers', 'safetensors', 'joblib') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    recorded, imported = done.stdout.splitlines()
    installed = []
    for name in environment.PACKAGES:
        try:
            importlib_metadata.version(name)
            installed.append(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    assert recorded == str(sorted(installed))
    assert imported == "[]"


def test_diff_says_which_package_and_who_changed(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSTORE_USER", "alice@ci")
    _fake_packages(monkeypatch, {"scikit-learn": "1.5.2", "numpy": "2.1.0", "joblib": "1.4.2"})
    first = _save(repo, tmp_path, b"one")
    monkeypatch.setenv("MSTORE_USER", "bob@laptop")
    _fake_packages(monkeypatch, {"scikit-learn": "1.6.0", "numpy": "2.1.0", "torch": "2.5.1"})
    second = _save(repo, tmp_path, b"two")
    out = cli(repo.root, "diff", first, second).stdout
    assert "saved by: alice@ci -> bob@laptop\n" in out
    assert "scikit-learn 1.5.2 -> 1.6.0\n" in out
    assert "joblib 1.4.2 -> (none)\n" in out and "torch (none) -> 2.5.1\n" in out
    assert "numpy" not in out  # unchanged: not a word
    d = repo.compare(first, second)["environment"]
    assert d["packages"] == {
        "scikit-learn": {"old": "1.5.2", "new": "1.6.0"},
        "joblib": {"old": "1.4.2", "new": None},
        "torch": {"old": None, "new": "2.5.1"},
    }
    assert d["saved_by"] == {"old": "alice@ci", "new": "bob@laptop"}
    assert "2.5.1" in cli(repo.root, "diff", second).stdout  # against its parent, the same lines
    same = cli(repo.root, "diff", second, second).stdout
    assert "saved by" not in same and " -> (none)" not in same


def _strip(repo: Repository, vid: str, **replace: object) -> None:
    """Rewrite a version's metadata as an older mstore (or another writer) would have left it."""
    directory = repo.root / f"version_{vid}"
    meta = json.loads((directory / "metadata.json").read_bytes())
    for key in ("saved_by", "environment"):
        meta["mstore"].pop(key, None)
    meta["mstore"].update(replace)
    data = json.dumps(meta).encode()
    (directory / "metadata.json").write_bytes(data)
    (directory / "metadata.b3").write_bytes(checksum_line(data))


def test_old_versions_without_the_fields_show_nothing(repo: Repository, tmp_path: Path) -> None:
    old = _save(repo, tmp_path, b"one")
    new = _save(repo, tmp_path, b"two")
    _strip(repo, old)
    out = cli(repo.root, "show", old).stdout
    assert "saved by" not in out and "environment" not in out
    diff = cli(repo.root, "diff", old, new).stdout
    assert "saved by" not in diff and "(none)" not in diff  # nothing known for the old one: nothing claimed
    assert repo.compare(old, new)["environment"] == {"saved_by": None, "changed": {}, "packages": {}}
    cli(repo.root, "log")
    cli(repo.root, "log", "--oneline")


@pytest.mark.parametrize(
    "bad",
    [
        {"saved_by": 7},
        {"environment": "py3"},
        {"environment": {"python": 3.11}},
        {"environment": {"packages": ["numpy"]}},
        {"environment": {"packages": {"numpy": 2}}},
    ],
    ids=["saved_by-int", "env-str", "python-float", "packages-list", "version-int"],
)
def test_odd_types_are_a_one_line_damaged_version(repo: Repository, tmp_path: Path, bad: dict) -> None:
    """As every other mstore-owned field (tests/test_hostile.py): refused in one line, never a traceback."""
    vid = _save(repo, tmp_path, b"one")
    _strip(repo, vid, **bad)
    for command in (["log"], ["log", "--oneline"], ["show", vid], ["diff", vid, vid]):
        result = cli(repo.root, *command, code=1)
        assert result.stderr.count("\n") == 1 and "metadata.json has mstore." in result.stderr, result.stderr


def test_readers_ignore_odd_types_they_are_handed() -> None:
    """The accessors never trust their input either (the UI and render call them on any dict)."""
    odd = {"mstore": {"saved_by": ["x"], "environment": {"python": 3, "packages": {"numpy": 2, "torch": "2.5"}}}}
    assert environment.saved_by_of(odd) is None
    assert environment.environment_of(odd) == {"packages": {"torch": "2.5"}}
    assert environment.environment_text(environment.environment_of(odd)) == "torch 2.5"
    assert environment.diff_environment(odd, {"mstore": "x"}) == {"saved_by": None, "changed": {}, "packages": {}}


def test_the_ui_shows_who_and_where_and_what_moved(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.testclient import TestClient

    from mstore.ui.app import create_app

    monkeypatch.setenv("MSTORE_USER", "<b>alice</b>")
    _fake_packages(monkeypatch, {"scikit-learn": "1.5.2"})
    first = _save(repo, tmp_path, b"one")
    _fake_packages(monkeypatch, {"scikit-learn": "1.6.0"})
    second = _save(repo, tmp_path, b"two")
    client = TestClient(create_app(repo.root), base_url="http://127.0.0.1:8000")
    page = client.get(f"/versions/{second}").text
    assert 'by <span id="saved-by">&lt;b&gt;alice&lt;/b&gt;</span>' in page  # escaped, never markup
    assert "scikit-learn 1.6.0</p>" in page
    assert "scikit-learn 1.5.2 -&gt; 1.6.0" in client.get(f"/diff?old={first}&new={second}").text
