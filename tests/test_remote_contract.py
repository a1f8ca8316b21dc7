"""One contract for every storage backend: the `Remote` implementations (directory, in-memory bucket, S3 on
a real local S3 server) and the `Bucket` implementations under them (memory, S3) must behave alike."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mstore.errors import CorruptVersion, MissingObject, VersionConflict, VersionIsTagged, VersionNotFound
from mstore.remote.bucket import Bucket, KeyMissing, MemoryBucket, PreconditionFailed
from mstore.remote.remotes import BucketRemote, DirectoryRemote, Remote, RemoteBusy
from mstore.remote.s3 import S3Bucket
from mstore.store import codec
from mstore.store.layout import Store
from mstore.store.metadata import dumps
from mstore.store.objects import hash_bytes

from s3helpers import s3_client, split

KINDS = ["directory", "memory", "s3"]


@pytest.fixture(params=KINDS)
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Remote]:
    if request.param == "directory":
        yield DirectoryRemote(tmp_path / "remote")
    elif request.param == "memory":
        yield BucketRemote(MemoryBucket())
    else:
        url = request.getfixturevalue("s3_url")
        yield BucketRemote(S3Bucket(url, endpoint_url=request.getfixturevalue("s3_endpoint")))


@pytest.fixture(params=["memory", "s3"])
def bucket(request: pytest.FixtureRequest) -> Bucket:
    if request.param == "memory":
        return MemoryBucket()
    url = request.getfixturevalue("s3_url")
    return S3Bucket(
        url, endpoint_url=request.getfixturevalue("s3_endpoint"), multipart_threshold=6 << 20, part_size=5 << 20
    )


def _config(tmp_path: Path) -> dict[str, object]:
    return dict(Store.init(tmp_path / "local").config)


def _meta(vid: str) -> bytes:
    return dumps({"timestamp": vid, "mstore": {"manifest": "0" * 64}, "accuracy": 0.5})


def test_initialise_is_create_once(remote: Remote, tmp_path: Path) -> None:
    assert remote.config() is None
    config = _config(tmp_path)
    assert remote.initialise(config)["chunker"] == config["chunker"]
    other = dict(config, chunker={"kind": "fixed", "size": 1024})
    assert remote.initialise(other)["chunker"] == config["chunker"]  # the first one stays


def test_objects_round_trip_and_listing(remote: Remote, tmp_path: Path) -> None:
    remote.initialise(_config(tmp_path))
    contents = [b"", b"x" * 10, bytes(range(256)) * 300]
    for content in contents:
        oid = hash_bytes(content)
        blob = codec.as_raw(content)
        assert remote.put_object(oid, content, blob) == len(blob)
        assert remote.get_object(oid) == blob
        assert remote.object_header(oid) == blob[:64]
    index = remote.object_index()
    assert set(index) == {hash_bytes(c) for c in contents}
    assert index[hash_bytes(contents[2])].size == len(contents[2])
    missing = hash_bytes(b"never stored")
    with pytest.raises(MissingObject):
        remote.get_object(missing)
    remote.delete_object(hash_bytes(contents[1]))
    assert hash_bytes(contents[1]) not in remote.object_index()


def test_put_object_replaces_a_damaged_copy(remote: Remote, tmp_path: Path) -> None:
    """What `fsck --remote --repair` relies on: putting the good bytes heals an object damaged in place."""
    remote.initialise(_config(tmp_path))
    content = bytes(range(256)) * 64
    oid, good = hash_bytes(content), codec.as_raw(content)
    damaged = bytearray(good)
    damaged[100] ^= 1
    remote.put_object(oid, content, bytes(damaged))  # the same length, one bit off
    assert remote.get_object(oid) != good
    remote.put_object(oid, content, good)
    assert remote.get_object(oid) == good


def test_versions_commit_once_and_conflicts_are_refused(remote: Remote, tmp_path: Path) -> None:
    remote.initialise(_config(tmp_path))
    vid = "20261126_101500"
    assert remote.version_ids() == []
    with pytest.raises(VersionNotFound):
        remote.raw_version(vid)
    assert remote.publish_version(vid, _meta(vid)) is True
    assert remote.version_ids() == [vid]
    assert remote.raw_version(vid) == _meta(vid)
    assert remote.publish_version(vid, _meta(vid)) is False  # a rerun changes nothing
    with pytest.raises(VersionConflict):
        remote.publish_version(vid, dumps({"timestamp": vid, "mstore": {"manifest": "1" * 64}}))
    assert remote.raw_version(vid) == _meta(vid)


def test_holds_version_matches_content_and_refuses_a_clash(remote: Remote, tmp_path: Path) -> None:
    remote.initialise(_config(tmp_path))
    vid = "20261126_101500"
    assert remote.holds_version(vid, _meta(vid)) is False
    remote.publish_version(vid, _meta(vid))
    assert remote.holds_version(vid, _meta(vid)) is True  # answered by downloading the record
    assert remote.version_ids() == [vid]
    assert remote.holds_version(vid, _meta(vid)) is True  # a bucket answers from the listing's ETag
    with pytest.raises(VersionConflict):
        remote.holds_version(vid, dumps({"timestamp": vid, "mstore": {"manifest": "2" * 64}}))


def test_refs_change_only_by_compare_and_swap(remote: Remote, tmp_path: Path) -> None:
    remote.initialise(_config(tmp_path))
    assert remote.get_ref("latest") == (None, None)
    remote.set_ref("latest", "20261126_101500", None)
    with pytest.raises(PreconditionFailed):
        remote.set_ref("latest", "20261126_101501", None)  # create-only, but it exists
    current, token = remote.get_ref("latest")
    assert current == "20261126_101500"
    remote.set_ref("latest", "20261126_101502", token)
    with pytest.raises(PreconditionFailed):
        remote.set_ref("latest", "20261126_101503", token)  # stale token: someone moved it meanwhile
    assert remote.get_ref("latest")[0] == "20261126_101502"
    remote.set_ref("tags/prod", "20261126_101500", None)
    assert remote.tag_names() == ["prod"] and remote.get_ref("tags/prod")[0] == "20261126_101500"


def test_racing_compare_and_swap_loses_no_update(remote: Remote, tmp_path: Path) -> None:
    """Threads each advance `latest` to their own version by read-then-CAS; the newest always wins."""
    remote.initialise(_config(tmp_path))
    from mstore.remote.transfer import compare_and_swap_ref

    ids = [f"20261126_1015{i:02d}" for i in range(8)]
    barrier = threading.Barrier(len(ids))

    def advance(vid: str) -> None:
        barrier.wait()
        compare_and_swap_ref(remote, "latest", lambda cur: vid if cur is None or cur < vid else None)

    threads = [threading.Thread(target=advance, args=(vid,)) for vid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert remote.get_ref("latest")[0] == max(ids)


def test_remove_version_refs_first_tags_need_force_latest_moves_back(remote: Remote, tmp_path: Path) -> None:
    remote.initialise(_config(tmp_path))
    ids = ["20261126_101500", "20261126_101501", "20261126_101502"]
    for vid in ids:
        remote.publish_version(vid, _meta(vid))
    remote.set_ref("latest", ids[2], None)
    remote.set_ref("tags/prod", ids[1], None)
    remote.set_ref("tags/also", ids[1], None)
    remote.set_ref("tags/old", ids[0], None)
    with pytest.raises(VersionIsTagged, match="also, prod"):
        remote.remove_version(ids[1])
    assert remote.version_ids() == ids and remote.tag_names() == ["also", "old", "prod"]  # refused: nothing changed
    assert remote.remove_version(ids[1], force=True) == ["also", "prod"]
    assert remote.version_ids() == [ids[0], ids[2]] and remote.tag_names() == ["old"]
    with pytest.raises(VersionNotFound):
        remote.raw_version(ids[1])
    assert remote.get_ref("latest")[0] == ids[2]  # latest named another version: untouched
    assert remote.remove_version(ids[2]) == []
    assert remote.version_ids() == [ids[0]] and remote.get_ref("latest")[0] == ids[0]  # moved back
    assert remote.remove_version(ids[0], force=True) == ["old"]
    assert remote.version_ids() == [] and remote.get_ref("latest") == (None, None) and remote.tag_names() == []
    with pytest.raises(VersionNotFound):
        remote.remove_version(ids[0])
    assert remote.pending_version_ids() == []  # nothing half-removed is left behind
    assert remote.publish_version(ids[0], _meta(ids[0])) is True  # and the ID can be pushed again


def test_rm_lock_runs_alone(remote: Remote, tmp_path: Path) -> None:
    remote.initialise(_config(tmp_path))
    if isinstance(remote, DirectoryRemote):  # flock: a second exclusive holder would wait, so probe from outside
        import fcntl

        with remote.lock("rm"), open(remote.path / "locks" / "gc", "rb") as held, pytest.raises(BlockingIOError):
            fcntl.flock(held, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return
    with remote.lock("rm"), pytest.raises(RemoteBusy, match="an rm or prune is running"), remote.lock("push"):
        pass
    with remote.lock("push"), pytest.raises(RemoteBusy, match="another mstore"), remote.lock("rm"):
        pass


class _RecordingBucket(MemoryBucket):
    def __init__(self) -> None:
        super().__init__()
        self.deleted: list[str] = []

    def delete(self, key: str) -> None:
        self.deleted.append(key)
        super().delete(key)


def test_bucket_remove_deletes_the_commit_key_first_and_a_rerun_finishes(tmp_path: Path) -> None:
    bucket = _RecordingBucket()
    remote = BucketRemote(bucket)
    remote.initialise(_config(tmp_path))
    vid = "20261126_101500"
    remote.publish_version(vid, _meta(vid))
    remote.remove_version(vid)
    record = [k for k in bucket.deleted if k.startswith("version_")]
    assert record == [f"version_{vid}/metadata.b3", f"version_{vid}/metadata.json"]  # commit point first
    # Killed between the two deletes: the version is already gone from listings; a rerun removes the rest.
    remote.publish_version(vid, _meta(vid))
    bucket.delete(f"version_{vid}/metadata.b3")
    assert remote.version_ids() == [] and remote.pending_version_ids() == [vid]
    assert remote.remove_version(vid) == []
    assert remote.pending_version_ids() == [] and list(bucket.list("version_")) == []


@pytest.mark.parametrize("kind", ["memory", "s3"])
def test_bucket_remote_half_written_version_is_invisible_then_finished(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    bucket: Bucket = (
        MemoryBucket()
        if kind == "memory"
        else S3Bucket(request.getfixturevalue("s3_url"), endpoint_url=request.getfixturevalue("s3_endpoint"))
    )
    remote = BucketRemote(bucket)
    remote.initialise(_config(tmp_path))
    vid = "20261126_101500"
    bucket.put(f"version_{vid}/metadata.json", _meta(vid))  # a push killed before its commit point
    assert remote.version_ids() == [] and remote.pending_version_ids() == [vid]
    assert remote.publish_version(vid, _meta(vid)) is True
    assert remote.version_ids() == [vid] and remote.pending_version_ids() == []
    bucket.put(f"version_{vid}/metadata.json", _meta(vid) + b" ")
    with pytest.raises(CorruptVersion):
        remote.raw_version(vid)


@pytest.mark.parametrize("kind", ["memory", "s3"])
def test_bucket_remote_push_and_gc_never_overlap(kind: str, request: pytest.FixtureRequest) -> None:
    bucket: Bucket = (
        MemoryBucket()
        if kind == "memory"
        else S3Bucket(request.getfixturevalue("s3_url"), endpoint_url=request.getfixturevalue("s3_endpoint"))
    )
    remote = BucketRemote(bucket)
    with remote.lock("push"), remote.lock("push"), pytest.raises(RemoteBusy, match="another mstore"):  # noqa: SIM117
        with remote.lock("gc"):  # pushes run together, gc runs alone
            pass
    with remote.lock("gc"), pytest.raises(RemoteBusy, match="a gc is running"), remote.lock("push"):
        pass
    assert list(bucket.list("locks/")) == []  # every lock key was removed again


# -- the bucket contract --------------------------------------------------------------------------


def test_bucket_get_put_and_conditions(bucket: Bucket) -> None:
    with pytest.raises(KeyMissing):
        bucket.get("refs/latest")
    assert bucket.get_with_etag("refs/latest") is None
    etag = bucket.put("refs/latest", b"one", if_absent=True)
    with pytest.raises(PreconditionFailed):
        bucket.put("refs/latest", b"two", if_absent=True)
    assert bucket.get_with_etag("refs/latest") == (b"one", etag)
    new = bucket.put("refs/latest", b"two", if_match=etag)
    with pytest.raises(PreconditionFailed):
        bucket.put("refs/latest", b"three", if_match=etag)
    assert bucket.get_with_etag("refs/latest") == (b"two", new)
    assert bucket.get_range("refs/latest", 1, 10) == b"wo"
    bucket.delete("refs/latest")
    bucket.delete("refs/latest")  # deleting what is gone is fine
    assert bucket.get_with_etag("refs/latest") is None


def test_bucket_listing_is_prefix_scoped_and_sorted(bucket: Bucket) -> None:
    for key in ["objects/ab/2", "objects/aa/1", "objectsX", "refs/latest"]:
        bucket.put(key, key.encode())
    assert [e.key for e in bucket.list("objects/")] == ["objects/aa/1", "objects/ab/2"]
    assert [e.size for e in bucket.list("objects/aa/")] == [len("objects/aa/1")]


def test_bucket_large_values_go_up_whole(bucket: Bucket) -> None:
    """Above the multipart threshold (6 MiB here for S3) a value goes up in parts and comes back exact."""
    data = bytes(range(256)) * (13 << 12)  # 13 MiB: three parts
    etag = bucket.put("objects/big", data, if_absent=True)
    assert bucket.get("objects/big") == data
    with pytest.raises(PreconditionFailed):
        bucket.put("objects/big", b"small", if_absent=True)
    assert bucket.get_with_etag("objects/big") == (data, etag)
    if isinstance(bucket, S3Bucket):
        assert bucket.requests["put"] >= 5  # create + 3 parts + complete


@given(st.binary(max_size=4096))
def test_memory_bucket_round_trips_any_bytes(data: bytes) -> None:
    bucket = MemoryBucket()
    bucket.put("k", data)
    assert bucket.get("k") == data and [e.size for e in bucket.list("k")] == [len(data)]


def test_s3_prefixes_keep_remotes_apart(s3_url: str, s3_endpoint: str) -> None:
    a = S3Bucket(s3_url + "/a", endpoint_url=s3_endpoint)
    b = S3Bucket(s3_url + "/b", endpoint_url=s3_endpoint)
    a.put("refs/latest", b"a")
    assert b.get_with_etag("refs/latest") is None
    bucket, prefix = split(s3_url)
    keys = [o["Key"] for o in s3_client(s3_endpoint).list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [f"{prefix}a/refs/latest"]
