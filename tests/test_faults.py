"""Disk full and I/O errors at any point of a save: the save fails cleanly, nothing is published, the
source is untouched, fsync is never retried, and the next save works. Plus >= 1,000 single-bit flips,
every one found by fsck and none returned as model bytes."""

from __future__ import annotations

import errno
import random
import shutil
from pathlib import Path

import blake3
import pytest
from typer.testing import CliRunner

from mstore import Repository
from mstore.cli import app
from mstore.content import statcache
from mstore.errors import MStoreError
from mstore.store import fsutil
from mstore.store.chunking import MIN_CHUNK_SIZE

from helpers import saved_repo
from reliability import assert_consistent, content_hash, leftovers

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves this suite out of the quick loop

CHUNK = 4 * MIN_CHUNK_SIZE
FLIPS = 1000


@pytest.fixture(autouse=True)
def _no_hook_leaks() -> object:
    yield
    fsutil.set_fault_hook(None)


def _repo(tmp_path: Path) -> tuple[Repository, Path, dict[str, str]]:
    return saved_repo(tmp_path, CHUNK, seed=5)


def _copy(repo: Repository, target: Path) -> Repository:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(repo.root, target)
    copy = Repository.open(target)
    copy.store.config = repo.store.config
    return copy


def _count_ops(repo: Repository, src: Path, kinds: set[str]) -> int:
    seen: list[str] = []
    probe = _copy(repo, repo.root.parent / "probe")
    fsutil.set_fault_hook(lambda op, path: seen.append(op) if op in kinds else None)
    probe.save(src)
    fsutil.set_fault_hook(None)
    return len(seen)


SPACE_OPS = {"create", "write", "link", "rename", "replace", "mkdir"}


@pytest.mark.parametrize(("kinds", "err"), [(SPACE_OPS, errno.ENOSPC), ({"fsync", "fsync_dir"}, errno.EIO)])
def test_fault_at_every_point_of_a_save(tmp_path: Path, kinds: set[str], err: int) -> None:
    proto, src, expected = _repo(tmp_path)
    data = bytearray(src.read_bytes())
    data[: CHUNK * 2] = random.Random(6).randbytes(CHUNK * 2)  # half new chunks, half shared
    src.write_bytes(bytes(data))
    source_hash = blake3.blake3(bytes(data)).hexdigest()
    total = _count_ops(proto, src, kinds)
    assert total >= 10
    failed = cache_faults = 0
    for k in range(1, total + 1):
        repo = _copy(proto, tmp_path / "store-under-test")
        calls: list[tuple[str, Path]] = []

        def hook(op: str, path: Path, k: int = k, calls: list[tuple[str, Path]] = calls) -> None:
            if op in kinds:
                calls.append((op, path))
                if len(calls) == k:
                    raise OSError(err, "injected fault", str(path))

        before, latest = repo.ids(), repo.store.refs.latest()
        fsutil.set_fault_hook(hook)
        try:
            vid = repo.save(src)["timestamp"]
        except OSError as exc:
            assert exc.errno == err
            assert len(calls) == k  # the failed operation was the last: fsync and friends are never retried
            assert repo.ids() == before and repo.store.refs.latest() == latest  # nothing published
            failed += 1
        else:  # only a fault after the commit point lets the save succeed: in the refs/latest mirror, or
            # in writing the stat cache (which only costs a re-read of the file next time)
            parts = calls[-1][1].parts
            assert "refs" in parts or statcache.CACHE_DIR in parts, (k, total, calls[-3:])
            cache_faults += statcache.CACHE_DIR in parts
            assert content_hash(repo, vid) == source_hash
        finally:
            fsutil.set_fault_hook(None)
        assert blake3.blake3(src.read_bytes()).hexdigest() == source_hash  # source untouched
        assert_consistent(repo, expected, latest_before=latest)
        repo.gc(grace_seconds=0)
        assert leftovers(repo) == []
        vid = repo.save(src)["timestamp"]  # the next save works
        assert_consistent(repo, expected | {vid: source_hash})
    assert failed >= total - 4 - cache_faults
    print(f"fault {errno.errorcode[err]} injected at each of {total} operations: {failed} saves failed cleanly")


def test_disk_full_in_the_cli_is_one_line_and_exit_1(tmp_path: Path) -> None:
    repo, src, _ = _repo(tmp_path)
    src.write_bytes(b"new content")

    def full(op: str, path: Path) -> None:
        if op == "write":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

    fsutil.set_fault_hook(full)
    result = CliRunner().invoke(app, ["--store", str(repo.root), "save", str(src)])
    assert result.exit_code == 1
    assert result.stderr.startswith("mstore: error: No space left on device") and result.stderr.count("\n") == 1


def test_read_only_store_still_answers_every_read(tmp_path: Path) -> None:
    repo, src, _ = _repo(tmp_path)
    repo.tag("prod")

    def read_only(op: str, path: Path) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    fsutil.set_fault_hook(read_only)
    runner = CliRunner()
    for args in (["log"], ["show", "prod"], ["diff", "latest", "latest"], ["fsck"], ["tag"]):
        result = runner.invoke(app, ["--store", str(repo.root), *args])
        assert result.exit_code == 0, (args, result.stderr)
    result = runner.invoke(app, ["--store", str(repo.root), "checkout", "prod", "-o", str(tmp_path / "out.bin")])
    assert result.exit_code == 0 and (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    result = runner.invoke(app, ["--store", str(repo.root), "save", str(src)])
    assert result.exit_code == 1 and "Read-only file system" in result.stderr


def _flip(path: Path, bit: int) -> bytes:
    original = path.read_bytes()
    data = bytearray(original)
    data[bit // 8] ^= 1 << (bit % 8)
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    return original


def test_a_thousand_single_bit_flips_are_all_found(tmp_path: Path) -> None:
    repo, src, expected = _repo(tmp_path)
    rng = random.Random(7)
    for i in range(2):
        src.write_bytes(src.read_bytes()[: 3 * CHUNK] + rng.randbytes(CHUNK + i))
        expected[repo.save(src, {"metrics": {"accuracy": 0.9 + i / 100}})["timestamp"]] = blake3.blake3(
            src.read_bytes()
        ).hexdigest()
    repo.tag("prod", sorted(expected)[0])
    targets = [repo.store.objects.path(o) for o in repo.store.objects]
    targets += [p for v in expected for p in (repo.root / f"version_{v}").iterdir()]
    targets += [repo.root / "refs" / "latest", repo.root / "refs" / "tags" / "prod", repo.root / "mstore.json"]
    found = 0
    kinds: dict[str, int] = {}
    for n in range(FLIPS):
        target = targets[n % len(targets)]
        bit = rng.randrange(target.stat().st_size * 8)
        original = _flip(target, bit)
        report = repo.fsck()
        assert not report.ok, f"flip of bit {bit} in {target} went unnoticed"
        kind = "object" if "objects" in target.parts else target.name
        # found = an error that names the damaged file (its object, version or ref), not just any error
        if kind == "object":
            culprit = target.parent.name + target.name
        elif target.parent.name.startswith("version_"):
            culprit = target.parent.name.removeprefix("version_")
        else:
            culprit = target.name
        if any(culprit in p.subject or culprit in p.message for p in report.errors):
            found += 1
        else:
            print(f"flip of bit {bit} in {target}: not attributed to it: {report.errors}")
        kinds[kind] = kinds.get(kind, 0) + 1
        for vid, digest in expected.items():  # checkout never hands back wrong bytes
            try:
                got = content_hash(repo, vid)
            except MStoreError:
                continue
            assert got == digest
        target.write_bytes(original)
    assert found == FLIPS and repo.fsck().ok
    print(f"{FLIPS} single-bit flips, all found: {kinds}")
