"""Evaluation by patient: grouped folds, metrics, and the guarantee that no test patient's frame
is ever trained, validated or pretrained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medvid.predict import evaluate
from medvid.predict.evaluate import (
    EvaluationConfig,
    clip_accuracy,
    evaluate_by_patient,
    evaluation_markdown,
    frame_classes,
    frame_metrics,
    patient_folds,
    truth_labels,
)
from medvid.predict.pretrain import PretrainConfig
from medvid.predict.train import TrainConfig
from tests.core.predict_fixtures import write_videos

SMALL = EvaluationConfig(
    folds=2,
    k_values=(1, 2),
    blitz_fractions=(0.5, 1.0),
    arch="tiny",
    input_size=32,
    backbones=("none",),
    train=TrainConfig(freeze_backbone=True, head_epochs=50, device="cpu", num_threads=1),
    smoothing_window=3,
    device="cpu",
)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, dict]:
    root = tmp_path_factory.mktemp("frames")
    manifest = write_videos(root, videos=8, frames=6, size=32)
    patients = dict(zip(manifest["video_id"], manifest["patient_id"], strict=True))
    return root, manifest, patients


def test_patient_folds_put_each_patient_in_one_fold_and_balance_classes() -> None:
    patients = ["a"] * 10 + ["b"] * 10 + ["c"] * 10 + ["d"] * 10
    classes = ["x"] * 20 + ["y"] * 20
    folds = patient_folds(patients, classes, n_folds=2)
    by_patient = pd.Series(folds).groupby(pd.Series(patients)).nunique()
    assert by_patient.tolist() == [1, 1, 1, 1]
    per_fold = pd.crosstab(folds, classes)
    assert per_fold.to_numpy().tolist() == [[10, 10], [10, 10]]
    np.testing.assert_array_equal(folds, patient_folds(patients, classes, n_folds=2))


def test_fewer_patients_than_folds_is_refused() -> None:
    with pytest.raises(ValueError, match="2 patient"):
        patient_folds(["a", "b"], ["x", "y"], n_folds=5)


def test_frame_classes_come_from_reviewed_true_rows_or_a_mapping(frames) -> None:
    _, manifest, _ = frames
    video_classes = dict(zip(manifest["video_id"], manifest["label_name"], strict=True))
    table = truth_labels(manifest, video_classes)
    assert frame_classes(table) == dict(
        zip(manifest["frame_id"], manifest["label_name"], strict=True)
    )
    rows = pd.DataFrame(
        {
            "frame_id": ["f1", "f1", "f2", "f3"],
            "label_name": ["red", "blue", "red", "blue"],
            "value": [True, True, True, True],
            "reviewed": [True, True, True, False],
        }
    )
    assert frame_classes(rows) == {"f2": "red"}  # f1 has two classes, f3 is unreviewed
    assert frame_classes({"f9": "blue"}) == {"f9": "blue"}


def test_frame_metrics_accuracy_and_macro_f1_exact() -> None:
    metrics = frame_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert metrics["frame_accuracy"] == 0.75
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_clip_accuracy_is_a_majority_vote_per_video() -> None:
    videos = ["v1", "v1", "v1", "v2", "v2"]
    assert clip_accuracy(videos, [0, 0, 0, 1, 1], [0, 1, 0, 0, 0]) == 0.5


def test_no_test_patient_is_ever_trained_or_validated_on(frames, monkeypatch) -> None:
    root, manifest, patients = frames
    seen: list[set[str]] = []
    real = evaluate.fit_head_by_patient

    def recording(features, targets, videos, items, *args, **kwargs):
        seen.append({patients[v] for v in items["video_id"]})
        return real(features, targets, videos, items, *args, **kwargs)

    monkeypatch.setattr(evaluate, "fit_head_by_patient", recording)
    labels = dict(zip(manifest["frame_id"], manifest["label_name"], strict=True))
    report = evaluate_by_patient(manifest, root, labels, patients, SMALL)
    assert len(seen) == 2 * (2 * 2 + 2)  # folds x (methods x K + blitz budgets)
    fold_of = patient_folds(
        [f"patient:{patients[v]}" for v in manifest["video_id"]],
        list(manifest["label_name"]),
        2,
    )
    test_patients = [set(manifest["patient_id"][fold_of == f]) for f in range(2)]
    for index, trained in enumerate(seen):
        fold = index // 6
        assert trained and trained.isdisjoint(test_patients[fold])
    assert report["patients"] == 4 and report["frames"] == 48


def test_the_report_has_every_budget_and_the_majority_baseline(frames) -> None:
    root, manifest, patients = frames
    labels = dict(zip(manifest["frame_id"], manifest["label_name"], strict=True))
    report = evaluate_by_patient(manifest, root, labels, patients, SMALL)
    budgets = [(r["method"], r["selection"], r["budget"]) for r in report["results"]]
    assert budgets == [
        ("cold", "uniform", "K=1"),
        ("cold", "uniform", "K=2"),
        ("cold", "active", "K=1"),
        ("cold", "active", "K=2"),
        ("blitz", "videos", "50% of videos"),
        ("blitz", "videos", "100% of videos"),
    ]
    # per fold 2 training patients = 4 videos of 6 frames: K=1 labels 4 frames, blitz 100%
    # every 3rd frame of the 4 videos, 8
    assert [r["frames_labelled"] for r in report["results"]] == [4, 8, 4, 8, 4, 8]
    # classes tie in every training fold: the baseline answers the first class, blue
    assert report["baseline"]["frame_accuracy"] == 0.5
    assert report["baseline"]["confusion_matrix"] == [[24, 0], [24, 0]]
    for row in report["results"]:
        assert np.sum(row["confusion_matrix"]) == 48
    assert "| majority class (baseline) | - | 0 | 0.500 | 0.333 | 0.500 |" in (
        evaluation_markdown(report)
    )


def test_pretraining_sees_only_the_training_patients_frames(frames, monkeypatch) -> None:
    root, manifest, patients = frames
    pretrained_on: list[set[str]] = []
    real = evaluate.pretrain_backbone

    def recording(frames_root, rows, config):
        pretrained_on.append({patients[v] for v in rows["video_id"]})
        return real(frames_root, rows, config)

    monkeypatch.setattr(evaluate, "pretrain_backbone", recording)
    config = EvaluationConfig(
        **{
            **SMALL.__dict__,
            "k_values": (1,),
            "selection_methods": ("uniform",),
            "blitz_fractions": (1.0,),
            "backbones": ("simclr",),
            "pretrain": PretrainConfig(epochs=1, batch_size=8, frame_step=2, device="cpu"),
        }
    )
    labels = dict(zip(manifest["frame_id"], manifest["label_name"], strict=True))
    report = evaluate_by_patient(manifest, root, labels, patients, config)
    assert [len(p) for p in pretrained_on] == [2, 2]
    assert pretrained_on[0].isdisjoint(pretrained_on[1])
    assert [p["frames"] for p in report["pretraining"]] == [12, 12]
