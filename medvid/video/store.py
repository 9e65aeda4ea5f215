"""A video's tables in the media store: its metadata row and its normalized clips."""

from __future__ import annotations

from fractions import Fraction

from medvid.catalog.keys import Tables, table_key
from medvid.store import Store, read_table
from medvid.video.normalize import Clip
from medvid.video.probe import VideoInfo


def read_video_metadata(store: Store, video_id: str) -> dict:
    """The ``video_metadata`` row of a video (see
    :data:`medvid.catalog.schemas.VIDEO_METADATA_SCHEMA`)."""
    return read_table(store, table_key(Tables.VIDEO_METADATA, video_id)).to_pylist()[0]


def video_info_from_row(row: dict) -> VideoInfo:
    """Rebuild a :class:`VideoInfo` from a ``video_metadata`` row (inverse of ``as_row``)."""
    fields = {name: row[name] for name in VideoInfo.__dataclass_fields__ if name in row}
    fields["avg_frame_rate"] = Fraction(row["avg_frame_rate"])
    fields["time_base"] = Fraction(row["time_base"])
    return VideoInfo(**fields)


def read_clips(store: Store, video_id: str) -> list[Clip]:
    """The normalized clips of a video, fetched to local paths, in clip order."""
    rows = read_table(store, table_key(Tables.NORMALIZED_VIDEOS, video_id)).to_pylist()
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
            frame_count_announced=r.get("frame_count_announced"),
            decode_errors=r.get("decode_errors") or 0,
            damaged_spans=tuple(tuple(span) for span in r.get("damaged_spans") or ()),
        )
        for r in sorted(rows, key=lambda r: r["clip_index"])
    ]
