"""The frames stage: decode each normalized video once and keep sampled frames as redacted
images plus a Parquet frame manifest (one row per kept frame, dead and disturbed frames
flagged)."""

import dagster as dg

from medvid.catalog import keys
from medvid.catalog.keys import Tables, table_key
from medvid.deid.residual import residual_findings
from medvid.deid.store import load_phi, read_redaction, write_deid_status
from medvid.frames.extract import extract_frames
from medvid.frames.quality import QualityThresholds
from medvid.frames.sampling import SamplingConfig
from medvid.frames.store import sampling_consistency, with_sampling_record
from medvid.intake.ledger import read_ledger_entry
from medvid.io import write_bytes_atomic
from medvid.previews import contact_sheet, encode_jpeg
from medvid.settings import FrameSettings
from medvid.store import write_table
from medvid.video.store import read_clips, read_video_metadata
from medvid_assets.runs import record_worker
from medvid_assets.partitions import video_partitions
from medvid_assets.policy import (
    SettingsResource,
    deid_check_result,
    markdown_image,
    per_file,
    resolve_settings,
    settings_config,
)
from medvid_resources import MediaStore
from medvid_resources.ocr import OcrEngineResource

FrameSamplingConfig = settings_config(FrameSettings, "FrameSamplingConfig")


def sampling_of(frames: FrameSettings) -> SamplingConfig:
    return SamplingConfig(
        strategy=frames.strategy,
        every_n=frames.every_n,
        target_fps=frames.target_fps,
        uniform_k=frames.uniform_k,
        unique_hamming=frames.unique_hamming,
    )


def thresholds_of(frames: FrameSettings) -> QualityThresholds:
    return QualityThresholds(
        black_mean=frames.black_mean,
        blank_mean=frames.blank_mean,
        uniform_std=frames.uniform_std,
        frozen_mean_abs_diff=frames.frozen_mean_abs_diff,
        frozen_min_duration_s=frames.frozen_min_duration_s,
        blur_laplacian_var=frames.blur_laplacian_var,
    )


def frame_count_check(store: MediaStore, video_id: str) -> dg.AssetCheckResult:
    """The manifest holds exactly the frames its recorded sampling asks for."""
    passed, actual, expected, description = sampling_consistency(store, video_id)
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
    deps=["normalized_videos", "video_redaction_plan"],
    code_version="2",
    check_specs=[
        dg.AssetCheckSpec(
            "frame_count_matches_sampling",
            asset="video_frames",
            description="The manifest holds exactly the frames the recorded sampling asks for.",
        ),
        dg.AssetCheckSpec(
            "no_residual_phi",
            asset="video_frames",
            blocking=True,
            description="OCR of written frames finds no PHI; any finding keeps the video out of"
            " exports and uploads.",
        ),
    ],
    description="Sampled frames of the video, burned-in text redacted, as images"
    " (media/frames/video_<id>/frame_<frame_id>) and a frame manifest: frame_id, frame_number in"
    " the original video, pts, time_base, frame_timestamp (s), path, size, 64-bit pHash, mean"
    " intensity, is_dead, is_disturbed.",
)
@per_file
def video_frames(
    context: dg.AssetExecutionContext,
    config: FrameSamplingConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    ocr_engine: OcrEngineResource,
    settings: SettingsResource,
):
    record_worker(context)
    frames, recorded = resolve_settings(context, settings, "frames", config)
    video_id = context.partition_key
    meta = read_video_metadata(media_store, video_id)
    clips = read_clips(media_store, video_id)
    total = sum(c.frame_count for c in clips)
    frames_root = media_store.local_path(f"{keys.FRAMES}/.keep").parent
    step = max(1, total // 10)

    def progress(done: int, of: int) -> None:
        if done % step == 0 or done == of:
            context.log.info(f"{meta['display_name']}: decoded {done}/{of} frames")

    table = extract_frames(
        clips,
        video_id,
        frames_root,
        sampling=sampling_of(frames),
        quality=thresholds_of(frames),
        image_format=frames.image_format,
        jpeg_quality=frames.jpeg_quality,
        total_frames=total,
        progress=progress,
        redaction=read_redaction(media_store, video_id),
    )
    table = with_sampling_record(table, sampling_of(frames), total, float(clips[0].fps))
    media_store.publish_prefix(keys.frames_prefix(video_id))
    write_table(media_store, table_key(Tables.VIDEO_FRAMES, video_id), table)

    rows = table.select(["frame_relative_path", "is_dead", "is_disturbed"]).to_pylist()
    metadata = {
        "status": "ok",
        "display_name": meta["display_name"],
        "frames_decoded": total,
        "frames_kept": len(rows),
        "dead": sum(r["is_dead"] for r in rows),
        "disturbed": sum(r["is_disturbed"] for r in rows),
        **recorded,
    }
    if rows:
        sheet = encode_jpeg(contact_sheet([frames_root / r["frame_relative_path"] for r in rows]))
        write_bytes_atomic(media_store.local_path(keys.contact_sheet_key(video_id)), sheet)
        media_store.publish(keys.contact_sheet_key(video_id))
        metadata["contact_sheet"] = markdown_image(sheet, "contact sheet", "image/jpeg")
    yield dg.MaterializeResult(metadata=metadata)
    yield frame_count_check(media_store, video_id)
    phi = load_phi(media_store, read_ledger_entry(media_store, video_id).origin)
    findings, checked = residual_findings(
        ocr_engine.engine(), frames_root, table.to_pandas(), frames.residual_check_frames, phi
    )
    write_deid_status(
        media_store, "video", video_id, passed=not findings, checked=checked, findings=findings
    )
    yield deid_check_result(
        "no_residual_phi",
        findings,
        checked=checked,
        what="frames",
        passed_text="no PHI readable in the written frames",
    )
