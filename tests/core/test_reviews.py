"""Reviews sheets: reading them, and marking the reviewed rows of label sets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from medvid.errors import SheetError
from medvid.ids import frame_id
from medvid.labels.reviews import apply_reviews, read_reviews_sheet
from medvid.labels.schema import FRAME_LABELS_SCHEMA
from medvid.labels.sheets import sheet_kind

VA, VB = "a" * 16, "b" * 16
CREATED = datetime(2024, 5, 1, tzinfo=UTC)
REVIEWED = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)


def _row(video: str, number: int, source: str, reviewed: bool = False) -> dict:
    return {
        "frame_id": frame_id(video, number),
        "video_id": video,
        "frame_number": number,
        "frame_timestamp": number / 25,
        "label_name": "b_lines",
        "label_id": 0,
        "value": True,
        "float_value": 0.9 if source.startswith("model:") else None,
        "source": source,
        "confidence": 0.9 if source.startswith("model:") else 1.0,
        "annotator": source,
        "reviewed": reviewed,
        "reviewer": "Dr Old" if reviewed else None,
        "date_created": CREATED,
        "date_modified": CREATED,
    }


def _table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=FRAME_LABELS_SCHEMA)


def _reviews(*rows: tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"video_id": v, "reviewer": r, "source": s, "reviewed_at": REVIEWED} for v, r, s in rows]
    )


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reviews.csv"
    path.write_text(text)
    return path


def test_a_video_reviewer_header_is_a_reviews_sheet(tmp_path: Path) -> None:
    assert sheet_kind(_write(tmp_path, "video,reviewer,source\n")) == "reviews"
    assert sheet_kind(_write(tmp_path, "Video; Reviewer\n")) == "reviews"


def test_read_reviews_sheet_keeps_an_empty_source_and_drops_repeats(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "video,reviewer,source\nclip.mp4,Dr A,\nclip.mp4,Dr A,\nclip2.mp4, Dr B ,model\n",
    )
    assert read_reviews_sheet(path).values.tolist() == [
        ["clip.mp4", "Dr A", ""],
        ["clip2.mp4", "Dr B", "model"],
    ]


def test_read_reviews_sheet_names_the_rows_with_a_bad_source_or_no_reviewer(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, "video,reviewer,source\nclip.mp4,Dr A,robot\nclip.mp4,,\n")
    with pytest.raises(SheetError, match=r"row 2: source 'robot'.*row 3: video and reviewer"):
        read_reviews_sheet(path)


def test_review_of_one_model_marks_only_that_models_rows_of_that_video() -> None:
    table = _table(
        [
            _row(VA, 0, "model:m1"),
            _row(VA, 0, "model:m2"),
            _row(VA, 0, "segment"),
            _row(VB, 0, "model:m1"),
        ]
    )
    out = apply_reviews(table, _reviews((VA, "Dr A", "model:m1")))
    assert out.column("reviewed").to_pylist() == [True, False, False, False]
    assert out.column("reviewer").to_pylist() == ["Dr A", None, None, None]
    assert out.column("date_modified").to_pylist()[0] == REVIEWED
    assert out.column("source").to_pylist() == table.column("source").to_pylist()


def test_review_of_source_model_covers_every_model_and_empty_covers_everything() -> None:
    table = _table([_row(VA, 0, "model:m1"), _row(VA, 5, "model:m2"), _row(VA, 10, "segment")])
    assert apply_reviews(table, _reviews((VA, "Dr A", "model"))).column("reviewed").to_pylist() == [
        True,
        True,
        False,
    ]
    assert apply_reviews(table, _reviews((VA, "Dr A", ""))).column("reviewed").to_pylist() == [
        True,
        True,
        True,
    ]


def test_rows_already_reviewed_keep_their_reviewer() -> None:
    table = _table([_row(VA, 0, "labelbox", reviewed=True), _row(VA, 5, "labelbox")])
    out = apply_reviews(table, _reviews((VA, "Dr New", "labelbox")))
    assert out.column("reviewer").to_pylist() == ["Dr Old", "Dr New"]
