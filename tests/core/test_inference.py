"""Inference as medvid runs it: BatchNorm folded, channels-last, bfloat16 where native, the next
batch read while the current one is computed; same answers as the plain network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medvid.predict import infer
from medvid.predict.data import FrameDataset
from medvid.predict.infer import (
    fold_batchnorm,
    predict_probabilities,
    resolve_precision,
)
from medvid.predict.model import ModelSpec
from medvid.predict.train import TrainConfig, train_classifier
from tests.core.predict_fixtures import write_videos

SPEC = ModelSpec(classes=("blue", "red"), input_size=32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A ResNet18 trained for 2 epochs, so its BatchNorm statistics are not the defaults."""
    root = tmp_path_factory.mktemp("frames")
    manifest = write_videos(root, videos=4, frames=6, size=40)
    config = TrainConfig(
        epochs=2, batch_size=8, patience=0, device="cpu", num_threads=1, min_images_per_epoch=0
    )
    result = train_classifier(root, manifest, None, SPEC, config)
    return root, manifest, result.model


def _plain_probabilities(model, root: Path, paths: list[str]) -> np.ndarray:
    dataset = FrameDataset(root, paths, input_size=SPEC.input_size, cache=False)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    with torch.inference_mode():
        return torch.softmax(model.eval()(images), dim=1).numpy()


def test_folding_batchnorm_keeps_the_outputs(trained) -> None:
    root, manifest, model = trained
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # original intact
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(folded(x), model.eval()(x), atol=1e-4)


def test_fp32_inference_matches_the_plain_network(trained) -> None:
    root, manifest, model = trained
    paths = list(manifest["frame_relative_path"])
    got = predict_probabilities(model, SPEC, root, paths, batch_size=5, precision="fp32")
    np.testing.assert_allclose(got, _plain_probabilities(model, root, paths), atol=1e-5)


def test_bf16_inference_gives_the_same_classes(trained) -> None:
    root, manifest, model = trained
    paths = list(manifest["frame_relative_path"])
    got = predict_probabilities(model, SPEC, root, paths, batch_size=7, precision="bf16")
    plain = _plain_probabilities(model, root, paths)
    assert got.dtype == np.float32
    assert np.array_equal(got.argmax(1), plain.argmax(1))
    assert np.abs(got - plain).max() < 0.02


def test_reader_thread_and_worker_processes_read_the_same_frames_in_order(trained) -> None:
    root, manifest, model = trained
    paths = list(manifest["frame_relative_path"])[::-1]
    threaded = predict_probabilities(model, SPEC, root, paths, batch_size=4, precision="fp32")
    workers = predict_probabilities(
        model, SPEC, root, paths, batch_size=4, precision="fp32", num_workers=1
    )
    np.testing.assert_array_equal(threaded, workers)
    assert predict_probabilities(model, SPEC, root, [], precision="fp32").shape == (0, 2)


def test_auto_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(infer, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(infer, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu) == "bf16"
    assert resolve_precision("fp32", cpu) == "fp32"
