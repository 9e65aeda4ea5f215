"""Label prediction as assets on real clips: the cold-label queue and its answers, versioned
label models (cold and blitz) held out by patient, predictions with trust flags per video in the
gpu pool, the pretrained backbone, the evaluation by patient, untrusted predictions left out of
the export, and custom models. Models are ``tiny`` at 32 px so each trains in seconds."""

import csv
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from medvid.catalog.keys import Tables, table_key
from medvid.predict.model import load_model
from medvid.predict.trust import TrustReference
from medvid.settings import SETTINGS_FILE
from medvid.store import write_table
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
TINY = {"arch": "tiny", "input_size": 32, "epochs": 2, "batch_size": 8, "patience": 1}
PATIENT = "P0123456789A"  # a medvid pseudonym (P + 11 upper-case hex)


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


def _check(result: dg.ExecuteInProcessResult, name: str):
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == name]
    return check


def _answered(processed: Processed, instance, resources, home: Path) -> None:
    """Queue 2 frames per video and answer them: AVI and SONOSITE healthy, MP4 viral."""
    ids = processed.video_ids
    answers = {ids[AVI]: "healthy", ids[MP4]: "viral_pneumonia", ids[SONOSITE]: "healthy"}
    materialize(
        instance,
        resources,
        "cold_label_queue",
        run_config=_config("cold_label_queue", frames_per_video=2),
    )
    _answer_queue(home, answers)
    materialize(instance, resources, "cold_label_answers")


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
        flags = pd.read_parquet(home / table_key(Tables.PREDICTION_FLAGS, ids[SONOSITE]))
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
    assert loaded.spec.classes == ("healthy", "viral_pneumonia")
    assert (loaded.spec.arch, loaded.spec.input_size) == ("tiny", 32)
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

    # no patients sheet: three videos are three patients; the frozen backbone's head is tuned
    # by grouped 3-fold over them, so each patient is predicted by a head that never saw it.
    # The majority baseline, out of fold: AVI <- {viral, healthy} tie -> healthy (2 right),
    # MP4 <- {healthy, healthy} (0), SONOSITE <- tie -> healthy (2): 4 of 6 frames.
    assert metadata["held_out_patients"].value == 3
    assert metadata["majority_baseline"].value == pytest.approx(4 / 6)
    accuracy = metadata["held_out_patient_accuracy"].value
    assert accuracy == loaded.metadata["held_out"]["frame_accuracy"]
    for key in ("held_out_patient_accuracy", "majority_baseline", "held_out_patients"):
        assert loaded.metadata[key] == metadata[key].value
    beats = _check(trained, "beats_majority_on_held_out_patients")
    assert beats.severity == dg.AssetCheckSeverity.WARN
    assert beats.passed == (accuracy > 4 / 6)

    assert len(predictions) == 2 * 2  # 2 live frames x 2 classes (frozen frames: not predicted)
    assert set(predictions["source"]) == {f"model:{model_id}"}
    assert not predictions["reviewed"].any()
    assert (predictions.groupby("frame_id")["value"].sum() == 1).all()
    assert predictions["float_value"].between(0, 1).all()
    assert (pred_meta["device"], pred_meta["frames"]) == ("cpu", 2)

    # trust flags: one row per predicted frame, by the model's own thresholds
    trust = TrustReference.from_dict(loaded.metadata["trust"])
    chosen = predictions[predictions["value"]].sort_values("frame_number")
    assert list(flags["frame_id"]) == list(chosen["frame_id"])
    assert list(flags["predicted"]) == list(chosen["label_name"])
    assert list(flags["low_confidence"]) == list(flags["confidence"] < trust.min_confidence)
    assert list(flags["trusted"]) == list(~(flags["low_confidence"] | flags["out_of_distribution"]))
    assert pred_meta["flagged_low_confidence"] == int(flags["low_confidence"].sum())
    assert pred_meta["flagged_out_of_distribution"] == int(flags["out_of_distribution"].sum())
    assert pred_meta["held_out_patient_accuracy"] == accuracy


def test_videos_of_one_patient_are_held_out_together(processed: Processed, tmp_path: Path) -> None:
    ids = processed.video_ids
    with open_copy(processed, tmp_path) as (instance, resources, home):
        _answered(processed, instance, resources, home)
        # the patients table as label_sheets writes it from a patients sheet: AVI and SONOSITE
        # (both healthy) are one patient, MP4 has none (a patient of its own)
        write_table(
            resources["media_store"],
            table_key(Tables.PATIENTS),
            pa.table({"video_id": [ids[AVI], ids[SONOSITE]], "patient_id": [PATIENT, PATIENT]}),
        )
        trained = materialize(
            instance,
            resources,
            "label_model",
            run_config=_config("label_model", strategy="cold", **TINY),
        )
    metadata = trained.asset_materializations_for_node("label_model")[0].metadata
    # two patients, one per class: none can leave training without taking its class along
    assert metadata["training_patients"].value == 2
    assert metadata["held_out_patients"].value == 0
    assert "held_out_patient_accuracy" not in metadata
    beats = _check(trained, "beats_majority_on_held_out_patients")
    assert (beats.passed, beats.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert beats.description.startswith("not measured: 0 held-out patient(s)")


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
        # a site that trusts nothing below certainty: every frame is flagged low-confidence
        materialize(
            instance,
            resources,
            "predicted_labels",
            member=ids[SONOSITE],
            run_config=_config("predicted_labels", min_confidence=1.0),
        )
        predictions = pd.read_parquet(home / table_key("predicted_labels", ids[SONOSITE]))
        flags = pd.read_parquet(home / table_key(Tables.PREDICTION_FLAGS, ids[SONOSITE]))
        current = json.loads((home / "models" / "label_model.json").read_text())
        loaded = load_model(home / current["weights_key"])
        dropped = {}
        for untrusted in (False, True):
            exported = materialize(
                instance,
                resources,
                "training_dataset",
                run_config=_config(
                    "training_dataset",
                    include_predictions=True,
                    include_untrusted_predictions=untrusted,
                    phi_scan_ocr_images=0,
                ),
            )
            metadata = exported.asset_materializations_for_node("training_dataset")[0].metadata
            dropped[untrusted] = metadata["untrusted_predictions_dropped"].value
    # every 3rd of the 10 and 13 sheet-labelled frames; each video is the only one of its
    # class, so no patient can be held out
    assert loaded.metadata["trained_on"] == {ids[AVI]: 4, ids[MP4]: 5}
    assert loaded.metadata["validated_on"] == {}
    assert skipped == {"predicted": "no: reviewed video it was trained on"}
    assert len(predictions) == 4
    beats = _check(trained, "beats_majority_on_held_out_patients")
    assert (beats.passed, beats.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert "too few patients" in beats.description
    # the flagged predictions (2 frames x 2 classes, unreviewed) stay out of the export even
    # with include_predictions, unless include_untrusted_predictions
    assert flags["low_confidence"].all() and not flags["trusted"].any()
    assert dropped == {False: 4, True: 0}


def test_the_evaluation_holds_out_patients_and_fails_clearly_with_too_few(
    processed: Processed, tmp_path: Path
) -> None:
    evaluation = {
        "folds": 2,
        "k_values": [1],
        "blitz_fractions": [1.0],
        "arch": "tiny",
        "input_size": 32,
    }
    with open_copy(processed, tmp_path) as (instance, resources, home):
        first = materialize(
            instance,
            resources,
            "label_prediction_evaluation",
            run_config=_config("label_prediction_evaluation", **evaluation),
        )
        written = (home / "reports" / "label_prediction_evaluation.json").read_bytes()
        markdown = (home / "reports" / "label_prediction_evaluation.md").read_text()
        materialize(
            instance,
            resources,
            "label_prediction_evaluation",
            run_config=_config("label_prediction_evaluation", **evaluation),
        )
        rewritten = (home / "reports" / "label_prediction_evaluation.json").read_bytes()
        too_few = materialize(
            instance,
            resources,
            "label_prediction_evaluation",
            run_config=_config("label_prediction_evaluation", **{**evaluation, "folds": 3}),
            raise_on_error=False,
        )
    report = json.loads(written)
    metadata = first.asset_materializations_for_node("label_prediction_evaluation")[0].metadata
    # the labels sheet labels AVI (healthy) and MP4 (viral), both frames of SONOSITE are
    # unlabelled: two patients, one per class, so each test fold's class is absent from its
    # training fold and neither the model nor the majority class can get a frame right
    assert (report["patients"], report["videos"], report["frames"]) == (2, 2, 23)
    assert report["classes"] == ["healthy", "viral_pneumonia"]
    assert [f["patients"] for f in report["folds"]] == [1, 1]
    assert metadata["frame_accuracy"].value == 0.0
    assert metadata["majority_baseline"].value == 0.0
    assert metadata["setting"].value == "blitz 100% of videos, backbone none"
    assert metadata["confusion_matrix"].value.startswith("![confusion matrix](data:image/png")
    assert metadata["labelling_cost_plot"].value.startswith("![labelling-cost curve](data:")
    assert "| majority class (baseline) |" in metadata["labelling_cost_curve"].value
    assert markdown == metadata["labelling_cost_curve"].value
    assert rewritten == written  # a rerun writes the same bytes
    assert not too_few.success
    [failure] = [e for e in too_few.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert "2 patient(s) for 3 folds" in message and "predict.evaluation.folds" in message


def test_a_label_model_starts_from_the_pretrained_backbone(
    processed: Processed, tmp_path: Path
) -> None:
    with open_copy(processed, tmp_path) as (instance, resources, home):
        settings = yaml.safe_load((home / SETTINGS_FILE).read_text())
        settings["predict"] = {
            "model": {"arch": "tiny", "input_size": 32},
            "pretrain": {"epochs": 1, "batch_size": 8},
        }
        (home / SETTINGS_FILE).write_text(yaml.safe_dump(settings))
        pretrained = materialize(instance, resources, "pretrained_backbone")
        current = json.loads((home / "models" / "backbone.json").read_text())
        trained = materialize(
            instance,
            resources,
            "label_model",
            run_config=_config("label_model", backbone="pretrained"),
        )
        model = json.loads((home / "models" / "label_model.json").read_text())
        loaded = load_model(home / model["weights_key"])
        both = materialize(
            instance,
            resources,
            "label_model",
            run_config=_config("label_model", backbone="pretrained", weights_path="/x.pt"),
            raise_on_error=False,
        )
        other_arch = materialize(
            instance,
            resources,
            "label_model",
            run_config=_config("label_model", backbone="pretrained", arch="small"),
            raise_on_error=False,
        )
    metadata = pretrained.asset_materializations_for_node("pretrained_backbone")[0].metadata
    backbone_id = metadata["backbone_id"].value
    assert current == {
        "backbone_id": backbone_id,
        "weights_key": f"models/backbones/{backbone_id}.pt",
    }
    sidecar = json.loads((home / "models" / "backbones" / f"{backbone_id}.json").read_text())
    # every 3rd live frame: AVI 10 -> 4, MP4 13 -> 5, SONOSITE 2 live -> 1
    assert (sidecar["arch"], sidecar["input_size"], sidecar["frames"]) == ("tiny", 32, 10)
    assert (
        pretrained.get_asset_materialization_events()[0].materialization.tags[
            "dagster/data_version"
        ]
        == backbone_id
    )
    assert trained.success
    assert loaded.metadata["backbone_weights"].endswith(f"{backbone_id}.pt")
    assert loaded.metadata["config"]["backbone"] == "pretrained"
    for result, text in (
        (both, "either backbone: pretrained or weights_path"),
        (other_arch, "is a 'tiny', the model is a 'small'"),
    ):
        [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert text in failure.event_specific_data.error.message


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
    for name in (
        "label_model",
        "predicted_labels",
        "custom_model_labels",
        "pretrained_backbone",
        "label_prediction_evaluation",
    ):
        assert defs.get_assets_def(dg.AssetKey(name)).op.pool == "gpu"
