"""The export stage: a training dataset folder under ``<home>/exports/<dataset_name>/``, built
only from de-identified sources (redacted frames and images, never raw or normalized media),
with asset checks that block a dataset a loader would choke on or a split that leaks a patient.

What may leave medvid is decided by one gate, :mod:`medvid.export.gate`, which the Labelbox
upload uses too. The dataset's name and options come from the home config's ``export`` section,
so every entry point writes the same dataset.

``daily_snapshot`` (one partition per UTC day of landing) writes the same folder, with the same
checks, for the videos and studies that arrived on its day, under
``<home>/snapshots/<dataset_name>/<day>/``: what a backfill of a day ends with.
"""

import json

import dagster as dg
import pandas as pd

import medvid
from medvid.batches import members_of_day
from medvid.catalog import keys
from medvid.catalog.keys import Tables, table_key
from medvid.cleaning.marks_store import read_image_marks
from medvid.cleaning.orientation import frame_text_orientations, read_orientation_predictions
from medvid.cleaning.store import (
    read_duplicate_groups,
    read_duplicate_videos,
    read_fields_of_view,
    video_boxes,
)
from medvid.deid.store import known_identifiers_of, patient_of_cine_video
from medvid.dicom.registration import registered_studies
from medvid.export.dataset import ExportConfig, write_training_dataset
from medvid.export.gate import exportable_studies, exportable_videos
from medvid.export.image_marks import MARKS_EXCLUDED
from medvid.export.images import IMAGE_COLUMNS, with_orientation
from medvid.export.labelsets import drop_untrusted_predictions, export_labels
from medvid.export.phi_scan import scan_export
from medvid.export.verify import verify_export
from medvid.frames.extract import FRAME_MANIFEST_SCHEMA
from medvid.frames.store import read_frame_manifest, sampling_consistency, sampling_record
from medvid.intake.ledger import ledger_entries
from medvid.labels.schema import FRAME_LABELS_SCHEMA
from medvid.labels.store import label_sets_of_videos, read_label_schema, read_patients
from medvid.plots import label_distribution_png
from medvid.settings import CleaningSettings, ExportSettings, fingerprint
from medvid.store import read_table
from medvid.video.store import read_video_metadata
from medvid_assets.partitions import FROM_THE_DAYS_BATCHES, landing_days
from medvid_assets.policy import (
    SettingsResource,
    deid_check_result,
    markdown_image,
    resolve_settings,
    settings_config,
)
from medvid_assets.runs import record_worker
from medvid_resources import MediaStore
from medvid_resources.ocr import OcrEngineResource

TrainingDatasetConfig = settings_config(ExportSettings, "TrainingDatasetConfig")

EXPORT_CHECKS = (
    "export_has_no_phi",
    "has_annotations",
    "frame_paths_resolve",
    "no_patient_in_two_splits",
    "frame_counts_match_sampling",
    "export_is_sound",
)
CHECK_DESCRIPTIONS = {
    "export_has_no_phi": "Every exported text, table and file name is scanned for PHI patterns"
    " and for every identifier medvid knows (sheets, headers, original file names), and a"
    " sample of exported images is read by OCR; any finding blocks the dataset.",
    "has_annotations": "The dataset holds frame annotations or still images to train on.",
    "frame_paths_resolve": "Every frame_relative_path of annotations.csv is a file in frames/.",
    "no_patient_in_two_splits": "No patient (videos and still images) is in two splits.",
    "frame_counts_match_sampling": "Every exported video's manifest matches its sampling.",
    "export_is_sound": "The folder verifies: tables, JSON documents and paths agree.",
}


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
        key = table_key(Tables.DICOM_IMAGES, study)
        if not store.exists(key):
            continue
        images = read_table(store, key).to_pandas()
        instances = read_table(store, table_key(Tables.DICOM_INSTANCES, study)).to_pandas()
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


def with_marks(images: pd.DataFrame, store: MediaStore) -> pd.DataFrame:
    """``images`` with the ``image_marks`` columns the export reads
    (:mod:`medvid.export.image_marks`): ``has_calipers``, ``clean_twin`` and
    ``inpainted_relative_path`` (under ``media/inpainted_images/``); null for a still not
    looked at yet."""
    marks = read_image_marks(store)
    relative = marks["inpainted_key"].str.removeprefix(f"{keys.INPAINTED_IMAGES}/")
    marks = marks.assign(inpainted_relative_path=relative)
    columns = ["image_id", "has_calipers", "clean_twin", "inpainted_relative_path"]
    return images.merge(marks[columns], on="image_id", how="left", validate="one_to_one")


#: Optional label sets: the export reads them when present; their absence or their updates do
#: not hold back or trigger the automatic export (only reviewed predictions are exported, and
#: reviews arrive with the label sheets).
OPTIONAL_LABEL_SETS = (
    "labelbox_labels",
    "cold_label_answers",
    "predicted_labels",
    "custom_model_labels",
)


def _export_check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            name,
            asset=asset,
            blocking=name != "has_annotations",  # an empty dataset is a state, not an error
            description=CHECK_DESCRIPTIONS[name],
        )
        for name in EXPORT_CHECKS
    ]


def _export_settings(context, settings: SettingsResource, config):
    """The export settings of this run (home config + launchpad fields) and the home config's
    cleaning section, with the metadata that records both."""
    config, recorded = resolve_settings(context, settings, "export", config)
    cleaning = settings.load().cleaning
    recorded["cleaning_settings"] = dg.MetadataValue.json(cleaning.model_dump(mode="json"))
    recorded["cleaning_settings_fingerprint"] = fingerprint(cleaning)
    return config, cleaning, recorded


#: The cleaning stage's tables :func:`write_dataset` reads: both exports depend on every one, so
#: neither runs before them (daily_snapshot had missed image_marks, then probe_orientation).
CLEANING_TABLES = ("duplicate_groups", "fields_of_view", "image_marks", "probe_orientation")


@dg.asset(
    group_name="export",
    kinds={"csv", "json", "jpeg"},
    deps=[
        "frame_labels",
        "segment_labels",
        "dicom_images",
        *CLEANING_TABLES,
        *OPTIONAL_LABEL_SETS,
    ],
    code_version="2",
    check_specs=_export_check_specs("training_dataset"),
    description="Training dataset folder: annotations.csv/.json (one row per frame-label,"
    " label sets of every source merged), frames/video_<id>/frame_<frame_id>.jpg,"
    " imagefolder/<split>/<label>/, multilabel.json (image path, label vector, label mask),"
    " dataset.json (the dataset as one JSON document), splits.csv (by patient), manifest.json,"
    " and the de-identified still images of DICOM studies (images/, images.csv). Built only from"
    " videos and studies whose de-identification checks passed; predictions only when reviewed"
    " or asked for. Copies (duplicate_groups) are left out unless cleaning.duplicates is all, and"
    " a duplicate group is never in two splits; frames and stills are cropped to their field of"
    " view (cleaning.crop_to_field_of_view; crop_x0..crop_y1 columns); stills with on-image"
    " marks are kept as stored unless cleaning.marks says inpaint, clean_twin_or_inpaint or"
    " drop (has_calipers and inpainted columns of images.csv); images.csv's orientation is the"
    " one the text named, else probe_orientation's prediction from a model that beat the"
    " majority class on held-out studies (orientation_source, orientation_confidence); the same"
    " for the frames OCR read, in frame_orientations.csv.",
)
def training_dataset(
    context: dg.AssetExecutionContext,
    config: TrainingDatasetConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    settings: SettingsResource,
    ocr_engine: OcrEngineResource,
):
    record_worker(context)
    config, cleaning, recorded = _export_settings(context, settings, config)
    video_ids = exportable_videos(
        media_store, [e.content_id for e in ledger_entries(media_store, kind="video")]
    )
    studies = exportable_studies(media_store, registered_studies(media_store))
    yield from write_dataset(
        context,
        config,
        media_store,
        ocr_engine,
        video_ids=video_ids,
        studies=studies,
        prefix=keys.export_prefix(config.dataset_name),
        cleaning=cleaning,
        metadata=recorded,
    )


@dg.asset(
    group_name="export",
    kinds={"csv", "json", "jpeg"},
    partitions_def=landing_days,
    deps=[
        dg.AssetDep("video_frames", partition_mapping=FROM_THE_DAYS_BATCHES),
        dg.AssetDep("dicom_images", partition_mapping=FROM_THE_DAYS_BATCHES),
        "frame_labels",
        "segment_labels",
        *CLEANING_TABLES,
    ],
    code_version="1",
    check_specs=_export_check_specs("daily_snapshot"),
    description="The dataset of one UTC day of arrivals: the same folder as training_dataset"
    " (same settings, same blocking checks), under snapshots/<dataset_name>/<day>/, built from"
    " only the videos and studies that landed that day (the members of the day's batches) and"
    " passed de-identification. Backfill a day (this asset with its upstream, one day) to take"
    " that day's arrivals through the whole path and write its snapshot.",
)
def daily_snapshot(
    context: dg.AssetExecutionContext,
    config: TrainingDatasetConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    settings: SettingsResource,
    ocr_engine: OcrEngineResource,
):
    record_worker(context)
    day = context.partition_key
    config, cleaning, recorded = _export_settings(context, settings, config)
    arrived = members_of_day(media_store, day)
    video_ids = exportable_videos(media_store, arrived["video"])
    studies = exportable_studies(media_store, arrived["study"])
    context.log.info(
        f"{day}: {len(arrived['video'])} videos and {len(arrived['study'])} studies arrived;"
        f" {len(video_ids)} and {len(studies)} may be exported"
    )
    yield from write_dataset(
        context,
        config,
        media_store,
        ocr_engine,
        video_ids=video_ids,
        studies=studies,
        prefix=keys.snapshot_prefix(config.dataset_name, day),
        cleaning=cleaning,
        metadata={
            "day": day,
            "videos_arrived": len(arrived["video"]),
            "studies_arrived": len(arrived["study"]),
            **recorded,
        },
    )


def write_dataset(
    context: dg.AssetExecutionContext,
    config: ExportSettings,
    media_store: MediaStore,
    ocr_engine: OcrEngineResource,
    *,
    video_ids: list[str],
    studies: list[str],
    prefix: str,
    cleaning: CleaningSettings,
    metadata: dict,
):
    """Write the dataset of ``video_ids`` (exportable videos) and ``studies`` (exportable
    studies) under the store key ``prefix``, then yield its ``MaterializeResult`` (with
    ``metadata`` added) and the results of :data:`EXPORT_CHECKS`."""
    patients = read_patients(media_store)
    label_sets = label_sets_of_videos(media_store, video_ids)
    frames, labels, videos, sampling, dropped, untrusted = [], [], [], {}, 0, 0
    for vid in video_ids:
        meta = read_video_metadata(media_store, vid)
        manifest = read_frame_manifest(media_store, vid)
        frames.append(manifest.to_pandas())
        sets = list(label_sets[vid].values())
        flags_key = table_key(Tables.PREDICTION_FLAGS, vid)
        # unreviewed predictions are exported only when asked for, and then only trusted ones
        asked = config.include_predictions or config.prediction_model_ids
        if asked and not config.include_untrusted_predictions and media_store.exists(flags_key):
            flags = read_table(media_store, flags_key)
            kept = [drop_untrusted_predictions(t, flags) for t in sets]
            sets = [t for t, _ in kept]
            untrusted += sum(n for _, n in kept)
        chosen = export_labels(
            sets,
            include_predictions=config.include_predictions,
            model_ids=config.prediction_model_ids,
        )
        labels.append(chosen.labels.to_pandas())
        dropped += chosen.unreviewed_predictions_dropped
        match = patients[patients["video_id"] == vid]
        attributes = match.drop(columns=["video_id"]).iloc[0].to_dict() if len(match) else {}
        videos.append({"video_id": vid, "video_hash": meta["sha256"], **attributes})
        sampling[vid] = sampling_record(manifest)
    frames_df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    labels_df = pd.concat(labels, ignore_index=True) if labels else pd.DataFrame()
    videos_df = pd.DataFrame(videos, columns=None if videos else ["video_id", "video_hash"])
    if "patient_id" not in videos_df.columns:
        videos_df["patient_id"] = None
    orientations = read_orientation_predictions(media_store)
    still_images = with_orientation(
        with_marks(exportable_images(media_store, studies), media_store),
        orientations[orientations["kind"] == "image"],
        include_untrusted=config.include_untrusted_predictions,
    )
    frame_orientations = with_orientation(
        frame_text_orientations(media_store, video_ids),
        orientations[orientations["kind"] == "frame"],
        id_column="frame_id",
        include_untrusted=config.include_untrusted_predictions,
    )
    # a DICOM cine loop belongs to its study's patient, whatever the patients sheet says
    for index, row in videos_df.iterrows():
        if pseudonym := patient_of_cine_video(media_store, row["video_id"]):
            videos_df.loc[index, "patient_id"] = pseudonym
    out_dir = media_store.local_path(f"{prefix}/.keep").parent
    context.log.info(
        f"exporting {len(video_ids)} videos and {len(still_images)} still images to {out_dir}"
    )
    if labels_df.empty and still_images.empty:
        yield dg.MaterializeResult(
            metadata={"status": "empty", "videos": len(video_ids), **metadata}
        )
        for name in EXPORT_CHECKS:
            yield dg.AssetCheckResult(
                check_name=name,
                passed=name != "has_annotations",
                severity=dg.AssetCheckSeverity.WARN,
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
        frames_root=media_store.fetch_prefix(keys.FRAMES),
        config=ExportConfig(
            dataset_name=config.dataset_name,
            val_ratio=config.val_ratio,
            seed=config.seed,
            imagefolder_skip=config.imagefolder_skip,
            include_dead=config.include_dead,
            include_disturbed=config.include_disturbed,
            link_mode=config.link_mode,
            duplicates=cleaning.duplicates,
            crop_to_field_of_view=cleaning.crop_to_field_of_view,
            min_width=cleaning.min_width,
            min_height=cleaning.min_height,
            max_colour_fraction=cleaning.max_colour_fraction,
            marks=cleaning.marks,
        ),
        medvid_version=medvid.__version__,
        sampling_config=sampling,
        label_schema=read_label_schema(media_store).to_dict(),
        still_images=still_images,
        images_root=media_store.fetch_prefix(keys.DICOM_IMAGES),
        duplicate_groups=read_duplicate_groups(media_store),
        duplicate_videos=read_duplicate_videos(media_store),
        fields_of_view=video_boxes(read_fields_of_view(media_store)),
        inpainted_root=media_store.fetch_prefix(keys.INPAINTED_IMAGES)
        if cleaning.marks != "keep"
        else None,
        frame_orientations=frame_orientations,
    )
    media_store.publish_prefix(prefix)
    excluded = json.loads((out_dir / "manifest.json").read_text())["excluded"]
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
            "duplicates_dropped": summary.duplicates_dropped,
            "duplicates_dropped_by_kind": dg.MetadataValue.json(
                {k: v for k, v in excluded.items() if k.startswith("duplicate_")}
            ),
            "filtered": dg.MetadataValue.json(
                {
                    k: excluded[k]
                    for k in (
                        "colour_doppler_images",
                        "too_small_frames",
                        "too_small_images",
                        *MARKS_EXCLUDED,
                    )
                }
            ),
            "annotations_per_source": dg.MetadataValue.json(
                {str(k): int(v) for k, v in labels_df.groupby("source").size().items()}
            ),
            "unreviewed_predictions_left_out": dropped,
            "untrusted_predictions_dropped": untrusted,
            "dataset_id": json.loads((out_dir / "dataset.json").read_text())["dataset_id"],
            "splits": dg.MetadataValue.json({k: str(v) for k, v in summary.splits.items()}),
            "counts": dg.MetadataValue.json(summary.counts),
            **(
                {
                    "label_distribution": markdown_image(
                        label_distribution_png(per_split), "label distribution"
                    )
                }
                if per_split
                else {}
            ),
            **metadata,
        }
    )
    yield from export_checks(out_dir, media_store, video_ids, ocr_engine.engine(), config)


def export_checks(out_dir, store: MediaStore, video_ids: list[str], engine, config):
    """The asset checks of ``training_dataset``, computed on the folder as written."""
    findings = scan_export(
        out_dir,
        identifiers=known_identifiers_of(store, file_names=True),
        ocr_engine=engine,
        ocr_sample=config.phi_scan_ocr_images,
        seed=config.seed,
    )
    yield deid_check_result(
        "export_has_no_phi",
        findings,
        checked=sum(1 for p in out_dir.rglob("*") if p.is_file()),
        what="files",
        passed_text="no PHI pattern or known identifier in any exported file, nor in the"
        f" OCR of up to {config.phi_scan_ocr_images} sampled images",
    )
    annotations = pd.read_csv(out_dir / "annotations.csv", dtype=str)
    images = (
        pd.read_csv(out_dir / "images.csv", dtype=str)
        if (out_dir / "images.csv").exists()
        else pd.DataFrame(columns=["patient_id", "split"])
    )
    yield dg.AssetCheckResult(
        check_name="has_annotations",
        passed=len(annotations) > 0 or len(images) > 0,
        severity=dg.AssetCheckSeverity.WARN,
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
    failed = [vid for vid in video_ids if not sampling_consistency(store, vid)[0]]
    yield dg.AssetCheckResult(
        check_name="frame_counts_match_sampling",
        passed=not failed,
        metadata={"videos": len(video_ids), "mismatched": len(failed)},
        description=f"mismatched videos: {failed}" if failed else "all videos agree",
    )
    problems = verify_export(out_dir)
    yield dg.AssetCheckResult(
        check_name="export_is_sound",
        passed=not problems,
        metadata={"problems": dg.MetadataValue.json(problems)},
    )
