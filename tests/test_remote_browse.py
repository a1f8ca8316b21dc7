"""`log`, `show` and `diff --remote NAME|URL`: a remote read without cloning it, from no local store.

The output equals what the same command prints over a clone; log and show fetch only metadata (the
version records and manifests: no chunk of any model is downloaded, the mirror holds manifests only),
diff fetches the tensor headers it reads lazily into the cache; a refresh downloads only new records
and follows removals and tag moves; the mirror refuses writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mstore import ModelVersioning, Repository
from mstore.errors import BadInput
from mstore.remote import remotes
from mstore.remote.mirror import MIRRORS
from mstore.store.layout import manifest_id
from mstore.store.objects import ObjectStore

from uihelpers import build_store

BASE = "http://127.0.0.1"


def run(*args: str, code: int = 0) -> Result:
    from mstore.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, (args, result.stdout, result.stderr)
    return result


@pytest.fixture(params=["dir", "s3"])
def remote_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "s3":
        return str(request.getfixturevalue("s3_url"))
    return str(tmp_path / "remote")


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every object id downloaded from any remote (directory or bucket) while the test runs."""
    got: list[str] = []
    for cls in (remotes.DirectoryRemote, remotes.BucketRemote):
        real = cls.get_object

        def spy(self: object, oid: str, limit: int = remotes.STORED_LIMIT, _real: object = real) -> bytes:
            got.append(oid)
            return _real(self, oid, limit)  # type: ignore[operator]

        monkeypatch.setattr(cls, "get_object", spy)
    yield got


@pytest.fixture
def team(tmp_path: Path, remote_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Repository, str, Path]:
    """A teammate's store pushed to the remote, and a clone of it; we run from a directory with no store."""
    repo, _ = build_store(tmp_path)
    repo.remote_add("origin", remote_url)
    repo.push("origin")
    clone, _ = Repository.clone(remote_url, tmp_path / "clone")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MSTORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MSTORE_DIR", str(tmp_path / "no-store"))
    return repo, remote_url, tmp_path / "clone"


def _model_chunks(repo: Repository) -> set[str]:
    return {oid for vid in repo.ids() for oid in repo.manifest(vid).chunk_ids()}


def _manifests(repo: Repository) -> set[str]:
    return {manifest_id(repo.get(vid), vid) for vid in repo.ids()}


def _objects(root: Path) -> set[str]:
    return set(ObjectStore(root)) if root.is_dir() else set()


def test_log_show_and_diff_print_what_they_print_after_a_clone(
    team: tuple[Repository, str, Path], tmp_path: Path, fetched: list[str]
) -> None:
    repo, url, clone = team
    for args in (
        ["log", "--json"],
        ["log", "--format", "{id} {tags} {accuracy} {message}"],
        ["log", "--where", "accuracy>0.75", "--json"],
        ["show", "prod", "--json"],
        ["show", "best:accuracy", "--json"],
    ):
        assert run(*args, "--remote", url).stdout == run("--store", str(clone), *args).stdout, args
    assert not (tmp_path / "no-store").exists()  # no local store needed, none created
    assert fetched and not set(fetched) & _model_chunks(repo)  # metadata only: not one model chunk
    mirrors = list((tmp_path / "cache" / MIRRORS).iterdir())
    assert len(mirrors) == 1 and _objects(mirrors[0] / "objects") <= set(fetched)
    assert _manifests(repo) <= _objects(mirrors[0] / "objects")
    assert not _objects(tmp_path / "cache" / "objects")  # nothing lazily read yet

    for args in (["diff"], ["diff", "prod", "latest~2"], ["diff", "latest~1", "--json"]):
        assert run(*args, "--remote", url).stdout == run("--store", str(clone), *args).stdout, args
    assert "classifier.weight" in run("diff", "latest~2", "latest~1", "--remote", url).stdout
    assert _objects(tmp_path / "cache" / "objects")  # the tensor headers diff read, kept in the cache


def test_a_refresh_fetches_only_new_records_and_follows_removals_and_tag_moves(
    team: tuple[Repository, str, Path], tmp_path: Path, fetched: list[str]
) -> None:
    repo, url, _ = team
    run("log", "--remote", url)
    before = len(fetched)
    run("log", "--remote", url)
    assert len(fetched) == before  # nothing new there: no object downloaded again

    model = tmp_path / "new.bin"
    model.write_bytes(b"a new model")
    new = repo.save(model, {"metrics": {"accuracy": 0.99}})["timestamp"]
    repo.tag("prod", new, force=True)
    oldest = repo.ids()[0]
    repo.push("origin")
    repo.remove_remote("origin", oldest)
    ids = [e["timestamp"] for e in json.loads(run("log", "--json", "--remote", url).stdout)]
    assert ids[0] == new and oldest not in ids
    assert len(fetched) - before == 1  # the one new manifest
    assert json.loads(run("show", "prod", "--json", "--remote", url).stdout)["metadata"]["timestamp"] == new
    history = [m["to"] for m in repo.tag_history("prod", remote=url)]
    assert history[0] == new


def test_the_python_api_browses_and_the_view_refuses_writes(team: tuple[Repository, str, Path]) -> None:
    repo, url, clone = team
    assert ModelVersioning().list_versions(remote=url) == Repository.open(clone).log()
    assert ModelVersioning().get_model_version("prod", remote=url) == repo.get("prod")
    view = Repository.browse(url)
    with pytest.raises(BadInput, match="browsed read-only"):
        view.tag("new", "latest")
    with pytest.raises(BadInput, match="browsed read-only"):
        view.save(Path(__file__))


def test_a_remote_by_name_and_one_line_errors(team: tuple[Repository, str, Path], tmp_path: Path) -> None:
    repo, url, clone = team
    named = run("--store", str(repo.root), "log", "--json", "--remote", "origin").stdout
    assert named == run("--store", str(clone), "log", "--json").stdout
    err = run("log", "--remote", "nowhere", code=2).stderr
    assert err.startswith("mstore: error: no remote named 'nowhere'") and err.count("\n") == 1
    empty = tmp_path / "empty-remote"
    empty.mkdir()
    err = run("show", "--remote", str(empty), code=2).stderr
    assert "no mstore store there" in err and err.count("\n") == 1


def test_a_forged_record_on_the_remote_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, ids = build_store(tmp_path)
    remote = tmp_path / "remote"
    repo.remote_add("origin", str(remote))
    repo.push("origin")
    monkeypatch.setenv("MSTORE_CACHE", str(tmp_path / "cache"))
    meta = remote / f"version_{ids[0]}" / "metadata.json"
    meta.chmod(0o644)
    meta.write_bytes(meta.read_bytes().replace(b"nightly", b"forged!"))
    err = run("log", "--remote", str(remote), code=1).stderr
    assert err.startswith("mstore: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_the_ui_serves_a_remote_as_it_serves_its_clone(
    team: tuple[Repository, str, Path], tmp_path: Path, fetched: list[str]
) -> None:
    from starlette.testclient import TestClient

    from mstore.ui.app import create_app

    repo, url, clone = team
    base = "http://127.0.0.1"
    browsed = TestClient(create_app(Repository.browse(url)), base_url=base)
    local = TestClient(create_app(clone), base_url=base)
    for path in ("/api/versions", "/api/versions/prod", f"/api/diff?old={repo.ids()[2]}&new={repo.ids()[4]}"):
        assert browsed.get(path).json() == local.get(path).json(), path
    front = browsed.get("/").text
    assert url in front and "nightly retrain 5" in front
    assert browsed.get("/versions/prod").status_code == 200
    assert "classifier.weight" in browsed.get(f"/diff?old={repo.ids()[3]}&new={repo.ids()[4]}").text
    assert browsed.post("/api/versions").status_code == 405  # read-only, as ever
    du = browsed.get("/api/du")  # its objects are not here: no made-up numbers
    assert du.status_code == 500 and "not known from its metadata alone" in du.json()["error"]


def test_mstore_ui_remote_over_http_from_no_store(team: tuple[Repository, str, Path], tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    repo, url, clone = team
    env = {k: v for k, v in os.environ.items() if k != "MSTORE_DIR"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mstore", "ui", "--remote", url, "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    served = proc.stdout.readline().strip()
    try:
        assert served.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
        for _ in range(100):
            try:
                body = urllib.request.urlopen(served + "api/versions", timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        assert json.loads(body) == json.loads(run("--store", str(clone), "log", "--json").stdout)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert not (tmp_path / "no-store").exists()


def test_damaged_tags_on_the_remote_are_skipped_as_pull_skips_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, ids = build_store(tmp_path)
    repo.tag("old", ids[0])
    remote = tmp_path / "remote"
    repo.remote_add("origin", str(remote))
    repo.push("origin")
    monkeypatch.setenv("MSTORE_CACHE", str(tmp_path / "cache"))
    browsed = Repository.browse(str(remote))
    assert browsed.tag_history("prod")  # mirrored
    (remote / "refs" / "tags" / "old").unlink()
    (remote / "refs" / "tags" / "old").write_bytes(b"garbage")  # names nothing
    (remote / "refs" / "history" / "prod").unlink()
    (remote / "refs" / "history" / "prod").write_bytes(b"not a history\n")
    shown = json.loads(run("log", "--json", "--remote", str(remote)).stdout)
    assert {e["timestamp"]: e["tags"] for e in shown}[ids[3]] == ["prod"]  # the tag stands without its history
    assert all("old" not in e["tags"] for e in shown)
    assert json.loads(run("show", "prod", "--json", "--remote", str(remote)).stdout)["metadata"]["timestamp"] == ids[3]
    assert browsed.tag_history("prod") == []  # the damaged history is not shown


def test_cache_du_counts_the_mirrors_and_a_linked_mirror_folder_is_refused(
    team: tuple[Repository, str, Path], tmp_path: Path
) -> None:
    _, url, _ = team
    assert json.loads(run("cache", "du", "--json").stdout)["remote_mirrors"] == 0
    run("log", "--remote", url)
    du = json.loads(run("cache", "du", "--json").stdout)
    assert du["remote_mirrors"] == 1 and du["remote_mirrors_bytes"] > 0
    assert "1 remote(s) browsed" in run("cache", "du").stdout
    mirrors = tmp_path / "cache" / MIRRORS
    mirrors.rename(tmp_path / "elsewhere")
    mirrors.symlink_to(tmp_path / "elsewhere")
    err = run("log", "--remote", url, code=1).stderr
    assert "is a symbolic link" in err and err.count("\n") == 1


def test_a_long_running_ui_over_a_remote_sees_new_pushes(team: tuple[Repository, str, Path], tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from mstore.ui.app import create_app

    repo, url, _ = team
    live = TestClient(create_app(Repository.browse(url, refresh_seconds=0)), base_url=BASE)
    apart = tmp_path / "another-cache"  # a mirror of its own (one cache's mirror is shared by its readers)
    still = TestClient(create_app(Repository.browse(url, cache_dir=apart, refresh_seconds=3600)), base_url=BASE)
    assert len(live.get("/api/versions").json()) == len(still.get("/api/versions").json()) == 6
    model = tmp_path / "new.bin"
    model.write_bytes(b"pushed while the page is up")
    new = repo.save(model, {"metrics": {"accuracy": 0.5}})["timestamp"]
    repo.push("origin")
    assert live.get("/api/versions").json()[0]["timestamp"] == new
    assert len(still.get("/api/versions").json()) == 6  # not due yet: the mirror as it was
    if not url.startswith("s3://"):
        Path(url).rename(tmp_path / "gone")  # the remote unreachable: the last mirror is served
        assert live.get("/api/versions").json()[0]["timestamp"] == new


def test_offline_reads_the_mirror_as_last_browsed(
    team: tuple[Repository, str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url, clone = team
    if url.startswith("s3://"):
        pytest.skip("the directory remote is the one a test can take away")
    monkeypatch.setenv("MSTORE_OFFLINE", "1")
    err = run("log", "--remote", url, code=1).stderr
    assert "offline, and it was never browsed from this cache" in err and err.count("\n") == 1
    monkeypatch.delenv("MSTORE_OFFLINE")
    online = run("log", "--json", "--remote", url).stdout
    run("diff", "latest~2", "latest~1", "--remote", url)  # reads the tensor headers into the cache
    Path(url).rename(tmp_path / "taken-away")
    assert "no mstore store there" in run("log", "--remote", url, code=2).stderr
    monkeypatch.setenv("MSTORE_OFFLINE", "1")
    assert run("log", "--json", "--remote", url).stdout == online
    assert "classifier.weight" in run("diff", "latest~2", "latest~1", "--remote", url).stdout  # from the cache
    err = run("diff", "latest~4", "latest~3", "--remote", url, code=1).stderr  # never read: not there
    assert "never fetched into the cache" in err and err.count("\n") == 1
    monkeypatch.setenv("MSTORE_OFFLINE", "auto")
    auto = run("log", "--json", "--remote", url)
    assert auto.stdout == online and "showing it as last browsed" in auto.stderr
