"""Caliper twins: the same frame stored before and after the sonographer placed calipers.

A study often holds a frozen frame twice: as first captured, and again after a measurement was
drawn on it. The two are the same size and their aligned pixels are equal except where marks
were drawn: few pixels differ, and they differ in small blobs (crosses, dots, arrow heads, a
short text label). Such a pair gives a *real* mark mask (their difference) and a clean
original, both for training the mark finder and for keeping only the clean one in a dataset.

Two frames of a live clip are not twins: speckle changes everywhere, so far more pixels
differ, and a captured frame with itself (or a lossless copy) differs nowhere.

Criteria of :func:`twin_difference`, defaults chosen for JPEG-stored frames (quality >= 70
changes a pixel by at most ~20 grey levels away from edges):

- a pixel *differs* when a channel differs by more than ``tolerance`` (default 40);
- at least ``min_pixels`` (default 10) and at most ``max_fraction`` (default 2 %) of the pixels
  differ;
- every blob of differing pixels (8-connected after closing 1-pixel gaps) covers at most
  ``max_blob_fraction`` (default 0.5 %) of the frame;
- in one of the two (the *marked* one) at least ``min_drawn`` (default 90 %) of the
  differing pixels look drawn over the other (:func:`drawn_over`: lighter or more saturated,
  or a black outline beside such a pixel), at least ``min_drawn_margin`` (0.15) more than the
  other way round, and at least ``min_mark_like`` (50 %) are coloured like a mark
  (:func:`mark_like`). This is what tells twins from two frames of a nearly still clip (a
  phantom, a held probe): those differ in few pixels too, but tissue that moves gets lighter
  on one side and darker on the other, in grey.

The last three were chosen on training clips of ``benchmarks/cleaning.py`` (46 synthetic twins
stored as JPEG quality 80, 1,123 pairs of frames up to 3 apart that passed the pixel tests):
44 twins found, 7 false twins (those looked at: a bright line flashing lighter, e.g. a pleural
line); benchmarks/README.md has the held-out numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class TwinCriteria:
    """Thresholds of :func:`twin_difference` (see the module docstring for their sources).

    Attributes:
        tolerance: grey levels (0..255) a channel may differ by and still count as equal.
        min_pixels: fewest differing pixels for a twin (fewer: the same frame).
        max_fraction: largest share of differing pixels.
        max_blob_fraction: largest share of the frame one blob of differing pixels may cover.
        min_drawn: least share of differing pixels that look :func:`drawn_over` in the marked
            image.
        min_drawn_margin: least lead of that share over the other image's.
        min_mark_like: least share of differing pixels that are :func:`mark_like` in the
            marked image (JPEG smears the colour of 1-pixel lines, hence well under 1).
    """

    tolerance: int = 40
    min_pixels: int = 10
    max_fraction: float = 0.02
    max_blob_fraction: float = 0.005
    min_drawn: float = 0.9
    min_drawn_margin: float = 0.15
    min_mark_like: float = 0.5


@dataclass(frozen=True)
class Twin:
    """A pair of images that are one frame before and after marks were drawn.

    Attributes:
        clean_id: the id of the image without the marks.
        marked_id: the id of the image with them.
        mask: ``(H, W) bool``, the pixels that differ (the real mark mask).
        differing_fraction: share of the frame's pixels in ``mask``.
    """

    clean_id: str
    marked_id: str
    mask: np.ndarray
    differing_fraction: float


def _check(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name}: expected an (H, W[, C]) uint8 image, got {image.shape}")
    return image


def drawn_over(base: np.ndarray, other: np.ndarray, tolerance: int) -> np.ndarray:
    """Pixels where ``other`` looks drawn over ``base``, ``(H, W) bool``: brighter (HSV value
    up by more than ``tolerance // 2``) or more saturated (saturation up by more than
    ``tolerance``), or near black (value <= 40) right beside such a pixel (the black outline
    some machines draw around marks). Marks are drawn lighter or more colourful than tissue;
    tissue that moves gets lighter on one side and darker on the other."""
    hsv_base = cv2.cvtColor(_rgb(base), cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv_other = cv2.cvtColor(_rgb(other), cv2.COLOR_RGB2HSV).astype(np.int16)
    up = (hsv_other[..., 2] - hsv_base[..., 2] > tolerance // 2) | (
        hsv_other[..., 1] - hsv_base[..., 1] > tolerance
    )
    beside = cv2.dilate(up.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return up | (beside & (hsv_other[..., 2] <= 40))


def mark_like(image: np.ndarray) -> np.ndarray:
    """Pixels coloured like a mark, ``(H, W) bool``: coloured (HSV saturation >= 50 and value
    >= 100, of 255) or near white (value >= 200), and near-black pixels (value <= 40) beside those
    (an outline)."""
    hsv = cv2.cvtColor(_rgb(image), cv2.COLOR_RGB2HSV)
    saturation, value = hsv[..., 1], hsv[..., 2]
    core = ((saturation >= 50) & (value >= 100)) | (value >= 200)
    beside = cv2.dilate(core.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return core | (beside & (value <= 40))


def _rgb(image: np.ndarray) -> np.ndarray:
    return image if image.shape[2] == 3 else np.repeat(image[..., :1], 3, axis=2)


def _difference(
    first: np.ndarray, second: np.ndarray, criteria: TwinCriteria
) -> tuple[np.ndarray, bool] | None:
    """``(mask, second_is_marked)`` of a twin pair, else ``None``."""
    if first.shape != second.shape:
        return None
    difference = np.abs(first.astype(np.int16) - second.astype(np.int16)).max(axis=2)
    differs = (difference > criteria.tolerance).astype(np.uint8)
    count = int(differs.sum())
    total = differs.size
    if count < criteria.min_pixels or count > criteria.max_fraction * total:
        return None
    closed = cv2.morphologyEx(differs, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    if stats[1:, cv2.CC_STAT_AREA].max(initial=0) > criteria.max_blob_fraction * total:
        return None
    mask = differs.astype(bool)
    share_first = float(drawn_over(second, first, criteria.tolerance)[mask].mean())
    share_second = float(drawn_over(first, second, criteria.tolerance)[mask].mean())
    if max(share_first, share_second) < criteria.min_drawn:
        return None
    if abs(share_first - share_second) < criteria.min_drawn_margin:
        return None
    marked = second if share_second > share_first else first
    if float(mark_like(marked)[mask].mean()) < criteria.min_mark_like:
        return None
    return mask, share_second > share_first


def twin_difference(
    first: np.ndarray, second: np.ndarray, criteria: TwinCriteria = TwinCriteria()
) -> np.ndarray | None:
    """The difference mask ``(H, W) bool`` of two images if they are twins, else ``None``.

    Args:
        first, second: ``(H, W[, C]) uint8`` images (RGB or grey); different shapes are never
            twins.
        criteria: the thresholds.

    Raises:
        ValueError: an image that is not ``uint8`` with 2 or 3 axes.
    """
    found = _difference(_check(first, "first"), _check(second, "second"), criteria)
    return None if found is None else found[0]


def find_twins(
    images: Mapping[str, np.ndarray] | Sequence[tuple[str, np.ndarray]],
    criteria: TwinCriteria = TwinCriteria(),
) -> list[Twin]:
    """Every twin pair among the images of one study.

    Pairs are tried only between images of the same shape whose 32x32 thumbnails are within
    ``tolerance`` on average (a cheap filter before the full comparison). An image may be in
    several pairs (one clean frame measured twice). Order: by ``(clean_id, marked_id)``.

    Args:
        images: ``{image_id: (H, W[, C]) uint8}`` or ``(image_id, image)`` pairs, one study.
        criteria: the thresholds of :func:`twin_difference`.

    Raises:
        ValueError: an image that is not ``uint8``, or a repeated id.
    """
    items = list(images.items()) if isinstance(images, Mapping) else list(images)
    ids = [image_id for image_id, _ in items]
    if len(set(ids)) != len(ids):
        raise ValueError("image ids must be unique within a study")
    arrays = {image_id: _check(image, image_id) for image_id, image in items}
    thumbs = {
        image_id: cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA).astype(np.int16)
        for image_id, image in arrays.items()
    }
    twins = []
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            if arrays[a].shape != arrays[b].shape:
                continue
            if np.abs(thumbs[a] - thumbs[b]).mean() > criteria.tolerance:
                continue
            found = _difference(arrays[a], arrays[b], criteria)
            if found is None:
                continue
            mask, b_is_marked = found
            clean_id, marked_id = (a, b) if b_is_marked else (b, a)
            twins.append(Twin(clean_id, marked_id, mask, float(mask.mean())))
    return sorted(twins, key=lambda t: (t.clean_id, t.marked_id))
