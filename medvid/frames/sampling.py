"""Which frames to keep: the sampling strategies and the frame numbers they pick.

Frame numbers are 0-based indices in the original video, in decode order. Every strategy except
``"unique"`` is decided from the frame count and frame rate alone, before decoding; ``"unique"``
depends on pixel content and is decided while decoding (see :mod:`medvid.frames.extract`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, get_args

import numpy as np

SamplingStrategy = Literal["all", "every_n", "fps", "uniform_k", "unique"]
SAMPLING_STRATEGIES: tuple[str, ...] = get_args(SamplingStrategy)


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample frames from a video.

    Attributes:
        strategy: ``"all"`` every frame; ``"every_n"`` frames 0, n, 2n, ...; ``"fps"`` the frame
            nearest each multiple of ``1 / target_fps`` seconds; ``"uniform_k"`` ``uniform_k``
            evenly spaced frames over the whole video; ``"unique"`` a frame whenever its
            perceptual hash differs from the last kept frame's by >= ``unique_hamming`` bits.
        every_n: step in frames for ``"every_n"`` (>= 1).
        target_fps: frames per second of video to keep for ``"fps"`` (> 0).
        uniform_k: number of frames for ``"uniform_k"`` (>= 1).
        unique_hamming: Hamming distance in bits (0..64) between 64-bit pHashes for ``"unique"``;
            10 is roughly "a visibly different view" for ultrasound and endoscopy frames.
    """

    strategy: SamplingStrategy = "every_n"
    every_n: int = 10
    target_fps: float = 1.0
    uniform_k: int = 16
    unique_hamming: int = 10

    def __post_init__(self) -> None:
        if self.strategy not in SAMPLING_STRATEGIES:
            raise ValueError(
                f"unknown sampling strategy {self.strategy!r}; one of {SAMPLING_STRATEGIES}"
            )
        if self.every_n < 1:
            raise ValueError(f"every_n must be >= 1, got {self.every_n}")
        if not self.target_fps > 0:
            raise ValueError(f"target_fps must be > 0, got {self.target_fps}")
        if self.uniform_k < 1:
            raise ValueError(f"uniform_k must be >= 1, got {self.uniform_k}")
        if not 0 <= self.unique_hamming <= 64:
            raise ValueError(f"unique_hamming must be in 0..64, got {self.unique_hamming}")


def planned_frame_numbers(
    config: SamplingConfig, frame_count: int, fps: Fraction | float
) -> np.ndarray | None:
    """Sorted unique frame numbers (``(N,) int64``) the strategy keeps; ``None`` for ``"unique"``.

    Args:
        config: the sampling configuration.
        frame_count: frames in the video (>= 0).
        fps: the video's frame rate in frames per second (used by ``"fps"`` only).
    """
    if frame_count < 0:
        raise ValueError(f"frame_count must be >= 0, got {frame_count}")
    strategy = config.strategy
    if strategy == "unique":
        return None
    if strategy == "all":
        return np.arange(frame_count, dtype=np.int64)
    if strategy == "every_n":
        return np.arange(0, frame_count, config.every_n, dtype=np.int64)
    if strategy == "uniform_k":
        if config.uniform_k >= frame_count:
            return np.arange(frame_count, dtype=np.int64)
        picks = np.rint(np.linspace(0, frame_count - 1, config.uniform_k)).astype(np.int64)
        return np.unique(picks)
    # "fps": sample times 0, 1/target_fps, 2/target_fps, ... within the video's duration; each
    # picks the frame whose start time (frame_number / fps) is nearest.
    if frame_count == 0:
        return np.arange(0, dtype=np.int64)
    fps_value = float(fps)
    if not fps_value > 0:
        raise ValueError(f"fps must be > 0 for the 'fps' strategy, got {fps}")
    duration_s = frame_count / fps_value
    times = np.arange(0.0, duration_s, 1.0 / config.target_fps)
    picks = np.clip(np.floor(times * fps_value + 0.5), 0, frame_count - 1).astype(np.int64)
    return np.unique(picks)


def expected_frame_count(
    config: SamplingConfig, frame_count: int, fps: Fraction | float
) -> int | None:
    """How many frames the strategy keeps, or ``None`` when only decoding can tell
    (``"unique"``). Used by asset checks to compare against the frame manifest."""
    planned = planned_frame_numbers(config, frame_count, fps)
    return None if planned is None else int(planned.size)
