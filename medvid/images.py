"""Still images on disk: read any image file as RGB, write lossless PNG atomically."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from medvid.errors import CorruptMediaError
from medvid.io import write_bytes_atomic


def read_rgb(path: str | Path) -> np.ndarray:
    """Read a JPEG/PNG/... file as ``(H, W, 3) uint8 RGB`` (OpenCV decoder).

    Raises:
        CorruptMediaError: the file is missing, empty or not a decodable image.
    """
    path = Path(path)
    data = np.fromfile(path, dtype=np.uint8) if path.is_file() else None
    if data is None or data.size == 0:
        raise CorruptMediaError(f"image missing or empty: {path.name}")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise CorruptMediaError(f"image cannot be decoded: {path.name}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_png(frame: np.ndarray, out: str | Path) -> Path:
    """Write an ``(H, W, 3) uint8 RGB`` (or ``(H, W)`` gray) frame as lossless PNG, atomically."""
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
        raise ValueError(f"expected (H, W[, 3]) uint8, got {frame.shape} {frame.dtype}")
    bgr = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", bgr)
    if not ok:
        raise ValueError("PNG encoding failed")
    return write_bytes_atomic(out, encoded.tobytes())
