"""The OCR stage: burned-in text of every DICOM image, of a few frames of every video (the first
one included), and on demand of every sampled frame.

OCR text can name the patient, so the ``*_ocr_text`` tables live under ``protected/`` and are
never exported; what leaves medvid is the redaction they drive (:mod:`medvid_assets.deid`) and
the clinical fields parsed from text a person may see (laterality, clock position, orientation,
measurements, depth, device). The engine is the ``ocr_engine`` resource: rapidocr by default
(models inside its wheel), tesseract or easyocr (local weights).
"""

import json

import dagster as dg
import numpy as np
import pyarrow as pa
from dagster import AssetExecutionContext

from medvid.images import read_rgb, write_png
from medvid.ocr import OcrBox, lines_text, parse_annotation_text
from medvid.video.decode import frames_at_times
from medvid_assets.dicom import dicom_pixels
from medvid_assets.partitions import study_partitions, video_partitions
from medvid_assets.quarantine import skip_if_quarantined
from medvid_assets.storage import (
    FRAMES_PREFIX,
    PROTECTED_PREFIX,
    protected_table_key,
    read_json,
    read_table,
    table_key,
    write_json,
    write_table,
)
from medvid_assets.videos import normalized_videos, read_clips
from medvid_resources import MediaStore
from medvid_resources.ocr import OcrEngineResource

OCR_SCHEMA = pa.schema(
    [
        ("source_id", pa.string()),
        ("frame_number", pa.int64()),
        ("frame_timestamp", pa.float64()),
        ("box_index", pa.int32()),
        ("x", pa.int32()),
        ("y", pa.int32()),
        ("w", pa.int32()),
        ("h", pa.int32()),
        ("text", pa.string()),
        ("confidence", pa.float32()),
        ("engine", pa.string()),
    ]
)
"""One row per text box: ``source_id`` (a DICOM instance id or a video id), the frame
(``frame_number`` in the original video, 0 for a DICOM image; ``frame_timestamp`` in seconds),
the box in pixels of the full frame (``x``, ``y`` top-left, ``w``, ``h``), the text and the
engine's confidence in [0, 1]. PHI: protected zone only."""

OCR_FRAMES_PREFIX = f"{PROTECTED_PREFIX}/ocr_frames"


def ocr_rows(
    source_id: str, frame_number: int, timestamp: float, boxes: list[OcrBox], engine: str
) -> list[dict]:
    return [
        {
            "source_id": source_id,
            "frame_number": frame_number,
            "frame_timestamp": timestamp,
            "box_index": index,
            **box.as_dict(),
            "engine": engine,
        }
        for index, box in enumerate(boxes)
    ]


def boxes_of(rows: list[dict]) -> list[OcrBox]:
    """OCR table rows back to :class:`~medvid.ocr.OcrBox` (in box order)."""
    ordered = sorted(rows, key=lambda r: r["box_index"])
    return [OcrBox(r["x"], r["y"], r["w"], r["h"], r["text"], r["confidence"]) for r in ordered]


def read_ocr_rows(store: MediaStore, asset_name: str, partition_key: str) -> list[dict]:
    return read_table(store, protected_table_key(asset_name, partition_key)).to_pylist()


@dg.asset(
    partitions_def=study_partitions,
    group_name="ocr",
    kinds={"parquet"},
    deps=[dicom_pixels],
    description="Burned-in text boxes (x, y, w, h in pixels, text, confidence) of every"
    " single-frame DICOM image of the study (cine loops are read in the video path)."
    " Protected: OCR text may name the patient.",
)
def dicom_ocr_text(
    context: AssetExecutionContext, media_store: MediaStore, ocr_engine: OcrEngineResource
) -> dg.MaterializeResult:
    study = context.partition_key
    engine = ocr_engine.engine()
    images = [
        r
        for r in read_table(media_store, table_key("dicom_pixels", study)).to_pylist()
        if r["kind"] == "image"
    ]
    rows = []
    for number, image in enumerate(images, start=1):
        rgb = read_rgb(media_store.fetch(image["pixels_key"]))
        rows += ocr_rows(image["instance_id"], 0, 0.0, engine.read(rgb), engine.name)
        context.log.info(f"OCR {number}/{len(images)} images")
    write_table(
        media_store,
        protected_table_key("dicom_ocr_text", study),
        pa.Table.from_pylist(rows, schema=OCR_SCHEMA),
    )
    return dg.MaterializeResult(
        metadata={"images": len(images), "text_boxes": len(rows), "engine": engine.name}
    )


class VideoOcrConfig(dg.Config):
    """Which frames of a video are read for burned-in text before frames are extracted.

    ``frames`` frames evenly spaced in time, the first frame always among them. Screen overlays
    (patient panels, dates, device settings) stay put during a recording, so a few frames find
    them; text that appears later is caught by the residual check on the extracted frames.
    """

    frames: int = 3


def ocr_frame_keys(store: MediaStore, video_id: str) -> list[dict]:
    """``[{"frame_number", "frame_timestamp", "key"}]`` of the frames ``video_ocr_text`` read
    (PNG, protected)."""
    return read_json(store, f"{OCR_FRAMES_PREFIX}/{video_id}/frames.json")["frames"]


@dg.asset(
    partitions_def=video_partitions,
    group_name="ocr",
    kinds={"parquet"},
    deps=[normalized_videos],
    description="Burned-in text boxes of the first frame of the video and a few more evenly spaced"
    " frames (x, y, w, h in pixels, text, confidence), with those frames kept for redaction"
    " planning. Protected: OCR text may name the patient.",
)
def video_ocr_text(
    context: AssetExecutionContext,
    config: VideoOcrConfig,
    media_store: MediaStore,
    ocr_engine: OcrEngineResource,
) -> dg.MaterializeResult:
    if skipped := skip_if_quarantined(context, media_store):
        return skipped
    video_id = context.partition_key
    engine = ocr_engine.engine()
    clips = read_clips(media_store, video_id)
    duration = sum(c.frame_count for c in clips) / float(clips[0].fps)
    wanted = [i * duration / max(config.frames, 1) for i in range(max(config.frames, 1))]
    rows, frames = [], []
    for clip in clips:
        end = clip.time_offset_s + clip.frame_count / float(clip.fps)
        local = [t - clip.time_offset_s for t in wanted if clip.time_offset_s <= t < end]
        for moment, rgb in frames_at_times(clip.path, local) if local else []:
            frame_number = clip.frame_offset + round(moment * float(clip.fps))
            timestamp = clip.time_offset_s + moment
            key = f"{OCR_FRAMES_PREFIX}/{video_id}/frame_{frame_number:07d}.png"
            height = rgb.shape[0] - clip.pad_bottom
            width = rgb.shape[1] - clip.pad_right
            rgb = np.ascontiguousarray(rgb[:height, :width])
            write_png(rgb, media_store.local_path(key))
            media_store.publish(key)
            frames.append({"frame_number": frame_number, "frame_timestamp": timestamp, "key": key})
            rows += ocr_rows(video_id, frame_number, timestamp, engine.read(rgb), engine.name)
    write_json(media_store, f"{OCR_FRAMES_PREFIX}/{video_id}/frames.json", {"frames": frames})
    write_table(
        media_store,
        protected_table_key("video_ocr_text", video_id),
        pa.Table.from_pylist(rows, schema=OCR_SCHEMA),
    )
    return dg.MaterializeResult(
        metadata={
            "status": "ok",
            "frames_read": len(frames),
            "text_boxes": len(rows),
            "engine": engine.name,
        }
    )


class FrameOcrConfig(dg.Config):
    """OCR of the extracted (already redacted) frames: every ``every_n``-th frame of the
    manifest, dead frames skipped."""

    every_n: int = 1


FRAME_FIELDS_SCHEMA = pa.schema(
    [
        ("frame_id", pa.string()),
        ("frame_number", pa.int64()),
        ("text", pa.string()),
        ("laterality", pa.string()),
        ("clock_position", pa.string()),
        ("distance_from_nipple_cm", pa.float64()),
        ("orientation", pa.string()),
        ("measurements", pa.string()),
        ("depth_cm", pa.float64()),
        ("device_model", pa.string()),
    ]
)
"""Per frame: the text read on the redacted frame (lines joined by newlines) and the fields
parsed from it (:func:`medvid.ocr.parse_annotation_text`; ``measurements`` as JSON
``[[name, value, unit], ...]``)."""


def parsed_fields(text: str) -> dict:
    """:func:`medvid.ocr.parse_annotation_text` with measurements as a JSON string."""
    fields = parse_annotation_text(text)
    fields["measurements"] = json.dumps(fields["measurements"])
    return fields


@dg.asset(
    partitions_def=video_partitions,
    group_name="ocr",
    kinds={"parquet"},
    deps=["video_frames"],
    description="On demand (not in the video pipeline): OCR of the sampled, redacted frames and"
    " the annotation fields parsed from each (laterality, clock position, distance from nipple,"
    " orientation, measurements with units, depth, device model). Protected.",
)
def frame_ocr_text(
    context: AssetExecutionContext,
    config: FrameOcrConfig,
    media_store: MediaStore,
    ocr_engine: OcrEngineResource,
) -> dg.MaterializeResult:
    video_id = context.partition_key
    engine = ocr_engine.engine()
    manifest = read_table(media_store, table_key("video_frames", video_id)).to_pandas()
    manifest = manifest[~manifest["is_dead"]].iloc[:: max(config.every_n, 1)]
    root = media_store.fetch_prefix(FRAMES_PREFIX)
    rows = []
    for number, frame in enumerate(manifest.itertuples(index=False), start=1):
        boxes = engine.read(read_rgb(root / frame.frame_relative_path))
        text = lines_text(boxes)
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
    write_table(media_store, protected_table_key("frame_ocr_text", video_id), table)
    return dg.MaterializeResult(
        metadata={
            "frames_read": len(rows),
            "frames_with_text": sum(bool(r["text"]) for r in rows),
            "engine": engine.name,
        }
    )
