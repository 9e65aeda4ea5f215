"""The frames stage: decode each normalized video once and keep sampled frames as redacted
images plus a Parquet frame manifest (one row per kept frame, dead and disturbed frames
flagged), every video of a batch, with the residual checks that read written frames again."""

import time

import dagster as dg

from medvid.catalog import keys
from medvid.catalog.keys import Tables, table_key
from medvid.deid.residual import residual_check_frames, residual_text_findings
from medvid.deid.store import load_phi, read_redaction, read_redaction_plan, write_deid_status
from medvid.frames.extract import extract_frames
from medvid.frames.store import sampling_consistency, with_sampling_record
from medvid.images import read_rgb
from medvid.intake.ledger import read_ledger_entry
from medvid.io import write_bytes_atomic
from medvid.previews import contact_sheet, encode_jpeg
from medvid.settings import FrameSettings
from medvid.store import write_table
from medvid.video.store import read_clips
from medvid_assets.partitions import batch_partitions
from medvid_assets.policy import MemberResult, SettingsResource, per_member, settings_config
from medvid_resources import MediaStore
from medvid_resources.ocr import OcrEngineResource

FrameSamplingConfig = settings_config(FrameSettings, "FrameSamplingConfig")

CHECKS = {
    "frame_count_matches_sampling": "Every manifest holds exactly the frames its recorded"
    " sampling asks for.",
    "no_residual_phi": "Written frames read again (every one where text was detected, up to"
    " the configured number, plus random ones), enlarged 2x, with rapidocr and tesseract: no PHI"
    " and no readable text beyond allow-listed clinical annotation. A video with findings stays"
    " out of exports and uploads.",
}


@dg.asset(
    partitions_def=batch_partitions,
    group_name="frames",
    kinds={"parquet", "jpeg"},
    deps=["normalized_videos", "video_redaction_plan"],
    code_version="3",
    check_specs=[
        dg.AssetCheckSpec(name, asset="video_frames", description=text)
        for name, text in CHECKS.items()
    ],
    description="Sampled frames of every video of the batch, burned-in text redacted, as images"
    " (media/frames/video_<id>/frame_<frame_id>) and a frame manifest: frame_id, frame_number in"
    " the original video, pts, time_base, frame_timestamp (s), path, size, 64-bit pHash, mean"
    " intensity, is_dead, is_disturbed.",
)
@per_member(
    "video",
    section="frames",
    upstream=("normalized_videos", "video_redaction_plan"),
    also=("text",),
    check_descriptions=CHECKS,
)
def video_frames(
    context: dg.AssetExecutionContext,
    member_id: str,
    options: FrameSettings,
    config: FrameSamplingConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    ocr_engine: OcrEngineResource,
    settings: SettingsResource,
):
    started = time.perf_counter()
    clips = read_clips(media_store, member_id)
    total = sum(c.frame_count for c in clips)
    frames_root = media_store.local_path(f"{keys.FRAMES}/.keep").parent
    table = extract_frames(
        clips,
        member_id,
        frames_root,
        sampling=options.sampling(),
        quality=options.thresholds(),
        image_format=options.image_format,
        jpeg_quality=options.jpeg_quality,
        total_frames=total,
        redaction=read_redaction(media_store, member_id),
    )
    table = with_sampling_record(table, options.sampling(), total, float(clips[0].fps))
    media_store.publish_prefix(keys.frames_prefix(member_id))
    write_table(media_store, table_key(Tables.VIDEO_FRAMES, member_id), table)
    manifest = table.to_pandas()
    preview = None
    if len(manifest):
        paths = [frames_root / p for p in manifest["frame_relative_path"]]
        preview = encode_jpeg(contact_sheet(paths))
        write_bytes_atomic(media_store.local_path(keys.contact_sheet_key(member_id)), preview)
        media_store.publish(keys.contact_sheet_key(member_id))
    extracted = time.perf_counter()
    # the independent residual check, on the written frames
    text = settings.load().text
    plan = read_redaction_plan(media_store, member_id)
    numbers = manifest["frame_number"].astype(int).tolist()
    path_of = dict(zip(numbers, manifest["frame_relative_path"], strict=True))
    picks = residual_check_frames(
        plan,
        list(path_of),
        random_frames=text.residual_random_frames,
        seed=int(member_id[:8], 16),
        max_text_frames=text.residual_text_frames,
    )
    phi = load_phi(media_store, read_ledger_entry(media_store, member_id).origin)
    findings = residual_text_findings(
        ((n, read_rgb(frames_root / path_of[n])) for n in picks),  # one frame in memory at a time
        ocr_engine.residual_engines(),
        phi=phi,
    )
    write_deid_status(
        media_store, "video", member_id, passed=not findings, checked=len(picks), findings=findings
    )
    residual_s = time.perf_counter() - extracted
    passed, _, _, description = sampling_consistency(media_store, member_id)
    return MemberResult(
        metadata={
            "frames_decoded": total,
            "frames_kept": len(manifest),
            "dead": int(manifest["is_dead"].sum()) if len(manifest) else 0,
            "disturbed": int(manifest["is_disturbed"].sum()) if len(manifest) else 0,
            "residual_frames_read": len(picks),
            "extract_s": round(extracted - started, 3),
            "residual_check_s": round(residual_s, 3),
        },
        checks={
            "no_residual_phi": findings,
            "frame_count_matches_sampling": [] if passed else [description],
        },
        preview=preview,
    )
