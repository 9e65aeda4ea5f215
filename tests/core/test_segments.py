"""Segment sheets materialised as frame labels for the extracted frames, with dry-run counts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from medvid.errors import SheetError
from medvid.ids import frame_id
from medvid.labels.schema import FRAME_LABELS_SCHEMA, LabelSchema
from medvid.labels.segments import (
    dry_run_counts,
    read_segments_sheet,
    segments_to_frame_labels,
)

VIDEO_A = "0123456789abcdef"
VIDEO_B = "fedcba9876543210"
CREATED = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
SCHEMA = LabelSchema.from_names(["bleeding", "polyp"])  # bleeding=0, polyp=1


def _write(tmp_path: Path, text: str, name: str = "segments.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _frames(video_id: str, frame_numbers: list[int], fps: float = 25.0) -> pd.DataFrame:
    """A frame manifest as the frame stage writes it (every 10th frame sampled, t = n / fps)."""
    return pd.DataFrame(
        {
            "frame_id": [frame_id(video_id, n) for n in frame_numbers],
            "video_id": video_id,
            "frame_number": pd.Series(frame_numbers, dtype="int64"),
            "frame_timestamp": [n / fps for n in frame_numbers],
            "frame_relative_path": [
                f"video_{video_id}/frame_{frame_id(video_id, n)}.jpg" for n in frame_numbers
            ],
            "is_dead": False,
        }
    )


@pytest.fixture
def frames() -> pd.DataFrame:
    # Video A: frames 0, 10, ..., 90 (0.0 s ... 3.6 s); video B: frames 0, 10, 20.
    return pd.concat(
        [_frames(VIDEO_A, list(range(0, 100, 10))), _frames(VIDEO_B, [0, 10, 20])],
        ignore_index=True,
    )


SHEET = (
    "Video,Start_Frame,End_Frame,start_s,end_s,Label,Value\n"
    f"{VIDEO_A},15,40,,,polyp,\n"  # frames 20, 30, 40 (inclusive end)
    f"{VIDEO_A},,,2.0,2.8,bleeding,yes\n"  # 2.0 <= t < 2.8: frames 50, 60 (t=2.4), not 70 (2.8)
    f"{VIDEO_B},0,5,,,polyp,false\n"  # frame 0 only
    "unknown-video,0,100,,,polyp,true\n"  # no extracted frames
    f"{VIDEO_A},91,99,,,polyp,true\n"  # between sampled frames: nothing
)


def test_read_segments_sheet_normalises_columns_and_values(tmp_path: Path) -> None:
    segments = read_segments_sheet(_write(tmp_path, SHEET))
    assert segments["row_number"].tolist() == [2, 3, 4, 5, 6]
    assert segments["label"].tolist() == ["polyp", "bleeding", "polyp", "polyp", "polyp"]
    assert segments["value"].tolist() == [True, True, False, True, True]
    assert segments.loc[0, "start_frame"] == 15 and segments.loc[0, "end_frame"] == 40
    assert pd.isna(segments.loc[0, "start_s"])
    assert segments.loc[1, "start_s"] == 2.0 and segments.loc[1, "end_s"] == 2.8
    assert pd.isna(segments.loc[1, "start_frame"])


def test_read_segments_sheet_lists_every_bad_row_with_its_number(tmp_path: Path) -> None:
    text = (
        "video,start_frame,end_frame,start_s,end_s,label,value\n"
        f"{VIDEO_A},10,20,,,polyp,\n"
        f"{VIDEO_A},30,20,,,polyp,\n"  # row 3: end before start
        f"{VIDEO_A},1.5,20,,,polyp,\n"  # row 4: not a whole frame number
        f"{VIDEO_A},,,,,polyp,\n"  # row 5: no range
        f"{VIDEO_A},1,2,0.1,0.2,polyp,\n"  # row 6: both kinds
        f"{VIDEO_A},1,2,,,polyp,maybe\n"  # row 7: bad value
        f",1,2,,,polyp,\n"  # row 8: no video
    )
    with pytest.raises(SheetError) as caught:
        read_segments_sheet(_write(tmp_path, text))
    reason = caught.value.reason
    assert "6 bad row(s)" in reason
    for row in (3, 4, 5, 6, 7, 8):
        assert f"row {row}:" in reason
    assert "row 2:" not in reason
    assert "end_frame 20 is before start_frame 30" in reason


def test_read_segments_sheet_requires_a_range_column_pair(tmp_path: Path) -> None:
    with pytest.raises(SheetError, match="missing column"):
        read_segments_sheet(_write(tmp_path, "video,start_frame,label\nx,1,polyp\n"))


def test_segments_become_labels_on_exactly_the_extracted_frames_inside(
    tmp_path: Path, frames: pd.DataFrame
) -> None:
    segments = read_segments_sheet(_write(tmp_path, SHEET))
    table = segments_to_frame_labels(
        frames, segments, schema=SCHEMA, annotator="dr.who", created_at=CREATED
    )
    assert table.schema == FRAME_LABELS_SCHEMA
    rows = table.to_pandas()
    got = sorted(zip(rows["frame_id"], rows["label_name"], rows["value"], strict=True))
    assert got == [
        (frame_id(VIDEO_A, 20), "polyp", True),
        (frame_id(VIDEO_A, 30), "polyp", True),
        (frame_id(VIDEO_A, 40), "polyp", True),
        (frame_id(VIDEO_A, 50), "bleeding", True),
        (frame_id(VIDEO_A, 60), "bleeding", True),
        (frame_id(VIDEO_B, 0), "polyp", False),
    ]


def test_segment_labels_carry_source_ids_and_provenance(
    tmp_path: Path, frames: pd.DataFrame
) -> None:
    segments = read_segments_sheet(_write(tmp_path, SHEET))
    rows = segments_to_frame_labels(
        frames, segments, schema=SCHEMA, annotator="dr.who", created_at=CREATED
    ).to_pandas()
    assert set(rows["source"]) == {"segment"}
    assert rows.set_index("label_name")["label_id"].to_dict() == {"bleeding": 0, "polyp": 1}
    assert set(rows["confidence"]) == {1.0}
    assert rows["float_value"].isna().all()
    assert set(rows["annotator"]) == {"dr.who"}
    assert not rows["reviewed"].any() and rows["reviewer"].isna().all()
    assert set(rows["date_created"]) == {pd.Timestamp(CREATED)}
    first = rows.loc[rows["frame_id"] == frame_id(VIDEO_A, 50)].iloc[0]
    assert first["frame_number"] == 50 and first["frame_timestamp"] == 2.0


def test_dry_run_counts_match_what_is_written(tmp_path: Path, frames: pd.DataFrame) -> None:
    segments = read_segments_sheet(_write(tmp_path, SHEET))
    counts = dry_run_counts(frames, segments)
    assert counts == {
        "rows": 6,
        "per_label": {"bleeding": 2, "polyp": 4},
        "per_video": {VIDEO_A: 5, VIDEO_B: 1},
        "segments": 5,
        "segments_without_frames": [5, 6],
    }
    written = segments_to_frame_labels(
        frames, segments, schema=SCHEMA, annotator="x", created_at=CREATED
    )
    assert written.num_rows == counts["rows"]


def test_video_aliases_map_sheet_names_to_video_ids(tmp_path: Path, frames: pd.DataFrame) -> None:
    sheet = _write(tmp_path, "video,start_frame,end_frame,label\nclip B.mp4,10,20,polyp\n")
    counts = dry_run_counts(
        frames, read_segments_sheet(sheet), video_aliases={"clip B.mp4": VIDEO_B}
    )
    assert counts["per_video"] == {VIDEO_B: 2}


def test_overlapping_segments_count_each_frame_once(tmp_path: Path, frames: pd.DataFrame) -> None:
    sheet = _write(
        tmp_path,
        f"video,start_frame,end_frame,label\n{VIDEO_A},0,30,polyp\n{VIDEO_A},20,50,polyp\n",
    )
    segments = read_segments_sheet(sheet)
    assert dry_run_counts(frames, segments)["rows"] == 6  # frames 0..50
    table = segments_to_frame_labels(
        frames, segments, schema=SCHEMA, annotator="x", created_at=CREATED
    )
    assert table.num_rows == 6


def test_conflicting_overlaps_name_the_rows(tmp_path: Path, frames: pd.DataFrame) -> None:
    sheet = _write(
        tmp_path,
        "video,start_frame,end_frame,label,value\n"
        f"{VIDEO_A},0,30,polyp,true\n{VIDEO_A},30,50,polyp,false\n",
    )
    with pytest.raises(SheetError, match=r"both true and false \(rows 2, 3\)"):
        segments_to_frame_labels(
            frames, read_segments_sheet(sheet), schema=SCHEMA, annotator="x", created_at=CREATED
        )


def test_label_outside_the_schema_is_a_sheet_error(tmp_path: Path, frames: pd.DataFrame) -> None:
    sheet = _write(tmp_path, f"video,start_frame,end_frame,label\n{VIDEO_A},0,30,tumour\n")
    with pytest.raises(SheetError, match=r"row 2: label 'tumour'"):
        segments_to_frame_labels(
            frames, read_segments_sheet(sheet), schema=SCHEMA, annotator="x", created_at=CREATED
        )


def test_dataframe_segments_are_validated_like_a_sheet(frames: pd.DataFrame) -> None:
    segments = pd.DataFrame(
        {"video": [VIDEO_B], "start_s": [0.0], "end_s": [0.5], "label": ["bleeding"]}
    )
    # 0.0 <= t < 0.5 s at 25 fps: frames 0 (0.0 s) and 10 (0.4 s).
    assert dry_run_counts(frames, segments)["per_video"] == {VIDEO_B: 2}
    bad = pd.DataFrame({"video": [VIDEO_B], "start_s": [0.5], "end_s": [0.5], "label": ["x"]})
    with pytest.raises(SheetError, match="row 2: end_s 0.5 is not after start_s 0.5"):
        dry_run_counts(frames, bad)


def test_a_label_a_spreadsheet_would_run_is_a_bad_row(tmp_path: Path) -> None:
    path = _write(tmp_path, f"video,start_frame,end_frame,label\n{VIDEO_A},0,10,@SUM(1)\n")
    with pytest.raises(SheetError, match="row 2: label '@SUM\\(1\\)' starts with '@'"):
        read_segments_sheet(path)
