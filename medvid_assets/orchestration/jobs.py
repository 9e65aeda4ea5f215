"""The jobs medvid launches (from its sensors, its schedule, the ``medvid`` command or the UI).

Jobs select assets by key, so this module imports no stage. Every job's assets read their
settings from the home config (unset launchpad fields mean "as in medvid.yaml").
"""

from __future__ import annotations

import dagster as dg

from medvid.memory import release_free_heap
from medvid_assets.executors import GPU_RUN_TAGS
from medvid_assets.partitions import batch_partitions, landing_days

INTAKE_ASSETS = ["landing_intake"]
DICOM_ASSETS = ["dicom_instances", "dicom_pixels", "dicom_ocr_text", "dicom_images"]
VIDEO_ASSETS = [
    "raw_videos",
    "video_metadata",
    "normalized_videos",
    "video_redaction_plan",
    "video_frames",
]
BATCH_PIPELINE_ASSETS = [*DICOM_ASSETS, *VIDEO_ASSETS]
#: The asset whose materialization of a batch means the batch is through the pipeline.
BATCH_TERMINAL_ASSET = "video_frames"
LABEL_ASSETS = ["label_sheets", "frame_labels", "segment_labels"]
EXPORT_ASSETS = [
    "duplicate_groups",
    "fields_of_view",
    "image_marks",
    "probe_orientation",
    "training_dataset",
    "quarantine",
    "dicom_studies",
    "pseudonym_map",
]


@dg.success_hook(name="release_free_heap_after_step")
def _release_after_success(_context: dg.HookContext) -> None:
    release_free_heap()


@dg.failure_hook(name="release_free_heap_after_failed_step")
def _release_after_failure(_context: dg.HookContext) -> None:
    release_free_heap()


#: Every job's hooks: after each step, success or failure, the heap the step freed goes back to
#: the operating system (:func:`medvid.memory.release_free_heap`), so the next step's peak does
#: not land on top of the last one's detector activations. Steps of the in-process executor
#: share one process; the multiprocess executor's steps each have their own anyway.
STEP_HOOKS = {_release_after_success, _release_after_failure}


def _job(name: str, assets: list[str], description: str, partitions_def=None, **kwargs):
    return dg.define_asset_job(
        name,
        selection=dg.AssetSelection.assets(*assets),
        partitions_def=partitions_def,
        description=description,
        hooks=STEP_HOOKS,
        **kwargs,
    )


intake_job = _job(
    "intake_job",
    INTAKE_ASSETS,
    "Take in one day's landing files: copy, verify, classify, index, record outcomes.",
    landing_days,
)
batch_pipeline = _job(
    "batch_pipeline",
    BATCH_PIPELINE_ASSETS,
    "Everything for one batch (a day's shard of arrivals), study by study and video by video:"
    " de-identified DICOM headers, decoded pixels (cine loops join the batch's videos), OCR and"
    " de-identified images; protected raw copies, metadata, normalized clips, burned-in text"
    " found over the whole video and its redaction plan, de-identified frames.",
    batch_partitions,
)
labels_job = _job(
    "labels_job",
    LABEL_ASSETS,
    "Read the current version of every sheet, the label schema, and every video's frame labels"
    " from labels and segments sheets.",
)
export_job = _job(
    "export_job",
    EXPORT_ASSETS,
    "Group duplicate images, find each video's field of view and the marks on each still,"
    " then write the training dataset, the quarantine table and the study table.",
)
label_model_job = _job(
    "label_model_job",
    ["label_model"],
    "Train the label model: cold (on the answers) or blitz (on reviewed labels).",
    tags=GPU_RUN_TAGS,
)
pretrained_backbone_job = _job(
    "pretrained_backbone_job",
    ["pretrained_backbone"],
    "Pretrain a backbone with SimCLR on every extracted frame (no labels); label_model starts"
    " from it with backbone: pretrained (gpu pool). Launched by hand, never by the planner.",
    tags=GPU_RUN_TAGS,
)
evaluation_job = _job(
    "evaluation_job",
    ["label_prediction_evaluation"],
    "Evaluate label prediction on new patients: grouped k-fold by patient over the reviewed"
    " labels, cold and blitz label budgets against the majority baseline (gpu pool). Launched by"
    " hand, never by the planner.",
    tags=GPU_RUN_TAGS,
)
predict_job = _job(
    "predict_job",
    ["predicted_labels"],
    "Predict the labels of a batch's videos with the current label model (gpu pool).",
    batch_partitions,
    tags=GPU_RUN_TAGS,
)
custom_model_job = _job(
    "custom_model_job",
    ["custom_model_labels"],
    "Label a batch's videos with a custom model callable (gpu pool).",
    batch_partitions,
    tags=GPU_RUN_TAGS,
)
cold_label_queue_job = _job(
    "cold_label_queue_job",
    ["cold_label_queue"],
    "Pick K frames per video for a person to label (cold label).",
)
cold_label_answers_job = _job(
    "cold_label_answers_job",
    ["cold_label_answers"],
    "Read the answers a person wrote in the cold-label queue (and Labelbox).",
)
labelbox_upload_job = _job(
    "labelbox_upload_job",
    ["labelbox_uploads"],
    "Upload a batch's frames to the Labelbox project.",
    batch_partitions,
)
labelbox_retrieve_job = _job(
    "labelbox_retrieve_job",
    ["labelbox_labels"],
    "Export the Labelbox project, archive the export, parse labels and masks.",
)
JOBS = [
    intake_job,
    batch_pipeline,
    labels_job,
    export_job,
    label_model_job,
    pretrained_backbone_job,
    evaluation_job,
    predict_job,
    custom_model_job,
    cold_label_queue_job,
    cold_label_answers_job,
    labelbox_upload_job,
    labelbox_retrieve_job,
]
