"""Label sets: the precedence rule that merges sources, ground truth, and review marking."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from medvid.ids import frame_id
from medvid.labels.labelsets import ground_truth, mark_reviewed, merge_label_sets
from medvid.labels.schema import FRAME_LABELS_SCHEMA, frame_labels_from_pandas

VIDEO = "0123456789abcdef"
T0 = datetime(2024, 5, 1, tzinfo=UTC)
T1 = datetime(2024, 5, 2, tzinfo=UTC)


def _row(
    source: str,
    value: bool,
    *,
    frame_number: int = 0,
    label: str = "Cov",
    confidence: float = 1.0,
    reviewed: bool = False,
    modified: datetime = T0,
    annotator: str = "a",
) -> dict[str, Any]:
    return {
        "frame_id": frame_id(VIDEO, frame_number),
        "video_id": VIDEO,
        "frame_number": frame_number,
        "frame_timestamp": frame_number / 25,
        "label_name": label,
        "label_id": 0 if label == "Cov" else 1,
        "value": value,
        "float_value": confidence if source.startswith("model:") else None,
        "source": source,
        "confidence": confidence,
        "annotator": annotator,
        "reviewed": reviewed,
        "reviewer": "r" if reviewed else None,
        "date_created": T0,
        "date_modified": modified,
    }


def _table(*rows: dict[str, Any]) -> pa.Table:
    return frame_labels_from_pandas(pd.DataFrame(list(rows)))


def _winner(*tables: pa.Table, prefer_reviewed: bool = True) -> dict[str, Any]:
    merged = merge_label_sets(tables, prefer_reviewed=prefer_reviewed)
    assert merged.num_rows == 1
    return merged.to_pylist()[0]


def test_reviewed_beats_unreviewed_human() -> None:
    winner = _winner(
        _table(_row("labelbox", True, modified=T1)),
        _table(_row("segment", False, reviewed=True)),
    )
    assert (winner["source"], winner["value"]) == ("segment", False)


def test_a_reviewed_model_row_beats_an_unreviewed_human_row() -> None:
    winner = _winner(
        _table(_row("model:resnet18-a", True, confidence=0.7, reviewed=True)),
        _table(_row("labelbox", False)),
    )
    assert winner["source"] == "model:resnet18-a"


def test_without_prefer_reviewed_human_beats_reviewed_model() -> None:
    winner = _winner(
        _table(_row("model:resnet18-a", True, confidence=0.99, reviewed=True)),
        _table(_row("labelbox", False)),
        prefer_reviewed=False,
    )
    assert winner["source"] == "labelbox"


def test_unreviewed_human_beats_any_model() -> None:
    winner = _winner(
        _table(_row("model:resnet18-a", True, confidence=0.99)),
        _table(_row("manual", False, confidence=1.0)),
    )
    assert winner["source"] == "manual"


def test_among_models_the_most_confident_wins() -> None:
    winner = _winner(
        _table(_row("model:a", True, confidence=0.61)),
        _table(_row("model:b", False, confidence=0.93)),
        _table(_row("model:c", True, confidence=0.75)),
    )
    assert winner["source"] == "model:b"


def test_among_equal_humans_the_latest_modification_wins() -> None:
    winner = _winner(
        _table(_row("labelbox", True, modified=T0)),
        _table(_row("manual", False, modified=T1)),
    )
    assert (winner["source"], winner["value"]) == ("manual", False)


def test_merge_keeps_one_row_per_frame_and_label() -> None:
    merged = merge_label_sets(
        [
            _table(_row("labelbox", True), _row("labelbox", True, label="Reg")),
            _table(_row("model:a", False, frame_number=10, confidence=0.8), _row("model:a", False)),
        ]
    )
    assert merged.schema == FRAME_LABELS_SCHEMA
    keys = list(zip(merged["frame_id"].to_pylist(), merged["label_name"].to_pylist(), strict=True))
    assert keys == [
        (frame_id(VIDEO, 0), "Cov"),
        (frame_id(VIDEO, 0), "Reg"),
        (frame_id(VIDEO, 10), "Cov"),
    ]


def test_merge_of_nothing_is_an_empty_table() -> None:
    assert merge_label_sets([]).num_rows == 0
    assert merge_label_sets([FRAME_LABELS_SCHEMA.empty_table()]).schema == FRAME_LABELS_SCHEMA


def test_merge_rejects_a_table_missing_columns() -> None:
    with pytest.raises(ValueError, match="lacks column"):
        merge_label_sets([pa.table({"frame_id": ["x"]})])


def test_ground_truth_keeps_reviewed_rows_only() -> None:
    table = _table(
        _row("labelbox", True, reviewed=True),
        _row("model:a", True, frame_number=10, confidence=0.9),
        _row("segment", False, frame_number=20, reviewed=True),
    )
    truth = ground_truth(table)
    assert truth["frame_number"].to_pylist() == [0, 20]


def test_mark_reviewed_sets_reviewer_and_modification_time_only() -> None:
    table = _table(_row("model:a", True, confidence=0.9), _row("labelbox", False, frame_number=10))
    marked = mark_reviewed(table, "dr.jones", T1)
    assert marked.schema == FRAME_LABELS_SCHEMA
    assert marked["reviewed"].to_pylist() == [True, True]
    assert marked["reviewer"].to_pylist() == ["dr.jones", "dr.jones"]
    assert marked["date_modified"].to_pylist() == [T1, T1]
    for unchanged in ("value", "source", "confidence", "date_created"):
        assert marked[unchanged].to_pylist() == table[unchanged].to_pylist()


def test_mark_reviewed_needs_a_reviewer() -> None:
    with pytest.raises(ValueError, match="reviewer"):
        mark_reviewed(_table(_row("labelbox", True)), " ", T1)
