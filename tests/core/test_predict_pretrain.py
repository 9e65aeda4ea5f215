"""Self-supervised pretraining on unlabelled frames, its versioned backbone file, and the
ultrasound augmentation it (and training) relies on."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medvid.predict.data import UltrasoundAugment, read_frame_resized
from medvid.predict.errors import ModelFileError, TrainingDataError
from medvid.predict.model import ModelSpec, build_model, sidecar_path
from medvid.predict.pretrain import (
    PretrainConfig,
    load_backbone_sidecar,
    nt_xent,
    pretrain_backbone,
    save_backbone,
)
from tests.core.predict_fixtures import write_videos

TINY = PretrainConfig(
    arch="tiny", input_size=32, epochs=2, frame_step=1, batch_size=16, device="cpu", num_threads=1
)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("frames")
    return root, write_videos(root, videos=4, frames=8, size=32)


@pytest.fixture(scope="module")
def pretrained(frames):
    root, manifest = frames
    return pretrain_backbone(root, manifest, TINY)


def test_nt_xent_of_matching_pairs_is_the_softmax_loss_against_the_other_views() -> None:
    z = torch.eye(2)
    # each view: its partner at similarity 1, two other views at 0, itself excluded
    expected = math.log((2 + math.e) / math.e)
    assert float(nt_xent(z, z, tau=1.0)) == pytest.approx(expected)


def test_pretraining_the_same_frames_with_the_same_seed_gives_the_same_backbone(
    frames, pretrained, tmp_path
) -> None:
    root, manifest = frames
    again = pretrain_backbone(root, manifest, TINY)
    first_id = save_backbone(pretrained, tmp_path / "a.pt")
    assert save_backbone(again, tmp_path / "b.pt") == first_id
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert [round(h["loss"], 6) for h in pretrained.history] == [
        round(h["loss"], 6) for h in again.history
    ]


def test_a_saved_backbone_is_versioned_and_a_label_model_starts_from_it(
    pretrained, tmp_path
) -> None:
    backbone_id = save_backbone(pretrained, tmp_path / "backbone.pt")
    sidecar = load_backbone_sidecar(tmp_path / "backbone.pt")
    assert (sidecar["backbone_id"], sidecar["arch"], sidecar["input_size"]) == (
        backbone_id,
        "tiny",
        32,
    )
    assert (sidecar["method"], sidecar["frames"], len(sidecar["videos"])) == ("simclr", 32, 4)
    model = build_model(
        ModelSpec(("a", "b", "c"), arch="tiny", input_size=32), tmp_path / "backbone.pt"
    )
    assert torch.equal(model.features[0].weight, pretrained.model.features[0].weight)
    assert model.fc.out_features == 3


def test_a_backbone_of_another_architecture_is_refused(pretrained, tmp_path) -> None:
    save_backbone(pretrained, tmp_path / "backbone.pt")
    with pytest.raises(ModelFileError, match="is a 'tiny', the model is a 'small'"):
        build_model(ModelSpec(("a", "b"), arch="small", input_size=32), tmp_path / "backbone.pt")


def test_backbone_weights_changed_after_saving_are_detected(pretrained, tmp_path) -> None:
    path = tmp_path / "backbone.pt"
    save_backbone(pretrained, path)
    sidecar = json.loads(sidecar_path(path).read_text())
    sidecar["backbone_id"] = "0" * 16
    sidecar_path(path).write_text(json.dumps(sidecar))
    with pytest.raises(ModelFileError, match="sidecar says 0000000000000000"):
        load_backbone_sidecar(path)


def test_pretraining_needs_two_frames(frames) -> None:
    root, manifest = frames
    with pytest.raises(TrainingDataError, match="at least 2"):
        pretrain_backbone(root, manifest.head(1), TINY)


def test_depth_cut_keeps_the_skin_line_of_a_real_ultrasound_frame(shared_data) -> None:
    rgb = read_frame_resized(shared_data / "images" / "itkpocus_interson-image.jpg", 64)
    only_depth = UltrasoundAugment(
        flip=0,
        max_rotation_deg=0,
        max_zoom=0,
        max_shift=0,
        depth_keep=(0.5, 1.0),
        gain=(1, 1),
        gamma=(1, 1),
        speckle=0,
        desaturate=0,
    )
    out = only_depth(rgb, np.random.default_rng(3))
    assert out.shape == (64, 64, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], rgb[0] / 255.0, atol=1e-6)  # top row unchanged
    assert not np.allclose(out[-1], rgb[-1] / 255.0, atol=0.02)  # deeper rows stretched up


def test_full_augmentation_stays_in_range_and_is_reproducible_per_seed(shared_data) -> None:
    rgb = read_frame_resized(shared_data / "images" / "itkpocus_interson-image.jpg", 64)
    augment = UltrasoundAugment()
    first = augment(rgb, np.random.default_rng((0, 1, 2)))
    again = augment(rgb, np.random.default_rng((0, 1, 2)))
    other = augment(rgb, np.random.default_rng((0, 1, 3)))
    assert first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
