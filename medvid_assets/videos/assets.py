"""The video stage: the protected raw copy, metadata, normalized H.264 clips (per video)."""

from pathlib import Path

import dagster as dg
import pyarrow as pa

from medvid.catalog import keys
from medvid.catalog.keys import Tables, table_key
from medvid.catalog.schemas import NORMALIZED_SCHEMA, VIDEO_METADATA_SCHEMA
from medvid.errors import CorruptMediaError
from medvid.ids import sha256_file
from medvid.intake.ledger import read_ledger_entry
from medvid.io import copy_file_atomic
from medvid.settings import NormalizeSettings
from medvid.store import write_table
from medvid.video.normalize import normalize_video
from medvid.video.probe import probe_video
from medvid.video.store import read_video_metadata, video_info_from_row
from medvid_assets.orchestration.runs import record_worker
from medvid_assets.partitions import video_partitions
from medvid_assets.policy import SettingsResource, per_file, resolve_settings, settings_config
from medvid_resources import MediaStore

NormalizeConfig = settings_config(NormalizeSettings)


@dg.asset(
    partitions_def=video_partitions,
    group_name="videos",
    kinds={"video"},
    code_version="2",
    description="The raw video in the protected zone (protected/media/raw/<video_id>.<ext>),"
    " verified by sha256: intake's copy of a landing file, or a DICOM cine loop's MP4. The"
    " landing file is never modified; the raw pixels never leave the protected zone.",
)
@per_file
def raw_videos(context: dg.AssetExecutionContext, media_store: MediaStore):
    record_worker(context)
    entry = read_ledger_entry(media_store, context.partition_key)
    key = keys.raw_video_key(entry.content_id, entry.suffix)
    if entry.origin is not None and not media_store.exists(key):  # a cine loop medvid made
        copy_file_atomic(media_store.fetch(entry.landing_key), media_store.local_path(key))
        media_store.publish(key)
    if not media_store.exists(key) or sha256_file(media_store.fetch(key)) != entry.sha256:
        raise CorruptMediaError("the protected raw copy is missing or differs from what arrived")
    return dg.MaterializeResult(
        metadata={"status": "ok", "display_name": entry.display_name, "bytes": entry.size}
    )


@dg.asset(
    partitions_def=video_partitions,
    group_name="videos",
    kinds={"parquet"},
    deps=["raw_videos"],
    code_version="2",
    description="One row per video: container, codec, size, fps (avg_frame_rate as a fraction),"
    " frame count (counted when the header lacks or lies about it), duration, bit rate, rotation,"
    " audio, sha256, display name (PHI-like tokens of the file name replaced), landing time.",
)
@per_file
def video_metadata(context: dg.AssetExecutionContext, media_store: MediaStore):
    record_worker(context)
    entry = read_ledger_entry(media_store, context.partition_key)
    info = probe_video(media_store.fetch(keys.raw_video_key(entry.content_id, entry.suffix)))
    row = {
        "video_id": entry.content_id,
        "display_name": entry.display_name,
        "kind": (entry.origin or {}).get("kind", "landing"),
        "sha256": entry.sha256,
        "landed_at": entry.landed_at,
        **info.as_row(),
    }
    table = pa.Table.from_pylist([row], schema=VIDEO_METADATA_SCHEMA)
    write_table(media_store, table_key(Tables.VIDEO_METADATA, entry.content_id), table)
    return dg.MaterializeResult(
        metadata={
            "status": "ok",
            "display_name": entry.display_name,
            "codec": info.codec,
            "container": info.container,
            "size": f"{info.width}x{info.height}",
            "avg_frame_rate": row["avg_frame_rate"],
            "frame_count": info.frame_count,
            "frame_count_source": info.frame_count_source,
            "duration_s": round(info.duration_s, 3),
        }
    )


@dg.asset(
    partitions_def=video_partitions,
    group_name="videos",
    kinds={"video"},
    deps=["video_metadata"],
    code_version="2",
    description="The video as H.264 MP4 (yuv420p) clips in the protected zone, with the same fps"
    " and frame count as decoded (verified), container metadata stripped; long videos split into"
    " clips whose frame offsets map back to the original.",
)
@per_file
def normalized_videos(
    context: dg.AssetExecutionContext,
    config: NormalizeConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    settings: SettingsResource,
):
    record_worker(context)
    normalize, recorded = resolve_settings(context, settings, "normalize", config)
    video_id = context.partition_key
    meta = read_video_metadata(media_store, video_id)
    info = video_info_from_row(meta)
    entry = read_ledger_entry(media_store, video_id)
    prefix = keys.normalized_prefix(video_id)
    out_dir = media_store.local_path(f"{prefix}/.keep").parent
    context.log.info(
        f"normalizing {meta['display_name']} ({info.codec}, {info.frame_count} frames)"
    )
    clips = normalize_video(
        media_store.fetch(keys.raw_video_key(video_id, entry.suffix)),
        out_dir,
        info,
        max_duration_s=normalize.max_duration_s,
        clip_duration_s=normalize.clip_duration_s,
        crf=normalize.crf,
        preset=normalize.preset,
    )
    media_store.publish_prefix(prefix)
    transcoded = meta["codec"] != "h264" or entry.suffix != ".mp4"
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
        table_key(Tables.NORMALIZED_VIDEOS, video_id),
        pa.Table.from_pylist(rows, schema=NORMALIZED_SCHEMA),
    )
    return dg.MaterializeResult(
        metadata={
            "status": "ok",
            "clips": len(clips),
            "frame_count": sum(c.frame_count for c in clips),
            "transcoded": transcoded,
            "avg_frame_rate": meta["avg_frame_rate"],
            **recorded,
        }
    )
