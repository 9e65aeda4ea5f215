"""The labels, Labelbox and prediction stages in the one Definitions: they load without any
Labelbox setting, and the asset graph keeps its names and lineage (a rename shows up here)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from medvid_assets.definitions import build_definitions
from medvid_assets.jobs import LABEL_JOBS

LABEL_ASSETS = {
    "label_sheets": set(),
    "frame_labels": {"video_frames", "label_sheets"},
    "segment_labels": {"video_frames", "label_sheets"},
    "labelbox_uploads": {"video_frames", "cold_label_queue"},
    "labelbox_labels": {"labelbox_uploads", "label_sheets"},
    "cold_label_queue": {"video_frames"},
    "cold_label_answers": {"cold_label_queue", "labelbox_labels"},
    "label_model": {"cold_label_answers", "frame_labels", "segment_labels", "labelbox_labels"},
    "predicted_labels": {"label_model", "video_frames"},
    "custom_model_labels": {"video_frames"},
    "label_prediction_evaluation": {"video_frames"},
}


def test_definitions_load_without_labelbox_settings(tmp_path: Path, monkeypatch) -> None:
    for name in ("LABELBOX_API_KEY", "MEDVID_LABELBOX_PROJECT_ID", "MEDVID_LABELBOX_DATASET"):
        monkeypatch.delenv(name, raising=False)
    defs = build_definitions(tmp_path)
    dg.Definitions.validate_loadable(defs)
    assert {"labelbox", "torch_device"} <= set(defs.resources)
    for job in LABEL_JOBS:
        assert defs.resolve_job_def(job.name).name == job.name


def test_label_assets_keep_their_names_and_upstreams(tmp_path: Path) -> None:
    graph = build_definitions(tmp_path).resolve_asset_graph()
    for name, upstream in LABEL_ASSETS.items():
        node = graph.get(dg.AssetKey(name))
        parents = {key.to_user_string() for key in node.parent_keys}
        assert upstream <= parents, (name, parents)
    export_parents = {
        key.to_user_string() for key in graph.get(dg.AssetKey("training_dataset")).parent_keys
    }
    assert {
        "frame_labels",
        "segment_labels",
        "labelbox_labels",
        "cold_label_answers",
        "predicted_labels",
        "custom_model_labels",
    } <= export_parents
