"""Label prediction as assets on real clips: the cold-label queue and its answers, versioned
label models (cold and blitz), predictions per video in the gpu pool, custom models, and the
lung-ultrasound evaluation. Training is tiny (32 px inputs, 1-2 epochs) so it runs in seconds."""

import csv
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from medvid.catalog.keys import table_key
from medvid.predict.model import load_model
from tests.stages.conftest import AVI, MP4, SONOSITE
from tests.stages.label_pipeline import (
    Processed,
    materialize,
    member_metadata,
    open_copy,
    process_clips,
)

LABEL_IDS = {"healthy": 0, "viral_pneumonia": 1, "red": 2, "blue": 3}
SHEETS = {
    "labels.csv": (
        f"video,start_s,end_s,label\n{AVI},0,100,healthy\n{MP4},0,100,viral_pneumonia\n"
    ),
}
TINY = {"input_size": 32, "epochs": 2, "batch_size": 8, "patience": 1}


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory, videos_dir: Path) -> Processed:
    """AVI (healthy) and MP4 (viral pneumonia) labelled by a labels sheet, SONOSITE unlabelled;
    every 10th frame: 10, 13 and 10 frames (SONOSITE: 2 live, 8 frozen)."""
    return process_clips(
        tmp_path_factory.mktemp("predict"),
        videos_dir,
        [AVI, MP4, SONOSITE],
        SHEETS,
        labels_config={"label_ids": LABEL_IDS},
    )


def _config(asset: str, **config) -> dict:
    return {"ops": {asset: {"config": config}}}


def _queue(home: Path) -> list[dict[str, str]]:
    with (home / "labelling" / "cold_label_queue.csv").open(newline="") as stream:
        return list(csv.DictReader(stream))


def _answer_queue(home: Path, answers: dict[str, str]) -> None:
    """A person fills in the label column of the CSV queue: one answer per video."""
    rows = _queue(home)
    for row in rows:
        row["label"] = answers[row["video_id"]]
    with (home / "labelling" / "cold_label_queue.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_the_cold_label_queue_holds_k_evenly_spaced_frames_per_video(
    processed: Processed, tmp_path: Path
) -> None:
    with open_copy(processed, tmp_path) as (instance, resources, home):
        result = materialize(
            instance,
            resources,
            "cold_label_queue",
            run_config=_config("cold_label_queue", frames_per_video=2),
        )
        rows = _queue(home)
        document = json.loads((home / "labelling" / "cold_label_queue.json").read_text())
    by_video = {
        video: [int(r["frame_number"]) for r in rows if r["video_id"] == video]
        for video in {r["video_id"] for r in rows}
    }
    ids = processed.video_ids
    # skip factor n / K over the live frames: 10 frames -> positions 0, 5; 13 -> 0, 6; the
    # SONOSITE phantom is frozen from frame 20 on, so only frames 0 and 10 are live
    assert by_video == {ids[AVI]: [0, 50], ids[MP4]: [0, 60], ids[SONOSITE]: [0, 10]}
    assert [r["label"] for r in rows] == [""] * 6
    assert document["labels"] == list(LABEL_IDS)
    assert [f["frame_id"] for f in document["frames"]] == [r["frame_id"] for r in rows]
    assert (
        result.asset_materializations_for_node("cold_label_queue")[0].metadata["frames"].value == 6
    )


def test_cold_label_answers_train_a_versioned_model_that_predicts_every_video(
    processed: Processed, tmp_path: Path
) -> None:
    ids = processed.video_ids
    answers = {ids[AVI]: "healthy", ids[MP4]: "viral_pneumonia", ids[SONOSITE]: "healthy"}
    with open_copy(processed, tmp_path) as (instance, resources, home):
        queue = _config("cold_label_queue", frames_per_video=2)
        materialize(instance, resources, "cold_label_queue", run_config=queue)
        _answer_queue(home, answers)
        rewritten = materialize(instance, resources, "cold_label_queue", run_config=queue)
        assert [r["label"] for r in _queue(home)] == [answers[r["video_id"]] for r in _queue(home)]
        read = materialize(instance, resources, "cold_label_answers")
        answer_rows = pd.read_parquet(home / table_key("cold_label_answers"))
        trained = materialize(
            instance,
            resources,
            "label_model",
            run_config=_config("label_model", strategy="cold", **TINY),
        )
        current = json.loads((home / "models" / "label_model.json").read_text())
        loaded = load_model(home / current["weights_key"])
        materialize(instance, resources, "predicted_labels", member=ids[SONOSITE])
        pred_meta = member_metadata(resources, "predicted_labels", ids[SONOSITE])
        predictions = pd.read_parquet(home / table_key("predicted_labels", ids[SONOSITE]))
    assert (
        rewritten.asset_materializations_for_node("cold_label_queue")[0].metadata["answered"].value
        == 6
    )
    assert (
        read.asset_materializations_for_node("cold_label_answers")[0]
        .metadata["answered_frames"]
        .value
        == 6
    )
    assert len(answer_rows) == 6 * len(LABEL_IDS)  # one row per answered frame and label
    assert answer_rows["reviewed"].all() and set(answer_rows["source"]) == {"manual"}
    assert answer_rows["value"].sum() == 6

    metadata = trained.asset_materializations_for_node("label_model")[0].metadata
    model_id = metadata["model_id"].value
    assert current == {
        "model_id": model_id,
        "weights_key": f"models/{model_id}.pt",
        "strategy": "cold",
    }
    assert loaded.model_id == model_id
    assert loaded.spec.classes == ("healthy", "viral_pneumonia") and loaded.spec.input_size == 32
    seen = {**loaded.metadata["trained_on"], **loaded.metadata["validated_on"]}
    assert seen == {ids[AVI]: 2, ids[MP4]: 2, ids[SONOSITE]: 2}
    assert len(loaded.metadata["history"]) >= 1
    assert metadata["training_curve"].value.startswith("![training curve](data:image/png")
    checks = {c.check_name: c.passed for c in trained.get_asset_check_evaluations()}
    assert checks["weights_match_sidecar"] is True
    assert (
        trained.get_asset_materialization_events()[0].materialization.tags["dagster/data_version"]
        == model_id
    )

    assert len(predictions) == 2 * 2  # 2 live frames x 2 classes (frozen frames: not predicted)
    assert set(predictions["source"]) == {f"model:{model_id}"}
    assert not predictions["reviewed"].any()
    assert (predictions.groupby("frame_id")["value"].sum() == 1).all()
    assert predictions["float_value"].between(0, 1).all()
    assert (pred_meta["device"], pred_meta["frames"]) == ("cpu", 2)


def test_a_blitz_model_trains_on_reviewed_videos_and_predicts_the_others(
    processed: Processed, tmp_path: Path
) -> None:
    ids = processed.video_ids
    with open_copy(processed, tmp_path) as (instance, resources, home):
        trained = materialize(
            instance, resources, "label_model", run_config=_config("label_model", **TINY)
        )
        materialize(instance, resources, "predicted_labels", member=ids[AVI])
        skipped = member_metadata(resources, "predicted_labels", ids[AVI])
        materialize(instance, resources, "predicted_labels", member=ids[SONOSITE])
        predictions = pd.read_parquet(home / table_key("predicted_labels", ids[SONOSITE]))
        current = json.loads((home / "models" / "label_model.json").read_text())
        loaded = load_model(home / current["weights_key"])
    # every 3rd of the 10 and 13 sheet-labelled frames; each video is the only one of its
    # class, so none can be held out for validation
    assert loaded.metadata["trained_on"] == {ids[AVI]: 4, ids[MP4]: 5}
    assert loaded.metadata["validated_on"] == {}
    assert skipped == {"predicted": "no: reviewed video it was trained on"}
    assert len(predictions) == 4
    [warn] = [
        c
        for c in trained.get_asset_check_evaluations()
        if c.check_name == "beats_chance_on_held_out_videos"
    ]
    assert (warn.passed, warn.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert "no validation videos" in warn.description


def test_a_custom_model_labels_every_live_frame(processed: Processed, tmp_path: Path) -> None:
    ids = processed.video_ids
    config = _config("custom_model_labels", function="tests.core.custom_model_example:predict")
    with open_copy(processed, tmp_path) as (instance, resources, home):
        materialize(instance, resources, "custom_model_labels", member=ids[AVI], run_config=config)
        table = pd.read_parquet(home / table_key("custom_model_labels", ids[AVI]))
        broken = materialize(
            instance,
            resources,
            "custom_model_labels",
            member=ids[AVI],
            run_config=_config(
                "custom_model_labels", function="tests.core.custom_model_example:out_of_range"
            ),
            raise_on_error=False,
        )
    assert len(table) == 10 and set(table["label_name"]) <= {"red", "blue"}
    assert set(table["source"]) == {"model:tests.core.custom_model_example.predict"}
    assert table["confidence"].between(0, 1).all() and table["value"].all()
    assert not broken.success
    [failure] = [e for e in broken.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "confidences outside [0, 1]" in failure.event_specific_data.error.message


def test_prediction_assets_run_in_the_gpu_pool(tmp_path: Path) -> None:
    from medvid_assets.definitions import build_definitions

    defs = build_definitions(tmp_path)
    for name in ("label_model", "predicted_labels", "custom_model_labels"):
        assert defs.get_assets_def(dg.AssetKey(name)).op.pool == "gpu"
