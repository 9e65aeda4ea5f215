"""The export stage: a training dataset folder under ``<home>/exports/<dataset_name>/``, built
only from de-identified sources (normalized media, never raw), with asset checks that block a
dataset a loader would choke on.

:func:`exportable_video_ids` is the one gate for anything that leaves medvid: the export and
the Labelbox upload both take their videos from it."""

import base64
import io
import json

import dagster as dg
import matplotlib
import pandas as pd
from dagster import AssetExecutionContext

import medvid
from medvid.export.dataset import ExportConfig, write_training_dataset
from medvid.export.images import IMAGE_COLUMNS
from medvid.export.labelsets import export_labels
from medvid.export.verify import verify_export
from medvid.frames.extract import FRAME_MANIFEST_SCHEMA
from medvid.labels.schema import FRAME_LABELS_SCHEMA
from medvid_assets.deid import DICOM_IMAGES_PREFIX, study_deidentified, video_deidentified
from medvid_assets.frames import SAMPLING_METADATA_KEY, frame_count_check, read_frame_manifest
from medvid_assets.labels import (
    frame_labels,
    label_sets_of_videos,
    read_label_schema,
    read_patients,
    segment_labels,
    video_names,
)
from medvid_assets.landing import read_ledger_entry
from medvid_assets.partitions import study_partitions, video_partitions
from medvid_assets.quarantine import quarantined_record
from medvid_assets.storage import EXPORTS_PREFIX, read_table, table_key
from medvid_assets.videos import read_video_metadata
from medvid_resources import MediaStore

matplotlib.use("Agg")

EXPORT_CHECKS = (
    "has_annotations",
    "frame_paths_resolve",
    "no_patient_in_two_splits",
    "frame_counts_match_sampling",
    "export_is_sound",
)


class TrainingDatasetConfig(dg.Config):
    """What goes into the exported training dataset.

    dataset_name: folder under ``<home>/exports/``. val_ratio: fraction of frames (0..1) in the
    validation split, which is drawn by patient (no patient in two splits; a video without a
    patient is its own group) with ``seed``. imagefolder_skip: keep every k-th positive frame
    per video and label in ``imagefolder/``. include_dead / include_disturbed: export frames
    flagged dead (black, blank, uniform, frozen) / disturbed (blurred). link_mode: ``hardlink``
    frames from the media store (falls back to copy across file systems) or ``copy``.
    """

    dataset_name: str = "default"
    val_ratio: float = 0.2
    seed: int = 0
    imagefolder_skip: int = 1
    include_dead: bool = False
    include_disturbed: bool = True
    link_mode: str = "hardlink"
    include_predictions: bool = False
    prediction_model_ids: list[str] = []

    def export_config(self) -> ExportConfig:
        return ExportConfig(
            dataset_name=self.dataset_name,
            val_ratio=self.val_ratio,
            seed=self.seed,
            imagefolder_skip=self.imagefolder_skip,
            include_dead=self.include_dead,
            include_disturbed=self.include_disturbed,
            link_mode=self.link_mode,  # type: ignore[arg-type]
        )


def exportable_video_ids(context: AssetExecutionContext, store: MediaStore) -> list[str]:
    """The one gate for anything that leaves medvid (exports, Labelbox uploads): videos whose
    input is not quarantined, whose frames and labels exist, and whose de-identification passed
    (redacted frames with no residual PHI; for a DICOM cine loop, its study's header check
    too, :func:`medvid_assets.deid.video_deidentified`), in partition order."""
    keys = context.instance.get_dynamic_partitions(video_partitions.name)
    return [
        vid
        for vid in sorted(keys)
        if quarantined_record(store, vid) is None
        and store.exists(table_key("video_frames", vid))
        and store.exists(table_key("frame_labels", vid))
        and video_deidentified(store, vid)
    ]


def exportable_study_keys(context: AssetExecutionContext, store: MediaStore) -> list[str]:
    """Studies whose header and pixel de-identification checks both passed, sorted."""
    keys = context.instance.get_dynamic_partitions(study_partitions.name)
    return [s for s in sorted(keys) if study_deidentified(store, s)]


#: Parsed text fields of ``dicom_images``; exported with a ``text_`` prefix.
_TEXT_FIELDS = [c.removeprefix("text_") for c in IMAGE_COLUMNS if c.startswith("text_")]
#: Columns of ``dicom_instances`` that go into the export's ``images.csv`` (de-identified).
_INSTANCE_EXPORT_COLUMNS = [
    "instance_id",
    "patient_pseudonym",
    *(c for c in IMAGE_COLUMNS[IMAGE_COLUMNS.index("StudyDate") :] if not c.startswith("text_")),
]


def exportable_images(store: MediaStore, studies: list[str]) -> pd.DataFrame:
    """The de-identified still images of ``studies`` as rows for
    :func:`medvid.export.images.images_csv` (``image_id`` is the salted instance id)."""
    tables = []
    for study in studies:
        key = table_key("dicom_images", study)
        if not store.exists(key):
            continue
        images = read_table(store, key).to_pandas()
        instances = read_table(store, table_key("dicom_instances", study)).to_pandas()
        tables.append(
            images.merge(instances[_INSTANCE_EXPORT_COLUMNS], on="instance_id", how="left")
        )
    if not tables:
        return pd.DataFrame(columns=["image_id", "patient_id", "image_relative_path"])
    table = pd.concat(tables, ignore_index=True)
    return table.rename(
        columns={
            "instance_id": "image_id",
            "patient_pseudonym": "patient_id",
            **{name: f"text_{name}" for name in _TEXT_FIELDS},
        }
    )


def dicom_patient_of_video(store: MediaStore, video_id: str) -> str | None:
    """The patient pseudonym of a DICOM cine loop's study (None for other videos)."""
    origin = read_ledger_entry(store, video_id).origin
    if not origin or not origin.get("study_key"):
        return None
    instances = read_table(store, table_key("dicom_instances", origin["study_key"])).to_pandas()
    match = instances[instances["instance_id"] == origin["instance_id"]]
    return str(match["patient_pseudonym"].iloc[0]) if len(match) else None


def label_distribution_plot(counts: dict[str, dict[str, int]]) -> str:
    """A bar chart (PNG, base64 markdown) of positive frames per label and split."""
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(counts).fillna(0).T
    fig, ax = plt.subplots(figsize=(6, 3), dpi=80)
    frame.plot.bar(ax=ax)
    ax.set_ylabel("positive frames")
    ax.set_title("label distribution by split")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return f"![labels](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"


#: Optional label sets: the export reads them when present; their absence or their updates do
#: not hold back or trigger the automatic export (only reviewed predictions are exported, and
#: reviews arrive with the label sheets).
OPTIONAL_LABEL_SETS = (
    "labelbox_labels",
    "cold_label_answers",
    "predicted_labels",
    "custom_model_labels",
)


@dg.asset(
    group_name="export",
    kinds={"csv", "json", "jpeg"},
    deps=[frame_labels, segment_labels, "dicom_images", *OPTIONAL_LABEL_SETS],
    automation_condition=dg.AutomationCondition.eager().ignore(
        dg.AssetSelection.assets(*OPTIONAL_LABEL_SETS)
    ),
    check_specs=[
        dg.AssetCheckSpec(name, asset="training_dataset", blocking=True) for name in EXPORT_CHECKS
    ],
    description="Training dataset folder: annotations.csv/.json (one row per frame-label,"
    " label sets of every source merged), frames/video_<id>/frame_<frame_id>.jpg,"
    " imagefolder/<split>/<label>/, multilabel.json (image path, label vector, label mask),"
    " dataset.json (the dataset as one JSON document), splits.csv (by patient), manifest.json,"
    " and the de-identified still images of DICOM studies (images/, images.csv). Built only from"
    " videos and studies whose de-identification checks passed; predictions only when reviewed"
    " or asked for.",
)
def training_dataset(
    context: AssetExecutionContext, config: TrainingDatasetConfig, media_store: MediaStore
):
    video_ids = exportable_video_ids(context, media_store)
    patients = read_patients(media_store)
    label_sets = label_sets_of_videos(media_store, video_ids)
    frames, labels, videos, sampling, dropped = [], [], [], {}, 0
    for vid in video_ids:
        meta = read_video_metadata(media_store, vid)
        manifest = read_frame_manifest(media_store, vid)
        frames.append(manifest.to_pandas())
        chosen = export_labels(
            label_sets[vid].values(),
            include_predictions=config.include_predictions,
            model_ids=config.prediction_model_ids,
        )
        labels.append(chosen.labels.to_pandas())
        dropped += chosen.unreviewed_predictions_dropped
        match = patients[patients["video"].isin(video_names(meta))]
        attributes = match.drop(columns=["video"]).iloc[0].to_dict() if len(match) else {}
        videos.append({"video_id": vid, "video_hash": meta["sha256"], **attributes})
        sampling[vid] = json.loads(
            (manifest.schema.metadata or {}).get(SAMPLING_METADATA_KEY, b"{}")
        )
    frames_df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    labels_df = pd.concat(labels, ignore_index=True) if labels else pd.DataFrame()
    videos_df = pd.DataFrame(videos, columns=None if videos else ["video_id", "video_hash"])
    if "patient_id" not in videos_df.columns:
        videos_df["patient_id"] = None
    studies = exportable_study_keys(context, media_store)
    still_images = exportable_images(media_store, studies)
    # a DICOM cine loop belongs to its study's patient, whatever the patients sheet says
    for index, row in videos_df.iterrows():
        if pseudonym := dicom_patient_of_video(media_store, row["video_id"]):
            videos_df.loc[index, "patient_id"] = pseudonym
    out_dir = media_store.local_path(f"{EXPORTS_PREFIX}/{config.dataset_name}/.keep").parent
    context.log.info(
        f"exporting {len(video_ids)} videos and {len(still_images)} still images to {out_dir}"
    )
    if labels_df.empty and still_images.empty:
        yield dg.MaterializeResult(metadata={"status": "empty", "videos": len(video_ids)})
        for name in EXPORT_CHECKS:
            yield dg.AssetCheckResult(
                check_name=name,
                passed=name != "has_annotations",
                description="no labelled frames to export yet",
            )
        return
    if labels_df.empty:  # still images only
        frames_df = pd.DataFrame(columns=list(FRAME_MANIFEST_SCHEMA.names))
        labels_df = pd.DataFrame(columns=list(FRAME_LABELS_SCHEMA.names))
    summary = write_training_dataset(
        out_dir,
        frames=frames_df,
        labels=labels_df,
        videos=videos_df,
        frames_root=media_store.fetch_prefix("media/frames"),
        config=config.export_config(),
        medvid_version=medvid.__version__,
        sampling_config=sampling,
        label_schema=read_label_schema(media_store).to_dict(),
        still_images=still_images,
        images_root=media_store.fetch_prefix(DICOM_IMAGES_PREFIX),
    )
    media_store.publish_prefix(f"{EXPORTS_PREFIX}/{config.dataset_name}")
    per_split = summary.counts.get("positives_per_label_and_split", {})
    yield dg.MaterializeResult(
        metadata={
            "status": "ok",
            "path": dg.MetadataValue.path(str(out_dir)),
            "videos": summary.n_videos,
            "frames": summary.n_frames,
            "annotations": summary.n_annotations,
            "still_images": len(still_images),
            "studies": len(studies),
            "annotations_per_source": dg.MetadataValue.json(
                {str(k): int(v) for k, v in labels_df.groupby("source").size().items()}
            ),
            "unreviewed_predictions_left_out": dropped,
            "dataset_id": json.loads((out_dir / "dataset.json").read_text())["dataset_id"],
            "splits": dg.MetadataValue.json({k: str(v) for k, v in summary.splits.items()}),
            "counts": dg.MetadataValue.json(summary.counts),
            **(
                {"label_distribution": dg.MetadataValue.md(label_distribution_plot(per_split))}
                if per_split
                else {}
            ),
        }
    )
    yield from export_checks(out_dir, media_store, video_ids)


def export_checks(out_dir, store: MediaStore, video_ids: list[str]):
    """The asset checks of ``training_dataset``, computed on the folder as written."""
    annotations = pd.read_csv(out_dir / "annotations.csv", dtype=str)
    images = (
        pd.read_csv(out_dir / "images.csv", dtype=str)
        if (out_dir / "images.csv").exists()
        else pd.DataFrame(columns=["patient_id", "split"])
    )
    yield dg.AssetCheckResult(
        check_name="has_annotations",
        passed=len(annotations) > 0 or len(images) > 0,
        metadata={"annotation_rows": len(annotations), "still_images": len(images)},
        description="frame annotations or still images to train on",
    )
    paths = annotations["frame_relative_path"].drop_duplicates()
    missing = [p for p in paths if not (out_dir / "frames" / p).is_file()]
    yield dg.AssetCheckResult(
        check_name="frame_paths_resolve",
        passed=not missing,
        metadata={"frames": len(paths), "missing": len(missing)},
        description=f"missing: {missing[:5]}" if missing else "every frame_relative_path resolves",
    )
    splits = pd.concat(
        [
            pd.read_csv(out_dir / "splits.csv", dtype=str)[["patient_id", "split"]],
            images[["patient_id", "split"]],
        ]
    ).dropna(subset=["patient_id"])
    leaking = splits.groupby("patient_id")["split"].nunique()
    leaking = sorted(leaking[leaking > 1].index)
    yield dg.AssetCheckResult(
        check_name="no_patient_in_two_splits",
        passed=not leaking,
        metadata={"patients": int(splits["patient_id"].nunique()), "in_two_splits": len(leaking)},
    )
    results = [frame_count_check(store, vid) for vid in video_ids]
    failed = [vid for vid, r in zip(video_ids, results, strict=True) if not r.passed]
    yield dg.AssetCheckResult(
        check_name="frame_counts_match_sampling",
        passed=not failed,
        metadata={"videos": len(results), "mismatched": len(failed)},
        description=f"mismatched videos: {failed}" if failed else "all videos agree",
    )
    problems = verify_export(out_dir)
    yield dg.AssetCheckResult(
        check_name="export_is_sound",
        passed=not problems,
        metadata={"problems": dg.MetadataValue.json(problems)},
    )
