"""Fill on-image marks at full resolution: OpenCV Telea, Navier-Stokes, or a mean fill.

The mask (from :func:`medvid.cleaning.find_marks` or a twin difference,
:mod:`medvid.cleaning.twins`) is dilated a little first so the fill starts from pixels the mark
did not touch: anti-aliased or JPEG-smeared edges of a mark sit just outside its drawn pixels.

Methods (:data:`INPAINT_METHODS`):

- ``"telea"``: fast marching, Telea, "An image inpainting technique based on the fast marching
  method", J. Graphics Tools 9(1), 2004 (``cv2.INPAINT_TELEA``);
- ``"ns"``: Bertalmio, Bertozzi and Sapiro, "Navier-Stokes, fluid dynamics, and image and
  video inpainting", CVPR 2001 (``cv2.INPAINT_NS``);
- ``"mean"``: the baseline, each connected region of the mask filled with the mean colour of
  the ring of pixels around it.

Only pixels of the dilated mask change. ``work_size`` reproduces the seed tool, which worked on
a 256x256 copy: the fill is computed there and scaled back (only the masked pixels are pasted).
"""

from __future__ import annotations

import cv2
import numpy as np

INPAINT_METHODS = ("telea", "ns", "mean")


def _check(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} is not the image's {image.shape[:2]}")
    return image, mask.astype(bool)


def dilate_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` grown by ``pixels`` (a (2p+1)-square structuring element); ``(H, W) bool``."""
    if pixels <= 0:
        return mask.astype(bool)
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def mean_fill(image: np.ndarray, mask: np.ndarray, ring_px: int = 2) -> np.ndarray:
    """Fill each connected region (8-connected) of ``mask`` with the mean RGB of the pixels
    within ``ring_px`` around it (the frame's mean where a region has no ring)."""
    image, mask = _check(image, mask)
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    out = image.copy()
    if count <= 1:
        return out
    # A ring pixel takes the label of the region it surrounds (nearest by dilation of labels).
    grown = cv2.dilate(labels.astype(np.float32), np.ones((2 * ring_px + 1,) * 2, np.uint8))
    ring = ~mask & (grown > 0)
    ring_labels = grown[ring].astype(np.int64)
    sums = np.stack(
        [np.bincount(ring_labels, image[ring][:, c], minlength=count) for c in range(3)], 1
    )
    counts = np.bincount(ring_labels, minlength=count)[:, None]
    fallback = image.reshape(-1, 3).mean(0)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), fallback)
    out[mask] = np.clip(np.round(means[labels[mask]]), 0, 255).astype(np.uint8)
    return out


def inpaint(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    method: str = "telea",
    radius: int = 3,
    dilate_px: int = 1,
    work_size: int | None = None,
) -> np.ndarray:
    """Fill the pixels of ``mask`` from their surroundings.

    Args:
        image: ``(H, W, 3) uint8`` RGB.
        mask: ``(H, W) bool``, the pixels to fill (mark pixels).
        method: one of :data:`INPAINT_METHODS`.
        radius: neighbourhood radius of Telea and Navier-Stokes, pixels (``inpaintRadius``).
        dilate_px: the mask is grown by this many pixels first.
        work_size: fill on a ``work_size`` x ``work_size`` copy and scale back (the seed tool's
            256-pixel behaviour, for comparison); ``None``: at full resolution.

    Returns:
        ``(H, W, 3) uint8``, equal to ``image`` outside the dilated mask.

    Raises:
        ValueError: bad shapes or dtype, an unknown method, a negative radius or dilation.
    """
    image, mask = _check(image, mask)
    if method not in INPAINT_METHODS:
        raise ValueError(f"method must be one of {INPAINT_METHODS}, got {method!r}")
    if radius < 1 or dilate_px < 0:
        raise ValueError(f"radius must be >= 1 and dilate_px >= 0, got {radius}, {dilate_px}")
    region = dilate_mask(mask, dilate_px)
    if not region.any():
        return image.copy()
    if work_size is not None:
        height, width = image.shape[:2]
        small = cv2.resize(image, (work_size, work_size), interpolation=cv2.INTER_AREA)
        small_mask = cv2.resize(
            region.astype(np.uint8), (work_size, work_size), interpolation=cv2.INTER_AREA
        )
        filled_small = inpaint(small, small_mask > 0, method=method, radius=radius, dilate_px=0)
        filled = cv2.resize(filled_small, (width, height), interpolation=cv2.INTER_LINEAR)
    elif method == "mean":
        filled = mean_fill(image, region)
    else:
        flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
        filled = cv2.inpaint(image, region.astype(np.uint8) * 255, float(radius), flag)
    out = image.copy()
    out[region] = filled[region]
    return out
