"""Cheap per-frame quality flags: dead frames (nothing to learn from) and disturbed frames.

All measures run on a small grayscale copy of the frame (:func:`small_gray`, 128 px wide, full
range 0..255 luma), so they cost well under a millisecond and the thresholds do not depend on the
video's resolution.

- dead: ``"black"`` (probe lifted / screen off), ``"blank"`` (white screen), ``"uniform"`` (a flat
  colour: menu background, test pattern gap) or ``"frozen"`` (identical to the previous decoded
  frame: a paused cine loop or a duplicated frame from a capture card).
- disturbed: blurred (little edge energy: motion, defocus, probe moving) or flagged corrupt by the
  decoder (damaged packet). A disturbed frame is kept but marked, so training sets can skip it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

#: Width in pixels of the grayscale copy the measures run on.
SMALL_WIDTH = 128

DEAD_REASONS = ("black", "blank", "uniform", "frozen")


@dataclass(frozen=True)
class QualityThresholds:
    """Thresholds for :func:`frame_quality`; all on the 128-px-wide 0..255 grayscale copy.

    Attributes:
        black_mean: mean intensity (0..255) below which a frame is ``"black"``. 8 sits above
            encoded black (0..1 after TV-range expansion) and below the darkest real clips in
            ``shared/data`` (ocular ultrasound on a black background: means 11..13).
        blank_mean: mean intensity (0..255) above which a frame is ``"blank"`` (white screen);
            the mirror image of ``black_mean`` (255 - 8).
        uniform_std: standard deviation of intensity (0..255 levels) below which a frame is
            ``"uniform"``: one flat colour. Compression noise on a flat field is ~1 level;
            real frames in ``shared/data`` have per-clip medians of 24..57 (lowest frame: 9,
            during a fade to black).
        frozen_mean_abs_diff: mean absolute difference (0..255 levels) to the previous decoded
            frame below which a frame counts as *still*. Measured on the clips in ``shared/data``:
            duplicated frames differ by 0..0.2 levels, moving ones by 0.5..15; the slowest lung
            clips (MPEG-2, AVI) move by only 0.5..1 per frame, so a few of their frames sit at
            the threshold.
        frozen_min_duration_s: a frame is ``"frozen"`` once the picture has been still for at
            least this many seconds (consecutive still frames / fps). A single repeated frame is
            not dead: many clips are stored at a higher rate than they were captured (25 fps
            holding 12.5 fps of content repeats every other frame); a frozen screen or a paused
            probe stays still for far longer than half a second.
        blur_laplacian_var: variance of the 3x3 Laplacian (levels^2) below which a frame is
            disturbed (blurred). Measured on the real clips in ``shared/data`` at 128 px wide:
            per-clip medians 210..1860, lowest single frame 17 (a dark fade); a Gaussian blur of
            sigma 1 px takes an MPEG-2 ultrasound frame from 310 to 14. Lower it for very smooth
            imagery.
    """

    black_mean: float = 8.0
    blank_mean: float = 247.0
    uniform_std: float = 3.0
    frozen_mean_abs_diff: float = 0.5
    frozen_min_duration_s: float = 0.5
    blur_laplacian_var: float = 15.0


class FrameQuality(NamedTuple):
    """Result of :func:`frame_quality`."""

    mean_intensity: float
    """Mean of the small grayscale copy, 0..255."""
    laplacian_var: float
    """Variance of its 3x3 Laplacian, levels^2 (higher = sharper)."""
    is_dead: bool
    dead_reason: str
    """One of :data:`DEAD_REASONS`, or ``""`` when not dead."""
    is_disturbed: bool


def small_gray(gray: np.ndarray, width: int = SMALL_WIDTH) -> np.ndarray:
    """Downscale a ``(H, W) uint8`` grayscale frame to ``width`` px wide (aspect kept);
    ``(h, width) uint8``. Frames at most ``width`` wide are returned as they are.

    Area averaging (anti-aliased, like PIL's resize that imagehash uses). Large frames first go
    bilinearly to twice the target size, then 2:1 area: ~3x cheaper than OpenCV's general
    non-integer ``INTER_AREA`` and within ~1 grey level of it on average.
    """
    height, full_width = gray.shape[:2]
    if full_width <= width:
        return gray
    new_height = max(1, round(height * width / full_width))
    if full_width > 2 * width:
        gray = cv2.resize(gray, (2 * width, 2 * new_height), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(gray, (width, new_height), interpolation=cv2.INTER_AREA)


def is_still(
    gray_small: np.ndarray,
    previous_gray_small: np.ndarray | None,
    thresholds: QualityThresholds = QualityThresholds(),  # noqa: B008 (frozen, immutable)
) -> bool:
    """Whether a frame repeats the previous *decoded* frame: mean absolute difference of the two
    ``(h, w) uint8`` small grayscale copies below ``frozen_mean_abs_diff`` levels. False for the
    first frame (``previous_gray_small`` None) or a size change."""
    return (
        previous_gray_small is not None
        and previous_gray_small.shape == gray_small.shape
        and float(cv2.norm(gray_small, previous_gray_small, cv2.NORM_L1)) / gray_small.size
        < thresholds.frozen_mean_abs_diff
    )


def frame_quality(
    gray_small: np.ndarray,
    still_for_s: float = 0.0,
    thresholds: QualityThresholds = QualityThresholds(),  # noqa: B008 (frozen, immutable)
    *,
    decoder_corrupt: bool = False,
) -> FrameQuality:
    """Measure one frame and flag it dead or disturbed.

    Args:
        gray_small: ``(h, w) uint8`` full-range grayscale copy of the frame (see
            :func:`small_gray`).
        still_for_s: for how long, in seconds, the picture has been still up to this frame
            (consecutive frames for which :func:`is_still` held, divided by the fps); the
            frame is ``"frozen"`` when this reaches ``thresholds.frozen_min_duration_s``.
        thresholds: see :class:`QualityThresholds`.
        decoder_corrupt: the decoder flagged the frame as corrupt (``AV_FRAME_FLAG_CORRUPT``).

    The dead reason is the first that applies, in the order black, blank, uniform, frozen.
    """
    gray = gray_small
    mean, std = cv2.meanStdDev(gray)
    mean_intensity = float(mean[0, 0])
    std_intensity = float(std[0, 0])
    laplacian_var = float(cv2.Laplacian(gray, cv2.CV_32F, ksize=1).var())
    reason = ""
    if mean_intensity < thresholds.black_mean:
        reason = "black"
    elif mean_intensity > thresholds.blank_mean:
        reason = "blank"
    elif std_intensity < thresholds.uniform_std:
        reason = "uniform"
    elif still_for_s > 0 and still_for_s >= thresholds.frozen_min_duration_s:
        reason = "frozen"
    is_disturbed = decoder_corrupt or laplacian_var < thresholds.blur_laplacian_var
    return FrameQuality(mean_intensity, laplacian_var, bool(reason), reason, bool(is_disturbed))
