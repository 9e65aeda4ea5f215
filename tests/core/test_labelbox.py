"""Parsing Labelbox exports (export v2 / ``project.export()`` rows and legacy v1 JSON) into frame
labels, objects and mask PNGs, and building data-row payloads for upload.

Real fixtures come from ``../shared/data/labels/`` (see its MANIFEST.tsv). Export v2 features
the fixture lacks (classifications, reviews, masks, video frames and segments) are built in the
documented export v2 shape (Labelbox export docs; the SDK's ``expected_export_v2_video``).
"""

from __future__ import annotations

import base64
import io
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medvid.ids import frame_id
from medvid.labels.labelbox import (
    OBJECTS_SCHEMA,
    LabelboxExportError,
    data_rows_for_frames,
    parse_export_v1,
    parse_export_v2_rows,
    read_export_ndjson,
)
from medvid.labels.schema import FRAME_LABELS_SCHEMA, LabelSchema

V2_PROJECT = "8ikpemouf4oszagoc7vlj67wq"
VIDEO = "0123456789abcdef"
RETRIEVED = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def labels_dir(shared_data: Path) -> Path:
    return shared_data / "labels"


@pytest.fixture(scope="module")
def v2_rows(labels_dir: Path) -> list[dict[str, Any]]:
    return list(read_export_ndjson(labels_dir / "labelformat_labelbox_export_v2.ndjson"))


@pytest.fixture(scope="module")
def fov_mask_png(labels_dir: Path) -> bytes:
    """A real binary mask: the endoscope field of view, 1440x1080, 0/255."""
    return (labels_dir / "endoseg_exemplary_seg.png").read_bytes()


def _frames(video_id: str, frame_numbers: list[int], fps: float = 25.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "frame_id": [frame_id(video_id, n) for n in frame_numbers],
            "video_id": video_id,
            "frame_number": pd.Series(frame_numbers, dtype="int64"),
            "frame_timestamp": [n / fps for n in frame_numbers],
            "frame_relative_path": [
                f"video_{video_id}/frame_{frame_id(video_id, n)}.jpg" for n in frame_numbers
            ],
        }
    )


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------- export v2: the real fixture


def test_v2_fixture_objects_are_read_box_by_box(v2_rows: list[dict[str, Any]], tmp_path: Path):
    result = parse_export_v2_rows(
        v2_rows, project_id=V2_PROJECT, frames=None, masks_dir=tmp_path, mask_fetcher=None
    )
    objects = result.objects.to_pandas()
    assert result.objects.schema == OBJECTS_SCHEMA
    assert len(objects) == 16
    assert set(objects["kind"]) == {"bbox"}
    first = objects[objects["global_key"] == "a-weird Filename.asdf.jpg"]
    assert Counter(first["label_name"]) == {
        "person": 4,
        "bench": 2,
        "dog": 1,
        "bicycle with space": 1,
    }
    second = objects[objects["global_key"] == "aNother-weird__ filename.with.many.characters.jpg"]
    assert Counter(second["label_name"]) == {"snowboard": 6, "person": 1, "bicycle with space": 1}
    dog = objects[objects["feature_id"] == "7gi2p91mabs85shl7nss9ju5z"].iloc[0]
    assert (dog["label_name"], dog["bbox_x"], dog["bbox_y"], dog["bbox_w"], dog["bbox_h"]) == (
        "dog",
        540.0,
        295.0,
        23.0,
        18.0,
    )
    assert dog["data_row_id"] == "vglwulbsc2mwew8zd5fgk1ua1"
    assert dog["labelbox_label_id"] == "4wwiax7u91a4qhkd07xjphnk3"


def test_v2_rows_without_a_manifest_are_reported_unmatched(v2_rows, tmp_path: Path) -> None:
    result = parse_export_v2_rows(
        v2_rows, project_id=V2_PROJECT, frames=None, masks_dir=tmp_path, mask_fetcher=None
    )
    assert result.frame_labels.num_rows == 0
    assert result.frame_labels.schema == FRAME_LABELS_SCHEMA
    assert [u["data_row_id"] for u in result.unmatched] == [
        "vglwulbsc2mwew8zd5fgk1ua1",
        "4p1jv9dlh5ne9bx58v5crrmm3",
    ]
    assert {u["reason"] for u in result.unmatched} == {"no frame manifest"}
    assert result.objects.to_pandas()["frame_id"].isna().all()


def test_v2_rows_find_their_frames_through_aliases(v2_rows, tmp_path: Path) -> None:
    frames = _frames(VIDEO, [0, 10])
    aliases = {
        "a-weird Filename.asdf.jpg": frame_id(VIDEO, 0),
        "aNother-weird__ filename.with.many.characters.jpg": frame_id(VIDEO, 10),
    }
    result = parse_export_v2_rows(
        v2_rows,
        project_id=V2_PROJECT,
        frames=frames,
        masks_dir=tmp_path,
        mask_fetcher=None,
        video_aliases=aliases,
    )
    objects = result.objects.to_pandas()
    assert result.unmatched == ()
    assert Counter(objects["frame_id"]) == {frame_id(VIDEO, 0): 8, frame_id(VIDEO, 10): 8}
    assert set(objects.loc[objects["frame_id"] == frame_id(VIDEO, 10), "frame_number"]) == {10}


def test_rows_of_another_project_add_nothing(v2_rows, tmp_path: Path) -> None:
    result = parse_export_v2_rows(
        v2_rows, project_id="other", frames=None, masks_dir=tmp_path, mask_fetcher=None
    )
    assert result.objects.num_rows == 0
    assert result.skipped == {"row without this project": 2}


def test_read_export_ndjson_names_the_bad_line(tmp_path: Path, labels_dir: Path) -> None:
    lines = (labels_dir / "labelformat_labelbox_export_v2.ndjson").read_text().splitlines()
    broken = tmp_path / "export.ndjson"
    broken.write_text(lines[0] + "\n\n" + lines[1][:100] + "\n")
    rows = read_export_ndjson(broken)
    assert next(rows)["data_row"]["id"] == "vglwulbsc2mwew8zd5fgk1ua1"
    with pytest.raises(LabelboxExportError, match="line 3: bad JSON"):
        next(rows)


def test_a_row_without_data_row_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(LabelboxExportError, match="export row 1: not a Labelbox export row"):
        parse_export_v2_rows(
            [{"projects": {}}], project_id="p", frames=None, masks_dir=tmp_path, mask_fetcher=None
        )


# ---------------------------------------------------------------- export v2: image classifications


def _image_row(
    global_key: str,
    *,
    classifications: list[dict[str, Any]] = (),  # type: ignore[assignment]
    objects: list[dict[str, Any]] = (),  # type: ignore[assignment]
    reviews: list[dict[str, Any]] = (),  # type: ignore[assignment]
    workflow_status: str = "IN_REVIEW",
    created_by: str = "ann@example.org",
) -> dict[str, Any]:
    return {
        "data_row": {"id": f"dr-{global_key}", "global_key": global_key, "row_data": "https://x"},
        "media_attributes": {"height": 1080, "width": 1440, "mime_type": "image/jpeg"},
        "projects": {
            "p1": {
                "name": "medvid",
                "project_details": {"workflow_status": workflow_status},
                "labels": [
                    {
                        "id": f"label-{global_key}",
                        "label_kind": "Default",
                        "label_details": {
                            "created_at": "2024-05-02T10:00:00.000+00:00",
                            "updated_at": "2024-05-03T11:00:00.000+00:00",
                            "created_by": created_by,
                            "reviews": list(reviews),
                        },
                        "annotations": {
                            "objects": list(objects),
                            "classifications": list(classifications),
                            "relationships": [],
                        },
                    }
                ],
            }
        },
    }


def _radio(question: str, answer: str) -> dict[str, Any]:
    return {
        "feature_id": f"f-{question}",
        "name": question,
        "value": question.lower(),
        "radio_answer": {"name": answer, "value": answer.lower(), "classifications": []},
    }


def _checklist(question: str, answers: list[str]) -> dict[str, Any]:
    return {
        "feature_id": f"f-{question}",
        "name": question,
        "checklist_answers": [
            {"name": a, "value": a.lower(), "classifications": []} for a in answers
        ],
    }


def _text(question: str, content: str) -> dict[str, Any]:
    return {"feature_id": f"f-{question}", "name": question, "text_answer": {"content": content}}


SCHEMA = LabelSchema.from_names(["B-lines", "Cov", "Reg", "pleural_thickness", "artifact"])


def test_image_classifications_become_frame_labels(tmp_path: Path) -> None:
    frames = _frames(VIDEO, [0, 10])
    row = _image_row(
        frame_id(VIDEO, 10),
        classifications=[
            _radio("diagnosis", "Cov"),  # answer name is the label
            _radio("artifact", "No"),  # yes/no answer: the question is the label
            _checklist("findings", ["B-lines"]),
            _text("pleural_thickness", "2.5"),  # numeric text: float_value
            _text("comment", "looks odd"),  # other text: skipped
        ],
    )
    result = parse_export_v2_rows(
        [row], project_id="p1", frames=frames, masks_dir=tmp_path, mask_fetcher=None, schema=SCHEMA
    )
    labels = result.frame_labels.to_pandas().set_index("label_name")
    assert result.frame_labels.schema == FRAME_LABELS_SCHEMA
    assert sorted(labels.index) == ["B-lines", "Cov", "artifact", "pleural_thickness"]
    assert labels.loc["Cov", "value"] and labels.loc["B-lines", "value"]
    assert not labels.loc["artifact", "value"]
    assert labels.loc["pleural_thickness", "float_value"] == 2.5
    assert labels.loc["Cov", "label_id"] == SCHEMA.id_of("Cov")
    assert set(labels["frame_id"]) == {frame_id(VIDEO, 10)}
    assert set(labels["frame_timestamp"]) == {0.4}
    assert set(labels["source"]) == {"labelbox"} and set(labels["confidence"]) == {1.0}
    assert set(labels["annotator"]) == {"ann@example.org"}
    assert set(labels["date_modified"]) == {pd.Timestamp("2024-05-03T11:00:00Z")}
    assert result.skipped == {"text answer": 1}


def test_labels_outside_the_schema_are_counted_not_written(tmp_path: Path) -> None:
    row = _image_row(frame_id(VIDEO, 0), classifications=[_radio("diagnosis", "Flu")])
    result = parse_export_v2_rows(
        [row],
        project_id="p1",
        frames=_frames(VIDEO, [0]),
        masks_dir=tmp_path,
        mask_fetcher=None,
        schema=SCHEMA,
    )
    assert result.frame_labels.num_rows == 0
    assert result.unknown_labels == {"Flu": 1}


@pytest.mark.parametrize(
    ("reviews", "workflow_status", "reviewed", "reviewer"),
    [
        ([], "IN_REVIEW", False, None),
        ([], "DONE", True, None),
        (
            [
                {
                    "reviewed_at": "2024-05-04T00:00:00Z",
                    "reviewed_by": "a@x",
                    "review_action": "Approve",
                },
                {
                    "reviewed_at": "2024-05-05T00:00:00Z",
                    "reviewed_by": "b@x",
                    "review_action": "Approve",
                },
            ],
            "IN_REVIEW",
            True,
            "b@x",
        ),
        (
            [
                {
                    "reviewed_at": "2024-05-04T00:00:00Z",
                    "reviewed_by": "a@x",
                    "review_action": "Reject",
                }
            ],
            "IN_REWORK",
            False,
            None,
        ),
    ],
)
def test_reviewed_follows_approvals_or_the_done_workflow_step(
    tmp_path: Path, reviews, workflow_status, reviewed, reviewer
) -> None:
    row = _image_row(
        frame_id(VIDEO, 0),
        classifications=[_radio("diagnosis", "Reg")],
        reviews=reviews,
        workflow_status=workflow_status,
    )
    result = parse_export_v2_rows(
        [row],
        project_id="p1",
        frames=_frames(VIDEO, [0]),
        masks_dir=tmp_path,
        mask_fetcher=None,
        schema=SCHEMA,
    )
    label = result.frame_labels.to_pylist()[0]
    assert (label["reviewed"], label["reviewer"]) == (reviewed, reviewer)


# ---------------------------------------------------------------- export v2: masks


def test_masks_are_fetched_and_written_as_binary_png(tmp_path: Path, fov_mask_png: bytes) -> None:
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return fov_mask_png

    mask_object = {
        "feature_id": "maskfeature1",
        "feature_schema_id": "s1",
        "name": "field of view",
        "annotation_kind": "ImageSegmentationMask",
        "classifications": [],
        "mask": {"url": "https://api.labelbox.com/api/v1/masks/1"},
    }
    row = _image_row(frame_id(VIDEO, 0), objects=[mask_object])
    result = parse_export_v2_rows(
        [row], project_id="p1", frames=_frames(VIDEO, [0]), masks_dir=tmp_path, mask_fetcher=fetch
    )
    key = f"masks/{frame_id(VIDEO, 0)}/maskfeature1.png"
    assert fetched == ["https://api.labelbox.com/api/v1/masks/1"]
    assert result.masks_written == (key,)
    written = np.asarray(Image.open(tmp_path / key))
    original = np.asarray(Image.open(io.BytesIO(fov_mask_png)))
    assert written.shape == (1080, 1440) and written.dtype == np.uint8
    assert np.array_equal(written > 0, original > 0)
    assert set(np.unique(written)) == {0, 255}
    obj = result.objects.to_pylist()[0]
    assert obj["kind"] == "mask" and obj["mask_relative_path"] == key
    assert (obj["bbox_x"], obj["bbox_y"], obj["bbox_w"], obj["bbox_h"]) == (
        163.0,
        18.0,
        970.0,
        978.0,
    )


def test_composite_masks_are_split_by_feature_colour(tmp_path: Path, fov_mask_png: bytes) -> None:
    fov = np.asarray(Image.open(io.BytesIO(fov_mask_png))) > 0
    composite = np.zeros((1080, 1440, 3), dtype=np.uint8)
    composite[fov] = (255, 0, 0)
    composite[0:10, 0:20] = (0, 255, 0)  # a corner, outside the circular field of view
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return _png(composite)

    def obj(feature_id: str, rgb: list[int]) -> dict[str, Any]:
        return {
            "feature_id": feature_id,
            "name": "region",
            "annotation_kind": "ImageSegmentationMask",
            "composite_mask": {"url": "https://lb/composite/1", "color_rgb": rgb},
        }

    row = _image_row(
        frame_id(VIDEO, 0), objects=[obj("red", [255, 0, 0]), obj("green", [0, 255, 0])]
    )
    result = parse_export_v2_rows(
        [row], project_id="p1", frames=_frames(VIDEO, [0]), masks_dir=tmp_path, mask_fetcher=fetch
    )
    assert fetched == ["https://lb/composite/1"]  # one download for the shared composite
    folder = tmp_path / "masks" / frame_id(VIDEO, 0)
    red = np.asarray(Image.open(folder / "red.png")) > 0
    green = np.asarray(Image.open(folder / "green.png")) > 0
    assert np.array_equal(red, fov)
    assert green.sum() == 200 and green[0:10, 0:20].all()
    boxes = {
        o["feature_id"]: (o["bbox_x"], o["bbox_y"], o["bbox_w"], o["bbox_h"])
        for o in result.objects.to_pylist()
    }
    assert boxes["green"] == (0.0, 0.0, 20.0, 10.0)


def test_inline_png_masks_need_no_fetcher(tmp_path: Path) -> None:
    mask = np.zeros((4, 6), dtype=np.uint8)
    mask[1:3, 2:5] = 1
    inline = {
        "feature_id": "inline1",
        "name": "lesion",
        "mask": {"png": base64.b64encode(_png(mask)).decode()},
    }
    row = _image_row(frame_id(VIDEO, 0), objects=[inline])
    result = parse_export_v2_rows(
        [row], project_id="p1", frames=_frames(VIDEO, [0]), masks_dir=tmp_path, mask_fetcher=None
    )
    written = np.asarray(Image.open(tmp_path / result.masks_written[0]))
    assert written.shape == (4, 6)
    assert np.array_equal(written == 255, mask == 1)


def test_masks_without_data_are_counted(tmp_path: Path) -> None:
    obj = {"feature_id": "m", "name": "lesion", "mask": {"url": "https://lb/m"}}
    result = parse_export_v2_rows(
        [_image_row(frame_id(VIDEO, 0), objects=[obj])],
        project_id="p1",
        frames=_frames(VIDEO, [0]),
        masks_dir=tmp_path,
        mask_fetcher=None,
    )
    assert result.masks_written == ()
    assert result.skipped == {"mask without data or fetcher": 1}
    assert result.objects.to_pylist()[0]["mask_relative_path"] is None


def test_unreadable_mask_bytes_raise(tmp_path: Path) -> None:
    obj = {"feature_id": "m", "name": "lesion", "mask": {"url": "https://lb/m"}}
    with pytest.raises(LabelboxExportError, match="mask is not a readable image"):
        parse_export_v2_rows(
            [_image_row(frame_id(VIDEO, 0), objects=[obj])],
            project_id="p1",
            frames=_frames(VIDEO, [0]),
            masks_dir=tmp_path,
            mask_fetcher=lambda url: b"<html>expired</html>",
        )


# ---------------------------------------------------------------- export v2: video


def _video_row() -> dict[str, Any]:
    """A video data row in the export v2 shape: frames keyed by 1-based Labelbox frame number."""
    phase = lambda answer: {  # noqa: E731
        "feature_id": "cls-phase",
        "name": "phase",
        "radio_answer": {"name": answer, "classifications": []},
    }
    box = lambda top: {  # noqa: E731
        "feature_id": "obj-probe",
        "name": "probe",
        "annotation_kind": "VideoBoundingBox",
        "classifications": [],
        "bounding_box": {"top": top, "left": 5.0, "height": 10.0, "width": 20.0},
    }
    return {
        "data_row": {"id": "dr-video", "global_key": VIDEO, "row_data": "https://x/v.mp4"},
        "media_attributes": {"mime_type": "video/mp4", "frame_count": 40, "frame_rate": 25},
        "projects": {
            "p1": {
                "project_details": {"workflow_status": "DONE"},
                "labels": [
                    {
                        "id": "label-video",
                        "label_kind": "Video",
                        "label_details": {"created_by": "ann@example.org"},
                        "annotations": {
                            "frames": {
                                "1": {
                                    "objects": {"obj-probe": box(1.0)},
                                    "classifications": [phase("Reg")],
                                },
                                "11": {"objects": {"obj-probe": box(11.0)}, "classifications": []},
                                "16": {"objects": {}, "classifications": [phase("Cov")]},
                                "35": {
                                    "objects": {},
                                    "classifications": [_radio("artifact", "yes")],
                                },
                            },
                            "segments": {"cls-phase": [[1, 10], [16, 25]], "obj-probe": [[1, 11]]},
                            "key_frame_feature_map": {"cls-phase": {"1": True, "16": True}},
                            "classifications": [_checklist("findings", ["B-lines"])],
                        },
                    }
                ],
            }
        },
    }


def test_video_classifications_spread_over_their_segments(tmp_path: Path) -> None:
    frames = _frames(VIDEO, [0, 5, 10, 15, 20, 25, 30, 34])  # Labelbox frames 1, 6, ..., 35
    result = parse_export_v2_rows(
        [_video_row()],
        project_id="p1",
        frames=frames,
        masks_dir=tmp_path,
        mask_fetcher=None,
        schema=SCHEMA,
    )
    labels = result.frame_labels.to_pandas()
    by_label = {name: sorted(group["frame_number"]) for name, group in labels.groupby("label_name")}
    # phase Reg on Labelbox 1..10 -> frames 0, 5; Cov on 16..25 -> frames 15, 20.
    assert by_label["Reg"] == [0, 5]
    assert by_label["Cov"] == [15, 20]
    # artifact on Labelbox frame 35 only (no segment) -> frame 34.
    assert by_label["artifact"] == [34]
    # video-wide checklist -> every extracted frame.
    assert by_label["B-lines"] == [0, 5, 10, 15, 20, 25, 30, 34]
    assert labels["reviewed"].all()  # workflow DONE


def test_video_objects_land_on_extracted_frames_only(tmp_path: Path) -> None:
    frames = _frames(VIDEO, [0, 5])  # Labelbox frame 11 (frame_number 10) was not extracted
    result = parse_export_v2_rows(
        [_video_row()], project_id="p1", frames=frames, masks_dir=tmp_path, mask_fetcher=None
    )
    objects = result.objects.to_pylist()
    assert [(o["frame_number"], o["bbox_y"]) for o in objects] == [(0, 1.0)]
    assert result.skipped["object on a frame not extracted"] == 1


def test_video_rows_need_the_video_in_the_manifest(tmp_path: Path) -> None:
    result = parse_export_v2_rows(
        [_video_row()],
        project_id="p1",
        frames=_frames("ffffffffffffffff", [0]),
        masks_dir=tmp_path,
        mask_fetcher=None,
    )
    assert result.frame_labels.num_rows == 0 and result.objects.num_rows == 0
    assert [u["reason"] for u in result.unmatched] == ["video not in manifest"]


# ---------------------------------------------------------------- legacy v1


def test_v1_image_export_objects_and_mask(labels_dir: Path, fov_mask_png: bytes, tmp_path: Path):
    export = json.loads((labels_dir / "labelbox_v1_image_export.json").read_text())
    result = parse_export_v1(
        export, frames=None, masks_dir=tmp_path, mask_fetcher=lambda url: fov_mask_png
    )
    objects = result.objects.to_pandas()
    assert Counter(objects["kind"]) == {"bbox": 4, "polygon": 2, "line": 2, "point": 1, "mask": 1}
    assert set(objects["data_row_id"]) == {"ckr083n0e196n0ydk4uyzapvn"}
    assert set(objects["annotator"]) == {"msokoloff+11@labelbox.com"}
    box = objects[objects["feature_id"] == "ckr2k4hvi000a3h69dm0voem2"].iloc[0]
    assert (box["bbox_x"], box["bbox_y"], box["bbox_w"], box["bbox_h"]) == (
        965.0,
        1333.0,
        594.0,
        186.0,
    )
    point = objects[objects["kind"] == "point"].iloc[0]
    assert json.loads(point["points"]) == [[660.353, 140.867]]
    polygon = objects[objects["feature_id"] == "ckr2k3zy300053h69wtr5q1c8"].iloc[0]
    assert len(json.loads(polygon["points"])) == 3
    nested = objects[objects["feature_id"] == "ckr2k50s4000p3h69i0u26pan"].iloc[0]
    assert json.loads(nested["classifications"]) == [{"question": "has_handbag", "answer": "False"}]
    mask_key = "masks/ckr083n0e196n0ydk4uyzapvn/ckr2k459500063h69uiumklz0.png"
    assert result.masks_written == (mask_key,)
    assert np.asarray(Image.open(tmp_path / mask_key)).shape == (1080, 1440)


def test_v1_video_export_maps_frames_from_one_based(labels_dir: Path, tmp_path: Path) -> None:
    export = json.loads((labels_dir / "labelbox_v1_video_export.json").read_text())
    sampled = _frames(VIDEO, list(range(0, 100, 10)))  # every 10th of the 100 labelled frames
    result = parse_export_v1(
        export,
        frames=sampled,
        masks_dir=tmp_path,
        mask_fetcher=None,
        video_aliases={"jellyfish2-100-110.mp4": VIDEO},
    )
    objects = result.objects.to_pandas()
    assert len(objects) == 10 * 5  # 5 jellyfish boxes on each of the 10 extracted frames
    assert sorted(set(objects["frame_number"])) == list(range(0, 100, 10))
    assert set(objects["label_name"]) == {"Jellyfish"}
    first = objects[
        (objects["frame_number"] == 0) & (objects["feature_id"] == "ckqcx1d9x06em0y618b90atyy")
    ].iloc[0]  # Labelbox frameNumber 1
    assert (first["bbox_x"], first["bbox_y"], first["bbox_w"], first["bbox_h"]) == (
        1644.0,
        582.0,
        212.0,
        340.0,
    )
    assert result.skipped["object on a frame not extracted"] == 450


def test_v1_video_with_every_frame_extracted_keeps_all_500_boxes(labels_dir, tmp_path) -> None:
    export = json.loads((labels_dir / "labelbox_v1_video_export.json").read_text())
    result = parse_export_v1(
        export,
        frames=_frames(VIDEO, list(range(100))),
        masks_dir=tmp_path,
        mask_fetcher=None,
        video_aliases={"jellyfish2-100-110.mp4": VIDEO},
    )
    assert result.objects.num_rows == 500
    assert result.frame_labels.num_rows == 0  # the fixture has no classifications


def test_v1_record_without_data_row_id_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(LabelboxExportError, match="record 1 has no 'DataRow ID'"):
        parse_export_v1([{"Label": {}}], frames=None, masks_dir=tmp_path, mask_fetcher=None)


# ---------------------------------------------------------------- upload payloads


def test_data_rows_for_frames_use_frame_id_as_global_key() -> None:
    frames = _frames(VIDEO, [0, 10])
    rows = data_rows_for_frames(frames, lambda rel: f"https://bucket/frames/{rel}")
    assert rows == [
        {
            "row_data": f"https://bucket/frames/video_{VIDEO}/frame_{VIDEO}-0000000.jpg",
            "global_key": f"{VIDEO}-0000000",
            "external_id": f"video_{VIDEO}/frame_{VIDEO}-0000000.jpg",
            "media_type": "IMAGE",
        },
        {
            "row_data": f"https://bucket/frames/video_{VIDEO}/frame_{VIDEO}-0000010.jpg",
            "global_key": f"{VIDEO}-0000010",
            "external_id": f"video_{VIDEO}/frame_{VIDEO}-0000010.jpg",
            "media_type": "IMAGE",
        },
    ]


def test_data_rows_for_frames_rejects_repeated_frames() -> None:
    frames = _frames(VIDEO, [0, 0])
    with pytest.raises(ValueError, match="more than once"):
        data_rows_for_frames(frames, str)


def test_a_malformed_annotation_names_its_row(tmp_path: Path) -> None:
    broken_box = {"feature_id": "b", "name": "probe", "bounding_box": {"top": 1.0}}
    rows = [_image_row(frame_id(VIDEO, 0)), _image_row(frame_id(VIDEO, 10), objects=[broken_box])]
    with pytest.raises(LabelboxExportError, match=r"export row 2: malformed annotation \(KeyError"):
        parse_export_v2_rows(
            rows,
            project_id="p1",
            frames=_frames(VIDEO, [0, 10]),
            masks_dir=tmp_path,
            mask_fetcher=None,
        )
