"""The residual check masks what it cannot tell from PHI and reads again
(medvid.deid.residual.residual_check): words with no PHI pattern are masked in every written
frame, PHI is never repaired (the check fails closed), and the repair is bounded."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from medvid.deid.redaction_plan import VideoRedactionPlan
from medvid.deid.residual import (
    READABLE_TEXT,
    ResidualHit,
    default_residual_engines,
    repair_boxes,
    residual_check,
)
from medvid.frames.encode import Redaction
from medvid.ocr.engines import OcrBox

WIDTH, HEIGHT = 320, 240


def _plan(frame_count: int = 30) -> VideoRedactionPlan:
    return VideoRedactionPlan(
        width=WIDTH,
        height=HEIGHT,
        frame_count=frame_count,
        fps=25.0,
        keep_region=None,
        keep_region_source="none",
        blank_outside=False,
        boxes=(),
        spans=(),
        masked_reasons=(),
        kept_boxes=0,
        text_spans=(),
        detect_step=6,
        detection_points=0,
        detector_crops=0,
        recognitions=0,
    )


class _Video:
    """Written frames of a synthetic video: ``draw(image, frame_number)`` paints each original
    frame; ``write`` applies the redaction the way extraction does and counts the writes."""

    def __init__(self, draw, frame_count: int = 30, every: int = 10, size=(WIDTH, HEIGHT)):
        self.draw, self.size = draw, size
        self.numbers = list(range(0, frame_count, every))
        self.writes: list[Redaction] = []

    def write(self, redaction: Redaction) -> list[int]:
        self.writes.append(redaction)
        return self.numbers

    def read(self, frame_number: int) -> np.ndarray:
        image = np.full((self.size[1], self.size[0], 3), 90, np.uint8)
        self.draw(image, frame_number)
        return self.writes[-1].apply(image, frame_number)


class _InkReader:
    """Reads ``text`` around the ink (pixels of 250 or more) of the image given, a frame or a
    crop of one; nothing where the ink is masked."""

    name = "ink"

    def __init__(self, text: str, confidence: float = 0.8):
        self.text, self.confidence = text, confidence

    def read(self, image: np.ndarray) -> list[OcrBox]:
        ys, xs = np.nonzero(image.max(axis=2) >= 250)
        if not len(xs):
            return []
        x, y = int(xs.min()), int(ys.min())
        w, h = int(xs.max()) + 1 - x, int(ys.max()) + 1 - y
        return [OcrBox(x, y, w, h, self.text, self.confidence)]


def _ink(image: np.ndarray, _number: int) -> None:
    image[100:114, 100:160] = 255


def _check(video: _Video, engines, **kwargs):
    return residual_check(
        video.write, video.read, _plan(), engines, redaction=Redaction(), random_frames=3, **kwargs
    )


def test_a_word_with_no_phi_pattern_is_masked_in_every_frame_and_read_again() -> None:
    video = _Video(_ink)
    check = _check(video, [_InkReader("lee")])
    assert check.passed and check.findings == []
    assert check.rounds == 2 and len(video.writes) == 2
    # grown by half the box's height (7 px) on each side, masked in every frame
    assert check.masked == ((93, 93, 167, 121),)
    assert video.writes[-1].boxes == check.masked and check.redaction == video.writes[-1]
    assert check.repaired == [
        f"frame {n}: ink: readable text at x=100 y=100 w=60 h=14" for n in (0, 10, 20)
    ]
    assert check.frames_read == (0, 10, 20)
    # the plan's own boxes are kept beside the new one
    video = _Video(_ink)
    plan_box = (0, 0, 10, 10)
    check = residual_check(
        video.write,
        video.read,
        _plan(),
        [_InkReader("lee")],
        redaction=Redaction(boxes=(plan_box,)),
    )
    assert check.redaction.boxes == (plan_box, (93, 93, 167, 121))


def test_a_repair_reads_around_the_masks_and_fresh_frames_whole() -> None:
    shapes: list[tuple[int, ...]] = []

    class Recording(_InkReader):
        def read(self, image):
            shapes.append(image.shape[:2])
            return super().read(image)

    class Counted(_Video):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.read_numbers: list[int] = []

        def read(self, frame_number):
            self.read_numbers.append(frame_number)
            return super().read(frame_number)

    video = Counted(_ink, frame_count=200)  # 20 written frames; 3 random ones read at first
    check = _check(video, [Recording("lee")])
    assert check.passed and check.rounds == 2
    first, second = video.read_numbers[:3], video.read_numbers[3:]
    assert set(first) < set(second) and len(second) == 6  # the same three, three fresh ones
    assert check.frames_read == tuple(sorted(second))
    # the first three again around the mask (93..167 x 93..121, grown by 56 px), fresh whole
    crop = (121 + 56 - (93 - 56), 167 + 56 - (93 - 56))
    assert sorted(shapes[3:]) == sorted([crop] * 3 + [(HEIGHT, WIDTH)] * 3)
    assert shapes[:3] == [(HEIGHT, WIDTH)] * 3
    again = Counted(_ink, frame_count=200)
    assert _check(again, [_InkReader("lee")]).frames_read == check.frames_read  # seeded


def test_phi_is_never_repaired_and_the_check_fails_closed() -> None:
    video = _Video(_ink)
    check = _check(video, [_InkReader("ID 5551234")])
    assert not check.passed and check.masked == () and check.rounds == 1
    assert len(video.writes) == 1  # the frames were not written again
    assert all("id-like number" in f for f in check.findings)
    # a PHI hit beside an uncertain one: nothing is repaired either
    check = _check(_Video(_ink), [_InkReader("lee"), _InkReader("ID 5551234")])
    assert not check.passed and check.masked == ()


def test_text_still_read_after_the_rounds_fails() -> None:
    class Stubborn:
        """Reads a word that moves out of each mask (or a misreading that never goes away)."""

        name = "stubborn"

        def __init__(self):
            self.calls = 0

        def read(self, image):
            self.calls += 1
            x = 20 + 70 * ((self.calls - 1) // 3)  # a new place each round of 3 frames
            return [OcrBox(x, 40, 40, 12, "lee", 0.9)]

    video = _Video(lambda image, n: None)
    check = _check(video, [Stubborn()], repair_rounds=2)
    assert not check.passed and check.rounds == 3 and len(check.masked) == 2
    assert len(video.writes) == 3
    assert check.findings and all(READABLE_TEXT in f for f in check.findings)
    # no repair at all when switched off
    video = _Video(_ink)
    check = _check(video, [_InkReader("lee")], repair_rounds=0)
    assert not check.passed and check.rounds == 1 and len(video.writes) == 1


def test_the_masked_area_is_bounded() -> None:
    big = _InkReader("watermelon")  # 200x60 grown by 30 px: 40% of 320x240
    video = _Video(lambda image, n: image.__setitem__((slice(0, 60), slice(0, 200)), 255))
    check = _check(video, [big])
    assert not check.passed and check.masked == () and len(video.writes) == 1
    check = _check(
        _Video(lambda image, n: image.__setitem__((slice(0, 60), slice(0, 200)), 255)),
        [big],
        max_masked_fraction=0.5,
    )
    assert check.passed and len(check.masked) == 1


def test_repair_boxes() -> None:
    hit = ResidualHit(3, "tesseract", (READABLE_TEXT,), OcrBox(1, 2, 30, 3, "lee", 0.7))
    assert hit.uncertain
    assert repair_boxes([hit], 100, 100, max_masked_fraction=1.0) == [(0, 0, 33, 7)]  # >= 2 px
    assert repair_boxes([hit], 100, 100, max_masked_fraction=1.0, masked=[(0, 0, 33, 7)]) is None
    assert repair_boxes([], 100, 100, max_masked_fraction=1.0) is None
    phi = ResidualHit(3, "tesseract", ("date",), OcrBox(1, 2, 30, 3, "12/03/1961", 0.9))
    assert not phi.uncertain
    assert repair_boxes([hit, phi], 100, 100, max_masked_fraction=1.0) is None
    assert repair_boxes([hit], 10, 10, max_masked_fraction=0.01) is None


@pytest.fixture(scope="module")
def engines():
    return default_residual_engines(threads=1)


@pytest.mark.parametrize(
    ("text", "passes"),
    [("WATERMELON", True), ("ID 5551234", False)],
)
def test_real_readers_mask_a_stray_word_and_fail_on_an_id(engines, text, passes) -> None:
    def draw(image: np.ndarray, _number: int) -> None:
        cv2.putText(image, text, (240, 250), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)

    video = _Video(draw, size=(640, 480))
    check = _check(video, engines)
    assert check.passed is passes
    if passes:
        assert check.masked and check.rounds >= 2
        # what was masked covers the text's ink in every written frame
        for number in video.numbers:
            ink = np.zeros((480, 640, 3), np.uint8)
            draw(ink, number)
            assert video.read(number)[ink.max(axis=2) > 200].max() == 0
    else:
        assert check.masked == () and len(video.writes) == 1
        assert not any("5551234" in f for f in check.findings)


def test_what_is_read_around_a_mask_is_reported_in_frame_pixels() -> None:
    class SeesInCrops(_InkReader):
        """The ink in whole frames; in a crop, a word 5 pixels from the crop's corner."""

        def read(self, image):
            if image.shape[:2] == (HEIGHT, WIDTH):
                return super().read(image)
            return [OcrBox(5, 5, 30, 10, "lee", 0.9)]

    check = _check(_Video(_ink), [SeesInCrops("lee")], repair_rounds=1)
    assert not check.passed and check.rounds == 2
    # mask (93, 93, 167, 121) read again from (93 - 56, 93 - 56): the word at x = y = 37 + 5
    assert check.findings == [
        f"frame {n}: ink: readable text at x=42 y=42 w=30 h=10" for n in (0, 10, 20)
    ]
