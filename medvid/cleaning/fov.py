"""Field of view: the box of an ultrasound or endoscopy frame that holds the image itself.

Scanner screens put the image beside panels of text, scales, logos and a black border; a model
should see the image only. The box is, in order of trust:

1. **DICOM**: SequenceOfUltrasoundRegions (0018,6011), the region whose RegionSpatialFormat is
   1 (2D) or else the largest, from RegionLocationMinX0/MinY0/MaxX1/MaxY1 (0018,6018/601A/
   601C/601E; PS3.3 C.8.5.5, maxima inclusive there, exclusive here). A region covering 98 % or
   more of the frame says nothing (some devices declare the whole screen) and is ignored
   (:func:`medvid.deid.store.informative`).
2. **Detected in a video**: pixels whose grey level varies over time (probe motion, cine
   playback) while panels and text stay still; the largest connected region of them, closed over
   the speckle's gaps (:func:`detect_video_field_of_view`).
3. **Detected in a still**: the largest non-dark connected component after an opening that
   removes text strokes (:func:`medvid.deid.pixels.detect_field_of_view`, shared with the
   redaction stage).

Boxes are ``(x0, y0, x1, y1)`` ints in pixels, ``x1``/``y1`` exclusive, within the frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
from pydicom.dataset import Dataset

from medvid.deid.pixels import detect_field_of_view
from medvid.deid.store import informative
from medvid.dicom.header import primary_ultrasound_region

Box = tuple[int, int, int, int]

#: Grey levels (0..255) a pixel's temporal standard deviation must exceed to count as image.
MOTION_THRESHOLD = 4.0
#: The moving region must cover this much of the frame, else the video is taken as still.
MIN_FRACTION = 0.05


@dataclass(frozen=True)
class FieldOfView:
    """A field of view ``box`` and where it came from: ``source`` is ``dicom``, ``motion``
    (a video's varying pixels) or ``detected`` (the largest non-dark region)."""

    box: Box
    source: str


def region_from_dicom(ds: Dataset) -> Box | None:
    """The imaging region of SequenceOfUltrasoundRegions (PS3.3 C.8.5.5) clipped to
    Columns x Rows; None when the sequence is absent or the region covers the whole frame."""
    region = primary_ultrasound_region(ds)
    if region is None:
        return None
    width, height = int(ds.Columns), int(ds.Rows)
    box = region.box(width, height)
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    return informative(box, width, height)


def _luma(frame: np.ndarray) -> np.ndarray:
    array = np.asarray(frame)
    if array.ndim == 3:
        return cv2.cvtColor(array, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if array.ndim == 2:
        return array.astype(np.float32)
    raise ValueError(f"expected (H, W) or (H, W, 3) frames, got {array.shape}")


def _largest_component(mask: np.ndarray, min_fraction: float) -> Box | None:
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = int(np.argmax(areas)) + 1
    if areas[best - 1] < min_fraction * mask.shape[0] * mask.shape[1]:
        return None
    x, y, w, h = (int(v) for v in stats[best, :4])
    return x, y, x + w, y + h


def detect_video_field_of_view(
    frames: Iterable[np.ndarray],
    *,
    motion_threshold: float = MOTION_THRESHOLD,
    min_fraction: float = MIN_FRACTION,
) -> Box | None:
    """The box of the pixels that vary over time in a video.

    The per-pixel standard deviation of the grey level over ``frames`` is thresholded at
    ``motion_threshold``; a closing with an elliptical kernel of 1/20 of the short side joins
    the speckle into one region, an opening of 1/40 drops a blinking cursor or clock; the
    largest connected component's bounding box is returned. None when fewer than two frames are
    given or nothing moving covers ``min_fraction`` of the frame (a frozen loop: use
    :func:`detect_still_field_of_view` on one frame).

    Args:
        frames: ``(H, W, 3) uint8`` RGB or ``(H, W)`` frames of one size, e.g. every 5th frame.

    Raises:
        ValueError: frames of different sizes or dimensions.
    """
    count, total, squares = 0, None, None
    for frame in frames:
        luma = _luma(frame)
        if total is None:
            total, squares = np.zeros_like(luma, dtype=np.float64), np.zeros_like(luma, np.float64)
        elif luma.shape != total.shape:
            raise ValueError(f"frame of {luma.shape} after frames of {total.shape}")
        total += luma
        squares += luma.astype(np.float64) ** 2
        count += 1
    if count < 2 or total is None or squares is None:
        return None
    variance = np.maximum(squares / count - (total / count) ** 2, 0.0)
    moving = (np.sqrt(variance) > motion_threshold).astype(np.uint8)
    short = min(moving.shape)
    close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, ((short // 20) | 1,) * 2)
    opening = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, (short // 40) | 1),) * 2)
    moving = cv2.morphologyEx(moving, cv2.MORPH_CLOSE, close)
    moving = cv2.morphologyEx(moving, cv2.MORPH_OPEN, opening)
    return _largest_component(moving, min_fraction)


def detect_still_field_of_view(image: np.ndarray) -> Box | None:
    """The largest non-dark connected component of a still, ``(H, W, 3) uint8`` RGB
    (:func:`medvid.deid.pixels.detect_field_of_view`: any channel above 20 of 255, text
    strokes opened away, at least 5 % of the frame); None on a black frame."""
    return detect_field_of_view(image)


def field_of_view(
    *,
    dicom: Dataset | None = None,
    frames: list[np.ndarray] | None = None,
    image: np.ndarray | None = None,
) -> FieldOfView | None:
    """The field of view from the best source given: the DICOM region, then the pixels that
    vary over ``frames``, then the largest non-dark region of ``image`` (default: the first of
    ``frames``). None when no source finds one."""
    if dicom is not None and (box := region_from_dicom(dicom)) is not None:
        return FieldOfView(box, "dicom")
    moving = detect_video_field_of_view(frames) if frames is not None and len(frames) >= 2 else None
    if moving is not None:
        return FieldOfView(moving, "motion")
    still = image if image is not None else (frames[0] if frames else None)
    if still is not None and (box := detect_still_field_of_view(still)) is not None:
        return FieldOfView(box, "detected")
    return None


def crop_to(image: np.ndarray, box: Box) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` (a view) after checking the box lies within the image.

    Raises:
        ValueError: an empty box or one outside the image.
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    height, width = image.shape[:2]
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"crop box {box} is empty or outside a {width}x{height} image")
    return image[y0:y1, x0:x1]
