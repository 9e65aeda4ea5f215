"""medvid.predict: frame selection, model files, inference, cold/blitz/custom labelling.

Training here uses the ``tiny`` architecture on small synthetic frames
(:mod:`tests.core.predict_fixtures`), learnt in about a second on a CPU; the published
behaviours checked come from the AIGVA thesis (seed 003). Training itself is specified in
``test_predict_train.py``, pretraining and evaluation in their own files.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medvid.labels.schema import FRAME_LABELS_SCHEMA, LabelSchema
from medvid.predict.data import read_frame_rgb
from medvid.predict.errors import (
    CustomModelError,
    FrameReadError,
    FrameSelectionError,
    LabellingQueueError,
    ModelFileError,
)
from medvid.predict.infer import aggregate_clips, predict_frames, smooth_probabilities
from medvid.predict.model import ModelSpec, build_model, load_model, save_model, sidecar_path
from medvid.predict.selection import active_positions, evenly_spaced_positions, unique_positions
from medvid.predict.strategies import (
    blitz_label,
    labels_to_items,
    load_custom_callable,
    predict_with_callable,
    read_labelling_answers,
    select_frames_for_labelling,
    write_labelling_queue,
)
from medvid.predict.train import TrainConfig, split_by_patient, train_classifier
from tests.core.predict_fixtures import write_videos

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
SPEC = ModelSpec(classes=("blue", "red"), arch="tiny", input_size=32)
SCHEMA = LabelSchema.from_names(["blue", "red"])
FAST = TrainConfig(
    epochs=3, batch_size=16, patience=2, device="cpu", num_threads=1, min_images_per_epoch=96
)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("frames")
    return root, write_videos(root)


@pytest.fixture(scope="module")
def trained(frames: tuple[Path, pd.DataFrame]):
    root, manifest = frames
    patients = dict(zip(manifest["video_id"], manifest["patient_id"], strict=True))
    train_items, val_items = split_by_patient(manifest, patients, val_fraction=0.34, seed=0)
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
    manifest = frames[1].drop(columns="phash")
    with pytest.raises(FrameSelectionError, match="phash"):
        select_frames_for_labelling(manifest, 2, "unique")


def test_active_selection_starts_at_the_most_typical_frame_then_takes_the_farthest() -> None:
    features = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [-1, 0]], dtype=np.float32)
    # normalised mean (0.4, 0.2): frames 0-2 are the most typical, the earliest wins; then
    # frame 4 (cosine distance 2), then frame 3 (distance 1 to both)
    assert active_positions(features, 1) == [0]
    assert active_positions(features, 2) == [0, 4]
    assert active_positions(features, 3) == [0, 3, 4]


def test_active_selection_prefers_the_uncertain_frame_among_equally_new_ones() -> None:
    features = np.array([[1, 0], [0, 1], [0, -1]], dtype=np.float32)
    probabilities = np.array([[0.5, 0.5], [1.0, 0.0], [0.5, 0.5]])
    assert active_positions(features, 2, probabilities, chosen=[0]) == [0, 2]
    assert active_positions(features, 2, None, chosen=[0]) == [0, 1]  # tie: earliest


def test_active_selection_counts_frames_already_labelled_towards_k(frames) -> None:
    _, manifest = frames
    features = np.random.default_rng(0).normal(size=(len(manifest), 4))
    first = select_frames_for_labelling(manifest, 1, "active", features=features)
    more = select_frames_for_labelling(
        manifest, 3, "active", features=features, already_labelled=list(first["frame_id"])
    )
    assert more.groupby("video_id").size().tolist() == [3] * 6
    assert set(first["frame_id"]) <= set(more["frame_id"])


def test_active_selection_needs_one_feature_row_per_manifest_row(frames) -> None:
    with pytest.raises(FrameSelectionError, match="one feature row per manifest row"):
        select_frames_for_labelling(frames[1], 2, "active", features=np.zeros((3, 4)))


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
    assert sidecar["metadata"]["held_out"]["patients"] == 1


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
    three = build_model(ModelSpec(classes=("a", "b", "c"), input_size=32))
    torch.save(three.state_dict(), tmp_path / "user.pt")
    two = build_model(ModelSpec(classes=("a", "b"), input_size=32), tmp_path / "user.pt")
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


def test_clip_aggregation_gives_every_frame_its_videos_mean_probabilities() -> None:
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4]])
    videos = np.array(["a", "b", "a", "b"])
    expected = [[0.55, 0.45], [0.45, 0.55], [0.55, 0.45], [0.45, 0.55]]
    np.testing.assert_allclose(aggregate_clips(probs, videos), expected)


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
