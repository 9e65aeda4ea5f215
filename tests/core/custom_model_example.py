"""A custom model for the tests: labels a frame ``red`` or ``blue`` by its mean colour.

It follows the custom-model contract of :mod:`medvid.predict.strategies`: a batch of
``(N, H, W, 3) uint8 RGB`` frames in, ``(labels, confidences in [0, 1])`` out.
"""

from __future__ import annotations

import numpy as np

CALLS: list[tuple[int, ...]] = []


def predict(frames: np.ndarray) -> tuple[list[str], np.ndarray]:
    """``red`` when the mean red channel exceeds the mean blue channel, else ``blue``;
    confidence is the winning channel's share of red + blue."""
    CALLS.append(tuple(frames.shape))
    red = frames[..., 0].reshape(len(frames), -1).mean(axis=1)
    blue = frames[..., 2].reshape(len(frames), -1).mean(axis=1)
    labels = ["red" if r > b else "blue" for r, b in zip(red, blue, strict=True)]
    confidences = np.maximum(red, blue) / np.maximum(red + blue, 1e-9)
    return labels, confidences


def out_of_range(frames: np.ndarray) -> tuple[list[str], np.ndarray]:
    """A broken model: confidences of 2.0."""
    return ["red"] * len(frames), np.full(len(frames), 2.0)


NOT_CALLABLE = 3
