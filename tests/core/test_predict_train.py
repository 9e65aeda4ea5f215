"""Training that generalises to new patients: the patient split, balanced sampling, heads on a
frozen backbone, calibration, the out-of-distribution reference, and bit-identical weights for
the same seed. Synthetic frames and the ``tiny`` architecture keep each test near a second."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from medvid.predict.infer import predict_with_flags
from medvid.predict.model import ModelSpec, build_model, model_fingerprint, save_model
from medvid.predict.train import (
    TrainConfig,
    fit_head_by_patient,
    sampling_weights,
    split_by_patient,
    split_by_video,
    train_classifier,
)
from medvid.predict.trust import (
    TrustReference,
    build_trust_reference,
    expected_calibration_error,
    fit_temperature,
    fold_temperature,
)
from tests.core.predict_fixtures import write_videos

SPEC = ModelSpec(classes=("blue", "red"), arch="tiny", input_size=32)
FAST = TrainConfig(
    epochs=3, batch_size=16, patience=2, device="cpu", num_threads=1, min_images_per_epoch=96
)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, dict]:
    root = tmp_path_factory.mktemp("frames")
    manifest = write_videos(root, videos=8, frames=6, size=32)
    patients = dict(zip(manifest["video_id"], manifest["patient_id"], strict=True))
    return root, manifest, patients


@pytest.fixture(scope="module")
def split(frames):
    _, manifest, patients = frames
    return split_by_patient(manifest, patients, val_fraction=0.25, seed=0)


# --- splits and sampling ----------------------------------------------------------------------


def test_split_by_patient_keeps_each_patients_videos_on_one_side(split) -> None:
    train_items, val_items = split
    assert set(train_items["patient_id"]).isdisjoint(val_items["patient_id"])
    assert val_items["patient_id"].nunique() == 1  # round(0.25 * 4 patients)
    assert val_items["video_id"].nunique() == 2  # both videos of that patient
    assert set(train_items["label_name"]) == {"red", "blue"}


def test_a_video_without_a_patient_is_a_patient_of_its_own(frames) -> None:
    _, manifest, _ = frames
    train_items, val_items = split_by_patient(manifest, {}, val_fraction=0.25, seed=0)
    assert val_items["video_id"].nunique() == 2  # round(0.25 * 8 videos)
    assert set(val_items["patient_id"]) == set(val_items["video_id"])


def test_split_by_video_holds_out_whole_videos_and_keeps_every_class_in_training(frames):
    _, manifest, _ = frames
    train_items, val_items = split_by_video(manifest, val_fraction=0.25, seed=0)
    assert set(train_items["video_id"]).isdisjoint(val_items["video_id"])
    assert val_items["video_id"].nunique() == 2
    assert set(train_items["label_name"]) == {"red", "blue"}
    assert "patient_id" not in train_items.columns


def test_class_video_balance_weighs_every_class_and_every_video_of_a_class_alike() -> None:
    videos, labels = ["a", "a", "b", "c"], ["x", "x", "x", "y"]
    assert sampling_weights(videos, labels, "class_video").tolist() == [0.125, 0.125, 0.25, 0.5]
    assert sampling_weights(videos, labels, "class").tolist() == pytest.approx(
        [1 / 6, 1 / 6, 1 / 6, 0.5]
    )
    assert sampling_weights(videos, labels, "none").tolist() == [0.25] * 4


# --- training -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fine_tuned(frames, split):
    root, _, _ = frames
    return train_classifier(root, *split, SPEC, FAST)


def test_fine_tuning_reaches_full_accuracy_on_the_held_out_patient(fine_tuned) -> None:
    assert fine_tuned.held_out["frame_accuracy"] == 1.0
    assert fine_tuned.held_out["clip_accuracy"] == 1.0
    assert (fine_tuned.held_out["patients"], fine_tuned.held_out["frames"]) == (1, 12)
    assert np.trace(np.array(fine_tuned.confusion_matrix)) == 12
    assert fine_tuned.deterministic


def test_a_frozen_backbone_trains_only_the_final_layer(frames, split) -> None:
    root, _, _ = frames
    config = TrainConfig(freeze_backbone=True, device="cpu", num_threads=1)
    result = train_classifier(root, *split, SPEC, config)
    torch.manual_seed(config.seed)
    untouched = build_model(SPEC)
    for name, tensor in result.model.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(tensor, untouched.state_dict()[name]), name
    assert result.held_out["frame_accuracy"] == 1.0


def test_the_same_seed_gives_the_same_weight_bytes(frames, split, tmp_path) -> None:
    root, _, _ = frames
    config = TrainConfig(
        epochs=2, batch_size=16, device="cpu", num_threads=1, min_images_per_epoch=0
    )
    first = train_classifier(root, *split, SPEC, config)
    again = train_classifier(root, *split, SPEC, config)
    other = train_classifier(root, *split, SPEC, TrainConfig(**{**config.__dict__, "seed": 1}))
    save_model(first.model, SPEC, tmp_path / "a.pt")
    save_model(again.model, SPEC, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert model_fingerprint(first.model) != model_fingerprint(other.model)


def test_early_stopping_ends_training_when_validation_loss_stops_falling(frames, split) -> None:
    root, _, _ = frames
    train_items, val_items = split
    # Validation labels swapped: the better the model learns, the higher the val loss.
    swapped = val_items.assign(
        label_name=val_items["label_name"].map({"red": "blue", "blue": "red"})
    )
    config = TrainConfig(
        epochs=8, batch_size=16, patience=2, device="cpu", num_threads=1, min_images_per_epoch=64
    )
    result = train_classifier(root, train_items, swapped, SPEC, config)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 2 < 8


# --- calibration and trust ------------------------------------------------------------------


def test_temperature_scaling_recovers_the_temperature_of_overconfident_logits() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(20000, 3))
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    targets = np.array([rng.choice(3, p=row) for row in p])
    assert fit_temperature(3.0 * true_logits, targets, "nll") == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(3.0 * true_logits, targets, "ece") == pytest.approx(3.0, rel=0.1)


def test_folding_the_temperature_divides_the_logits(frames) -> None:
    torch.manual_seed(0)
    model = build_model(SPEC).eval()
    x = torch.randn(2, 3, 32, 32)
    before = model(x).detach()
    fold_temperature(model, 4.0)
    assert torch.allclose(model(x).detach(), before / 4.0, atol=1e-6)


def test_expected_calibration_error_of_two_frames() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.4]])
    # bin 0.9 holds a right frame (gap 0.1), bin 0.6 a wrong one (gap 0.6)
    assert expected_calibration_error(probs, np.array([0, 1])) == pytest.approx(0.35)


def test_ood_threshold_is_the_quantile_of_held_out_patient_distances() -> None:
    # one frame per video; standardised they point along +x, -x, +y, -y
    train = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=np.float32)
    reference = build_trust_reference(
        train, ["a", "b", "c", "d"], ["p1", "p1", "p2", "p2"], train[:1], ["e"]
    )
    # a (1,0) vs other-patient c (0,1), d (0,-1): distance 1; likewise b, c, d; the
    # validation video e = a's frame: nearest a, distance 0
    assert reference.calibration_distances == pytest.approx([0, 1, 1, 1, 1], abs=1e-6)
    assert reference.threshold == pytest.approx(1.0, abs=1e-6)
    between = reference.distances(np.array([[-1.0, -1.0]]), ["new"])["new"]
    assert between == pytest.approx(1 - np.sqrt(0.5), abs=1e-6)
    assert reference.out_of_distribution(1.2) and not reference.out_of_distribution(0.3)


def test_a_video_unlike_any_training_video_is_flagged_and_the_rest_trusted(
    frames, fine_tuned
) -> None:
    root, manifest, _ = frames
    rows = []
    for number in range(4):  # a new video of plain grey frames
        rel = f"video_grey/frame_{number}.jpg"
        (root / "video_grey").mkdir(exist_ok=True)
        cv2.imwrite(str(root / rel), np.full((32, 32, 3), 128, np.uint8))
        rows.append(
            {
                "frame_id": f"grey-{number}",
                "video_id": "grey",
                "frame_number": number,
                "frame_timestamp": number / 25,
                "frame_relative_path": rel,
            }
        )
    both = pd.concat([manifest, pd.DataFrame(rows)], ignore_index=True)
    labels, flags, videos = predict_with_flags(
        fine_tuned.model, SPEC, root, both, fine_tuned.trust, device="cpu"
    )
    assert videos["grey"]["out_of_distribution"] and not videos["grey"]["trusted"]
    trained_on = set(fine_tuned.trained_on)
    assert not any(videos[v]["out_of_distribution"] for v in trained_on)
    assert flags.num_rows == len(both) and labels.num_rows == 2 * len(both)
    assert flags.to_pandas().query("video_id == 'grey'")["out_of_distribution"].all()


def test_trust_reference_survives_the_model_sidecar(fine_tuned) -> None:
    stored = TrustReference.from_dict(fine_tuned.metadata()["trust"])
    assert stored.threshold == pytest.approx(fine_tuned.trust.threshold, rel=1e-5)
    assert stored.video_features.shape == fine_tuned.trust.video_features.shape


def test_a_head_is_measured_on_every_labelled_patient_out_of_fold() -> None:
    rng = np.random.default_rng(0)
    videos = np.repeat([f"v{i}" for i in range(6)], 5)
    targets = np.repeat([0, 1, 0, 1, 0, 1], 5)
    features = np.eye(2)[targets] + 0.1 * rng.normal(size=(30, 2))
    items = pd.DataFrame(
        {"video_id": videos, "label_name": np.array(["a", "b"])[targets], "_row": range(30)}
    )
    patients = {f"v{i}": f"p{i}" for i in range(6)}
    config = TrainConfig(freeze_backbone=True, head_folds=3, head_epochs=50)
    head, temperature, held_out = fit_head_by_patient(
        features, targets, videos, items, patients, 2, config
    )
    assert (held_out["patients"], held_out["frames"], held_out["folds"]) == (6, 30, 3)
    assert held_out["frame_accuracy"] == 1.0 and held_out["best_step"] == 50
    assert ((features @ head.weight.T + head.bias).argmax(1) == targets).all()
    assert temperature > 0
