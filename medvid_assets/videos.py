"""The video stage: raw copies, metadata, normalized H.264 clips. One partition per video."""

from fractions import Fraction
from pathlib import Path

import dagster as dg
import pyarrow as pa
from dagster import AssetExecutionContext

from medvid.errors import CorruptMediaError, MedvidInputError
from medvid.ids import sha256_file
from medvid.io import copy_file_atomic
from medvid.video.normalize import Clip, normalize_video
from medvid.video.probe import VideoInfo, probe_video
from medvid_assets.landing import read_ledger_entry
from medvid_assets.partitions import video_partitions
from medvid_assets.quarantine import quarantine_result, skip_if_quarantined
from medvid_assets.storage import (
    NORMALIZED_PREFIX,
    RAW_PREFIX,
    read_table,
    table_key,
    write_table,
)
from medvid_resources import LandingZone, MediaStore


class NormalizeConfig(dg.Config):
    """How videos are normalized to H.264 MP4 (yuv420p, same fps and frame count).

    Videos longer than ``max_duration_s`` seconds are split into clips of ``clip_duration_s``
    seconds; every clip records its frame offset so frame numbers still refer to the original.
    ``crf`` is x264's constant rate factor (lower is better quality; 18 is visually lossless).
    """

    max_duration_s: float = 240.0
    clip_duration_s: float = 120.0
    crf: int = 18
    preset: str = "veryfast"


def raw_key(video_id: str, suffix: str) -> str:
    return f"{RAW_PREFIX}/{video_id}{suffix}"


def video_info_from_row(row: dict) -> VideoInfo:
    """Rebuild a :class:`VideoInfo` from a ``video_metadata`` row (inverse of ``as_row``)."""
    fields = {name: row[name] for name in VideoInfo.__dataclass_fields__}
    fields["avg_frame_rate"] = Fraction(row["avg_frame_rate"])
    fields["time_base"] = Fraction(row["time_base"])
    return VideoInfo(**fields)


def read_video_metadata(store: MediaStore, video_id: str) -> dict:
    return read_table(store, table_key("video_metadata", video_id)).to_pylist()[0]


def read_clips(store: MediaStore, video_id: str) -> list[Clip]:
    """The normalized clips of a video, fetched to local paths, in clip order."""
    rows = read_table(store, table_key("normalized_videos", video_id)).to_pylist()
    return [
        Clip(
            clip_index=r["clip_index"],
            path=store.fetch(r["clip_key"]),
            frame_offset=r["frame_offset"],
            frame_count=r["frame_count"],
            time_offset_s=r["time_offset_s"],
            fps=Fraction(r["fps"]),
            pad_right=r["pad_right"],
            pad_bottom=r["pad_bottom"],
        )
        for r in sorted(rows, key=lambda r: r["clip_index"])
    ]


@dg.asset(
    partitions_def=video_partitions,
    group_name="videos",
    kinds={"video"},
    description="The raw video copied from the landing zone (or, for a DICOM cine loop, from the"
    " protected store) into the content-addressed media store (media/raw/<video_id>.<ext>),"
    " verified by sha256. The landing file is never modified.",
)
def raw_videos(
    context: AssetExecutionContext, landing_zone: LandingZone, media_store: MediaStore
) -> dg.MaterializeResult:
    entry = read_ledger_entry(media_store, context.partition_key)
    key = raw_key(entry.content_id, entry.suffix)
    if media_store.exists(key) and sha256_file(media_store.fetch(key)) == entry.sha256:
        return dg.MaterializeResult(
            metadata={"status": "cached", "path": media_store.uri(key), "bytes": entry.size}
        )
    if entry.origin is not None:  # made by medvid (a DICOM cine loop): already in the store
        local = copy_file_atomic(media_store.fetch(entry.landing_key), media_store.local_path(key))
    else:
        local = landing_zone.download(entry.landing_key, media_store.local_path(key))
    if sha256_file(local) != entry.sha256:
        local.unlink()
        return quarantine_result(
            context,
            media_store,
            CorruptMediaError("file changed in the landing zone after it arrived (sha256 differs)"),
            file=entry.original_name,
            stage="raw_videos",
        )
    media_store.publish(key)
    return dg.MaterializeResult(
        metadata={
            "status": "copied",
            "path": media_store.uri(key),
            "original_name": entry.original_name,
            "bytes": entry.size,
            "sha256": entry.sha256,
        }
    )


VIDEO_METADATA_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("original_name", pa.string()),
        ("aliases", pa.list_(pa.string())),
        ("sha256", pa.string()),
        ("arrived_at", pa.string()),
        ("raw_key", pa.string()),
        ("container", pa.string()),
        ("codec", pa.string()),
        ("pix_fmt", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("avg_frame_rate", pa.string()),
        ("fps", pa.float64()),
        ("frame_count", pa.int64()),
        ("frame_count_source", pa.string()),
        ("duration_s", pa.float64()),
        ("bit_rate", pa.int64()),
        ("rotation", pa.int32()),
        ("has_audio", pa.bool_()),
        ("time_base", pa.string()),
        ("start_pts", pa.int64()),
    ]
)


@dg.asset(
    partitions_def=video_partitions,
    group_name="videos",
    kinds={"parquet"},
    deps=[raw_videos],
    description="One row per video: container, codec, size, fps (avg_frame_rate as a fraction),"
    " frame count (counted when the header lacks or lies about it), duration, bit rate, rotation,"
    " audio, sha256, original file name, arrival time.",
)
def video_metadata(context: AssetExecutionContext, media_store: MediaStore) -> dg.MaterializeResult:
    if skipped := skip_if_quarantined(context, media_store):
        return skipped
    entry = read_ledger_entry(media_store, context.partition_key)
    key = raw_key(entry.content_id, entry.suffix)
    try:
        info = probe_video(media_store.fetch(key))
    except MedvidInputError as error:
        return quarantine_result(
            context, media_store, error, file=entry.original_name, stage="video_metadata"
        )
    row = {
        "video_id": entry.content_id,
        "original_name": entry.original_name,
        "aliases": entry.aliases,
        "sha256": entry.sha256,
        "arrived_at": entry.arrived_at,
        "raw_key": key,
        **info.as_row(),
    }
    table = pa.Table.from_pylist([row], schema=VIDEO_METADATA_SCHEMA)
    write_table(media_store, table_key("video_metadata", context.partition_key), table)
    return dg.MaterializeResult(
        metadata={
            "status": "ok",
            "original_name": entry.original_name,
            "codec": info.codec,
            "container": info.container,
            "size": f"{info.width}x{info.height}",
            "avg_frame_rate": row["avg_frame_rate"],
            "frame_count": info.frame_count,
            "frame_count_source": info.frame_count_source,
            "duration_s": round(info.duration_s, 3),
        }
    )


NORMALIZED_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("clip_index", pa.int32()),
        ("clip_key", pa.string()),
        ("frame_offset", pa.int64()),
        ("frame_count", pa.int64()),
        ("time_offset_s", pa.float64()),
        ("fps", pa.string()),
        ("pad_right", pa.int32()),
        ("pad_bottom", pa.int32()),
        ("transcoded", pa.bool_()),
    ]
)


@dg.asset(
    partitions_def=video_partitions,
    group_name="videos",
    kinds={"video"},
    deps=[video_metadata],
    description="The video as H.264 MP4 (yuv420p) clips with the same fps and frame count as the"
    " original (verified), container metadata stripped; long videos split into clips whose frame"
    " offsets map back to the original.",
)
def normalized_videos(
    context: AssetExecutionContext, config: NormalizeConfig, media_store: MediaStore
) -> dg.MaterializeResult:
    if skipped := skip_if_quarantined(context, media_store):
        return skipped
    video_id = context.partition_key
    meta = read_video_metadata(media_store, video_id)
    info = video_info_from_row(meta)
    prefix = f"{NORMALIZED_PREFIX}/{video_id}"
    out_dir = media_store.local_path(f"{prefix}/clip_000.mp4").parent
    context.log.info(
        f"normalizing {meta['original_name']} ({info.codec}, {info.frame_count} frames)"
    )
    try:
        clips = normalize_video(
            media_store.fetch(meta["raw_key"]),
            out_dir,
            info,
            max_duration_s=config.max_duration_s,
            clip_duration_s=config.clip_duration_s,
            crf=config.crf,
            preset=config.preset,
        )
    except MedvidInputError as error:
        return quarantine_result(
            context, media_store, error, file=meta["original_name"], stage="normalized_videos"
        )
    media_store.publish_prefix(prefix)
    transcoded = meta["codec"] != "h264" or Path(meta["raw_key"]).suffix != ".mp4"
    rows = [
        {
            **{k: v for k, v in c.as_row().items() if k != "path"},
            "video_id": video_id,
            "clip_key": f"{prefix}/{Path(c.path).name}",
            "transcoded": transcoded,
        }
        for c in clips
    ]
    write_table(
        media_store,
        table_key("normalized_videos", video_id),
        pa.Table.from_pylist(rows, schema=NORMALIZED_SCHEMA),
    )
    return dg.MaterializeResult(
        metadata={
            "status": "ok",
            "clips": len(clips),
            "frame_count": sum(c.frame_count for c in clips),
            "transcoded": transcoded,
            "avg_frame_rate": meta["avg_frame_rate"],
        }
    )
