"""Names, refs and version IDs: strict at the boundary, damage detected, IDs sort in save order."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mstore.errors import CorruptRef, InvalidName
from mstore.store.refs import Refs, check_ref_syntax, check_tag_name, decode_ref, encode_ref, is_version_id
from mstore.store.versions import next_version_id

BAD_NAMES = ["", "..", "a/b", "a\\b", "/abs", "a\x00b", "a\nb", "-x", ".x", "x" * 5000, "a..b", "latest", "HEAD"]


@pytest.mark.parametrize("name", BAD_NAMES + ["20261126", "version_x", "a b", "ä"])
def test_bad_tag_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidName):
        check_tag_name(name)


@pytest.mark.parametrize("name", ["prod", "v1.2", "best_f1", "release-2026-11", "A"])
def test_good_tag_names_pass(name: str) -> None:
    assert check_tag_name(name) == name


@pytest.mark.parametrize("ref", ["", "..", "a/b", "/etc", "a\\b", "x\x00", "x" * 5000, "latest~", "latest~-1", "~1"])
def test_bad_refs_are_rejected(ref: str) -> None:
    with pytest.raises(InvalidName):
        check_ref_syntax(ref)


def test_tag_operations_never_leave_the_tags_dir(tmp_path: Path) -> None:
    refs = Refs(tmp_path / "refs")
    (tmp_path / "refs" / "tags").mkdir(parents=True)
    for name in BAD_NAMES:
        with pytest.raises(InvalidName):
            refs.set_tag(name, "20261126_080000")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["refs", "tags"]


@given(st.datetimes(min_value=datetime(1000, 1, 1)), st.sampled_from(["", "_001", "_999"]))
def test_ref_files_round_trip(when: datetime, suffix: str) -> None:
    version_id = when.strftime("%Y%m%d_%H%M%S") + suffix
    assert decode_ref(encode_ref(version_id), "ref") == version_id


@pytest.mark.parametrize("text", ["99999999_999999", "20261301_000000", "20260230_120000", "20261126_246000", "x"])
def test_ids_that_name_no_real_time_are_not_version_ids(text: str) -> None:
    assert not is_version_id(text)
    with pytest.raises(CorruptRef):
        decode_ref(encode_ref(text), "ref")


def test_every_single_bit_flip_of_a_ref_file_is_detected() -> None:
    data = encode_ref("20261126_080000")
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(CorruptRef):
            decode_ref(bytes(flipped), "ref")


times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(timezone.utc))


@given(start=times, steps=st.lists(st.integers(-5, 3), max_size=60))
def test_ids_are_unique_and_sort_in_save_order_even_when_the_clock_stalls_or_goes_back(
    start: datetime, steps: list[int]
) -> None:
    now, ids = start, []
    for step in steps:
        now += timedelta(seconds=step)
        ids.append(next_version_id(now, ids[-1] if ids else None))
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(is_version_id(i) for i in ids)


def test_same_second_ids_get_suffixes_and_overflow_to_the_next_second() -> None:
    now = datetime(2026, 11, 26, 8, 0, 0, tzinfo=timezone.utc)
    assert next_version_id(now, None) == "20261126_080000"
    assert next_version_id(now, "20261126_080000") == "20261126_080000_001"
    assert next_version_id(now, "20261126_080000_041") == "20261126_080000_042"
    assert next_version_id(now, "20261126_080000_999") == "20261126_080001"


def test_an_id_from_the_far_future_never_blocks_the_next_id() -> None:
    now = datetime(2026, 11, 26, 8, 0, 0, tzinfo=timezone.utc)
    assert next_version_id(now, "99991231_235959_999") == "20261126_080000"


def test_a_whole_id_that_is_gone_never_names_another_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mstore import Repository
    from mstore.errors import VersionNotFound
    from mstore.ops import save

    # both saves in one second (the clock seam): the second ID is the first plus "_001"
    monkeypatch.setattr(save, "now", lambda: datetime(2026, 11, 26, 8, 0, 0, tzinfo=timezone.utc))
    repo = Repository.init(tmp_path / "store")
    src = tmp_path / "m.bin"
    ids = []
    for i in range(2):
        src.write_bytes(bytes([i]) * 10)
        ids.append(repo.save(src)["timestamp"])
    assert ids == ["20261126_080000", "20261126_080000_001"]
    repo.remove(ids[0])
    with pytest.raises(VersionNotFound, match="did you mean 20261126_080000_001"):
        repo.remove(ids[0])  # before the fix: removed 20261126_080000_001, the unique "prefix" match
    with pytest.raises(VersionNotFound):
        repo.resolve(ids[0])
    assert repo.ids() == [ids[1]]
