"""The Labelbox round trip as assets, against the hand-written fake of the SDK client: frames of
exportable videos up as data rows (idempotent, in batches), project exports back as archived
NDJSON, label sets, objects and mask PNGs. No network.

Export rows are the real export v2 fixture (``shared/data/labels``), re-keyed to our frames,
plus classifications, a review state, masks (the real endoscope field-of-view mask) and a video
data row in the documented export v2 shape."""

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medvid.catalog.keys import table_key
from medvid.ids import frame_id
from medvid.labels.labelbox import read_export_ndjson
from medvid.quarantine import quarantine_input
from tests.fakes.labelbox_fake import FakeLabelboxClient
from tests.stages.conftest import AVI, MP4
from tests.stages.label_pipeline import (
    LABELBOX_PROJECT,
    Processed,
    fake_labelbox,
    materialize,
    member_metadata,
    open_copy,
    process_clips,
)

LABEL_IDS = {"b_lines": 0, "a_lines": 1}
MASK_URL = "https://api.labelbox.com/api/v1/projects/p/masks/{}"


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory, videos_dir: Path) -> Processed:
    return process_clips(
        tmp_path_factory.mktemp("labelbox"),
        videos_dir,
        [AVI, MP4],
        labels_config={"label_ids": LABEL_IDS},
    )


@pytest.fixture(scope="module")
def fixture_rows(shared_data: Path) -> list[dict[str, Any]]:
    return list(
        read_export_ndjson(shared_data / "labels" / "labelformat_labelbox_export_v2.ndjson")
    )


@pytest.fixture(scope="module")
def fov_mask(shared_data: Path) -> bytes:
    return (shared_data / "labels" / "endoseg_exemplary_seg.png").read_bytes()


def _radio(question: str, answer: str) -> dict[str, Any]:
    return {
        "feature_id": f"cls-{question}-{answer}",
        "name": question,
        "radio_answer": {"name": answer, "classifications": []},
    }


def _image_row(
    template: dict[str, Any], global_key: str, answer: str, *, done: bool
) -> dict[str, Any]:
    """The fixture's data row re-keyed to one of our frames, with its real boxes, a finding
    classification, a mask, and a review state (workflow Done, or in review)."""
    row = copy.deepcopy(template)
    row["data_row"]["global_key"] = global_key
    project = row["projects"][LABELBOX_PROJECT]
    project["project_details"] = {"workflow_status": "DONE" if done else "IN_REVIEW"}
    label = project["labels"][0]
    label["label_details"] = {
        "created_by": "reader@example.org",
        "created_at": "2024-05-02T10:00:00.000+00:00",
        "updated_at": "2024-05-03T11:00:00.000+00:00",
        "reviews": [],
    }
    label["annotations"]["classifications"] = [
        _radio("finding", answer),
        _radio("other", "pneumothorax"),  # not in the project's label schema
    ]
    label["annotations"]["objects"].append(
        {
            "feature_id": f"mask-{global_key}",
            "feature_schema_id": "fov",
            "name": "field of view",
            "annotation_kind": "ImageSegmentationMask",
            "classifications": [],
            "mask": {"url": MASK_URL.format(global_key)},
        }
    )
    return row


def _video_row(external_id: str) -> dict[str, Any]:
    """A video data row named by its file name: 'b_lines' on Labelbox frames 1-26."""
    finding = _radio("finding", "b_lines")
    return {
        "data_row": {"id": "dr-video", "external_id": external_id, "row_data": "https://x/v"},
        "media_attributes": {"mime_type": "video/mp4", "frame_count": 123, "frame_rate": 25},
        "projects": {
            LABELBOX_PROJECT: {
                "project_details": {"workflow_status": "DONE"},
                "labels": [
                    {
                        "id": "label-video",
                        "label_kind": "Video",
                        "label_details": {"created_by": "reader@example.org"},
                        "annotations": {
                            "frames": {"1": {"objects": {}, "classifications": [finding]}},
                            "segments": {"cls-finding-b_lines": [[1, 26]]},
                            "key_frame_feature_map": {},
                            "classifications": [],
                        },
                    }
                ],
            }
        },
    }


def _export_rows(processed: Processed, fixture_rows: list[dict[str, Any]]) -> list[dict]:
    avi = processed.video_ids[AVI]
    return [
        _image_row(fixture_rows[0], frame_id(avi, 0), "b_lines", done=True),
        _image_row(fixture_rows[1], frame_id(avi, 10), "a_lines", done=False),
        _video_row(MP4),
    ]


# --- upload ------------------------------------------------------------------------------------


def test_upload_creates_a_data_row_per_live_frame_keyed_by_frame_id(
    processed: Processed, tmp_path: Path
) -> None:
    avi = processed.video_ids[AVI]
    fake = FakeLabelboxClient(project_id=LABELBOX_PROJECT)
    with open_copy(processed, tmp_path, fake_labelbox(fake)) as (instance, resources, home):
        result = materialize(instance, resources, "labelbox_uploads", member=avi)
        record = json.loads((home / "labelbox" / "uploads" / f"{avi}.json").read_text())
        metadata = member_metadata(resources, "labelbox_uploads", avi)
    keys = [frame_id(avi, n) for n in range(0, 92, 10)]
    assert [row["global_key"] for row in fake.created_rows] == keys
    for key in keys:  # row data: the de-identified frame file, which the SDK uploads
        path = Path(fake.data_rows[key]["row_data"])
        assert path.is_relative_to(tmp_path / "home" / "media" / "frames")
        assert path.name == f"frame_{key}.jpg" and fake.data_rows[key]["media_type"] == "IMAGE"
    [batch] = fake.batches
    assert batch.name.startswith(f"medvid-{avi}-") and batch.global_keys == keys
    assert result.success
    assert (metadata["created"], metadata["already_present"]) == (10, 0)
    assert record["global_keys"] == keys


def test_re_running_an_upload_creates_nothing_new(processed: Processed, tmp_path: Path) -> None:
    avi = processed.video_ids[AVI]
    fake = FakeLabelboxClient(project_id=LABELBOX_PROJECT)
    with open_copy(processed, tmp_path, fake_labelbox(fake)) as (instance, resources, _):
        materialize(instance, resources, "labelbox_uploads", member=avi)
        again = materialize(instance, resources, "labelbox_uploads", member=avi)
        metadata = member_metadata(resources, "labelbox_uploads", avi)
    assert again.success
    assert len(fake.calls_named("create_data_rows")) == 1
    assert len(fake.calls_named("create_batch")) == 1 and len(fake.created_rows) == 10
    assert (metadata["created"], metadata["already_present"]) == (0, 10)


def test_the_cold_label_queue_can_be_a_labelbox_project(
    processed: Processed, tmp_path: Path
) -> None:
    mp4 = processed.video_ids[MP4]
    fake = FakeLabelboxClient(project_id=LABELBOX_PROJECT)
    with open_copy(processed, tmp_path, fake_labelbox(fake)) as (instance, resources, _):
        materialize(
            instance,
            resources,
            "cold_label_queue",
            run_config={"ops": {"cold_label_queue": {"config": {"frames_per_video": 3}}}},
        )
        materialize(
            instance,
            resources,
            "labelbox_uploads",
            member=mp4,
            run_config={"ops": {"labelbox_uploads": {"config": {"frames": "queue"}}}},
        )
    # 13 live frames, K = 3: positions 0, 4, 8 -> frames 0, 40, 80
    assert [row["global_key"] for row in fake.created_rows] == [
        frame_id(mp4, n) for n in (0, 40, 80)
    ]


def test_a_video_that_may_not_leave_medvid_is_not_uploaded(
    processed: Processed, tmp_path: Path
) -> None:
    avi = processed.video_ids[AVI]
    fake = FakeLabelboxClient(project_id=LABELBOX_PROJECT)
    with open_copy(processed, tmp_path, fake_labelbox(fake)) as (instance, resources, _):
        quarantine_input(
            resources["media_store"],
            content_id=avi,
            file=AVI,
            stage="test",
            reason="held back",
            error_type="MedvidInputError",
        )
        result = materialize(instance, resources, "labelbox_uploads", member=avi)
    assert fake.calls == []  # quarantined: skipped, nothing leaves medvid
    metadata = result.asset_materializations_for_node("labelbox_uploads")[0].metadata
    assert (metadata["processed"].value, metadata["skipped"].value) == (0, 1)


# --- retrieve ----------------------------------------------------------------------------------


def test_retrieval_is_archived_and_parsed_into_label_sets_objects_and_masks(
    processed: Processed, tmp_path: Path, fixture_rows, fov_mask: bytes
) -> None:
    avi, mp4 = processed.video_ids[AVI], processed.video_ids[MP4]
    rows = _export_rows(processed, fixture_rows)
    masks = {MASK_URL.format(frame_id(avi, n)): fov_mask for n in (0, 10)}
    fake = FakeLabelboxClient(project_id=LABELBOX_PROJECT, export_rows=rows)
    with open_copy(processed, tmp_path, fake_labelbox(fake, masks)) as (instance, resources, home):
        result = materialize(instance, resources, "labelbox_labels")
        labels = pd.read_parquet(home / table_key("labelbox_labels"))
        objects = pd.read_parquet(home / table_key("labelbox_objects"))
        [archive] = sorted((home / "labelbox" / "exports").iterdir())
        archived = [json.loads(line) for line in archive.read_text().splitlines()]
        key = frame_id(avi, 0)
        mask = np.asarray(Image.open(home / "media" / "masks" / key / f"mask-{key}.png"))
    assert archived == rows
    (export_call,) = fake.calls_named("export")
    assert export_call["params"]["label_details"] is True
    positives = labels[labels["value"]]
    got = sorted(
        zip(positives["frame_id"], positives["label_name"], positives["reviewed"], strict=True)
    )
    assert got == sorted(
        [
            (frame_id(avi, 0), "b_lines", True),  # workflow Done
            (frame_id(avi, 10), "a_lines", False),  # still in review
            (frame_id(mp4, 0), "b_lines", True),  # video: Labelbox frames 1-26 -> 0, 10, 20
            (frame_id(mp4, 10), "b_lines", True),
            (frame_id(mp4, 20), "b_lines", True),
        ]
    )
    assert set(labels["source"]) == {"labelbox"} and set(labels["label_id"]) <= {0, 1}
    boxes = objects[objects["kind"] == "bbox"]
    assert len(boxes) == 16 and set(boxes["frame_id"]) == {frame_id(avi, 0), frame_id(avi, 10)}
    assert sorted(objects.loc[objects["kind"] == "mask", "mask_relative_path"]) == [
        f"masks/{frame_id(avi, n)}/mask-{frame_id(avi, n)}.png" for n in (0, 10)
    ]
    assert mask.shape == (1080, 1440) and set(np.unique(mask)) == {0, 255}
    metadata = result.asset_materializations_for_node("labelbox_labels")[0].metadata
    assert metadata["unknown_labels"].value == {"pneumothorax": 2}
    assert metadata["masks"].value == 2 and metadata["unmatched_data_rows"].value == 0


def test_every_retrieval_is_a_new_archive_and_the_api_key_stays_out_of_the_logs(
    processed: Processed, tmp_path: Path, fixture_rows, fov_mask: bytes
) -> None:
    avi = processed.video_ids[AVI]
    rows = _export_rows(processed, fixture_rows)
    masks = {MASK_URL.format(frame_id(avi, n)): fov_mask for n in (0, 10)}
    fake = FakeLabelboxClient(project_id=LABELBOX_PROJECT, export_rows=rows)
    labelbox = fake_labelbox(fake, masks)
    with open_copy(processed, tmp_path, labelbox) as (instance, resources, home):
        first = materialize(instance, resources, "labelbox_labels")
        archive = next((home / "labelbox" / "exports").iterdir())
        content = archive.read_bytes()
        second = materialize(instance, resources, "labelbox_labels")
        archives = sorted((home / "labelbox" / "exports").iterdir())
        logs = "\n".join(
            str(record.user_message)
            for result in (first, second)
            for record in instance.all_logs(result.run_id)
        )
    assert len(archives) == 2 and archive.read_bytes() == content
    assert labelbox.api_key not in logs
