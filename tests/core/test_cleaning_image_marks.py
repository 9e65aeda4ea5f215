"""The marks of de-identified stills in the store: found, masked, inpainted only inside the
mask, the clean caliper twin named, incremental by still and model, the same bytes on rerun.

Stills are a real frame of a held-out lung clip (the mark finder never saw its patient), stored
clean and with rendered yellow calipers (:func:`medvid.cleaning.marks.render_marks`)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from medvid.cleaning import render_marks
from medvid.cleaning.inpaint import dilate_mask
from medvid.cleaning.mark_onnx import load_mark_finder
from medvid.cleaning.marks_store import (
    INPAINT_DILATE_PX,
    image_marks_table,
    marks_preview,
    read_image_marks,
    write_image_marks,
)
from medvid.images import read_rgb
from medvid.quarantine import quarantine_records
from medvid_resources import LocalMediaStore
from tests.core.conftest import decode_rgb
from tests.core.test_cleaning_marks import HELD_OUT

S1, S2 = "s0123456789abcd1", "s0123456789abcd2"


def _put(store: LocalMediaStore, study: str, image_id: str, rgb: np.ndarray) -> dict:
    relative = f"study_{study}/image_{image_id}.png"
    path = store.local_path(f"media/dicom_images/{relative}")
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rgb[..., ::-1])
    return {"image_id": image_id, "study_key": study, "image_relative_path": relative}


@pytest.fixture(scope="module")
def finder():
    # what image_marks runs on a CPU: the ONNX twin (tests/core/test_cleaning_mark_onnx.py:
    # the torch finder writes the same table and PNGs)
    chosen = load_mark_finder("cpu", threads=1)
    assert chosen.runtime == "onnxruntime-cpu"
    return chosen.finder


@pytest.fixture(scope="module")
def frame(shared_data: Path) -> np.ndarray:
    return decode_rgb(shared_data / HELD_OUT, limit=1)[0]


@pytest.fixture(scope="module")
def marked(frame):
    return render_marks(frame, np.random.default_rng(4), style="plus_yellow", caliper_pairs=1)


@pytest.fixture(scope="module")
def stills(tmp_path_factory, frame, marked):
    """S1: the frame clean (``iclean``) and with calipers (``imarked``); S2: the frame with
    other calipers and no twin (``ialone``)."""
    store = LocalMediaStore(root=str(tmp_path_factory.mktemp("store")))
    alone = render_marks(frame, np.random.default_rng(9), style="x_white", caliper_pairs=2)
    table = pd.DataFrame(
        [
            _put(store, S1, "iclean", frame),
            _put(store, S1, "imarked", marked.image),
            _put(store, S2, "ialone", alone.image),
        ]
    )
    return store, table


@pytest.fixture(scope="module")
def first(stills, finder):
    store, table = stills
    update = image_marks_table(store, table, read_image_marks(store), finder, num_threads=1)
    write_image_marks(store, update.table)
    return update


def _row(update, image_id: str) -> dict:
    [row] = [r for r in update.table.to_pylist() if r["image_id"] == image_id]
    return row


def test_a_calipered_still_has_calipers_and_the_clean_one_not(first):
    assert _row(first, "imarked")["has_calipers"] and _row(first, "ialone")["has_calipers"]
    assert not _row(first, "iclean")["has_calipers"]
    assert first.found == ["ialone", "iclean", "imarked"]  # every still read once


def test_the_inpainted_still_differs_only_inside_the_mask(stills, first, marked):
    store, _ = stills
    row = _row(first, "imarked")
    mask = read_rgb(store.fetch(row["mask_key"]))[..., 0] > 0
    assert row["mark_pixels"] == int(mask.sum()) > 0
    assert (mask & marked.mask).sum() >= 0.5 * marked.mask.sum()  # it found the drawn marks
    after = read_rgb(store.fetch(row["inpainted_key"]))
    changed = (after != marked.image).any(axis=2)
    assert changed.any()
    assert not (changed & ~dilate_mask(mask, INPAINT_DILATE_PX)).any()


def test_the_clean_twin_of_a_marked_still_is_named(first):
    assert _row(first, "imarked")["clean_twin"] == "iclean"
    assert _row(first, "iclean")["clean_twin"] is None
    assert _row(first, "ialone")["clean_twin"] is None


def test_a_rerun_reads_nothing_and_writes_the_same_table(stills, first, finder):
    store, table = stills
    again = image_marks_table(store, table, read_image_marks(store), finder, num_threads=1)
    assert again.found == [] and again.studies == []
    assert again.table.equals(first.table)


def test_a_fresh_store_gives_the_same_bytes(tmp_path, stills, first, finder):
    store, table = stills
    fresh = LocalMediaStore(root=str(tmp_path))
    for relative in table["image_relative_path"]:
        key = f"media/dicom_images/{relative}"
        fresh.local_path(key).parent.mkdir(parents=True, exist_ok=True)
        fresh.local_path(key).write_bytes(store.local_path(key).read_bytes())
    update = image_marks_table(fresh, table, read_image_marks(fresh), finder, num_threads=1)
    write_image_marks(fresh, update.table)
    for key in ("tables/image_marks.parquet", _row(first, "imarked")["inpainted_key"]):
        assert fresh.local_path(key).read_bytes() == store.local_path(key).read_bytes()


def test_a_new_still_redoes_only_its_study_and_a_broken_one_is_quarantined(
    tmp_path, stills, first, finder, frame
):
    store, table = stills
    fresh = LocalMediaStore(root=str(tmp_path))
    for relative in table["image_relative_path"]:
        key = f"media/dicom_images/{relative}"
        fresh.local_path(key).parent.mkdir(parents=True, exist_ok=True)
        fresh.local_path(key).write_bytes(store.local_path(key).read_bytes())
    broken = _put(fresh, S2, "ibroken", frame)
    fresh.local_path(f"media/dicom_images/{broken['image_relative_path']}").write_bytes(b"no")
    added = pd.concat([table, pd.DataFrame([broken])], ignore_index=True)
    update = image_marks_table(fresh, added, first.table.to_pandas(), finder, num_threads=1)
    assert update.studies == [S2] and update.found == []
    assert update.table.equals(first.table)
    [record] = quarantine_records(fresh)
    assert (record.content_id, record.stage) == (S2, "image_marks")


def test_a_new_model_reads_every_still_again(stills, first, finder):
    store, table = stills
    previous = first.table.to_pandas().assign(model_id="another")
    update = image_marks_table(store, table, previous, finder, num_threads=1)
    assert update.found == sorted(table["image_id"]) and update.table.equals(first.table)


def test_the_preview_shows_before_mask_and_after(stills, first):
    store, _ = stills
    data = marks_preview(store, first.table.to_pandas(), height=40)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    marked = int((first.table.to_pandas()["inpainted_key"].notna()).sum())
    assert image.shape[0] == 40 * min(marked, 3)


def test_no_stills_give_an_empty_table_and_no_preview(tmp_path, finder):
    store = LocalMediaStore(root=str(tmp_path))
    stills = pd.DataFrame(columns=["image_id", "study_key", "image_relative_path"])
    update = image_marks_table(store, stills, read_image_marks(store), finder)
    assert update.table.num_rows == 0 and update.found == [] and update.studies == []
    assert marks_preview(store, update.table.to_pandas()) == b""
