"""What the predict wiring adds to the core: the patient of each video as the export split sees
it, the majority-class baseline beside a model's held-out-patient accuracy, and untrusted
predictions left out of exports. Tables of a few rows; no training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from medvid.catalog.keys import Tables, table_key
from medvid.export.labelsets import drop_untrusted_predictions
from medvid.labels.schema import FRAME_LABELS_SCHEMA, model_source
from medvid.predict.infer import PREDICTION_FLAGS_SCHEMA
from medvid.predict.store import patients_of_videos
from medvid.predict.train import TrainConfig, majority_baseline
from medvid.store import write_table
from medvid_resources import LocalMediaStore


def _items(rows: list[tuple[str, str, str | None]]) -> pd.DataFrame:
    """One frame per row: ``(video_id, label_name, patient_id)``."""
    return pd.DataFrame(
        [
            {"video_id": v, "label_name": label, "patient_id": p, "frame_number": i}
            for i, (v, label, p) in enumerate(rows)
        ]
    )


def test_patients_of_videos_reads_the_pseudonyms_of_the_patients_table(tmp_path: Path) -> None:
    store = LocalMediaStore(root=str(tmp_path))
    write_table(
        store,
        table_key(Tables.PATIENTS),
        pa.table(
            {
                "video_id": ["a", "b", "c"],
                "patient_id": ["P0123456789A", " P0123456789A ", None],
            }
        ),
    )
    # c has no patient and d is not in the sheet: both absent (each is its own patient)
    assert patients_of_videos(store, ["a", "b", "c", "d"]) == {
        "a": "P0123456789A",
        "b": "P0123456789A",
    }


def test_patients_of_videos_without_a_patients_sheet_is_empty(tmp_path: Path) -> None:
    assert patients_of_videos(LocalMediaStore(root=str(tmp_path)), ["a"]) == {}


def test_the_majority_baseline_of_a_split_predicts_the_training_majority() -> None:
    train = _items([("a", "x", "p1"), ("a", "x", "p1"), ("b", "y", "p2")])
    val = _items([("c", "x", "p3"), ("c", "y", "p3"), ("c", "y", "p3")])
    config = TrainConfig(freeze_backbone=False)
    assert majority_baseline(train, val, config) == pytest.approx(1 / 3)
    assert majority_baseline(train, val.iloc[0:0], config) is None


def test_the_majority_baseline_of_grouped_folds_is_out_of_fold() -> None:
    # three patients, one per fold: each fold is predicted with the other two's majority
    # (ties: the first name): p1 (x) <- {y, x} tie -> x: 2 right; p2 (y) <- {x, x} -> x: 0;
    # p3 (x) <- {x, y} tie -> x: 2 right. 4 of 6.
    train = _items([("a", "x", "p1"), ("a", "x", "p1"), ("b", "y", "p2"), ("b", "y", "p2")])
    val = _items([("c", "x", "p3"), ("c", "x", "p3")])
    config = TrainConfig(freeze_backbone=True, head_folds=3)
    assert majority_baseline(train, val, config) == pytest.approx(4 / 6)


def _labels(frames: list[str], source: str, reviewed: bool) -> pa.Table:
    stamp = pd.Timestamp("2026-01-01", tz="UTC")
    return pa.Table.from_pylist(
        [
            {
                "frame_id": f,
                "video_id": "v",
                "frame_number": i,
                "frame_timestamp": float(i),
                "label_name": "x",
                "label_id": 0,
                "value": True,
                "float_value": 0.9,
                "source": source,
                "confidence": 0.9,
                "annotator": source,
                "reviewed": reviewed,
                "reviewer": "doctor" if reviewed else None,
                "date_created": stamp,
                "date_modified": stamp,
            }
            for i, f in enumerate(frames)
        ],
        schema=FRAME_LABELS_SCHEMA,
    )


def _flags(trusted: dict[str, bool], source: str) -> pa.Table:
    n = len(trusted)
    return pa.table(
        {
            "frame_id": list(trusted),
            "video_id": ["v"] * n,
            "frame_number": list(range(n)),
            "predicted": ["x"] * n,
            "confidence": [0.9] * n,
            "low_confidence": [not t for t in trusted.values()],
            "video_distance": [0.1] * n,
            "out_of_distribution": [False] * n,
            "trusted": list(trusted.values()),
            "source": [source] * n,
        },
        schema=PREDICTION_FLAGS_SCHEMA,
    )


def test_unreviewed_predictions_of_flagged_frames_are_dropped() -> None:
    source = model_source("m1")
    kept, dropped = drop_untrusted_predictions(
        _labels(["f1", "f2", "f3"], source, reviewed=False),
        _flags({"f1": True, "f2": False, "f3": False}, source),
    )
    assert (kept["frame_id"].to_pylist(), dropped) == (["f1"], 2)


def test_reviewed_predictions_and_other_sources_stay_whatever_the_flags() -> None:
    source = model_source("m1")
    flags = _flags({"f1": False}, source)
    for table in (
        _labels(["f1"], source, reviewed=True),  # a person vouched for it
        _labels(["f1"], model_source("m2"), reviewed=False),  # another model's row
        _labels(["f1"], "manual", reviewed=False),
    ):
        kept, dropped = drop_untrusted_predictions(table, flags)
        assert (kept.num_rows, dropped) == (1, 0)
