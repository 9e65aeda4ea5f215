"""On-image marks: synthetic vendor marks, the mark finder, inpainting and caliper twins."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from medvid.cleaning import (
    VENDOR_STYLES,
    TrainConfig,
    colour_marks,
    find_marks,
    find_twins,
    inpaint,
    load_mark_net,
    render_marks,
    save_mark_net,
    train_mark_net,
    twin_difference,
)
from medvid.cleaning.mark_net import mark_probabilities
from medvid.predict.errors import ModelFileError
from tests.core.conftest import decode_rgb

# A clip of a patient group the shipped weights never saw (benchmarks/cleaning.py's split).
HELD_OUT = "lung/Reg_pat3Image_135215.mpeg"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One thread: on shared cores torch's default of one per core mostly waits on the others."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def frames(shared_data: Path) -> list[np.ndarray]:
    """The first 12 frames of a held-out lung clip, ``(H, W, 3) uint8``."""
    return decode_rgb(shared_data / HELD_OUT, limit=12)


@pytest.fixture(scope="module")
def frame(frames) -> np.ndarray:
    return frames[0]


def _jpeg(image: np.ndarray, quality: int = 80) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]


def _iou(found: np.ndarray, truth: np.ndarray) -> float:
    return float((found & truth).sum() / max((found | truth).sum(), 1))


def test_rendered_mask_is_exactly_the_changed_pixels(frame):
    rendered = render_marks(
        frame, np.random.default_rng(0), style="plus_yellow", caliper_pairs=2, arrows=1
    )
    changed = (rendered.image != frame).any(axis=2)
    assert rendered.mask.sum() > 100
    np.testing.assert_array_equal(rendered.mask, changed)
    assert (rendered.image[rendered.mask] == rendered.colour).all()
    assert rendered.caliper_mask.sum() > 0
    assert not (rendered.caliper_mask & ~rendered.mask).any()
    assert len(rendered.calipers) == 4 and rendered.has_calipers


def test_outlined_marks_change_only_masked_pixels_to_colour_or_black(frame):
    rendered = render_marks(
        frame, np.random.default_rng(1), style="plus_white_outlined", caliper_pairs=1
    )
    changed = (rendered.image != frame).any(axis=2)
    assert not (changed & ~rendered.mask).any()
    drawn = rendered.image[rendered.mask]
    is_colour = (drawn == rendered.colour).all(axis=1)
    is_black = (drawn == 0).all(axis=1)
    assert (is_colour | is_black).all() and is_black.any() and is_colour.any()


def test_every_vendor_style_draws_calipers_of_its_shape(frame):
    for seed, style in enumerate(sorted(VENDOR_STYLES)):
        rendered = render_marks(frame, np.random.default_rng(seed), style=style, caliper_pairs=1)
        x, y = rendered.calipers[0]
        centre_drawn = rendered.caliper_mask[y, x]
        assert centre_drawn, style
        arm_cells = (
            rendered.caliper_mask[y, x + 3]
            if VENDOR_STYLES[style].caliper == "+"
            else (rendered.caliper_mask[y + 3, x + 3])
        )
        assert arm_cells, style


def test_render_is_the_same_bytes_for_the_same_seed(frame):
    first = render_marks(frame, np.random.default_rng(7))
    second = render_marks(frame, np.random.default_rng(7))
    assert first.image.tobytes() == second.image.tobytes()
    assert first.mask.tobytes() == second.mask.tobytes()


def test_render_rejects_a_grey_or_float_frame(frame):
    with pytest.raises(ValueError, match="uint8 RGB"):
        render_marks(frame[..., 0], np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8 RGB"):
        render_marks(frame.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown style"):
        render_marks(frame, np.random.default_rng(0), style="philips")


@pytest.mark.parametrize("method", ["telea", "ns", "mean"])
@pytest.mark.parametrize("work_size", [None, 256])
def test_inpaint_keeps_the_shape_and_changes_only_masked_pixels(frame, method, work_size):
    rendered = render_marks(frame, np.random.default_rng(2), style="x_yellow", caliper_pairs=1)
    filled = inpaint(rendered.image, rendered.mask, method=method, dilate_px=1, work_size=work_size)
    assert filled.shape == frame.shape and filled.dtype == np.uint8
    grown = cv2.dilate(rendered.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    np.testing.assert_array_equal(filled[~grown], rendered.image[~grown])
    # The yellow is gone: no saturated pixel is left where the marks were.
    assert not colour_marks(filled)[rendered.mask].any()


def test_inpaint_at_full_resolution_is_closer_to_the_clean_frame_than_at_256(frame):
    rendered = render_marks(frame, np.random.default_rng(3), style="x_white", caliper_pairs=2)
    inside = rendered.mask

    def error(work_size):
        filled = inpaint(rendered.image, inside, method="telea", work_size=work_size)
        return np.abs(filled[inside].astype(int) - frame[inside].astype(int)).mean()

    assert error(None) < error(256)


def test_inpaint_rejects_a_mask_of_another_shape(frame):
    with pytest.raises(ValueError, match="mask shape"):
        inpaint(frame, np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="method"):
        inpaint(frame, np.zeros(frame.shape[:2], bool), method="lama")


def test_twins_found_on_a_frame_before_and_after_calipers(frame):
    rendered = render_marks(frame, np.random.default_rng(4), style="plus_yellow", caliper_pairs=1)
    clean, marked = _jpeg(frame), _jpeg(rendered.image)
    twins = find_twins({"after": marked, "before": clean})
    assert [(t.clean_id, t.marked_id) for t in twins] == [("before", "after")]
    mask = twins[0].mask
    # The difference is the drawn mark: most of it, and little else.
    assert (mask & rendered.mask).sum() >= 0.5 * rendered.mask.sum()
    assert (
        mask & ~cv2.dilate(rendered.mask.astype(np.uint8), np.ones((5, 5))).astype(bool)
    ).sum() == 0


def test_no_twins_between_two_frames_of_a_clip_or_a_frame_and_itself(frames):
    assert twin_difference(frames[0], frames[0]) is None
    assert find_twins({f"frame{i}": f for i, f in enumerate(frames)}) == []


def test_twins_need_the_same_size(frame):
    rendered = render_marks(frame, np.random.default_rng(5), caliper_pairs=1)
    assert twin_difference(frame[:-2], rendered.image) is None


def test_find_marks_beats_the_colour_threshold_on_synthetic_calipers(frame):
    styles = ["x_white", "plus_white_outlined", "plus_yellow", "plus_cyan_large"]
    net, baseline = [], []
    for seed, style in enumerate(styles):
        rendered = render_marks(
            frame, np.random.default_rng(10 + seed), style=style, caliper_pairs=1
        )
        has_calipers, mask = find_marks(rendered.image, device="cpu")
        assert has_calipers, style
        net.append(_iou(mask, rendered.mask))
        baseline.append(_iou(colour_marks(rendered.image), rendered.mask))
        assert net[-1] >= 0.5, (style, net[-1])
    assert np.mean(net) > np.mean(baseline)


def test_find_marks_sees_no_calipers_on_a_clean_frame(frame):
    finding = find_marks(frame, device="cpu")
    assert not finding.has_calipers
    assert finding.mask.shape == frame.shape[:2] and finding.mask.dtype == bool


def test_find_marks_by_tiles_equals_one_pass(frame):
    model = load_mark_net().model
    whole = mark_probabilities(model, frame, device="cpu", tile_px=1024)
    tiled = mark_probabilities(model, frame, device="cpu", tile_px=160)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


def test_training_is_deterministic_and_weights_round_trip(frames, tmp_path):
    config = TrainConfig(steps=3, batch_size=2, crop_px=32, seed=3)
    first, _ = train_mark_net(frames[:2], config, device="cpu")
    second, metadata = train_mark_net(frames[:2], config, device="cpu")
    model_id = save_mark_net(first, tmp_path / "a.pt", metadata)
    assert save_mark_net(second, tmp_path / "b.pt", metadata) == model_id
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    loaded = load_mark_net(tmp_path / "a.pt")
    assert loaded.model_id == model_id and loaded.metadata["config"]["steps"] == 3
    sidecar = json.loads((tmp_path / "a.json").read_text())
    sidecar["model_id"] = "0" * 16
    (tmp_path / "a.json").write_text(json.dumps(sidecar))
    with pytest.raises(ModelFileError, match="hash to"):
        load_mark_net(tmp_path / "a.pt")


def test_shipped_weights_match_their_sidecar():
    from medvid.cleaning.mark_net import DEFAULT_WEIGHTS

    loaded = load_mark_net()  # checks the weights hash to the sidecar's model_id
    assert loaded.metadata["command"] == "python benchmarks/cleaning.py --train"
    assert DEFAULT_WEIGHTS.stat().st_size < 2_000_000


def test_find_marks_rejects_a_float_or_tiny_image(frame):
    with pytest.raises(ValueError, match="uint8 RGB"):
        find_marks(frame.astype(np.float32), device="cpu")
    with pytest.raises(ValueError, match="too small"):
        find_marks(frame[:4, :4], device="cpu")


def test_load_mark_net_names_a_missing_or_foreign_file(tmp_path):
    with pytest.raises(ModelFileError, match="missing"):
        load_mark_net(tmp_path / "none.pt")
    (tmp_path / "other.pt").write_bytes(b"not torch")
    (tmp_path / "other.json").write_text(json.dumps({"format": "medvid.predict.model/1"}))
    with pytest.raises(ModelFileError):
        load_mark_net(tmp_path / "other.pt")
