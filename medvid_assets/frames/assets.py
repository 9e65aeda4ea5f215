"""The frames stage: decode each normalized video once and keep sampled frames as redacted
images plus a Parquet frame manifest (one row per kept frame, dead and disturbed frames
flagged), every video of a batch, with the residual checks that read written frames again."""

import time
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa

from medvid.catalog import keys
from medvid.catalog.keys import Tables, table_key
from medvid.deid.residual import residual_check
from medvid.deid.store import load_phi, read_redaction, read_redaction_plan, write_deid_status
from medvid.frames.encode import Redaction
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
    " and no readable text beyond allow-listed clinical annotation (words matching no PHI pattern"
    " are masked in every frame and read again). A video with findings stays out of exports and"
    " uploads.",
}


#: The finding a video carries while its frames are written and checked.
PENDING = "frames being written: the residual check has not finished"


class _FrameWriter:
    """Writes a video's sampled frames (:func:`medvid.frames.extract.extract_frames`) with a
    given redaction, as often as the residual check asks; keeps the last frame manifest."""

    def __init__(self, clips, member_id: str, frames_root: Path, options: FrameSettings):
        self.clips, self.member_id, self.frames_root = clips, member_id, frames_root
        self.options = options
        self.total = sum(c.frame_count for c in clips)
        self.table: pa.Table | None = None
        self.path_of: dict[int, str] = {}
        self.extract_s = 0.0

    def __call__(self, redaction: Redaction) -> list[int]:
        """Write every sampled frame with ``redaction``; the frame numbers written."""
        began = time.perf_counter()
        options = self.options
        table = extract_frames(
            self.clips,
            self.member_id,
            self.frames_root,
            sampling=options.sampling(),
            quality=options.thresholds(),
            image_format=options.image_format,
            jpeg_quality=options.jpeg_quality,
            total_frames=self.total,
            redaction=redaction,
        )
        fps = float(self.clips[0].fps)
        self.table = with_sampling_record(table, options.sampling(), self.total, fps)
        numbers = table.column("frame_number").to_pylist()
        paths = table.column("frame_relative_path").to_pylist()
        self.path_of = {int(n): p for n, p in zip(numbers, paths, strict=True)}
        self.extract_s += time.perf_counter() - began
        return list(self.path_of)

    def read(self, frame_number: int) -> np.ndarray:
        """Written frame ``frame_number``, ``(H, W, 3) uint8 RGB``."""
        return read_rgb(self.frames_root / self.path_of[frame_number])


@dg.asset(
    partitions_def=batch_partitions,
    group_name="frames",
    kinds={"parquet", "jpeg"},
    deps=["normalized_videos", "video_redaction_plan"],
    code_version="4",
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
    frames_root = media_store.local_path(f"{keys.FRAMES}/.keep").parent
    writer = _FrameWriter(read_clips(media_store, member_id), member_id, frames_root, options)
    # Frames about to be rewritten are not checked yet: an earlier run's pass must not vouch
    # for them if this run dies before its check ends (a kill between a write and the repair).
    write_deid_status(media_store, "video", member_id, passed=False, checked=0, findings=[PENDING])
    # the independent residual check reads written frames; what it cannot tell from PHI is
    # masked in every frame and the frames are written again (medvid.deid.residual_check)
    text = settings.load().text
    check = residual_check(
        writer,
        writer.read,
        read_redaction_plan(media_store, member_id),
        ocr_engine.residual_engines(),
        redaction=read_redaction(media_store, member_id),
        phi=load_phi(media_store, read_ledger_entry(media_store, member_id).origin),
        random_frames=text.residual_random_frames,
        seed=int(member_id[:8], 16),
        max_text_frames=text.residual_text_frames,
        repair_rounds=text.residual_repair_rounds,
    )
    findings = check.findings
    if check.masked:
        # text the plan left and the check could not tell from PHI: masked, worth a look
        context.log.warning(
            f"video_frames: the residual check masked {len(check.masked)} box(es) in every"
            f" frame of video {member_id}, after reading: " + "; ".join(check.repaired)
        )
    manifest = writer.table.to_pandas()
    media_store.publish_prefix(keys.frames_prefix(member_id))
    write_table(media_store, table_key(Tables.VIDEO_FRAMES, member_id), writer.table)
    preview = None
    if len(manifest):
        paths = [frames_root / p for p in manifest["frame_relative_path"]]
        preview = encode_jpeg(contact_sheet(paths))
        write_bytes_atomic(media_store.local_path(keys.contact_sheet_key(member_id)), preview)
        media_store.publish(keys.contact_sheet_key(member_id))
    write_deid_status(
        media_store,
        "video",
        member_id,
        passed=check.passed,
        checked=len(check.frames_read),
        findings=findings,
        masked_by_check=[list(box) for box in check.masked],
    )
    residual_s = time.perf_counter() - started - writer.extract_s
    passed, _, _, description = sampling_consistency(media_store, member_id)
    return MemberResult(
        metadata={
            "frames_decoded": writer.total,
            "frames_kept": len(manifest),
            "dead": int(manifest["is_dead"].sum()) if len(manifest) else 0,
            "disturbed": int(manifest["is_disturbed"].sum()) if len(manifest) else 0,
            "residual_frames_read": len(check.frames_read),
            "residual_rounds": check.rounds,
            "residual_masked_boxes": len(check.masked),
            "extract_s": round(writer.extract_s, 3),
            "residual_check_s": round(residual_s, 3),
        },
        checks={
            "no_residual_phi": findings,
            "frame_count_matches_sampling": [] if passed else [description],
        },
        preview=preview,
    )
