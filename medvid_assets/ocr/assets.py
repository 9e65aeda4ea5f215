"""The OCR stage: burned-in text of every DICOM image, of a video before its frames are
written, and on demand of every written frame.

OCR text can name the patient, so these tables live under ``protected/`` and are never
exported; what leaves medvid is the redaction they drive (the deid stage) and the clinical
fields parsed from text a person may see. The engine is the ``ocr_engine`` resource.
"""

import dagster as dg
import numpy as np
import pyarrow as pa

from medvid.catalog import keys
from medvid.catalog.keys import Tables, protected_table_key, table_key
from medvid.catalog.schemas import FRAME_FIELDS_SCHEMA, OCR_SCHEMA
from medvid.images import read_rgb, write_png
from medvid.ocr import lines_text
from medvid.ocr.tables import ocr_rows, parsed_fields
from medvid.settings import OcrSettings
from medvid.store import read_table, write_json, write_table
from medvid.video.decode import frames_at_times
from medvid.video.store import read_clips
from medvid_assets.runs import record_worker
from medvid_assets.partitions import study_partitions, video_partitions
from medvid_assets.policy import SettingsResource, per_file, resolve_settings, settings_config
from medvid_resources import MediaStore
from medvid_resources.ocr import OcrEngineResource

VideoOcrConfig = settings_config(OcrSettings, "VideoOcrConfig")


@dg.asset(
    partitions_def=study_partitions,
    group_name="ocr",
    kinds={"parquet"},
    deps=["dicom_pixels"],
    code_version="2",
    description="Burned-in text boxes (x, y, w, h in pixels, text, confidence) of every"
    " single-frame DICOM image of the study (cine loops are read in the video path)."
    " Protected: OCR text may name the patient.",
)
@per_file
def dicom_ocr_text(
    context: dg.AssetExecutionContext, media_store: MediaStore, ocr_engine: OcrEngineResource
):
    record_worker(context)
    study = context.partition_key
    engine = ocr_engine.engine()
    images = [
        r
        for r in read_table(media_store, table_key(Tables.DICOM_PIXELS, study)).to_pylist()
        if r["kind"] == "image"
    ]
    rows = []
    for number, image in enumerate(images, start=1):
        rgb = read_rgb(media_store.fetch(image["pixels_key"]))
        rows += ocr_rows(image["instance_id"], 0, 0.0, engine.read(rgb), engine.name)
        context.log.info(f"OCR {number}/{len(images)} images")
    write_table(
        media_store,
        protected_table_key(Tables.DICOM_OCR_TEXT, study),
        pa.Table.from_pylist(rows, schema=OCR_SCHEMA),
    )
    return dg.MaterializeResult(
        metadata={"images": len(images), "text_boxes": len(rows), "engine": engine.name}
    )


@dg.asset(
    partitions_def=video_partitions,
    group_name="ocr",
    kinds={"parquet"},
    deps=["normalized_videos"],
    code_version="2",
    description="Burned-in text boxes of the first frame of the video and a few more evenly spaced"
    " frames (x, y, w, h in pixels, text, confidence), with those frames kept for redaction"
    " planning. Protected: OCR text may name the patient.",
)
@per_file
def video_ocr_text(
    context: dg.AssetExecutionContext,
    config: VideoOcrConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    ocr_engine: OcrEngineResource,
    settings: SettingsResource,
):
    record_worker(context)
    ocr, recorded = resolve_settings(context, settings, "ocr", config)
    video_id = context.partition_key
    engine = ocr_engine.engine()
    clips = read_clips(media_store, video_id)
    duration = sum(c.frame_count for c in clips) / float(clips[0].fps)
    count = max(ocr.frames, 1)
    wanted = [i * duration / count for i in range(count)]
    rows, frames = [], []
    for clip in clips:
        end = clip.time_offset_s + clip.frame_count / float(clip.fps)
        local = [t - clip.time_offset_s for t in wanted if clip.time_offset_s <= t < end]
        for moment, rgb in frames_at_times(clip.path, local) if local else []:
            frame_number = clip.frame_offset + round(moment * float(clip.fps))
            timestamp = clip.time_offset_s + moment
            key = f"{keys.ocr_frames_prefix(video_id)}/frame_{frame_number:07d}.png"
            height = rgb.shape[0] - clip.pad_bottom
            width = rgb.shape[1] - clip.pad_right
            rgb = np.ascontiguousarray(rgb[:height, :width])
            write_png(rgb, media_store.local_path(key))
            media_store.publish(key)
            frames.append({"frame_number": frame_number, "frame_timestamp": timestamp, "key": key})
            rows += ocr_rows(video_id, frame_number, timestamp, engine.read(rgb), engine.name)
    write_json(media_store, f"{keys.ocr_frames_prefix(video_id)}/frames.json", {"frames": frames})
    write_table(
        media_store,
        protected_table_key(Tables.VIDEO_OCR_TEXT, video_id),
        pa.Table.from_pylist(rows, schema=OCR_SCHEMA),
    )
    return dg.MaterializeResult(
        metadata={
            "status": "ok",
            "frames_read": len(frames),
            "text_boxes": len(rows),
            "engine": engine.name,
            **recorded,
        }
    )


class FrameOcrConfig(dg.Config):
    """OCR of the written (already redacted) frames: every ``every_n``-th frame of the
    manifest, dead frames skipped."""

    every_n: int = 1


@dg.asset(
    partitions_def=video_partitions,
    group_name="ocr",
    kinds={"parquet"},
    deps=["video_frames"],
    code_version="2",
    description="On demand (not in the video pipeline): OCR of the sampled, redacted frames and"
    " the annotation fields parsed from each (laterality, clock position, distance from nipple,"
    " orientation, measurements with units, depth, device model). Protected.",
)
@per_file
def frame_ocr_text(
    context: dg.AssetExecutionContext,
    config: FrameOcrConfig,
    media_store: MediaStore,
    ocr_engine: OcrEngineResource,
):
    record_worker(context)
    video_id = context.partition_key
    engine = ocr_engine.engine()
    manifest = read_table(media_store, table_key(Tables.VIDEO_FRAMES, video_id)).to_pandas()
    manifest = manifest[~manifest["is_dead"]].iloc[:: max(config.every_n, 1)]
    root = media_store.fetch_prefix(keys.frames_prefix(video_id)).parent
    rows = []
    for number, frame in enumerate(manifest.itertuples(index=False), start=1):
        text = lines_text(engine.read(read_rgb(root / frame.frame_relative_path)))
        rows.append(
            {
                "frame_id": frame.frame_id,
                "frame_number": frame.frame_number,
                "text": text,
                **parsed_fields(text),
            }
        )
        if number % 10 == 0:
            context.log.info(f"OCR {number}/{len(manifest)} frames")
    table = pa.Table.from_pylist(rows, schema=FRAME_FIELDS_SCHEMA)
    write_table(media_store, protected_table_key(Tables.FRAME_OCR_TEXT, video_id), table)
    return dg.MaterializeResult(
        metadata={
            "frames_read": len(rows),
            "frames_with_text": sum(bool(r["text"]) for r in rows),
            "engine": engine.name,
        }
    )
