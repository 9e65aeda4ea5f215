"""Jobs: the per-video pipeline, label sheets, and the export."""

from __future__ import annotations

import dagster as dg

from medvid_assets.partitions import video_partitions

VIDEO_PIPELINE_ASSETS = [
    "raw_videos",
    "video_metadata",
    "normalized_videos",
    "video_frames",
    "frame_labels",
]

video_pipeline = dg.define_asset_job(
    "video_pipeline",
    selection=dg.AssetSelection.assets(*VIDEO_PIPELINE_ASSETS),
    partitions_def=video_partitions,
    description="Everything for one video: raw copy, metadata, normalized clips, frames, labels.",
)

labels_job = dg.define_asset_job(
    "labels_job",
    selection=dg.AssetSelection.assets("label_sheets"),
    description="Copy, validate and merge the label and patient sheets.",
)

export_job = dg.define_asset_job(
    "export_job",
    selection=dg.AssetSelection.assets("training_dataset", "quarantine"),
    description="Write the training dataset and the quarantine table.",
)
