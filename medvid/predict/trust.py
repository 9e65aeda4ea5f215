"""When not to trust a prediction: calibrated confidences and out-of-distribution videos.

Two checks, both fitted on frames of patients the model was not trained on (the validation
patients of :func:`medvid.predict.train.split_by_patient`):

- **calibration** (temperature scaling, Guo et al., "On Calibration of Modern Neural
  Networks", ICML 2017): the logits are divided by one temperature ``T`` fitted on frames of
  held-out patients; :func:`fold_temperature` writes ``1/T`` into the final layer, so the
  saved model's softmax *is* the calibrated confidence. Guo et al. minimise the negative
  log-likelihood; medvid minimises the expected calibration error by default
  (``objective="ece"``), because across patients a model is often wrong about a whole
  patient with confidence, and the NLL-optimal temperature then softens every frame: on the
  lung clips it was 2.3 and raised the held-out ECE from 0.05 to 0.18.
  A frame whose calibrated top probability is below ``min_confidence`` is flagged
  ``low_confidence``.
- **out of distribution**: a video is summarised by the mean of its frames' pooled features
  (:func:`medvid.predict.model.backbone_features`), standardised with the training frames'
  per-feature mean and standard deviation and L2-normalised; its distance is the cosine
  distance ``1 - cos`` to the nearest training video. The threshold is the
  ``quantile`` (default 0.95) of the same distance for videos of patients held out from the
  reference: the validation videos against the training videos, and each training video
  against the training videos of *other* patients. A new video further than that from every
  training video looks unlike anything the model learnt from, whatever its confidence, and is
  flagged ``out_of_distribution`` (every frame of it too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

#: Frames whose calibrated top-class probability is below this are flagged ``low_confidence``.
DEFAULT_MIN_CONFIDENCE = 0.6
#: Share of held-out-patient videos that fall within the out-of-distribution threshold.
DEFAULT_OOD_QUANTILE = 0.95


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, C)`` logits, ``float64``."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean ``-log p(target)`` of ``(N, C)`` logits and ``(N,)`` int targets."""
    probs = softmax(logits)
    return float(-np.mean(np.log(probs[np.arange(len(targets)), targets] + 1e-12)))


def fit_temperature(logits: np.ndarray, targets: np.ndarray, objective: str = "ece") -> float:
    """Temperature ``T`` in [0.1, 20] for ``softmax(logits / T)``.

    ``objective="ece"``: the lowest :func:`expected_calibration_error` on a grid of 161
    log-spaced temperatures (ties: the one closest to 1). ``"nll"``: the lowest negative
    log-likelihood by golden-section search over ``log T`` (unimodal), exact to about 1e-6.
    Deterministic. Returns 1.0 for no frames.
    """
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    if len(targets) == 0:
        return 1.0
    if objective == "ece":
        grid = np.exp(np.linspace(np.log(0.1), np.log(20.0), 161))
        errors = [expected_calibration_error(softmax(logits / t), targets) for t in grid]
        best = min(range(len(grid)), key=lambda i: (round(errors[i], 12), abs(np.log(grid[i]))))
        return float(grid[best])
    if objective != "nll":
        raise ValueError(f"objective must be 'ece' or 'nll', got {objective!r}")
    lo, hi = np.log(0.1), np.log(20.0)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0

    def loss(log_t: float) -> float:
        return negative_log_likelihood(logits / np.exp(log_t), targets)

    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(60):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return float(np.exp((lo + hi) / 2.0))


def fold_temperature(model: nn.Module, temperature: float) -> None:
    """Divide the final ``fc`` layer's weight and bias by ``temperature`` in place, so the
    model outputs ``logits / T``."""
    with torch.no_grad():
        model.fc.weight.div_(temperature)
        if model.fc.bias is not None:
            model.fc.bias.div_(temperature)


def expected_calibration_error(probabilities: np.ndarray, targets: np.ndarray, bins: int = 10):
    """ECE of ``(N, C)`` probabilities: the frame-weighted mean gap between top-class
    confidence and accuracy over ``bins`` equal-width confidence bins (Guo et al. 2017).
    NaN for no frames."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if len(probs) == 0:
        return float("nan")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(targets)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap += inside.mean() * abs(confidence[inside].mean() - correct[inside].mean())
    return float(gap)


def video_means(
    features: np.ndarray,
    video_ids: Sequence[str],
    center: np.ndarray | None = None,
    scale: np.ndarray | None = None,
) -> tuple[list[str], np.ndarray]:
    """Sorted video ids and the mean feature of each, minus ``center``, divided by ``scale``
    and L2-normalised: ``(V, D) float32``."""
    ids = np.asarray(video_ids).astype(str)
    order = sorted(set(ids.tolist()))
    if not order:
        return [], np.zeros((0, features.shape[1]), dtype=np.float32)
    means = np.stack([features[ids == v].mean(axis=0) for v in order]).astype(np.float64)
    if center is not None:
        means = means - center
    if scale is not None:
        means = means / scale
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return order, (means / np.maximum(norms, 1e-12)).astype(np.float32)


def nearest_distance(reference: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Cosine distance ``1 - cos`` from each normalised query row to its nearest reference row;
    ``inf`` when there is no reference."""
    if len(reference) == 0:
        return np.full(len(queries), np.inf)
    similarity = (queries.astype(np.float64) @ reference.astype(np.float64).T).max(axis=1)
    return np.clip(1.0 - similarity, 0.0, 2.0)


@dataclass
class TrustReference:
    """What a model needs to flag its own predictions (stored in the model sidecar).

    Attributes:
        video_features: ``(V, D) float32`` standardised, normalised mean feature of each
            training video.
        center, scale: ``(D,)`` per-feature mean and standard deviation of the training
            frames, applied before normalising (see :func:`video_means`).
        threshold: cosine distance above which a video is out of distribution (NaN: no
            held-out videos to calibrate on, never flagged).
        min_confidence: calibrated top probability under which a frame is low-confidence.
        calibration_distances: the held-out distances the threshold was taken from.
    """

    video_features: np.ndarray
    threshold: float
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    calibration_distances: list[float] = field(default_factory=list)
    center: np.ndarray | None = None
    scale: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (features rounded to 6 significant digits)."""
        return {
            "rule": "video out of distribution when the cosine distance of its mean pooled "
            "feature to the nearest training video exceeds threshold; frame low confidence "
            "when its calibrated top probability is below min_confidence",
            "threshold": None if np.isnan(self.threshold) else float(self.threshold),
            "min_confidence": float(self.min_confidence),
            "calibration_distances": [float(f"{d:.6g}") for d in self.calibration_distances],
            "center": _rounded(self.center),
            "scale": _rounded(self.scale),
            "video_features": [[float(f"{v:.6g}") for v in row] for row in self.video_features],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrustReference:
        threshold = data.get("threshold")
        features = np.asarray(data.get("video_features") or [], dtype=np.float32)
        center, scale = data.get("center"), data.get("scale")
        return cls(
            video_features=features.reshape(len(features), -1),
            threshold=float("nan") if threshold is None else float(threshold),
            min_confidence=float(data.get("min_confidence", DEFAULT_MIN_CONFIDENCE)),
            calibration_distances=list(data.get("calibration_distances", [])),
            center=None if center is None else np.asarray(center, dtype=np.float64),
            scale=None if scale is None else np.asarray(scale, dtype=np.float64),
        )

    def distances(self, features: np.ndarray, video_ids: Sequence[str]) -> dict[str, float]:
        """``{video_id: distance to the nearest training video}`` for ``(N, D)`` features."""
        order, means = video_means(features, video_ids, self.center, self.scale)
        return dict(zip(order, nearest_distance(self.video_features, means).tolist(), strict=True))

    def out_of_distribution(self, distance: float) -> bool:
        return bool(not np.isnan(self.threshold) and distance > self.threshold)


def build_trust_reference(
    train_features: np.ndarray,
    train_videos: Sequence[str],
    train_patients: Sequence[str],
    val_features: np.ndarray,
    val_videos: Sequence[str],
    *,
    quantile: float = DEFAULT_OOD_QUANTILE,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> TrustReference:
    """The reference and threshold of the module docstring's rule.

    ``train_patients`` gives each training frame's patient (a video without a known patient is
    its own). Held-out distances: every validation video to the training videos, and every
    training video to the training videos of other patients. The threshold is their
    ``quantile`` (NaN when there are none).
    """
    center = np.asarray(train_features, dtype=np.float64).mean(axis=0)
    scale = np.asarray(train_features, dtype=np.float64).std(axis=0) + 1e-6
    order, means = video_means(train_features, train_videos, center, scale)
    frame_patient = dict(zip(np.asarray(train_videos).astype(str), train_patients, strict=True))
    patients = np.array([str(frame_patient[v]) for v in order])
    held_out: list[float] = []
    for index in range(len(order)):
        others = means[patients != patients[index]]
        if len(others):
            held_out.append(float(nearest_distance(others, means[index : index + 1])[0]))
    if len(val_features):
        _, val_means = video_means(val_features, val_videos, center, scale)
        held_out += nearest_distance(means, val_means).tolist()
    threshold = float(np.quantile(held_out, quantile)) if held_out else float("nan")
    return TrustReference(
        video_features=means,
        threshold=threshold,
        min_confidence=min_confidence,
        calibration_distances=sorted(held_out),
        center=center,
        scale=scale,
    )


def _rounded(values: np.ndarray | None) -> list[float] | None:
    return None if values is None else [float(f"{v:.6g}") for v in values]
