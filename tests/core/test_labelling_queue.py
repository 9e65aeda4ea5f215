"""The cold-label queue keeps a person's answers when rewritten, and training copes with what
cold label gives it: a last batch of one frame (BatchNorm cannot train on a single frame) and
so few frames that one pass would be a handful of optimiser steps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from medvid.labels.schema import LabelSchema
from medvid.predict.errors import LabellingQueueError, TrainingDataError
from medvid.predict.model import ModelSpec
from medvid.predict.strategies import queue_answers, write_labelling_queue
from medvid.predict.train import TrainConfig, train_classifier
from tests.core.predict_fixtures import write_videos

SCHEMA = LabelSchema.from_names(["blue", "red"])


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("frames")
    return root, write_videos(root, videos=2, frames=5, size=32)


def _fill_csv(path: Path, answers: dict[str, str]) -> None:
    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    for row in rows:
        row["label"] = answers.get(row["frame_id"], "")
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_rewriting_a_queue_keeps_the_answers_given(frames, tmp_path: Path) -> None:
    _, manifest = frames
    base = tmp_path / "queue"
    write_labelling_queue(manifest, base, SCHEMA.names)
    first, second = manifest["frame_id"].iloc[0], manifest["frame_id"].iloc[7]
    _fill_csv(base.with_suffix(".csv"), {first: "red", second: "blue"})
    assert queue_answers(base) == {first: "red", second: "blue"}
    write_labelling_queue(manifest, base, SCHEMA.names, answers=queue_answers(base))
    document = json.loads(base.with_suffix(".json").read_text())
    assert {f["frame_id"]: f["label"] for f in document["frames"] if f["label"]} == {
        first: "red",
        second: "blue",
    }
    assert queue_answers(base) == {first: "red", second: "blue"}


def test_csv_and_json_answering_a_frame_differently_is_an_error(frames, tmp_path: Path) -> None:
    _, manifest = frames
    base = tmp_path / "queue"
    frame = manifest["frame_id"].iloc[0]
    write_labelling_queue(manifest, base, SCHEMA.names, answers={frame: "blue"})
    _fill_csv(base.with_suffix(".csv"), {frame: "red"})
    with pytest.raises(LabellingQueueError, match=f"frame {frame} is answered"):
        queue_answers(base)


def test_a_last_batch_of_one_frame_does_not_stop_training(frames) -> None:
    root, manifest = frames  # 10 frames, batch 3: the last batch of each epoch holds 1
    spec = ModelSpec(classes=("blue", "red"), arch="tiny", input_size=32)
    config = TrainConfig(
        epochs=2, batch_size=3, patience=0, device="cpu", num_threads=1, min_images_per_epoch=0
    )
    result = train_classifier(root, manifest, None, spec, config)
    assert len(result.history) == 2


def test_training_needs_two_frames(frames) -> None:
    root, manifest = frames
    spec = ModelSpec(classes=("blue", "red"), arch="tiny", input_size=32)
    with pytest.raises(TrainingDataError, match="at least 2"):
        train_classifier(root, manifest.head(1), None, spec, TrainConfig(device="cpu"))


def test_a_few_frames_are_drawn_up_to_min_images_per_epoch(frames) -> None:
    root, manifest = frames  # 10 frames
    spec = ModelSpec(classes=("blue", "red"), arch="tiny", input_size=32)
    few = TrainConfig(epochs=1, batch_size=8, device="cpu", num_threads=1, min_images_per_epoch=40)
    assert train_classifier(root, manifest, None, spec, few).history[0]["images"] == 40
    one_pass = TrainConfig(
        epochs=1, batch_size=8, device="cpu", num_threads=1, min_images_per_epoch=0
    )
    assert train_classifier(root, manifest, None, spec, one_pass).history[0]["images"] == 10


def test_queue_csv_quotes_a_cell_a_spreadsheet_would_run(frames, tmp_path: Path) -> None:
    _, manifest = frames
    base = tmp_path / "queue"
    frame = manifest["frame_id"].iloc[0]
    write_labelling_queue(manifest, base, SCHEMA.names, answers={frame: "=1+1"})
    with base.with_suffix(".csv").open(newline="") as stream:
        labels = {row["frame_id"]: row["label"] for row in csv.DictReader(stream)}
    assert labels[frame] == "'=1+1"
    document = json.loads(base.with_suffix(".json").read_text())
    assert document["frames"][0]["label"] == "=1+1"  # JSON keeps the value as it is
