"""Small preview images for humans: contact sheets (thumbnail grids) of frames."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def contact_sheet(
    image_paths: Sequence[Path], *, columns: int = 4, thumb_width: int = 160, max_images: int = 16
) -> np.ndarray:
    """A grid of thumbnails, ``(rows*h, columns*thumb_width, 3) uint8 BGR``.

    Up to ``max_images`` paths are taken evenly spaced from ``image_paths``; each is resized to
    ``thumb_width`` pixels wide keeping its aspect ratio (the tallest sets the row height).
    Unreadable images become grey tiles. Raises ``ValueError`` for an empty list.
    """
    if not image_paths:
        raise ValueError("no images for a contact sheet")
    picks = np.unique(
        np.linspace(0, len(image_paths) - 1, min(max_images, len(image_paths))).round()
    )
    thumbs = []
    for index in picks.astype(int):
        image = cv2.imread(str(image_paths[index]), cv2.IMREAD_COLOR)
        if image is None:
            image = np.full((thumb_width, thumb_width, 3), 128, np.uint8)
        height = max(1, round(image.shape[0] * thumb_width / image.shape[1]))
        thumbs.append(cv2.resize(image, (thumb_width, height), interpolation=cv2.INTER_AREA))
    tile_h = max(t.shape[0] for t in thumbs)
    columns = min(columns, len(thumbs))
    rows = math.ceil(len(thumbs) / columns)
    sheet = np.zeros((rows * tile_h, columns * thumb_width, 3), np.uint8)
    for i, thumb in enumerate(thumbs):
        r, c = divmod(i, columns)
        sheet[r * tile_h : r * tile_h + thumb.shape[0], c * thumb_width : (c + 1) * thumb_width] = (
            thumb
        )
    return sheet


def encode_jpeg(image_bgr: np.ndarray, quality: int = 80) -> bytes:
    """JPEG bytes of a ``(H, W, 3) uint8 BGR`` image."""
    ok, buffer = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buffer.tobytes()
