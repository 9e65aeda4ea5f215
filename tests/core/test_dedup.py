"""medvid.cleaning dedup: exact and near-duplicate groups, the incremental index, their uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from medvid.cleaning import (
    DuplicateIndex,
    DuplicateInputError,
    build_index,
    frame_items,
    group_duplicates,
    groups_spanning_patients,
    image_item,
    is_lossless_dicom,
    pixel_digest,
    representatives,
    split_units,
    update_groups,
)
from medvid.dicom import read_frame
from medvid.export.splits import split_by_patient, split_by_patient_and_duplicates
from medvid.frames.phash import phash_hex


def _items(hashes: dict[str, int], digests: dict[str, str] | None = None) -> pd.DataFrame:
    digests = digests or {}
    return pd.DataFrame(
        {
            "item_id": list(hashes),
            "phash": [phash_hex(h) for h in hashes.values()],
            "pixel_digest": [digests.get(i) for i in hashes],
        }
    )


def _groups(table: pd.DataFrame) -> dict[str, str]:
    return dict(zip(table["item_id"], table["group_id"], strict=True))


# --- exact duplicates by pixels ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ob_pixels(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    folder = shared_data / "dicom"
    return read_frame(folder / "OBXXXX1A.dcm"), read_frame(folder / "OBXXXX1A_rle.dcm")


def test_rle_copy_of_a_real_dicom_has_the_same_pixel_digest(ob_pixels, shared_data) -> None:
    plain, rle = ob_pixels
    assert pixel_digest(plain) == pixel_digest(rle)
    other = read_frame(shared_data / "dicom" / "US1_J2KR.dcm")
    assert pixel_digest(other) != pixel_digest(plain)


def test_rle_copy_of_a_real_dicom_is_one_group_in_both_ways(ob_pixels) -> None:
    plain, rle = ob_pixels
    items = pd.DataFrame(
        [image_item("ob-rle", rle, lossless=True), image_item("ob", plain, lossless=True)]
    )
    assert _groups(group_duplicates(items, radius=0)) == {"ob": "ob", "ob-rle": "ob"}
    # By pixels alone, however far the pHashes are told to be.
    items["phash"] = [np.uint64(0), np.uint64(2**64 - 1)]
    assert _groups(group_duplicates(items, radius=0)) == {"ob": "ob", "ob-rle": "ob"}


def test_a_gray_picture_stored_as_rgb_has_the_gray_digest() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert pixel_digest(np.stack([gray] * 3, axis=2)) == pixel_digest(gray)
    assert pixel_digest(gray[:, :, None]) == pixel_digest(gray)


def test_pixel_digest_ignores_byte_order_but_not_shape_or_dtype() -> None:
    values = np.arange(12, dtype="<u2").reshape(3, 4)
    assert pixel_digest(values.astype(">u2")) == pixel_digest(values)
    assert pixel_digest(values.reshape(4, 3)) != pixel_digest(values)
    assert pixel_digest(values.astype(np.uint8)) != pixel_digest(values)


def test_is_lossless_dicom_reads_the_transfer_syntax_and_the_lossy_flag(shared_data) -> None:
    verdicts = {}
    for name in ("OBXXXX1A_rle.dcm", "US1_J2KR.dcm", "color3d_jpeg_baseline.dcm"):
        ds = pydicom.dcmread(shared_data / "dicom" / name, stop_before_pixels=True)
        verdicts[name] = is_lossless_dicom(
            ds.file_meta.TransferSyntaxUID, ds.get("LossyImageCompression")
        )
    assert verdicts == {
        "OBXXXX1A_rle.dcm": True,
        "US1_J2KR.dcm": True,
        "color3d_jpeg_baseline.dcm": False,
    }
    # Once lossy-compressed, an uncompressed copy is still lossy (PS3.3 C.7.6.1.1.5).
    assert not is_lossless_dicom("1.2.840.10008.1.2.1", "01")


# --- near duplicates and groups ---------------------------------------------------------------


def test_group_id_is_the_smallest_member_id_and_sizes_are_counted() -> None:
    table = group_duplicates(_items({"z": 0b0, "m": 0b11, "a": 0xFFFF_0000_0000_0000}), radius=2)
    assert table.values.tolist() == [["a", "a", 1], ["m", "m", 2], ["z", "m", 2]]


def test_a_chain_of_near_duplicates_is_one_group() -> None:
    chain = {"f1": 0b0, "f2": 0b1111, "f3": 0b11111111}  # 4 bits apart, ends 8 apart
    assert set(_groups(group_duplicates(_items(chain), radius=4)).values()) == {"f1"}
    assert len(set(_groups(group_duplicates(_items(chain), radius=3)).values())) == 3


def test_items_with_a_repeated_id_are_a_bad_input() -> None:
    items = pd.DataFrame({"item_id": ["a", "a"], "phash": [1, 2]})
    with pytest.raises(DuplicateInputError, match="listed twice"):
        group_duplicates(items)


def test_items_without_a_phash_column_are_a_bad_input() -> None:
    with pytest.raises(DuplicateInputError, match="phash"):
        group_duplicates(pd.DataFrame({"item_id": ["a"]}))


def _partitions(seed: int) -> list[pd.DataFrame]:
    """Five partitions of clustered hashes, clusters spread over partitions, a shared digest."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2**63, 40, dtype=np.uint64)
    rows = []
    for number in range(600):
        centre = centres[number % 40]
        bits = rng.choice(64, int(rng.integers(0, 5)), replace=False).astype(np.uint64)
        flips = np.bitwise_or.reduce(np.uint64(1) << bits) if len(bits) else np.uint64(0)
        digest = "d-shared" if number in (7, 431) else None
        rows.append((f"item{number:04d}", centre ^ flips, digest))
    table = pd.DataFrame(rows, columns=["item_id", "phash", "pixel_digest"])
    order = rng.permutation(len(table))
    return [table.iloc[order[k::5]] for k in range(5)]


@pytest.mark.parametrize("radius", [0, 4, 6])
def test_incremental_updates_equal_grouping_from_scratch(radius: int) -> None:
    parts = _partitions(seed=radius)
    index = DuplicateIndex(radius=radius)
    for part in parts:
        index = update_groups(index, part).index
    expected = group_duplicates(pd.concat(parts), radius=radius)
    pd.testing.assert_frame_equal(index.groups(), expected)


def test_saved_index_is_the_same_bytes_whatever_the_partition_order(tmp_path: Path) -> None:
    parts = _partitions(seed=3)
    forward, backward = DuplicateIndex(radius=4), DuplicateIndex(radius=4)
    for part in parts:
        forward = update_groups(forward, part).index
    for part in reversed(parts):
        backward = update_groups(backward, part).index
    first = forward.save(tmp_path / "forward.parquet")
    assert backward.save(tmp_path / "backward.parquet").read_bytes() == first.read_bytes()


def test_a_rerun_partition_replaces_its_items_and_regroups() -> None:
    parts = _partitions(seed=1)
    index = DuplicateIndex(radius=4)
    for part in parts:
        index = update_groups(index, part).index
    changed = parts[2].assign(phash=np.uint64(0xAAAA_AAAA_AAAA_AAAA))  # now far from everyone
    index = update_groups(index, changed).index
    expected = group_duplicates(pd.concat([*parts[:2], changed, *parts[3:]]), radius=4)
    pd.testing.assert_frame_equal(index.groups(), expected)


def test_update_reports_the_merged_group_and_the_id_that_disappeared() -> None:
    index = build_index(_items({"b": 0b0, "c": 0xFF00_0000_0000_0000}), radius=2)
    update = update_groups(index, _items({"a": 0xFF00_0000_0000_0001}))
    assert _groups(update.changed) == {"a": "a", "c": "a"}
    assert update.removed_group_ids == ("c",)
    assert _groups(update.index.groups()) == {"a": "a", "b": "b", "c": "a"}
    assert _groups(index.groups()) == {"b": "b", "c": "c"}  # the old state is untouched


def test_an_empty_partition_changes_nothing() -> None:
    index = build_index(_items({"a": 1, "b": 3}), radius=1)
    update = update_groups(index, pd.DataFrame({"item_id": [], "phash": []}))
    assert update.changed.empty and update.removed_group_ids == ()
    pd.testing.assert_frame_equal(update.index.groups(), index.groups())


def test_update_joins_an_exact_copy_by_digest_alone() -> None:
    index = build_index(_items({"x": 0}, {"x": "d1"}), radius=0)
    update = update_groups(index, _items({"y": 2**64 - 1}, {"y": "d1"}))
    assert _groups(update.index.groups()) == {"x": "x", "y": "x"}


def test_saved_duplicate_index_round_trips_with_the_same_bytes(tmp_path: Path) -> None:
    index = build_index(_items({"b": 0, "a": 1}, {"a": "d"}), radius=3)
    path = index.save(tmp_path / "dup.parquet")
    loaded = DuplicateIndex.load(path)
    assert loaded.radius == 3
    pd.testing.assert_frame_equal(loaded.groups(), index.groups())
    assert loaded.items["pixel_digest"].tolist() == ["d", None]
    assert loaded.save(tmp_path / "again.parquet").read_bytes() == path.read_bytes()


def test_frame_items_leave_dead_frames_out() -> None:
    manifest = pd.DataFrame(
        {
            "frame_id": ["v-0000000", "v-0000001"],
            "video_id": ["v", "v"],
            "phash": ["8000000000000000", "0123456789abcdef"],
            "frame_relative_path": ["video_v/a.jpg", "video_v/b.png"],
            "width": [4, 4],
            "height": [3, 3],
            "is_dead": [True, False],
        }
    )
    items = frame_items(manifest, patient_id="P1")
    assert items["item_id"].tolist() == ["v-0000001"]
    assert items.iloc[0][["source_id", "patient_id", "lossless", "pixel_count"]].tolist() == [
        "v",
        "P1",
        True,
        12,
    ]
    assert len(frame_items(manifest, include_dead=True)) == 2


# --- patient check, representatives, split units ----------------------------------------------


def test_groups_spanning_patients_lists_only_groups_of_two_known_patients() -> None:
    groups = pd.DataFrame(
        {"item_id": ["a", "b", "c", "d", "e"], "group_id": ["a", "a", "c", "c", "e"]}
    )
    patients = {"a": "P1", "b": "P2", "c": "P3", "d": None, "e": "P4"}
    spans = groups_spanning_patients(groups, patients)
    assert [(s.group_id, s.patient_ids, s.item_ids) for s in spans] == [
        ("a", ("P1", "P2"), ("a", "b"))
    ]


def _policy_items() -> tuple[pd.DataFrame, pd.DataFrame]:
    items = pd.DataFrame(
        {
            "item_id": ["s1", "s2", "s3", "v1-1", "v1-2", "v2-1"],
            "source_id": [None, None, None, "v1", "v1", "v2"],
            "patient_id": ["P1", "P1", "P1", "P1", "P1", "P1"],
            "lossless": [False, True, True, False, False, False],
            "pixel_count": [100, 50, 80, 10, 10, 10],
        }
    )
    groups = pd.DataFrame(
        {"item_id": items["item_id"], "group_id": ["s1", "s1", "s1", "v1-1", "v1-1", "v1-1"]}
    )
    return groups, items


def test_representative_is_lossless_then_larger_then_smallest_id() -> None:
    groups, items = _policy_items()
    chosen = representatives(groups, items).set_index("item_id")
    assert chosen.loc[["s1", "s2", "s3"], "representative_id"].tolist() == ["s3"] * 3
    assert chosen.loc[["s1", "s2", "s3"], "keep"].tolist() == [False, False, True]
    by_size = representatives(groups, items, prefer=["pixel_count"]).set_index("item_id")
    assert by_size.loc["s1", "representative_id"] == "s1"
    by_id = representatives(groups, items, prefer=()).set_index("item_id")
    assert by_id.loc["s3", "representative_id"] == "s1"


def test_representatives_keep_the_representative_video_whole() -> None:
    groups, items = _policy_items()
    chosen = representatives(groups, items).set_index("item_id")
    assert chosen.loc[["v1-1", "v1-2", "v2-1"], "keep"].tolist() == [True, True, False]


def test_representatives_keep_one_per_patient_unless_asked_across_patients() -> None:
    groups, items = _policy_items()
    items.loc[items["item_id"].isin(["s1", "s2"]), "patient_id"] = "P2"
    per_patient = representatives(groups, items).set_index("item_id")
    assert per_patient.loc[["s1", "s2", "s3"], "keep"].tolist() == [False, True, True]
    assert per_patient.loc["s1", "representative_id"] == "s2"
    strict = representatives(groups, items, across_patients=True).set_index("item_id")
    assert strict.loc[["s1", "s2", "s3"], "keep"].tolist() == [False, False, True]


def test_representatives_need_the_preferred_columns() -> None:
    groups, items = _policy_items()
    with pytest.raises(ValueError, match="lossless"):
        representatives(groups, items.drop(columns="lossless"))


def test_split_units_join_patients_and_duplicate_groups_transitively() -> None:
    units = split_units(
        {"v1": "P1", "v2": "P1", "v3": "P2", "v4": None, "v5": None, "v6": "P3"},
        [("v3", "g1"), ("v4", "g1"), ("v2", "g2"), ("v5", "g2"), ("v7", "g3")],
    )
    assert units == {
        "v1": "v1",
        "v2": "v1",
        "v3": "v3",
        "v4": "v3",
        "v5": "v1",
        "v6": "v6",
        "v7": "v7",
    }


def test_split_keeps_a_copy_filed_under_another_patient_with_its_original() -> None:
    videos = pd.DataFrame(
        {"video_id": [f"v{k}" for k in range(10)], "patient_id": [f"P{k}" for k in range(10)]}
    )
    counts = {f"v{k}": 10 for k in range(10)}
    links = pd.DataFrame({"video_id": ["v0", "v9"], "group_id": ["g", "g"]})
    for seed in range(20):
        splits = split_by_patient_and_duplicates(videos, counts, links, val_ratio=0.3, seed=seed)
        assert splits["v0"] == splits["v9"]


def test_split_without_duplicates_equals_split_by_patient() -> None:
    videos = pd.DataFrame(
        {"video_id": ["a", "b", "c", "d", "e"], "patient_id": ["P1", "P1", "P2", None, "P3"]}
    )
    counts = {"a": 5, "b": 3, "c": 9, "d": 4, "e": 2}
    none = pd.DataFrame({"video_id": [], "group_id": []})
    for seed in range(10):
        assert split_by_patient_and_duplicates(
            videos, counts, none, val_ratio=0.3, seed=seed
        ) == split_by_patient(videos, counts, val_ratio=0.3, seed=seed)
