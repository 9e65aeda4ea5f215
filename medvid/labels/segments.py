"""Segment labels: ranges of a video with a label, materialised as frame-level labels.

A segments sheet (a CSV read like every medvid sheet, see :mod:`medvid.labels.sheets`) has one
row per segment:

========================  ==================================================================
column                    meaning
========================  ==================================================================
``video``                 the video's id (16 hex digits), or a name mapped to one through
                          ``video_aliases``
``start_frame``,          first and last frame numbers of the segment, **both included**
``end_frame``             (0-based, decode order of the original video, like ``frame_number``)
``start_s``, ``end_s``    or the segment in seconds from the start of the video, **half-open**
                          ``[start_s, end_s)`` so that back-to-back segments share no frame
``label``                 a label name of the project's :class:`~medvid.labels.schema.LabelSchema`
``value``                 optional; ``true``/``false`` (also ``1``/``0``, ``yes``/``no``,
                          ``y``/``n``); empty or absent means ``true``
========================  ==================================================================

Each row uses frames *or* seconds (both columns of one kind filled). Seconds are half-open,
unlike the inclusive ranges of a labels sheet, because segments carry explicit values: two
back-to-back segments with opposite values must not both claim the boundary frame (at 25 fps the
frame at 10.0 s exists). Overlapping segments that give one frame opposite values for a label
are an error. The format follows the
segment-to-frame materialisation of the endoscopy exporter (seed 004): segments are reviewed
on the video, then turned into one annotation per extracted frame, with a dry-run count first.
Only frames present in the frame manifest get a row, so the table matches what was extracted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from medvid.errors import SheetError
from medvid.labels.schema import (
    SOURCE_SEGMENT,
    LabelSchema,
    empty_frame_labels,
    frame_labels_from_pandas,
)
from medvid.labels.sheets import (
    _read_rows,  # one CSV reader for every sheet
    validate_label_name,
)

__all__ = [
    "SEGMENT_COLUMNS",
    "dry_run_counts",
    "read_segments_sheet",
    "segments_to_frame_labels",
]

#: Columns of the normalised segments DataFrame returned by :func:`read_segments_sheet`.
#: ``row_number`` is the 1-based line in the sheet (the header is line 1), for error messages.
SEGMENT_COLUMNS: tuple[str, ...] = (
    "row_number",
    "video",
    "start_frame",
    "end_frame",
    "start_s",
    "end_s",
    "label",
    "value",
)

_TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t"})
_FALSE_WORDS = frozenset({"false", "0", "no", "n", "f"})
_FRAME_COLUMNS = ("frame_id", "video_id", "frame_number", "frame_timestamp")


def _blank(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip() == ""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _parse_value(raw: Any) -> bool:
    if _blank(raw):
        return True
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE_WORDS:
        return True
    if text in _FALSE_WORDS:
        return False
    raise ValueError(f"value {raw!r} is not true/false")


def _parse_frame(raw: Any, column: str) -> int:
    text = str(raw).strip()
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{column} {raw!r} is not a frame number") from None
    if not number.is_integer() or number < 0:
        raise ValueError(f"{column} {raw!r} is not a non-negative whole frame number")
    return int(number)


def _parse_seconds(raw: Any, column: str) -> float:
    try:
        seconds = float(str(raw).strip())
    except ValueError:
        raise ValueError(f"{column} {raw!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{column} {raw!r} is not a non-negative number of seconds")
    return seconds


def _parse_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One normalised segment from a sheet row; raises ``ValueError`` with the reason."""
    video = "" if _blank(row.get("video")) else str(row["video"]).strip()
    label = "" if _blank(row.get("label")) else str(row["label"]).strip()
    if not video:
        raise ValueError("video is empty")
    if not label:
        raise ValueError("label is empty")
    try:
        validate_label_name(label)
    except SheetError as error:
        raise ValueError(error.reason) from None
    has = {
        name: not _blank(row.get(name)) for name in ("start_frame", "end_frame", "start_s", "end_s")
    }
    by_frame = has["start_frame"] or has["end_frame"]
    by_seconds = has["start_s"] or has["end_s"]
    out: dict[str, Any] = {
        "video": video,
        "start_frame": None,
        "end_frame": None,
        "start_s": None,
        "end_s": None,
        "label": label,
        "value": _parse_value(row.get("value")),
    }
    if by_frame and by_seconds:
        raise ValueError("give frames or seconds, not both")
    if by_frame:
        if not (has["start_frame"] and has["end_frame"]):
            raise ValueError("start_frame and end_frame must both be given")
        start = _parse_frame(row["start_frame"], "start_frame")
        end = _parse_frame(row["end_frame"], "end_frame")
        if end < start:
            raise ValueError(f"end_frame {end} is before start_frame {start}")
        out["start_frame"], out["end_frame"] = start, end
    elif by_seconds:
        if not (has["start_s"] and has["end_s"]):
            raise ValueError("start_s and end_s must both be given")
        start_s = _parse_seconds(row["start_s"], "start_s")
        end_s = _parse_seconds(row["end_s"], "end_s")
        if end_s <= start_s:
            raise ValueError(f"end_s {end_s} is not after start_s {start_s}")
        out["start_s"], out["end_s"] = start_s, end_s
    else:
        raise ValueError("no range: fill start_frame/end_frame or start_s/end_s")
    return out


def _normalise(raw: pd.DataFrame, *, where: str, row_numbers: list[int]) -> pd.DataFrame:
    raw = raw.rename(columns=lambda name: str(name).strip().lower())
    missing = [name for name in ("video", "label") if name not in raw.columns]
    has_range = any(
        {a, b} <= set(raw.columns) for a, b in (("start_frame", "end_frame"), ("start_s", "end_s"))
    )
    if missing or not has_range:
        wanted = missing + ([] if has_range else ["start_frame+end_frame or start_s+end_s"])
        raise SheetError(f"{where}: missing column(s): {', '.join(wanted)}")
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for row_number, record in zip(row_numbers, raw.to_dict(orient="records"), strict=True):
        try:
            parsed = _parse_row(record)
        except ValueError as exc:
            problems.append(f"row {row_number}: {exc}")
            continue
        parsed["row_number"] = row_number
        rows.append(parsed)
    if problems:
        raise SheetError(f"{where}: {len(problems)} bad row(s): " + "; ".join(problems))
    df = pd.DataFrame(rows, columns=list(SEGMENT_COLUMNS))
    return df.astype(
        {
            "row_number": "int64",
            "video": "string",
            "start_frame": "Int64",
            "end_frame": "Int64",
            "start_s": "Float64",
            "end_s": "Float64",
            "label": "string",
            "value": "bool",
        }
    )


def read_segments_sheet(path: str | Path) -> pd.DataFrame:
    """Read and validate a segments sheet.

    Args:
        path: a UTF-8 CSV file with a header row, read like every medvid sheet
            (:mod:`medvid.labels.sheets`: delimiter ``,``, or ``;``/tab when the header has no
            comma; column names matched case-insensitively; all-empty rows skipped).

    Returns:
        A DataFrame with :data:`SEGMENT_COLUMNS`: ``row_number`` int64 (spreadsheet row, header
        = 1), ``video``/``label`` string, ``start_frame``/``end_frame`` Int64 (nullable),
        ``start_s``/``end_s`` Float64 seconds (nullable), ``value`` bool.

    Raises:
        SheetError: the file cannot be read, a required column is missing, or rows are bad
            (every bad row is listed with its row number and reason; a label
            :func:`~medvid.labels.sheets.validate_label_name` refuses is a bad row).
    """
    path = Path(path)
    header, rows = _read_rows(path)
    raw = pd.DataFrame([cells for _, cells in rows], columns=header, dtype=object)
    return _normalise(raw, where=path.name, row_numbers=[number for number, _ in rows])


def _as_segments(segments: pd.DataFrame) -> pd.DataFrame:
    """Accept the output of :func:`read_segments_sheet` or any DataFrame with sheet columns
    (validated the same way; row numbers then count from 2 as if it were a sheet)."""
    if list(segments.columns) == list(SEGMENT_COLUMNS):
        return segments
    return _normalise(
        segments, where="segments table", row_numbers=list(range(2, len(segments) + 2))
    )


def _frames_table(frames: pd.DataFrame) -> pd.DataFrame:
    missing = [name for name in _FRAME_COLUMNS if name not in frames.columns]
    if missing:
        raise ValueError(f"frame manifest lacks column(s): {', '.join(missing)}")
    return frames.loc[:, list(_FRAME_COLUMNS)]


def _segment_frames(
    segments: pd.DataFrame,
    frames: pd.DataFrame,
    video_aliases: Mapping[str, str] | None,
) -> pd.DataFrame:
    """Long table: one row per (segment, extracted frame inside it).

    Columns: the frame columns, ``label``, ``value``, ``row_number``.
    """
    aliases = dict(video_aliases or {})
    frames = _frames_table(frames)
    by_video = {video_id: group for video_id, group in frames.groupby("video_id", sort=False)}
    pieces: list[pd.DataFrame] = []
    for segment in segments.itertuples(index=False):
        video_id = aliases.get(str(segment.video), str(segment.video))
        video_frames = by_video.get(video_id)
        if video_frames is None:
            continue
        if not pd.isna(segment.start_frame):
            number = video_frames["frame_number"]
            inside = (number >= segment.start_frame) & (number <= segment.end_frame)
        else:
            stamp = video_frames["frame_timestamp"]
            inside = (stamp >= segment.start_s) & (stamp < segment.end_s)
        hit = video_frames.loc[inside.to_numpy(dtype=bool)].copy()
        if hit.empty:
            continue
        hit["label"] = str(segment.label)
        hit["value"] = bool(segment.value)
        hit["row_number"] = int(segment.row_number)
        pieces.append(hit)
    if not pieces:
        return pd.DataFrame(columns=[*_FRAME_COLUMNS, "label", "value", "row_number"])
    return pd.concat(pieces, ignore_index=True)


def segments_to_frame_labels(
    frames: pd.DataFrame,
    segments: pd.DataFrame,
    *,
    schema: LabelSchema,
    annotator: str,
    created_at: datetime,
    video_aliases: Mapping[str, str] | None = None,
    reviewed: bool = False,
    reviewer: str | None = None,
) -> pa.Table:
    """Frame-level labels for the extracted frames covered by each segment.

    Args:
        frames: frame manifest with ``frame_id``, ``video_id``, ``frame_number`` (int) and
            ``frame_timestamp`` (float seconds); other columns are ignored.
        segments: output of :func:`read_segments_sheet` (or a DataFrame with the sheet columns).
        schema: the project's label schema; every segment label must be in it.
        annotator: who drew the segments (person or sheet name), written to ``annotator``.
        created_at: written to ``date_created`` and ``date_modified`` (naive = UTC).
        video_aliases: sheet ``video`` value -> ``video_id``, for sheets that name videos by
            file name; values not in the mapping are taken as video ids.
        reviewed, reviewer: set when the segments were already reviewed on the video (the
            asset's configuration decides; segment sheets are not assumed reviewed).

    Returns:
        A :data:`~medvid.labels.schema.FRAME_LABELS_SCHEMA` table with source ``segment``,
        confidence 1.0, ``float_value`` null, one row per (frame, label), sorted by
        ``frame_id`` then ``label_name``. Segments of videos without extracted frames, or that
        cover no extracted frame, add nothing (see :func:`dry_run_counts`).

    Raises:
        SheetError: a segment's label is not in the schema, or overlapping segments give the same
            frame and label opposite values (the rows are named).
    """
    segments = _as_segments(segments)
    unknown = segments.loc[~segments["label"].isin(list(schema.names))]
    if not unknown.empty:
        listed = "; ".join(
            f"row {r.row_number}: label {r.label!r}" for r in unknown.itertuples(index=False)
        )
        raise SheetError(
            f"segments use label(s) not in the project's label schema: {listed} "
            f"(known: {', '.join(schema.names) or '(none)'})"
        )
    long = _segment_frames(segments, frames, video_aliases)
    if long.empty:
        return empty_frame_labels()
    conflicts = long.groupby(["frame_id", "label"])["value"].nunique()
    conflicts = conflicts[conflicts > 1]
    if not conflicts.empty:
        frame_id, label = conflicts.index[0]
        rows = sorted(
            long.loc[(long["frame_id"] == frame_id) & (long["label"] == label), "row_number"]
            .unique()
            .tolist()
        )
        raise SheetError(
            f"segments give frame {frame_id} label {label!r} both true and false "
            f"(rows {', '.join(map(str, rows))}); {len(conflicts)} frame/label pair(s) conflict"
        )
    long = long.drop_duplicates(["frame_id", "label"]).sort_values(["frame_id", "label"])
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    stamp = pd.Timestamp(created_at).tz_convert("UTC")
    out = pd.DataFrame(
        {
            "frame_id": long["frame_id"].astype(str),
            "video_id": long["video_id"].astype(str),
            "frame_number": long["frame_number"].astype("int64"),
            "frame_timestamp": long["frame_timestamp"].astype("float64"),
            "label_name": long["label"].astype(str),
            "label_id": [schema.id_of(name) for name in long["label"]],
            "value": long["value"].astype(bool),
            "float_value": None,
            "source": SOURCE_SEGMENT,
            "confidence": 1.0,
            "annotator": annotator,
            "reviewed": bool(reviewed),
            "reviewer": reviewer if reviewed else None,
            "date_created": stamp,
            "date_modified": stamp,
        }
    )
    out["float_value"] = out["float_value"].astype("float64")
    return frame_labels_from_pandas(out.reset_index(drop=True))


def dry_run_counts(
    frames: pd.DataFrame,
    segments: pd.DataFrame,
    *,
    video_aliases: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What :func:`segments_to_frame_labels` would write, without writing (for asset metadata).

    Returns a JSON-serialisable dict:

    - ``rows``: frame-label rows that would be created (distinct frame and label);
    - ``per_label``: ``{label: rows}``; ``per_video``: ``{video_id: rows}`` (sorted keys);
    - ``segments``: segments read; ``segments_without_frames``: sheet row numbers of segments
      that cover no extracted frame (unknown video, or a range between sampled frames).
    """
    segments = _as_segments(segments)
    long = _segment_frames(segments, frames, video_aliases)
    covered = set(long["row_number"].tolist())
    distinct = long.drop_duplicates(["frame_id", "label"])
    per_label = distinct.groupby("label").size() if not distinct.empty else pd.Series(dtype=int)
    per_video = distinct.groupby("video_id").size() if not distinct.empty else pd.Series(dtype=int)
    return {
        "rows": int(len(distinct)),
        "per_label": {str(k): int(v) for k, v in sorted(per_label.items())},
        "per_video": {str(k): int(v) for k, v in sorted(per_video.items())},
        "segments": int(len(segments)),
        "segments_without_frames": sorted(
            int(n) for n in segments["row_number"] if int(n) not in covered
        ),
    }
