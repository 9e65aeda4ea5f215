"""The cleaning stage's core: the duplicate index brought to the items medvid holds (added
incrementally, rebuilt when items leave), the groups table, and a broken still quarantined."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from medvid.cleaning.dedup import group_duplicates
from medvid.cleaning.dedup_items import image_item
from medvid.cleaning.store import (
    GROUPS_SCHEMA,
    groups_table,
    largest_groups,
    load_duplicate_index,
    save_duplicate_index,
    still_items_of,
    sync_index,
)
from medvid.images import read_rgb
from medvid.quarantine import quarantine_records
from medvid_resources import LocalMediaStore


def _items(hashes: dict[str, int], patients: dict[str, str] | None = None) -> pd.DataFrame:
    ids = sorted(hashes)
    return pd.DataFrame(
        {
            "item_id": ids,
            "phash": np.array([hashes[i] for i in ids], dtype=np.uint64),
            "pixel_digest": [None] * len(ids),
            "source_id": [i.split("-")[0] for i in ids],
            "patient_id": [(patients or {}).get(i.split("-")[0]) for i in ids],
            "lossless": [False] * len(ids),
            "pixel_count": [100] * len(ids),
            "kind": ["frame"] * len(ids),
        }
    )


BASE = 0x0F0F_0F0F_0F0F_0F0F
FIRST = {"a-1": BASE, "a-2": BASE ^ 0xFF00_0000_0000_0000, "b-1": BASE ^ 0b11}  # b-1 ~ a-1
LATER = {"c-1": BASE ^ 0xFF00_0000_0000_0003, "d-1": ~BASE & 0xFFFF_FFFF_FFFF_FFFF}


def _group_of(index) -> dict[str, str]:
    groups = index.groups()
    return dict(zip(groups["item_id"], groups["group_id"], strict=True))


def test_new_items_are_added_and_equal_grouping_everything_at_once():
    first = sync_index(None, _items(FIRST))
    assert first.rebuilt and first.added == 3
    both = _items({**FIRST, **LATER})
    second = sync_index(first.index, both)
    assert not second.rebuilt and second.added == 2
    assert _group_of(second.index) == dict(
        zip(*group_duplicates(both)[["item_id", "group_id"]].T.values, strict=True)
    )
    assert _group_of(second.index)["c-1"] == "a-2"  # 2 bits from a-2, 10 from a-1
    again = sync_index(second.index, both)
    assert again.added == 0 and again.index is second.index


def test_an_item_that_left_or_a_new_radius_rebuilds_the_groups():
    index = sync_index(None, _items({**FIRST, **LATER})).index
    without_b = sync_index(
        index, _items({k: v for k, v in {**FIRST, **LATER}.items() if k != "b-1"})
    )
    assert without_b.rebuilt and "b-1" not in _group_of(without_b.index)
    wider = sync_index(index, _items({**FIRST, **LATER}), radius=12)
    assert wider.rebuilt and wider.index.radius == 12
    assert len(set(_group_of(wider.index).values())) == 2  # a, b and c chain; d stands alone


def test_a_changed_hash_moves_the_item(tmp_path):
    index = sync_index(None, _items(FIRST)).index
    moved = sync_index(index, _items({**FIRST, "b-1": ~BASE & 0xFFFF_FFFF_FFFF_FFFF}))
    assert moved.added == 1 and _group_of(moved.index)["b-1"] == "b-1"


def test_groups_table_marks_one_representative_per_group_and_patient(tmp_path):
    items = _items(FIRST, patients={"a": "P1", "b": "P2"})
    table = groups_table(sync_index(None, items).index, items)
    assert table.schema == GROUPS_SCHEMA
    rows = table.to_pandas().set_index("item_id")
    assert rows.loc["b-1", "group_id"] == "a-1" and rows.loc["b-1", "group_size"] == 2
    assert rows.loc["a-2", "group_id"] == "a-2"  # 8 bits from a-1: a group of its own
    assert rows["representative"].all()  # two patients: each keeps its own
    items = _items(FIRST)
    rows = groups_table(sync_index(None, items).index, items).to_pandas().set_index("item_id")
    assert rows["representative"].to_dict() == {"a-1": True, "a-2": True, "b-1": False}


def test_the_index_round_trips_through_the_store_with_the_same_bytes(tmp_path):
    store = LocalMediaStore(root=str(tmp_path))
    index = sync_index(None, _items({**FIRST, **LATER})).index
    save_duplicate_index(store, index)
    first = next(Path(tmp_path).rglob("duplicate_index.parquet")).read_bytes()
    loaded = load_duplicate_index(store)
    assert _group_of(loaded) == _group_of(index)
    save_duplicate_index(store, sync_index(loaded, _items({**FIRST, **LATER})).index)
    assert next(Path(tmp_path).rglob("duplicate_index.parquet")).read_bytes() == first
    assert pq.read_table(next(Path(tmp_path).rglob("duplicate_index.parquet"))).num_rows == 5


@pytest.fixture()
def stills(tmp_path, shared_data) -> tuple[LocalMediaStore, pd.DataFrame]:
    store = LocalMediaStore(root=str(tmp_path))
    good = store.local_path("media/dicom_images/study_s1/image_i1.png")
    good.parent.mkdir(parents=True, exist_ok=True)
    good.write_bytes((shared_data / "images" / "itkpocus_clarius-ocular-image.png").read_bytes())
    store.local_path("media/dicom_images/study_s1/image_i2.png").write_bytes(b"not a png")
    table = pd.DataFrame(
        {
            "image_id": ["i1", "i2"],
            "study_key": ["s1", "s1"],
            "patient_id": ["P1", "P1"],
            "image_relative_path": ["study_s1/image_i1.png", "study_s1/image_i2.png"],
            "width": [1280, 1280],
            "height": [960, 960],
            "lossless": [True, True],
        }
    )
    return store, table


def test_a_broken_still_is_quarantined_and_the_others_go_on(stills, shared_data):
    store, table = stills
    from medvid.cleaning.dedup import DuplicateIndex

    items = still_items_of(store, table, DuplicateIndex())
    assert items["item_id"].tolist() == ["i1"]
    expected = image_item(
        "i1", read_rgb(shared_data / "images" / "itkpocus_clarius-ocular-image.png"), lossless=True
    )
    assert items["pixel_digest"].iloc[0] == expected["pixel_digest"]
    [record] = quarantine_records(store)
    assert (record.content_id, record.stage) == ("s1", "duplicate_groups")
    assert "image_i2.png" in record.file


def test_a_still_already_indexed_is_not_read_again(stills):
    store, table = stills
    from medvid.cleaning.dedup import DuplicateIndex

    known = sync_index(None, still_items_of(store, table.iloc[:1], DuplicateIndex())).index
    store.local_path("media/dicom_images/study_s1/image_i1.png").unlink()  # would quarantine
    items = still_items_of(store, table.iloc[:1], known)
    assert items["item_id"].tolist() == ["i1"] and not quarantine_records(store)


def test_largest_groups_lists_groups_with_copies_largest_first():
    groups = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d", "e", "f"],
            "group_id": ["a", "a", "c", "d", "d", "d"],
            "group_size": [2, 2, 1, 3, 3, 3],
            "kind": ["frame", "image", "frame", "frame", "frame", "frame"],
            "source_id": ["v", "i", "v", "w", "w", "x"],
            "patient_id": ["P1", None, None, "P1", "P2", None],
        }
    )
    table = largest_groups(groups)
    assert table.to_dict("records") == [
        {"group_id": "d", "size": 3, "kinds": "frame", "sources": 2, "patients": 2},
        {"group_id": "a", "size": 2, "kinds": "frame,image", "sources": 2, "patients": 1},
    ]
