"""Export additions: multilabel vectors with label masks, the PyTorch Dataset reading them, the
single JSON dataset file, and which label sets (predictions only when reviewed) go in.

The export is the one of ``test_export.py``: real lung-ultrasound JPEG frames of four videos,
labels sheet ranges for ``b_lines`` (id 0) and ``pleural effusion`` (id 1), plus one
unreviewed model row that disagrees with the sheet.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from torch.utils.data import DataLoader

from medvid.export import ExportConfig, export_labels, verify_export, write_training_dataset
from medvid.export.torch_dataset import MultilabelFrameDataset
from medvid.ids import frame_id
from medvid.labels.schema import FRAME_LABELS_SCHEMA
from tests.core.test_export import (  # the helpers of the export tests
    P1,
    VA,
    VB,
    VC,
    VD,
    _export,
    _frame_table,
    _label_table,
    _video_table,
)
from tests.core.test_export import frames_root as export_frames_root

frames_root = export_frames_root  # the export tests' frames, as this module's fixture

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def _frames_by_id(out: Path) -> dict[str, dict]:
    document = json.loads((out / "multilabel.json").read_text())
    return {f["frame_id"]: f for f in document["frames"]}


# --- multilabel.json ---------------------------------------------------------------------------


def test_multilabel_vector_and_mask_follow_the_answers_per_frame(
    tmp_path: Path, frames_root: Path
) -> None:
    _export(tmp_path / "ds", frames_root)
    document = json.loads((tmp_path / "ds" / "multilabel.json").read_text())
    assert document["labels"] == [
        {"label_id": 0, "label_name": "b_lines"},
        {"label_id": 1, "label_name": "pleural effusion"},
    ]
    frames = _frames_by_id(tmp_path / "ds")
    # VA uses both labels: b_lines on [0, 0.4] s (the sheet beats the model's "false")
    assert (frames[frame_id(VA, 0)]["label_vector"], frames[frame_id(VA, 0)]["label_mask"]) == (
        [1, 0],
        [1, 1],
    )
    assert frames[frame_id(VA, 20)]["label_vector"] == [0, 1]  # 0.8 s: effusion
    # VB's sheet rows only use b_lines (from 0.2 s): effusion is unknown, masked out
    assert (frames[frame_id(VB, 0)]["label_vector"], frames[frame_id(VB, 0)]["label_mask"]) == (
        [0, 0],
        [1, 0],
    )
    assert frames[frame_id(VB, 5)]["label_vector"] == [1, 0]
    assert (frames[frame_id(VD, 10)]["label_vector"], frames[frame_id(VD, 10)]["label_mask"]) == (
        [0, 1],
        [0, 1],
    )
    assert frame_id(VA, 25) not in frames  # dead frame, not exported
    assert len(frames) == 23


def test_a_project_label_schema_fixes_vector_positions(tmp_path: Path, frames_root: Path) -> None:
    frames = _frame_table()
    write_training_dataset(
        tmp_path / "ds",
        frames=frames,
        labels=_label_table(frames),
        videos=_video_table(),
        frames_root=frames_root,
        config=ExportConfig(dataset_name="lung", val_ratio=0.3),
        medvid_version="0.1.0",
        label_schema={"consolidation": 0, "b_lines": 7, "pleural effusion": 3},
    )
    document = json.loads((tmp_path / "ds" / "multilabel.json").read_text())
    assert [x["label_name"] for x in document["labels"]] == [
        "consolidation",
        "pleural effusion",
        "b_lines",
    ]
    frame = _frames_by_id(tmp_path / "ds")[frame_id(VA, 0)]
    assert (frame["label_vector"], frame["label_mask"]) == ([0, 0, 1], [0, 1, 1])
    assert verify_export(tmp_path / "ds") == []


def test_verify_reports_a_malformed_multilabel_vector(tmp_path: Path, frames_root: Path) -> None:
    _export(tmp_path / "ds", frames_root)
    path = tmp_path / "ds" / "multilabel.json"
    document = json.loads(path.read_text())
    document["frames"][0]["label_vector"] = [1]
    path.write_text(json.dumps(document))
    assert verify_export(tmp_path / "ds") == [
        f"multilabel.json: 1 frame(s) with a malformed vector or mask "
        f"(e.g. {document['frames'][0]['frame_id']})"
    ]


# --- the PyTorch Dataset -----------------------------------------------------------------------


def test_dataset_items_are_image_vector_and_mask_of_one_split(
    tmp_path: Path, frames_root: Path
) -> None:
    summary = _export(tmp_path / "ds", frames_root)
    train = MultilabelFrameDataset(tmp_path / "ds", split="train")
    val = MultilabelFrameDataset(tmp_path / "ds", split="val")
    assert len(train) + len(val) == summary.n_frames
    assert {f["video_id"] for f in train.frames} == {
        v for v, s in summary.splits.items() if s == "train"
    }
    assert train.labels == ("b_lines", "pleural effusion")
    image, vector, mask = train[0]
    assert image.dtype == torch.float32 and image.shape[0] == 3
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert vector.tolist() == [float(v) for v in train.frames[0]["label_vector"]]
    assert mask.tolist() == [float(m) for m in train.frames[0]["label_mask"]]


def test_dataset_batches_with_a_masked_loss(tmp_path: Path, frames_root: Path) -> None:
    _export(tmp_path / "ds", frames_root)
    dataset = MultilabelFrameDataset(tmp_path / "ds", input_size=64)
    images, vectors, masks = next(iter(DataLoader(dataset, batch_size=8)))
    assert images.shape == (8, 3, 64, 64)
    assert vectors.shape == masks.shape == (8, 2)
    logits = torch.zeros_like(vectors, requires_grad=True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, vectors, reduction="none")
    (loss * masks).sum().backward()
    assert torch.equal(logits.grad == 0, masks == 0)  # unknown labels give no gradient


def test_dataset_rejects_a_folder_without_multilabel_json(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multilabel.json"):
        MultilabelFrameDataset(tmp_path)


# --- dataset.json ------------------------------------------------------------------------------


def test_dataset_json_holds_the_whole_dataset(tmp_path: Path, frames_root: Path) -> None:
    summary = _export(tmp_path / "ds", frames_root)
    document = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert list(document)[:6] == [
        "schema_version",
        "dataset_id",
        "dataset_name",
        "dataset_type",
        "model_type",
        "created",
    ]
    assert (document["schema_version"], document["dataset_type"]) == (1, "image")
    assert document["frame_annotations"] == json.loads(
        (tmp_path / "ds" / "annotations.json").read_text()
    )
    assert document["summary"]["n_frames"] == summary.n_frames
    assert document["summary"]["n_annotations"] == summary.n_annotations == 29
    videos = {v["video_id"]: v for v in document["videos"]}
    assert sorted(videos) == sorted([VA, VB, VC, VD])
    assert videos[VB]["patient_id"] == P1 and videos[VB]["split"] == summary.splits[VB]
    assert videos[VB]["positive_frames"] == {"b_lines": 5}
    assert videos[VA]["attributes"] == {"diagnosis": "covid"}
    assert "Doe_John" not in (tmp_path / "ds" / "dataset.json").read_text()


def test_dataset_id_is_stable_and_changes_with_a_label(tmp_path: Path, frames_root: Path) -> None:
    _export(tmp_path / "one", frames_root)
    _export(tmp_path / "two", frames_root)
    ids = [
        json.loads((tmp_path / n / "dataset.json").read_text())["dataset_id"]
        for n in ("one", "two")
    ]
    frames = _frame_table()
    labels = _label_table(frames)
    labels.loc[3, "value"] = not labels.loc[3, "value"]
    write_training_dataset(
        tmp_path / "three",
        frames=frames,
        labels=labels,
        videos=_video_table(),
        frames_root=frames_root,
        config=ExportConfig(dataset_name="lung", val_ratio=0.3, imagefolder_skip=2),
        medvid_version="0.1.0",
        sampling_config={"every_nth_frame": 5},
    )
    third = json.loads((tmp_path / "three" / "dataset.json").read_text())["dataset_id"]
    assert ids[0] == ids[1] != third
    assert len(third) == 16


def test_verify_reports_dataset_json_rows_that_differ(tmp_path: Path, frames_root: Path) -> None:
    _export(tmp_path / "ds", frames_root)
    path = tmp_path / "ds" / "dataset.json"
    document = json.loads(path.read_text())
    document["frame_annotations"].pop()
    path.write_text(json.dumps(document))
    assert verify_export(tmp_path / "ds") == [
        "dataset.json frame_annotations differ from annotations.csv"
    ]


# --- which label sets go in --------------------------------------------------------------------


def _labels(*rows: tuple[str, str, bool, bool]) -> pa.Table:
    """Rows of frame VA-0, label b_lines: (source, annotator, value, reviewed)."""
    return pa.Table.from_pylist(
        [
            {
                "frame_id": frame_id(VA, 0),
                "video_id": VA,
                "frame_number": 0,
                "frame_timestamp": 0.0,
                "label_name": "b_lines",
                "label_id": 0,
                "value": value,
                "float_value": 0.8 if source.startswith("model:") else None,
                "source": source,
                "confidence": 0.8 if source.startswith("model:") else 1.0,
                "annotator": annotator,
                "reviewed": reviewed,
                "reviewer": "Dr A" if reviewed else None,
                "date_created": NOW,
                "date_modified": NOW,
            }
            for source, annotator, value, reviewed in rows
        ],
        schema=FRAME_LABELS_SCHEMA,
    )


def test_unreviewed_predictions_are_left_out_by_default() -> None:
    chosen = export_labels([_labels(("model:m1", "m1", True, False))])
    assert chosen.labels.num_rows == 0
    assert chosen.unreviewed_predictions_dropped == 1


def test_a_reviewed_prediction_beats_an_unreviewed_segment() -> None:
    chosen = export_labels(
        [_labels(("segment", "sheet.csv", False, False)), _labels(("model:m1", "m1", True, True))]
    )
    assert chosen.labels.column("source").to_pylist() == ["model:m1"]
    assert chosen.unreviewed_predictions_dropped == 0


def test_predictions_asked_for_explicitly_are_exported_by_model_id() -> None:
    sets = [_labels(("model:m1", "m1", True, False)), _labels(("model:m2", "m2", False, False))]
    only_m2 = export_labels(sets, model_ids=["m2"])
    assert only_m2.labels.column("source").to_pylist() == ["model:m2"]
    assert only_m2.unreviewed_predictions_dropped == 1
    every = export_labels(sets, include_predictions=True)
    assert every.labels.num_rows == 1 and every.unreviewed_predictions_dropped == 0


def test_a_human_label_beats_an_unreviewed_prediction_asked_for() -> None:
    chosen = export_labels(
        [_labels(("model:m1", "m1", True, False)), _labels(("sheet", "labels.csv", False, True))],
        include_predictions=True,
    )
    assert chosen.labels.column("source").to_pylist() == ["sheet"]
