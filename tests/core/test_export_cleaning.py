"""The export with cleaning: copies of an exported representative left out, duplicate groups
kept on one side of the split, frames and stills cropped to their field of view.

Frames and videos as in :mod:`tests.core.test_export` (real lung POCUS frames, 270x270, four
synthetic videos: A and B of one patient, C without, D of another)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from medvid.export import ExportConfig, ExportSummary, verify_export, write_training_dataset
from medvid.ids import frame_id
from tests.core.test_export import (
    FRAME_NUMBERS,
    VA,
    VB,
    VC,
    VD,
    _frame_table,
    _label_table,
    _video_table,
)
from tests.core.test_export import frames_root as _lung_frames  # noqa: F401 - the fixture


@pytest.fixture(scope="module")
def frames_root(_lung_frames: Path) -> Path:  # noqa: F811 - test_export's frames folder
    return _lung_frames


STILL = "i0123456789abcde"
P4 = "P3ABCDEF0123"


def _copies(copy: str, of: str, representative: bool = False) -> pd.DataFrame:
    """Each frame of ``copy`` in a duplicate group with the same frame of ``of``."""
    rows = []
    for number in FRAME_NUMBERS:
        original, duplicate = frame_id(of, number), frame_id(copy, number)
        for item, source, keep in ((original, of, True), (duplicate, copy, representative)):
            rows.append(
                {
                    "item_id": item,
                    "source_id": source,
                    "group_id": min(original, duplicate),
                    "group_size": 2,
                    "representative": keep,
                    "representative_id": original,
                }
            )
    return pd.DataFrame(rows)


def _export(out: Path, root: Path, *, frames=None, **kwargs) -> ExportSummary:
    frames = _frame_table() if frames is None else frames
    config = kwargs.pop("config", {})
    return write_training_dataset(
        out,
        frames=frames,
        labels=_label_table(frames),
        videos=_video_table(),
        frames_root=root,
        config=ExportConfig(**{"dataset_name": "lung", "val_ratio": 0.3, **config}),
        medvid_version="0.1.0",
        **kwargs,
    )


def _exported_frames(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "annotations.csv", dtype=str).drop_duplicates("frame_id")


def test_copies_of_an_exported_representative_are_left_out(tmp_path, frames_root):
    summary = _export(tmp_path / "ds", frames_root, duplicate_groups=_copies(VB, VA))
    exported = _exported_frames(tmp_path / "ds")
    # B's frames 0..20 are copies of A's; A's frame 25 is dead (not exported), so B's copy of
    # it is the only one of its group to go out
    assert sorted(exported.loc[exported["video_id"] == VB, "frame_number"]) == ["25"]
    assert len(exported[exported["video_id"] == VA]) == 5
    assert summary.duplicates_dropped == 5
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["excluded"]["duplicate_frames"] == 5
    assert manifest["excluded"]["duplicate_images"] == 0
    assert verify_export(tmp_path / "ds") == []


def test_duplicates_all_exports_every_copy(tmp_path, frames_root):
    summary = _export(
        tmp_path / "ds",
        frames_root,
        duplicate_groups=_copies(VB, VA),
        config={"duplicates": "all"},
    )
    assert summary.duplicates_dropped == 0
    exported = _exported_frames(tmp_path / "ds")
    assert len(exported[exported["video_id"] == VB]) == 6


def test_a_duplicate_group_is_never_in_two_splits(tmp_path, frames_root):
    # C (no patient) holds copies of D's frames (another patient): kept with D whatever the seed
    groups = _copies(VC, VD, representative=True)
    apart = 0
    for seed in range(6):
        together = _export(
            tmp_path / f"g{seed}",
            frames_root,
            duplicate_groups=groups,
            config={"duplicates": "all", "seed": seed},
        ).splits
        assert together[VC] == together[VD]
        alone = _export(tmp_path / f"n{seed}", frames_root, config={"seed": seed}).splits
        apart += alone[VC] != alone[VD]
    assert apart > 0  # without the group, some seeds do put them apart


def test_near_duplicate_videos_are_split_together(tmp_path, frames_root):
    pairs = pd.DataFrame({"video_a": [VC], "video_b": [VD]})
    for seed in range(6):
        splits = _export(
            tmp_path / f"s{seed}",
            frames_root,
            duplicate_videos=pairs,
            config={"seed": seed},
        ).splits
        assert splits[VC] == splits[VD]


def test_frames_are_cropped_to_their_videos_field_of_view(tmp_path, frames_root):
    frames = _frame_table().assign(width=270, height=270)
    boxes = {VA: (10, 20, 200, 250), VD: (30, 0, 400, 100)}  # D's box reaches past the frame
    _export(tmp_path / "ds", frames_root, frames=frames, fields_of_view=boxes)
    out = tmp_path / "ds"
    exported = _exported_frames(out).set_index("video_id")
    crops = exported[["crop_x0", "crop_y0", "crop_x1", "crop_y1"]]
    assert crops.loc[VA].drop_duplicates().values.tolist() == [["10", "20", "200", "250"]]
    assert crops.loc[VD].drop_duplicates().values.tolist() == [["30", "0", "270", "100"]]
    assert crops.loc[VB].isna().all().all()
    path = exported.loc[VA, "frame_relative_path"].iloc[0]
    cropped = cv2.imread(str(out / "frames" / path))
    assert cropped.shape == (230, 190, 3)
    original = cv2.imread(str(frames_root / path))[20:250, 10:200].astype(int)
    assert np.abs(cropped.astype(int) - original).mean() < 2.0  # one more JPEG pass at q95
    whole = exported.loc[VB, "frame_relative_path"].iloc[0]
    assert (out / "frames" / whole).read_bytes() == (frames_root / whole).read_bytes()
    assert verify_export(out) == []


def test_crop_off_exports_frames_whole(tmp_path, frames_root):
    _export(
        tmp_path / "ds",
        frames_root,
        fields_of_view={VA: (10, 20, 200, 250)},
        config={"crop_to_field_of_view": False},
    )
    exported = _exported_frames(tmp_path / "ds")
    assert exported["crop_x0"].isna().all()
    path = exported.loc[exported["video_id"] == VA, "frame_relative_path"].iloc[0]
    assert (tmp_path / "ds" / "frames" / path).read_bytes() == (frames_root / path).read_bytes()


@pytest.fixture()
def still(tmp_path) -> tuple[Path, pd.DataFrame]:
    root = tmp_path / "images"
    relative = f"study_s0123456789abcd/image_{STILL}.png"
    (root / relative).parent.mkdir(parents=True)
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    cv2.imwrite(str(root / relative), image)
    table = pd.DataFrame(
        [
            {
                "image_id": STILL,
                "patient_id": P4,
                "image_relative_path": relative,
                "width": 80,
                "height": 60,
                "region_x0": 8,
                "region_y0": 4,
                "region_x1": 72,
                "region_y1": 50,
                "region_source": "dicom",
            }
        ]
    )
    return root, table


def test_still_images_are_cropped_losslessly_to_their_region(tmp_path, frames_root, still):
    root, table = still
    _export(tmp_path / "ds", frames_root, still_images=table, images_root=root)
    row = pd.read_csv(tmp_path / "ds" / "images.csv").iloc[0]
    assert (row["crop_x0"], row["crop_y0"], row["crop_x1"], row["crop_y1"]) == (8, 4, 72, 50)
    assert (row["width"], row["height"]) == (80, 60)  # of the source image
    relative = table["image_relative_path"].iloc[0]
    cropped = cv2.imread(str(tmp_path / "ds" / "images" / relative))
    np.testing.assert_array_equal(cropped, cv2.imread(str(root / relative))[4:50, 8:72])


def test_a_still_copy_of_an_exported_still_is_left_out(tmp_path, frames_root, still):
    root, table = still
    copy = "i0fedcba987654321"
    relative = f"study_s0123456789abcd/image_{copy}.png"
    (root / relative).write_bytes((root / table["image_relative_path"].iloc[0]).read_bytes())
    both = pd.concat([table, table.assign(image_id=copy, image_relative_path=relative)])
    groups = pd.DataFrame(
        {
            "item_id": [STILL, copy],
            "source_id": [STILL, copy],
            "group_id": [STILL, STILL],
            "group_size": [2, 2],
            "representative": [True, False],
            "representative_id": [STILL, STILL],
        }
    )
    summary = _export(
        tmp_path / "ds",
        frames_root,
        still_images=both,
        images_root=root,
        duplicate_groups=groups,
    )
    assert pd.read_csv(tmp_path / "ds" / "images.csv")["image_id"].tolist() == [STILL]
    assert summary.duplicates_dropped == 1
    assert not (tmp_path / "ds" / "images" / relative).exists()


def test_colour_doppler_and_small_stills_are_filtered_and_counted(tmp_path, frames_root, still):
    root, table = still  # random pixels: nearly every pixel is coloured
    _export(
        tmp_path / "es",
        frames_root,
        still_images=table.assign(Modality="ES"),
        images_root=root,
        config={"max_colour_fraction": 0.02},
    )
    assert len(pd.read_csv(tmp_path / "es" / "images.csv")) == 1
    _export(
        tmp_path / "us",
        frames_root,
        still_images=table.assign(Modality="US"),
        images_root=root,
        config={"max_colour_fraction": 0.02},
    )
    assert not (tmp_path / "us" / "images.csv").exists()
    excluded = json.loads((tmp_path / "us" / "manifest.json").read_text())["excluded"]
    assert excluded["colour_doppler_images"] == 1
    # the crop is 64x46: a 50 px minimum height drops it, 46 keeps it
    _export(
        tmp_path / "small",
        frames_root,
        still_images=table,
        images_root=root,
        config={"min_height": 50},
    )
    excluded = json.loads((tmp_path / "small" / "manifest.json").read_text())["excluded"]
    assert excluded["too_small_images"] == 1 and excluded["too_small_frames"] == 0


def test_frames_smaller_than_the_minimum_after_the_crop_are_left_out(tmp_path, frames_root):
    frames = _frame_table().assign(width=270, height=270)
    summary = _export(
        tmp_path / "ds",
        frames_root,
        frames=frames,
        fields_of_view={VA: (0, 0, 100, 100)},
        config={"min_width": 120},
    )
    exported = _exported_frames(tmp_path / "ds")
    assert VA not in set(exported["video_id"]) and VB in set(exported["video_id"])
    excluded = json.loads((tmp_path / "ds" / "manifest.json").read_text())["excluded"]
    assert excluded["too_small_frames"] == 5  # A's live frames
    assert VA not in summary.splits


@pytest.fixture()
def marked_stills(tmp_path, still) -> tuple[Path, Path, pd.DataFrame]:
    """The still with calipers (an inpainted PNG beside it) and its clean twin ``TWIN``."""
    root, table = still
    relative = table["image_relative_path"].iloc[0]
    inpainted_root = tmp_path / "inpainted"
    (inpainted_root / relative).parent.mkdir(parents=True)
    filled = cv2.imread(str(root / relative))
    filled[10:20, 10:20] = 128
    cv2.imwrite(str(inpainted_root / relative), filled)
    twin_relative = f"study_s0123456789abcd/image_{TWIN}.png"
    (root / twin_relative).write_bytes((inpainted_root / relative).read_bytes())
    marked = table.assign(has_calipers=True, clean_twin=TWIN, inpainted_relative_path=relative)
    twin = table.assign(
        image_id=TWIN,
        image_relative_path=twin_relative,
        has_calipers=False,
        clean_twin=None,
        inpainted_relative_path=None,
    )
    return root, inpainted_root, pd.concat([marked, twin], ignore_index=True)


TWIN = "i0aaaaaaaaaaaaaaa"


def _marks_export(out: Path, frames_root: Path, marked_stills, marks: str, **kwargs):
    root, inpainted_root, table = marked_stills
    _export(
        out,
        frames_root,
        still_images=kwargs.pop("still_images", table),
        images_root=root,
        inpainted_root=inpainted_root,
        config={"crop_to_field_of_view": False, "marks": marks},
    )
    rows = pd.read_csv(out / "images.csv", dtype=str).set_index("image_id")
    excluded = json.loads((out / "manifest.json").read_text())["excluded"]
    return rows, excluded


def test_keep_mode_exports_the_stored_pixels_and_says_so(tmp_path, frames_root, marked_stills):
    root, _, table = marked_stills
    rows, excluded = _marks_export(tmp_path / "ds", frames_root, marked_stills, "keep")
    assert rows.loc[STILL, "has_calipers"] == "True" and rows.loc[STILL, "inpainted"] == "False"
    assert rows.loc[TWIN, "has_calipers"] == "False" and rows.loc[TWIN, "inpainted"] == "False"
    for relative in table["image_relative_path"]:
        assert (tmp_path / "ds" / "images" / relative).read_bytes() == (
            root / relative
        ).read_bytes()
    assert excluded["calipered_images"] == excluded["marked_images_with_clean_twin"] == 0


def test_inpaint_mode_exports_the_inpainted_still(tmp_path, frames_root, marked_stills):
    root, inpainted_root, table = marked_stills
    rows, _ = _marks_export(tmp_path / "ds", frames_root, marked_stills, "inpaint")
    assert rows.loc[STILL, "inpainted"] == "True" and rows.loc[TWIN, "inpainted"] == "False"
    relative = rows.loc[STILL, "image_relative_path"]
    exported = (tmp_path / "ds" / "images" / relative).read_bytes()
    assert exported == (inpainted_root / relative).read_bytes() != (root / relative).read_bytes()


def test_the_clean_twin_is_preferred_to_the_marked_still(tmp_path, frames_root, marked_stills):
    rows, excluded = _marks_export(
        tmp_path / "ds", frames_root, marked_stills, "clean_twin_or_inpaint"
    )
    assert rows.index.tolist() == [TWIN] and excluded["marked_images_with_clean_twin"] == 1
    # without its twin in the export, the marked still is exported inpainted
    _, _, table = marked_stills
    alone, excluded = _marks_export(
        tmp_path / "alone",
        frames_root,
        marked_stills,
        "clean_twin_or_inpaint",
        still_images=table[table["image_id"] == STILL],
    )
    assert alone.loc[STILL, "inpainted"] == "True"
    assert excluded["marked_images_with_clean_twin"] == 0


def test_drop_mode_leaves_out_stills_with_calipers_and_counts_them(
    tmp_path, frames_root, marked_stills
):
    rows, excluded = _marks_export(tmp_path / "ds", frames_root, marked_stills, "drop")
    assert rows.index.tolist() == [TWIN] and excluded["calipered_images"] == 1


def test_an_unknown_marks_mode_is_an_error():
    with pytest.raises(ValueError, match="marks must be one of"):
        ExportConfig(dataset_name="x", marks="blur")  # type: ignore[arg-type]
