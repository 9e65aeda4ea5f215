"""medvid.predict: frame selection, training, inference, cold/blitz/custom labelling.

Training tests use tiny synthetic frames (two classes of coloured noise written as JPEG) so a
ResNet18 learns them in about a second on a CPU; the published behaviours they check come from
the AIGVA thesis (seed 003).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from medvid.ids import frame_id
from medvid.labels.schema import FRAME_LABELS_SCHEMA, LabelSchema
from medvid.predict.data import read_frame_rgb
from medvid.predict.errors import (
    CustomModelError,
    FrameReadError,
    FrameSelectionError,
    LabellingQueueError,
    ModelFileError,
)
from medvid.predict.evaluate import frame_metrics, lung_ultrasound_class
from medvid.predict.infer import predict_frames, smooth_probabilities
from medvid.predict.model import ModelSpec, build_model, load_model, save_model, sidecar_path
from medvid.predict.selection import evenly_spaced_positions, unique_positions
from medvid.predict.strategies import (
    blitz_label,
    labels_to_items,
    load_custom_callable,
    predict_with_callable,
    read_labelling_answers,
    select_frames_for_labelling,
    write_labelling_queue,
)
from medvid.predict.train import TrainConfig, split_by_video, train_classifier

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
SPEC = ModelSpec(classes=("blue", "red"), input_size=32)
SCHEMA = LabelSchema.from_names(["blue", "red"])
FAST = TrainConfig(epochs=4, batch_size=16, patience=2, seed=0, device="cpu")


def _write_videos(root: Path, videos: int = 6, frames: int = 8, size: int = 40) -> pd.DataFrame:
    """Synthetic frames: even videos red-tinted noise, odd videos blue-tinted noise."""
    rng = np.random.default_rng(0)
    rows = []
    for v in range(videos):
        video_id = f"{v:016x}"
        label = "red" if v % 2 == 0 else "blue"
        for number in range(frames):
            bgr = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
            channel = 2 if label == "red" else 0
            bgr[..., channel] += 100
            fid = frame_id(video_id, number)
            rel = f"video_{video_id}/frame_{fid}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / rel), bgr)
            rows.append(
                {
                    "frame_id": fid,
                    "video_id": video_id,
                    "frame_number": number,
                    "frame_timestamp": number / 25.0,
                    "frame_relative_path": rel,
                    "is_dead": False,
                    "label_name": label,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("frames")
    return root, _write_videos(root)


@pytest.fixture(scope="module")
def trained(frames: tuple[Path, pd.DataFrame]):
    root, manifest = frames
    train_items, val_items = split_by_video(manifest, val_fraction=0.34, seed=0)
    return train_classifier(root, train_items, val_items, SPEC, FAST)


# --- selection ----------------------------------------------------------------------------


def test_uniform_positions_match_the_thesis_example_of_5_frames_from_300() -> None:
    assert evenly_spaced_positions(300, 5) == [0, 60, 120, 180, 240]


def test_unique_keeps_frames_far_from_every_kept_hash_then_thins_to_k() -> None:
    hashes = [
        "0000000000000000",
        "0000000000000001",
        "ffffffff00000000",
        "00000000ffffffff",
        "ffffffffffffffff",
    ]
    assert unique_positions(hashes, None, hamming_threshold=16) == [0, 2, 3, 4]
    assert unique_positions(hashes, 2, hamming_threshold=16) == [0, 3]
    assert unique_positions(hashes, 5, hamming_threshold=16) == [0, 1, 2, 3, 4]


def test_unique_rejects_a_phash_that_is_not_16_hex_digits() -> None:
    with pytest.raises(FrameSelectionError, match="16 hex"):
        unique_positions(["xyz"], 1)


def test_selection_picks_k_live_frames_per_video_deterministically(frames) -> None:
    _, manifest = frames
    manifest = manifest.assign(is_dead=manifest["frame_number"] == 0)
    first = select_frames_for_labelling(manifest, 3, "uniform")
    again = select_frames_for_labelling(manifest, 3, "uniform")
    assert first.groupby("video_id").size().tolist() == [3] * 6
    assert first["frame_number"].tolist()[:3] == [1, 3, 5]  # 7 live frames: positions 0, 2, 4
    pd.testing.assert_frame_equal(first, again)


def test_unique_selection_needs_a_phash_column(frames) -> None:
    with pytest.raises(FrameSelectionError, match="phash"):
        select_frames_for_labelling(frames[1], 2, "unique")


# --- training -----------------------------------------------------------------------------


def test_split_by_video_holds_out_whole_videos_and_keeps_every_class_in_training(frames):
    _, manifest = frames
    train_items, val_items = split_by_video(manifest, val_fraction=0.34, seed=0)
    assert set(train_items["video_id"]).isdisjoint(val_items["video_id"])
    assert val_items["video_id"].nunique() == 2
    assert set(train_items["label_name"]) == {"red", "blue"}
    again = split_by_video(manifest, val_fraction=0.34, seed=0)[1]
    assert val_items["video_id"].tolist() == again["video_id"].tolist()


def test_training_reaches_full_accuracy_on_held_out_videos(trained) -> None:
    best = trained.history[trained.best_epoch - 1]
    assert best["val_accuracy"] == 1.0
    assert np.trace(np.array(trained.confusion_matrix)) == 16  # 2 videos x 8 frames
    assert trained.seconds_per_image > 0


def test_early_stopping_ends_training_when_validation_loss_stops_falling(frames) -> None:
    root, manifest = frames
    train_items, val_items = split_by_video(manifest, val_fraction=0.34, seed=0)
    # Validation labels swapped: the better the model learns, the higher the val loss.
    swapped = val_items.assign(
        label_name=val_items["label_name"].map({"red": "blue", "blue": "red"})
    )
    config = TrainConfig(epochs=10, batch_size=16, patience=2, seed=0, device="cpu")
    result = train_classifier(root, train_items, swapped, SPEC, config)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 2 < 10


# --- model files ----------------------------------------------------------------------------


def test_saved_model_predicts_exactly_like_the_trained_one(frames, trained, tmp_path) -> None:
    root, manifest = frames
    path = tmp_path / "model.pt"
    model_id = save_model(trained.model, SPEC, path, trained.metadata())
    loaded = load_model(path)
    before = predict_frames(trained.model, SPEC, root, manifest, device="cpu", now=NOW)
    after = predict_frames(loaded.model, loaded.spec, root, manifest, device="cpu", now=NOW)
    assert loaded.model_id == model_id and loaded.spec == SPEC
    assert after.equals(before)
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar["metadata"]["trained_on"] == {v: 8 for v in trained.trained_on}


def test_load_model_rejects_weights_that_do_not_match_the_sidecar(trained, tmp_path) -> None:
    path = tmp_path / "model.pt"
    save_model(trained.model, SPEC, path)
    sidecar = json.loads(sidecar_path(path).read_text())
    sidecar["model_id"] = "0" * 16
    sidecar_path(path).write_text(json.dumps(sidecar))
    with pytest.raises(ModelFileError, match="out of sync"):
        load_model(path)


def test_user_weights_with_another_class_count_load_all_but_the_final_layer(tmp_path) -> None:
    torch.manual_seed(1)
    three = build_model(ModelSpec(classes=("a", "b", "c")))
    torch.save(three.state_dict(), tmp_path / "user.pt")
    two = build_model(ModelSpec(classes=("a", "b")), tmp_path / "user.pt")
    assert torch.equal(two.conv1.weight, three.conv1.weight)
    assert two.fc.out_features == 2


def test_missing_weights_file_is_a_model_file_error(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        build_model(SPEC, tmp_path / "absent.pt")


# --- inference ------------------------------------------------------------------------------


def test_predict_frames_writes_one_row_per_frame_and_class(frames, trained) -> None:
    root, manifest = frames
    table = predict_frames(
        trained.model, SPEC, root, manifest, device="cpu", model_id="m1", now=NOW
    )
    df = table.to_pandas()
    assert table.schema == FRAME_LABELS_SCHEMA
    assert table.num_rows == 48 * 2
    assert df.groupby("frame_id")["value"].sum().tolist() == [1] * 48
    assert set(df["source"]) == {"model:m1"} and not df["reviewed"].any()
    assert np.allclose(df.groupby("frame_id")["float_value"].sum(), 1.0)
    expected_conf = np.where(df["value"], df["float_value"], 1 - df["float_value"])
    assert np.allclose(df["confidence"], expected_conf, atol=1e-6)


def test_smoothing_removes_an_isolated_flip_but_not_across_videos() -> None:
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.9, 0.1], [0.1, 0.9]])
    videos = np.array(["a", "a", "a", "a", "b"])
    smoothed = smooth_probabilities(probs, videos, window=3)
    assert smoothed.argmax(1).tolist() == [0, 0, 0, 0, 1]
    assert smoothed[2, 1] == pytest.approx((0.1 + 0.8 + 0.1) / 3)
    assert smoothed[4].tolist() == [0.1, 0.9]  # alone in its video


def test_unreadable_frame_is_a_frame_read_error(tmp_path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FrameReadError, match="cannot be decoded"):
        read_frame_rgb(tmp_path / "bad.jpg")


def test_read_frame_rgb_returns_height_width_3_uint8_for_a_real_jpeg(shared_data) -> None:
    rgb = read_frame_rgb(shared_data / "images" / "itkpocus_interson-image.jpg")
    assert rgb.shape == (870, 1357, 3) and rgb.dtype == np.uint8


# --- cold label queue and blitz label -------------------------------------------------------


def test_labelling_queue_round_trip_gives_reviewed_manual_labels(frames, tmp_path) -> None:
    _, manifest = frames
    selected = select_frames_for_labelling(manifest, 2)
    csv_path, json_path = write_labelling_queue(selected, tmp_path / "queue", SCHEMA.names)
    queue = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    assert queue["label"].tolist() == [""] * 12
    assert json.loads(json_path.read_text())["labels"] == ["blue", "red"]
    queue.loc[:9, "label"] = selected["label_name"].iloc[:10].tolist()  # 2 left unanswered
    queue.to_csv(csv_path, index=False)
    answers = read_labelling_answers(csv_path, SCHEMA, annotator="dr a", now=NOW)
    df = answers.to_pandas()
    assert answers.schema == FRAME_LABELS_SCHEMA and answers.num_rows == 10 * 2
    assert df["reviewed"].all() and set(df["source"]) == {"manual"}
    truth = dict(zip(selected["frame_id"], selected["label_name"], strict=True))
    assert all(
        truth[f] == n for f, n in zip(df[df.value].frame_id, df[df.value].label_name, strict=True)
    )


def test_labelling_answers_with_an_unknown_label_are_rejected(frames, tmp_path) -> None:
    selected = select_frames_for_labelling(frames[1], 1)
    csv_path, _ = write_labelling_queue(selected, tmp_path / "queue", SCHEMA.names)
    queue = pd.read_csv(csv_path, dtype=str, keep_default_na=False).assign(label="green")
    queue.to_csv(csv_path, index=False)
    with pytest.raises(LabellingQueueError, match="green"):
        read_labelling_answers(csv_path, SCHEMA)


def test_blitz_label_predicts_only_the_unreviewed_videos(frames, tmp_path) -> None:
    root, manifest = frames
    selected = manifest[manifest["video_id"].isin([f"{v:016x}" for v in range(4)])]
    csv_path, _ = write_labelling_queue(selected, tmp_path / "all", SCHEMA.names)
    queue = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    queue["label"] = selected.sort_values(["video_id", "frame_number"])["label_name"].tolist()
    queue.to_csv(csv_path, index=False)
    reviewed = read_labelling_answers(csv_path, SCHEMA, now=NOW)
    run = blitz_label(manifest, root, reviewed, skip=2, spec=SPEC, config=FAST, now=NOW)
    assert run.predicted_videos == [f"{v:016x}" for v in (4, 5)]
    seen = run.train.trained_on | run.train.validated_on
    assert seen == {f"{v:016x}": 4 for v in range(4)}  # every 2nd of 8 frames
    predicted = run.labels.to_pandas()
    hits = predicted[predicted["value"]].merge(manifest, on="frame_id")
    assert (hits["label_name_x"] == hits["label_name_y"]).mean() == 1.0


def test_single_label_training_rejects_frames_with_two_true_labels(frames) -> None:
    _, manifest = frames
    row = manifest.iloc[0]
    labels = pd.DataFrame(
        {
            "frame_id": [row.frame_id] * 2,
            "label_name": ["red", "blue"],
            "value": [True, True],
            "reviewed": [True, True],
        }
    )
    with pytest.raises(Exception, match="several true labels"):
        labels_to_items(labels, manifest, SPEC)


# --- custom model ---------------------------------------------------------------------------


@pytest.fixture
def example_module(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    return "custom_model_example"


def test_custom_callable_labels_every_frame_in_batches(frames, example_module) -> None:
    root, manifest = frames
    function = load_custom_callable(f"{example_module}:predict")
    table = predict_with_callable(function, root, manifest, SCHEMA, batch_size=20, now=NOW)
    df = table.to_pandas()
    assert table.schema == FRAME_LABELS_SCHEMA and table.num_rows == 48
    assert df["label_name"].tolist() == manifest["label_name"].tolist()
    assert set(df["source"]) == {"model:custom_model_example.predict"}
    assert ((df["confidence"] > 0.5) & (df["confidence"] <= 1)).all()
    module = __import__(example_module)
    assert module.CALLS[-3:] == [(20, 40, 40, 3), (20, 40, 40, 3), (8, 40, 40, 3)]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_colon", "package.module:function"),
        ("medvid_no_such_module:predict", "cannot be imported"),
        ("custom_model_example:absent", "has no"),
        ("custom_model_example:NOT_CALLABLE", "not callable"),
    ],
)
def test_bad_custom_model_names_are_custom_model_errors(example_module, target, message):
    with pytest.raises(CustomModelError, match=message):
        load_custom_callable(target)


def test_custom_model_confidences_outside_0_1_are_rejected(frames, example_module) -> None:
    root, manifest = frames
    function = load_custom_callable(f"{example_module}:out_of_range")
    with pytest.raises(CustomModelError, match=r"outside \[0, 1\]"):
        predict_with_callable(function, root, manifest.head(2), SCHEMA)


# --- evaluation helpers ---------------------------------------------------------------------


def test_lung_ultrasound_classes_come_from_the_file_name_tag(videos_dir) -> None:
    names = sorted(p.name for p in videos_dir.glob("covid19us_*"))
    classes = [lung_ultrasound_class(n) for n in names]
    assert classes == ["covid19", "healthy", "healthy", "healthy", "viral_pneumonia"]
    assert lung_ultrasound_class("rvimlab_endo.mp4") is None


def test_frame_metrics_accuracy_and_macro_f1_exact() -> None:
    metrics = frame_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert metrics["frame_accuracy"] == 0.75
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
