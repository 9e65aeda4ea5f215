"""Jobs: the per-video pipeline, the per-study DICOM pipeline, label sheets, and the export."""

from __future__ import annotations

import dagster as dg

from medvid_assets.partitions import study_partitions, video_partitions

VIDEO_PIPELINE_ASSETS = [
    "raw_videos",
    "video_metadata",
    "normalized_videos",
    "video_ocr_text",
    "video_redaction_plan",
    "video_frames",
    "frame_labels",
    "segment_labels",
]

video_pipeline = dg.define_asset_job(
    "video_pipeline",
    selection=dg.AssetSelection.assets(*VIDEO_PIPELINE_ASSETS),
    partitions_def=video_partitions,
    description="Everything for one video: raw copy, metadata, normalized clips, OCR of burned-in"
    " text and its redaction plan, de-identified frames, labels.",
)

DICOM_PIPELINE_ASSETS = ["dicom_instances", "dicom_pixels", "dicom_ocr_text", "dicom_images"]

dicom_pipeline = dg.define_asset_job(
    "dicom_pipeline",
    selection=dg.AssetSelection.assets(*DICOM_PIPELINE_ASSETS),
    partitions_def=study_partitions,
    description="Everything for one DICOM study: de-identified header table, decoded pixels"
    " (cine loops go on to the video pipeline), OCR, de-identified images.",
)

labels_job = dg.define_asset_job(
    "labels_job",
    selection=dg.AssetSelection.assets("label_sheets"),
    description="Copy, validate and merge the label and patient sheets.",
)

export_job = dg.define_asset_job(
    "export_job",
    selection=dg.AssetSelection.assets(
        "training_dataset", "quarantine", "dicom_studies", "pseudonym_map"
    ),
    description="Write the training dataset, the quarantine table and the study table.",
)

cold_label_queue_job = dg.define_asset_job(
    "cold_label_queue_job",
    selection=dg.AssetSelection.assets("cold_label_queue"),
    description="Pick K frames per video for a person to label (cold label).",
)

cold_label_answers_job = dg.define_asset_job(
    "cold_label_answers_job",
    selection=dg.AssetSelection.assets("cold_label_answers"),
    description="Read the answers a person wrote in the cold-label queue (and Labelbox).",
)

label_model_job = dg.define_asset_job(
    "label_model_job",
    selection=dg.AssetSelection.assets("label_model"),
    description="Train the label model: cold (on the answers) or blitz (on reviewed labels).",
)

predict_job = dg.define_asset_job(
    "predict_job",
    selection=dg.AssetSelection.assets("predicted_labels"),
    partitions_def=video_partitions,
    description="Predict the labels of one video with the current label model (gpu pool).",
)

custom_model_job = dg.define_asset_job(
    "custom_model_job",
    selection=dg.AssetSelection.assets("custom_model_labels"),
    partitions_def=video_partitions,
    description="Label one video with a custom model callable (gpu pool).",
)

labelbox_upload_job = dg.define_asset_job(
    "labelbox_upload_job",
    selection=dg.AssetSelection.assets("labelbox_uploads"),
    partitions_def=video_partitions,
    description="Upload one video's frames to the Labelbox project.",
)

labelbox_retrieve_job = dg.define_asset_job(
    "labelbox_retrieve_job",
    selection=dg.AssetSelection.assets("labelbox_labels"),
    description="Export the Labelbox project, archive the export, parse labels and masks.",
)

evaluation_job = dg.define_asset_job(
    "label_prediction_evaluation_job",
    selection=dg.AssetSelection.assets("label_prediction_evaluation"),
    description="Evaluate cold and blitz label on the lung-ultrasound clips (gpu pool).",
)

#: The jobs of labels, Labelbox and prediction.
LABEL_JOBS = [
    cold_label_queue_job,
    cold_label_answers_job,
    label_model_job,
    predict_job,
    custom_model_job,
    labelbox_upload_job,
    labelbox_retrieve_job,
    evaluation_job,
]
