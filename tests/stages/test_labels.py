"""Label sets as assets on real clips: segments sheets materialised per video with a dry run
first, the project label schema from config, reviews sheets, and the export's rule that
predictions leave medvid only once reviewed or when asked for."""

import json
from pathlib import Path

import pandas as pd
import pytest

from medvid.catalog.keys import table_key
from medvid.ids import frame_id
from medvid.labels.store import label_sets_of_videos
from medvid.quarantine import quarantine_records
from tests.stages.conftest import AVI, MP4
from tests.stages.label_pipeline import (
    Processed,
    materialize,
    open_copy,
    process_clips,
    take_in,
    write_settings,
)

LABEL_IDS = {"healthy": 0, "b_lines": 1, "red": 2, "blue": 3}
SEGMENTS = (
    "video,start_frame,end_frame,start_s,end_s,label,value\n"
    f"{AVI},15,45,,,b_lines,true\n"  # AVI frames 20, 30, 40 (every 10th frame is extracted)
    f"{MP4},,,1.0,2.0,b_lines,true\n"  # 25 fps: frames 30 (1.2 s), 40 (1.6 s); 2.0 s excluded
    f"{MP4},,,2.0,3.0,b_lines,false\n"  # frames 50, 60, 70
    f"{AVI},1,5,,,b_lines,true\n"  # between extracted frames: covers none
)
SHEETS = {
    "segments.csv": SEGMENTS,
    "labels.csv": f"video,start_s,end_s,label\n{AVI},0,100,healthy\n",
    "reviews.csv": f"video,reviewer,source\n{AVI},Dr A,segment\n",
}
EXPORT = {"dataset_name": "t", "val_ratio": 0.5}


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory, videos_dir: Path) -> Processed:
    return process_clips(
        tmp_path_factory.mktemp("labels"),
        videos_dir,
        [AVI, MP4],
        SHEETS,
        labels_config={"label_ids": LABEL_IDS},
    )


def _table(home: Path, name: str, video_id: str) -> pd.DataFrame:
    return pd.read_parquet(home / table_key(name, video_id))


def _numbers(df: pd.DataFrame, value: bool) -> list[int]:
    return sorted(df.loc[df["value"] == value, "frame_number"])


def test_segments_become_labels_of_exactly_the_extracted_frames_inside(
    processed: Processed,
) -> None:
    avi = _table(processed.home, "segment_labels", processed.video_ids[AVI])
    mp4 = _table(processed.home, "segment_labels", processed.video_ids[MP4])
    assert (_numbers(avi, True), _numbers(avi, False)) == ([20, 30, 40], [])
    assert (_numbers(mp4, True), _numbers(mp4, False)) == ([30, 40], [50, 60, 70])
    assert set(mp4["source"]) == {"segment"} and set(mp4["label_id"]) == {1}
    assert set(mp4["annotator"]) == {"segments.csv"}
    assert not mp4["reviewed"].any()  # segments sheets are not assumed reviewed


def test_segment_labels_reports_the_dry_run_over_extracted_frames(
    processed: Processed, tmp_path: Path
) -> None:
    with open_copy(processed, tmp_path) as (instance, resources, _):
        sheets = materialize(instance, resources, "label_sheets")
        result = materialize(instance, resources, "segment_labels")
    metadata = result.asset_materializations_for_node("segment_labels")[0].metadata
    avi, mp4 = processed.video_ids[AVI], processed.video_ids[MP4]
    assert metadata["dry_run"].value == {
        "rows": 8,
        "per_label": {"b_lines": 8},
        "per_video": dict(sorted({avi: 3, mp4: 5}.items())),
        "segments": 4,
        "segments_without_frames": [5],
    }
    labels = sheets.asset_materializations_for_node("label_sheets")[0].metadata
    assert labels["label_schema"].value == LABEL_IDS


def test_a_dry_run_counts_and_writes_nothing(processed: Processed, tmp_path: Path) -> None:
    avi, mp4 = processed.video_ids[AVI], processed.video_ids[MP4]
    with open_copy(processed, tmp_path) as (instance, resources, home):
        for vid in (avi, mp4):
            (home / table_key("segment_labels", vid)).unlink()
        result = materialize(
            instance,
            resources,
            "segment_labels",
            run_config={"ops": {"segment_labels": {"config": {"dry_run": True}}}},
        )
        assert not (home / table_key("segment_labels", avi)).exists()
    metadata = result.asset_materializations_for_node("segment_labels")[0].metadata
    assert metadata["status"].value == "dry_run"
    assert metadata["dry_run"].value["per_video"] == dict(sorted({avi: 3, mp4: 5}.items()))


def test_segments_configured_as_reviewed_are_ground_truth(
    processed: Processed, tmp_path: Path
) -> None:
    mp4 = processed.video_ids[MP4]
    with open_copy(processed, tmp_path) as (instance, resources, home):
        materialize(
            instance,
            resources,
            "segment_labels",
            run_config={
                "ops": {"segment_labels": {"config": {"reviewed": True, "reviewer": "Dr S"}}}
            },
        )
        table = _table(home, "segment_labels", mp4)
    assert table["reviewed"].all() and set(table["reviewer"]) == {"Dr S"}


def test_a_reviews_sheet_marks_the_segment_labels_of_its_video_reviewed(
    processed: Processed,
) -> None:
    from medvid_resources import LocalMediaStore

    store = LocalMediaStore(root=str(processed.home))
    avi, mp4 = processed.video_ids[AVI], processed.video_ids[MP4]
    sets = label_sets_of_videos(store, [avi, mp4])
    avi_segments = sets[avi]["segment_labels"].to_pandas()
    assert avi_segments["reviewed"].all() and set(avi_segments["reviewer"]) == {"Dr A"}
    assert not sets[mp4]["segment_labels"].to_pandas()["reviewed"].any()
    assert sets[avi]["frame_labels"].to_pandas()["reviewed"].all()  # labels sheets: reviewed
    assert "frame_labels" not in sets[mp4] or sets[mp4]["frame_labels"].num_rows == 0


def test_a_closed_label_schema_quarantines_a_sheet_with_an_unknown_label(
    processed: Processed, tmp_path: Path
) -> None:
    with open_copy(processed, tmp_path) as (instance, resources, home):
        (home / "landing" / "more.csv").write_text(
            f"video,start_s,end_s,label\n{MP4},0,1,pneumothorax\n"
        )
        take_in(instance, resources)
        write_settings(
            home,
            {
                "frames": {"every_n": 10},
                "labels": {"label_ids": LABEL_IDS, "allow_new_labels": False},
            },
        )
        result = materialize(instance, resources, "label_sheets")
        [record] = quarantine_records(resources["media_store"])
        schema = json.loads((home / "tables" / "label_schema.json").read_text())
    assert (record.file, record.stage) == ("more.csv", "label_sheets")
    assert "'pneumothorax' is not in the project's label schema" in record.reason
    assert schema == LABEL_IDS
    metadata = result.asset_materializations_for_node("label_sheets")[0].metadata
    assert metadata["quarantined_sheets"].value == 1


def test_configured_ids_are_written_in_the_frame_labels(processed: Processed) -> None:
    table = _table(processed.home, "frame_labels", processed.video_ids[AVI])
    assert set(zip(table["label_name"], table["label_id"], strict=True)) == {("healthy", 0)}


def _annotations(home: Path) -> pd.DataFrame:
    return pd.read_csv(home / "exports" / "t" / "annotations.csv", dtype=str)


def test_predictions_are_exported_only_when_reviewed_or_asked_for(
    processed: Processed, tmp_path: Path
) -> None:
    mp4 = processed.video_ids[MP4]
    custom = {"function": "tests.core.custom_model_example:predict", "model_id": "colour-v1"}
    with open_copy(processed, tmp_path) as (instance, resources, home):
        materialize(
            instance,
            resources,
            "custom_model_labels",
            member=mp4,
            run_config={"ops": {"custom_model_labels": {"config": custom}}},
        )
        export = {"ops": {"training_dataset": {"config": EXPORT}}}
        default = materialize(instance, resources, "training_dataset", run_config=export)
        by_default = _annotations(home)
        asked = {"ops": {"training_dataset": {"config": {**EXPORT, "include_predictions": True}}}}
        materialize(instance, resources, "training_dataset", run_config=asked)
        when_asked = _annotations(home)
        (home / "landing" / "reviewed.csv").write_text(f"video,reviewer,source\n{MP4},Dr R,model\n")
        take_in(instance, resources)
        materialize(instance, resources, "label_sheets")
        reviewed = materialize(instance, resources, "training_dataset", run_config=export)
        after_review = _annotations(home)
        multilabel = json.loads((home / "exports" / "t" / "multilabel.json").read_text())
    metadata = default.asset_materializations_for_node("training_dataset")[0].metadata
    assert metadata["unreviewed_predictions_left_out"].value == 13  # one row per MP4 frame
    assert "model:colour-v1" not in set(by_default["information_source_name"])
    assert (when_asked["information_source_name"] == "model:colour-v1").sum() == 13
    model_rows = after_review[after_review["information_source_name"] == "model:colour-v1"]
    assert len(model_rows) == 13 and set(model_rows["annotator"]) == {"model:colour-v1"}
    failed = {
        c.check_name: c.metadata for c in reviewed.get_asset_check_evaluations() if not c.passed
    }
    assert not failed, failed
    # the MP4 frame 30 has a segment (b_lines true) and a reviewed colour prediction
    frame = next(f for f in multilabel["frames"] if f["frame_id"] == frame_id(mp4, 30))
    names = [x["label_name"] for x in multilabel["labels"]]
    assert names == ["healthy", "b_lines", "red", "blue"]
    assert frame["label_mask"][1] == 1 and frame["label_vector"][1] == 1
    assert frame["label_mask"][2] + frame["label_mask"][3] == 1  # the one colour predicted
