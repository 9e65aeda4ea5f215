"""The Labelbox round trip: frames up as data rows, labels back as label sets and masks.

- ``labelbox_uploads`` (per video): the video's frames (all live frames, K per video, or the
  frames of the cold-label queue) become Labelbox data rows with ``global_key = frame_id`` and
  the frame file (local store) or its URL (S3 store) as row data, created in batches and
  attached to the project; re-running creates nothing twice. Only videos that pass the export
  gate (:func:`medvid.export.gate.exportable_videos`) leave medvid.
- ``labelbox_labels``: one ``project.export()`` retrieval, archived as NDJSON under
  ``labelbox/exports/`` (a new file each time, never overwritten), parsed into the frame-label
  table ``tables/labelbox_labels.parquet`` (classifications; video frame classifications and
  segments), the objects table ``tables/labelbox_objects.parquet`` (boxes, polygons, points,
  lines, masks) and mask PNGs under ``media/masks/<frame_id>/<feature_id>.png``.

Both talk to Labelbox through the ``labelbox`` resource (``LABELBOX_API_KEY``,
``MEDVID_LABELBOX_PROJECT_ID``, ``MEDVID_LABELBOX_DATASET``: ``EnvVar`` s read when they run) and
retry transient failures (``RetryPolicy``).
"""

import datetime as dt
import hashlib
from pathlib import PurePosixPath
from typing import Literal

import dagster as dg
import pandas as pd

from medvid.catalog import keys
from medvid.catalog.keys import Tables, table_key
from medvid.errors import MedvidInputError
from medvid.export.gate import exportable_videos
from medvid.frames.store import live_manifest, read_frame_manifest
from medvid.labels.labelbox import parse_export_v2_rows, read_export_ndjson
from medvid.labels.queue import queue_frames
from medvid.labels.store import read_label_schema, video_name_index, videos_with_frames
from medvid.predict.selection import DEFAULT_HAMMING_THRESHOLD, select_frames
from medvid.quarantine import quarantine_error
from medvid.store import write_json, write_table
from medvid_assets.partitions import batch_partitions
from medvid_assets.policy import MemberResult, per_member
from medvid_assets.runs import record_worker
from medvid_resources import LocalMediaStore, MediaStore
from medvid_resources.labelbox import LabelboxResource

LABELBOX_RETRY = dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL)


def row_data_for(store: MediaStore):
    """``frame_relative_path`` -> Labelbox row data: the local file path for a local store (the
    SDK uploads the file), the object's URL for a remote one."""
    if isinstance(store, LocalMediaStore):
        root = store.fetch_prefix(keys.FRAMES)
        return lambda rel: str(root / rel)
    return lambda rel: store.uri(f"{keys.FRAMES}/{rel}")


class LabelboxUploadConfig(dg.Config):
    """Which frames of the video become Labelbox data rows.

    frames: ``all`` live (not dead) frames of the video; ``queue``: the video's frames in the
    cold-label queue (cold_label_queue); ``uniform`` / ``unique``: ``frames_per_video`` frames
    chosen like the cold-label queue (``unique``: pHash Hamming distance >= ``hamming_threshold``).
    """

    frames: Literal["all", "queue", "uniform", "unique"] = "all"
    frames_per_video: int = 16
    hamming_threshold: int = DEFAULT_HAMMING_THRESHOLD


def frames_to_upload(
    store: MediaStore, video_id: str, config: LabelboxUploadConfig
) -> pd.DataFrame:
    """The manifest rows of ``video_id`` that ``config`` selects for upload."""
    manifest = live_manifest(store, [video_id])
    if config.frames == "all":
        return manifest
    if config.frames == "queue":
        return manifest[manifest["frame_id"].isin(set(queue_frames(store)["frame_id"]))]
    return select_frames(
        manifest,
        config.frames_per_video,
        config.frames,
        hamming_threshold=config.hamming_threshold,
    )


@dg.asset(
    partitions_def=batch_partitions,
    group_name="labelbox",
    kinds={"labelbox"},
    deps=["video_frames", "cold_label_queue"],
    code_version="3",
    retry_policy=LABELBOX_RETRY,
    description="The selected frames of every video of the batch as Labelbox data rows (global"
    " key = frame_id, row data = the frame file or its media-store URL) in the configured"
    " dataset, attached to the project in batches; idempotent. Only de-identified, exportable"
    " videos are uploaded.",
)
@per_member("video", upstream=("video_frames",))
def labelbox_uploads(
    context: dg.AssetExecutionContext,
    member_id: str,
    options,
    config: LabelboxUploadConfig,
    media_store: MediaStore,
    labelbox: LabelboxResource,
):
    video_id = member_id
    if not exportable_videos(media_store, [video_id]):
        context.log.info(f"{video_id} is not exportable: nothing leaves medvid")
        return MemberResult(metadata={"uploaded": "no: not exportable"})
    frames = frames_to_upload(media_store, video_id, config)
    if frames.empty:
        return MemberResult(metadata={"uploaded": 0})
    # The batch name follows the frame set, so the same selection is never batched twice and a
    # new selection gets its own batch.
    digest = hashlib.sha256("\n".join(sorted(frames["frame_id"])).encode()).hexdigest()[:8]
    report = labelbox.upload_frames(
        frames, row_data_for(media_store), batch_name=f"medvid-{video_id}-{digest}"
    )
    record = {
        "video_id": video_id,
        "uploaded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "frames": config.frames,
        "global_keys": sorted(frames["frame_id"]),
        **report.summary(),
        "failed": list(report.failed),
    }
    write_json(media_store, keys.labelbox_upload_key(video_id), record)
    if report.failed:  # not the video's fault: left for the next run, which creates nothing twice
        raise RuntimeError(f"{len(report.failed)} data row(s) were not created by Labelbox")
    return MemberResult(
        metadata={k: v for k, v in report.summary().items() if not isinstance(v, list)}
    )


class LabelboxLabelsConfig(dg.Config):
    """Where the labels come from.

    archive_key: re-parse an archived retrieval (a media-store key under ``labelbox/exports/``,
    e.g. after changing the label schema) instead of exporting the project again. Empty: export
    the project now and archive the result as a new file.
    """

    archive_key: str = ""


@dg.asset(
    group_name="labelbox",
    kinds={"labelbox", "parquet", "png"},
    deps=["labelbox_uploads", "label_sheets"],
    code_version="2",
    retry_policy=LABELBOX_RETRY,
    description="The Labelbox project's labels: a project.export() retrieval archived under"
    " labelbox/exports/ (never overwritten), parsed into frame labels (source 'labelbox';"
    " classifications, video frame classifications and segments), objects (boxes, polygons,"
    " points, lines, masks) and mask PNGs under media/masks/<frame_id>/.",
)
def labelbox_labels(
    context: dg.AssetExecutionContext,
    config: LabelboxLabelsConfig,
    media_store: MediaStore,
    labelbox: LabelboxResource,
) -> dg.MaterializeResult:
    record_worker(context)
    retrieved_at = dt.datetime.now(dt.UTC)
    if config.archive_key:
        archive_key = config.archive_key
        archive = media_store.fetch(archive_key)
    else:
        folder = media_store.local_path(f"{keys.LABELBOX_EXPORTS}/.keep").parent
        archive = labelbox.archive_export(labelbox.export_rows(), folder)
        archive_key = f"{keys.LABELBOX_EXPORTS}/{archive.name}"
        media_store.publish(archive_key)
    video_ids = videos_with_frames(media_store)
    parts = [read_frame_manifest(media_store, vid).to_pandas() for vid in video_ids]
    frames = pd.concat(parts, ignore_index=True) if parts else None
    try:
        result = parse_export_v2_rows(
            read_export_ndjson(archive),
            project_id=labelbox.project_id,
            frames=frames,
            masks_dir=media_store.local_path(f"{keys.MASKS}/.keep").parent.parent,
            mask_fetcher=labelbox.fetch_mask,
            schema=read_label_schema(media_store),
            video_aliases=video_name_index(media_store),
            retrieved_at=retrieved_at,
        )
    except MedvidInputError as error:
        quarantine_error(
            media_store,
            error,
            content_id=hashlib.sha256(archive_key.encode()).hexdigest()[:16],
            file=archive_key,
            stage="labelbox_labels",
        )
        raise dg.Failure(
            description=f"Labelbox export {archive_key} cannot be parsed: {error.reason}"
        ) from None
    media_store.publish_prefix(keys.MASKS)
    write_table(media_store, table_key(Tables.LABELBOX_LABELS), result.frame_labels)
    write_table(media_store, table_key(Tables.LABELBOX_OBJECTS), result.objects)
    summary = result.summary()
    if result.unknown_labels:
        context.log.warning(
            f"Labelbox labels outside the project label schema were skipped: "
            f"{sorted(result.unknown_labels)} (add them to label_sheets' label_ids)"
        )
    labels = result.frame_labels.select(["label_name", "value", "reviewed"]).to_pandas()
    return dg.MaterializeResult(
        metadata={
            "archive": archive_key,
            "archive_file": PurePosixPath(archive_key).name,
            "frame_labels": summary["frame_labels"],
            "reviewed_frame_labels": int(labels["reviewed"].sum()),
            "objects": summary["objects"],
            "masks": summary["masks"],
            "unmatched_data_rows": summary["unmatched_data_rows"],
            "unmatched": dg.MetadataValue.json(list(result.unmatched)[:20]),
            "unknown_labels": dg.MetadataValue.json(summary["unknown_labels"]),
            "skipped": dg.MetadataValue.json(summary["skipped"]),
            "positives_per_label": dg.MetadataValue.json(
                {
                    str(k): int(v)
                    for k, v in labels[labels["value"]].groupby("label_name").size().items()
                }
            ),
        }
    )
