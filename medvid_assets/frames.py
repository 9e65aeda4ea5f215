"""The frames stage: decode each normalized video once and keep sampled frames as images plus a
Parquet frame manifest (one row per kept frame, dead and disturbed frames flagged)."""

import base64
import json
from typing import Literal

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from dagster import AssetExecutionContext

from medvid.frames.extract import extract_frames
from medvid.frames.quality import QualityThresholds
from medvid.frames.sampling import SamplingConfig, expected_frame_count
from medvid.io import write_bytes_atomic
from medvid.previews import contact_sheet, encode_jpeg
from medvid_assets.deid import read_redaction, residual_check_video, video_redaction_plan
from medvid_assets.partitions import video_partitions
from medvid_assets.quarantine import skip_if_quarantined
from medvid_assets.storage import FRAMES_PREFIX, read_table, table_key, write_table
from medvid_assets.videos import normalized_videos, read_clips, read_video_metadata
from medvid_resources import MediaStore
from medvid_resources.ocr import OcrEngineResource

SAMPLING_METADATA_KEY = b"medvid.sampling"


class FrameSamplingConfig(dg.Config):
    """Which frames to keep and how to write them.

    strategy: ``all`` | ``every_n`` (every ``every_n``-th frame) | ``fps`` (``target_fps`` frames
    per second of video) | ``uniform_k`` (``uniform_k`` frames evenly spaced) | ``unique`` (keep a
    frame when its 64-bit perceptual hash differs from the last kept frame's by at least
    ``unique_hamming`` bits).
    Dead frames (black below ``black_mean``, blank above ``blank_mean``, uniform below
    ``uniform_std``, frozen when each frame differs from the previous by less than
    ``frozen_mean_abs_diff`` for ``frozen_min_duration_s`` seconds or more; 0..255 levels)
    and disturbed frames (Laplacian variance below ``blur_laplacian_var``) are flagged, not dropped.
    Images are ``jpg`` (``jpeg_quality`` 1..100) or lossless ``png``, with the burned-in text of
    the video's redaction plan blacked out; ``residual_check_frames`` written frames are read
    again by OCR in the blocking ``no_residual_phi`` check.
    """

    strategy: Literal["all", "every_n", "fps", "uniform_k", "unique"] = "every_n"
    every_n: int = 10
    target_fps: float = 1.0
    uniform_k: int = 16
    unique_hamming: int = 10
    image_format: Literal["jpg", "png"] = "jpg"
    jpeg_quality: int = 90
    black_mean: float = 8.0
    blank_mean: float = 247.0
    uniform_std: float = 3.0
    frozen_mean_abs_diff: float = 0.5
    frozen_min_duration_s: float = 0.5
    blur_laplacian_var: float = 15.0
    residual_check_frames: int = 3

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(
            strategy=self.strategy,
            every_n=self.every_n,
            target_fps=self.target_fps,
            uniform_k=self.uniform_k,
            unique_hamming=self.unique_hamming,
        )

    def thresholds(self) -> QualityThresholds:
        return QualityThresholds(
            black_mean=self.black_mean,
            blank_mean=self.blank_mean,
            uniform_std=self.uniform_std,
            frozen_mean_abs_diff=self.frozen_mean_abs_diff,
            frozen_min_duration_s=self.frozen_min_duration_s,
            blur_laplacian_var=self.blur_laplacian_var,
        )


def read_frame_manifest(store: MediaStore, video_id: str) -> pa.Table:
    return read_table(store, table_key("video_frames", video_id))


def frame_count_check(store: MediaStore, video_id: str) -> dg.AssetCheckResult:
    """The manifest holds exactly the frames the recorded sampling config asks for."""
    path = store.fetch(table_key("video_frames", video_id))
    schema_meta = pq.read_schema(path).metadata or {}
    sampling = json.loads(schema_meta[SAMPLING_METADATA_KEY])
    actual = pq.read_metadata(path).num_rows
    total = sampling.pop("total_frames")
    fps = sampling.pop("fps")
    expected = expected_frame_count(SamplingConfig(**sampling), total, fps)
    if expected is None:  # "unique": data-dependent, bounded by the video
        passed = 1 <= actual <= total
        description = f"{actual} unique frames of {total}"
    else:
        passed = actual == expected
        description = f"{actual} frames, sampling {sampling['strategy']} expects {expected}"
    return dg.AssetCheckResult(
        check_name="frame_count_matches_sampling",
        passed=passed,
        metadata={"actual": actual, "expected": expected if expected is not None else -1},
        description=description,
    )


@dg.asset(
    partitions_def=video_partitions,
    group_name="frames",
    kinds={"parquet", "jpeg"},
    deps=[normalized_videos, video_redaction_plan],
    check_specs=[
        dg.AssetCheckSpec("frame_count_matches_sampling", asset="video_frames"),
        dg.AssetCheckSpec("no_residual_phi", asset="video_frames", blocking=True),
    ],
    description="Sampled frames of the video, burned-in text redacted, as images"
    " (media/frames/video_<id>/frame_<frame_id>)"
    " and a frame manifest: frame_id, frame_number in the original video, pts, time_base,"
    " frame_timestamp (s), path, size, 64-bit pHash, mean intensity, is_dead, is_disturbed.",
)
def video_frames(
    context: AssetExecutionContext,
    config: FrameSamplingConfig,
    media_store: MediaStore,
    ocr_engine: OcrEngineResource,
):
    if skipped := skip_if_quarantined(context, media_store):
        yield skipped
        for check in ("frame_count_matches_sampling", "no_residual_phi"):
            yield dg.AssetCheckResult(
                check_name=check, passed=True, description="input quarantined: nothing written"
            )
        return
    video_id = context.partition_key
    meta = read_video_metadata(media_store, video_id)
    clips = read_clips(media_store, video_id)
    total = sum(c.frame_count for c in clips)
    frames_root = media_store.local_path(f"{FRAMES_PREFIX}/.keep").parent
    step = max(1, total // 10)

    def progress(done: int, of: int) -> None:
        if done % step == 0 or done == of:
            context.log.info(f"{meta['original_name']}: decoded {done}/{of} frames")

    table = extract_frames(
        clips,
        video_id,
        frames_root,
        sampling=config.sampling(),
        quality=config.thresholds(),
        image_format=config.image_format,
        jpeg_quality=config.jpeg_quality,
        total_frames=total,
        progress=progress,
        redaction=read_redaction(media_store, video_id),
    )
    sampling_record = {
        **config.sampling().__dict__,
        "total_frames": total,
        "fps": float(clips[0].fps),
    }
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), SAMPLING_METADATA_KEY: json.dumps(sampling_record)}
    )
    media_store.publish_prefix(f"{FRAMES_PREFIX}/video_{video_id}")
    write_table(media_store, table_key("video_frames", video_id), table)

    rows = table.select(["frame_relative_path", "is_dead", "is_disturbed"]).to_pylist()
    sheet = encode_jpeg(contact_sheet([frames_root / r["frame_relative_path"] for r in rows]))
    preview_key = f"previews/contact_{video_id}.jpg"
    write_bytes_atomic(media_store.local_path(preview_key), sheet)
    media_store.publish(preview_key)
    yield dg.MaterializeResult(
        metadata={
            "status": "ok",
            "original_name": meta["original_name"],
            "frames_decoded": total,
            "frames_kept": len(rows),
            "dead": sum(r["is_dead"] for r in rows),
            "disturbed": sum(r["is_disturbed"] for r in rows),
            "strategy": config.strategy,
            "contact_sheet": dg.MetadataValue.md(
                f"![contact sheet](data:image/jpeg;base64,{base64.b64encode(sheet).decode()})"
            ),
        }
    )
    yield frame_count_check(media_store, video_id)
    yield residual_check_video(
        media_store,
        ocr_engine.engine(),
        video_id,
        table.to_pandas(),
        frames_root,
        config.residual_check_frames,
    )
