"""The video stage: the protected raw copy, metadata and normalized H.264 clips of every video
of a batch."""

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
from medvid.video.normalize import decode_summary, normalize_video
from medvid.video.probe import probe_video
from medvid.video.store import read_video_metadata, video_info_from_row
from medvid_assets.partitions import FROM_THE_DAYS_INTAKE, batch_partitions
from medvid_assets.policy import MemberResult, SettingsResource, per_member, settings_config
from medvid_resources import MediaStore

NormalizeConfig = settings_config(NormalizeSettings)


@dg.asset(
    partitions_def=batch_partitions,
    group_name="videos",
    kinds={"video"},
    deps=[
        "dicom_pixels",  # a batch's DICOM cine loops become videos there
        dg.AssetDep("landing_intake", partition_mapping=FROM_THE_DAYS_INTAKE),
    ],
    code_version="3",
    description="Every video of the batch in the protected zone (protected/media/raw/"
    "<video_id>.<ext>), verified by sha256: intake's copy of a landing file, or a DICOM cine"
    " loop's MP4. The landing file is never modified; raw pixels never leave the protected zone.",
)
@per_member("video")
def raw_videos(context: dg.AssetExecutionContext, member_id: str, options, media_store: MediaStore):
    entry = read_ledger_entry(media_store, member_id)
    key = keys.raw_video_key(entry.content_id, entry.suffix)
    if entry.origin is not None and not media_store.exists(key):  # a cine loop medvid made
        copy_file_atomic(media_store.fetch(entry.landing_key), media_store.local_path(key))
        media_store.publish(key)
    if not media_store.exists(key) or sha256_file(media_store.fetch(key)) != entry.sha256:
        raise CorruptMediaError("the protected raw copy is missing or differs from what arrived")
    return MemberResult(metadata={"bytes": entry.size})


@dg.asset(
    partitions_def=batch_partitions,
    group_name="videos",
    kinds={"parquet"},
    deps=["raw_videos"],
    code_version="3",
    description="One row per video: container, codec, size, fps (avg_frame_rate as a fraction),"
    " frame count (counted when the header lacks or lies about it), duration, bit rate, rotation,"
    " audio, sha256, display name (PHI-like tokens of the file name replaced), landing time.",
)
@per_member("video", upstream=("raw_videos",))
def video_metadata(
    context: dg.AssetExecutionContext, member_id: str, options, media_store: MediaStore
):
    entry = read_ledger_entry(media_store, member_id)
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
    return MemberResult(
        metadata={
            "codec": info.codec,
            "size": f"{info.width}x{info.height}",
            "fps": row["avg_frame_rate"],
            "frames": info.frame_count,
            "duration_s": round(info.duration_s, 3),
        }
    )


@dg.asset(
    partitions_def=batch_partitions,
    group_name="videos",
    kinds={"video"},
    deps=["video_metadata"],
    code_version="3",
    description="Every video as H.264 MP4 (yuv420p) clips in the protected zone, with the same"
    " fps and every frame the decoder yields (verified), container metadata stripped; long"
    " videos split into clips whose frame offsets map back to the original. Frames the"
    " container announced but the decoder did not yield, packets it rejected and frames decoded"
    " from damaged data are recorded; only a video of which less than half decodes is"
    " quarantined.",
)
@per_member("video", section="normalize", upstream=("video_metadata",))
def normalized_videos(
    context: dg.AssetExecutionContext,
    member_id: str,
    options: NormalizeSettings,
    config: NormalizeConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    settings: SettingsResource,
):
    meta = read_video_metadata(media_store, member_id)
    entry = read_ledger_entry(media_store, member_id)
    prefix = keys.normalized_prefix(member_id)
    clips = normalize_video(
        media_store.fetch(keys.raw_video_key(member_id, entry.suffix)),
        media_store.local_path(f"{prefix}/.keep").parent,
        video_info_from_row(meta),
        max_duration_s=options.max_duration_s,
        clip_duration_s=options.clip_duration_s,
        crf=options.crf,
        preset=options.preset,
    )
    media_store.publish_prefix(prefix)
    transcoded = meta["codec"] != "h264" or entry.suffix != ".mp4"
    rows = [
        {
            **{k: v for k, v in c.as_row().items() if k != "path"},
            "video_id": member_id,
            "clip_key": f"{prefix}/{Path(c.path).name}",
            "transcoded": transcoded,
        }
        for c in clips
    ]
    write_table(
        media_store,
        table_key(Tables.NORMALIZED_VIDEOS, member_id),
        pa.Table.from_pylist(rows, schema=NORMALIZED_SCHEMA),
    )
    return MemberResult(
        metadata={"clips": len(clips), "transcoded": transcoded, **decode_summary(clips)}
    )
