"""Predict frame labels with a classifier: the one engine behind cold, blitz and custom labels.

Output is a frame-label table (:data:`medvid.labels.schema.FRAME_LABELS_SCHEMA`) with one row
per (frame, class):

- ``float_value``: the class probability (softmax over classes, or a per-class sigmoid for a
  multilabel model), after optional temporal smoothing;
- ``value``: the class is the frame's argmax (single-label) or its probability is >= 0.5
  (multilabel), so exactly one row per frame is true for a single-label model;
- ``confidence``: the probability that the row's ``value`` is right: ``p`` when ``value`` is
  true, ``1 - p`` when false;
- ``source`` ``model:<model_id>``, ``annotator`` the same string, ``reviewed`` false,
  ``reviewer`` null.

Temporal smoothing averages each frame's probability vector with its neighbours of the same
video: a centred window of ``smoothing_window`` manifest rows ordered by ``frame_number``
(truncated at the ends). It removes isolated one-frame flips, which are almost never real in
clinical video sampled at 10-30 frames per second.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import nn
from torch.utils.data import DataLoader

from medvid.labels.schema import FRAME_LABELS_SCHEMA, LabelSchema, model_source
from medvid.predict.data import FrameDataset
from medvid.predict.errors import FrameSelectionError
from medvid.predict.model import ModelSpec, model_fingerprint

MANIFEST_COLUMNS = (
    "frame_id",
    "video_id",
    "frame_number",
    "frame_timestamp",
    "frame_relative_path",
)
MULTILABEL_THRESHOLD = 0.5


def select_device(preference: str = "auto") -> torch.device:
    """``"auto"``: the first CUDA GPU when torch sees one, else the CPU; otherwise the named
    device (``"cpu"``, ``"cuda"``, ``"cuda:1"``). Raises ``ValueError`` when CUDA is asked for
    but absent."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} requested but CUDA is not available")
    return device


def check_manifest(manifest: pd.DataFrame, columns: tuple[str, ...] = MANIFEST_COLUMNS) -> None:
    """Raise :class:`FrameSelectionError` naming the manifest columns that are missing."""
    missing = [c for c in columns if c not in manifest.columns]
    if missing:
        raise FrameSelectionError(f"frame manifest lacks column(s): {', '.join(missing)}")


def smooth_probabilities(
    probabilities: np.ndarray, video_ids: np.ndarray, window: int
) -> np.ndarray:
    """Centred moving average of ``(N, C)`` probabilities within each video.

    Rows must already be ordered by ``(video_id, frame_number)``. Each row becomes the mean of
    the rows at distance ``<= window // 2`` in the same video (fewer at the ends). ``window``
    0 or 1 returns the input unchanged. Returns ``(N, C) float64``.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    if window <= 1 or len(probs) == 0:
        return probs
    half = window // 2
    out = np.empty_like(probs)
    boundaries = np.flatnonzero(video_ids[1:] != video_ids[:-1]) + 1
    for start, stop in zip(np.r_[0, boundaries], np.r_[boundaries, len(probs)], strict=True):
        block = probs[start:stop]
        cumsum = np.vstack([np.zeros((1, probs.shape[1])), np.cumsum(block, axis=0)])
        index = np.arange(len(block))
        lo = np.maximum(index - half, 0)
        hi = np.minimum(index + half + 1, len(block))
        out[start:stop] = (cumsum[hi] - cumsum[lo]) / (hi - lo)[:, None]
    return out


def predict_probabilities(
    model: nn.Module,
    spec: ModelSpec,
    frames_root: str | Path,
    relative_paths: list[str],
    *,
    batch_size: int = 64,
    device: str = "auto",
    num_workers: int = 0,
) -> np.ndarray:
    """Class probabilities ``(N, C) float32`` for the frames at ``relative_paths``.

    Softmax over classes, or sigmoid per class for a multilabel spec. Runs batched under
    ``torch.inference_mode()`` on :func:`select_device`'s device; the model is moved there.
    """
    torch_device = select_device(device)
    model = model.to(torch_device).eval()
    dataset = FrameDataset(frames_root, relative_paths, input_size=spec.input_size, cache=False)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=torch_device.type == "cuda",
    )
    chunks: list[np.ndarray] = []
    with torch.inference_mode():
        for images, _ in loader:
            logits = model(images.to(torch_device, non_blocking=True))
            probs = torch.sigmoid(logits) if spec.multilabel else torch.softmax(logits, dim=1)
            chunks.append(probs.float().cpu().numpy())
    if not chunks:
        return np.zeros((0, len(spec.classes)), dtype=np.float32)
    return np.concatenate(chunks)


def probabilities_to_labels(
    frames: pd.DataFrame,
    probabilities: np.ndarray,
    spec: ModelSpec,
    model_id: str,
    *,
    label_schema: LabelSchema | None = None,
    now: dt.datetime | None = None,
) -> pa.Table:
    """Frame-label table for ``(N, C)`` probabilities of ``frames`` (manifest rows, same order).

    Rows are ordered frame by frame (the order of ``frames``) and, within a frame, by class
    order of ``spec``. ``label_schema`` gives the project's label ids (default: ids from
    ``LabelSchema.from_names(spec.classes)``); every class must be in it.
    """
    schema = label_schema or LabelSchema.from_names(spec.classes)
    label_ids = np.array([schema.id_of(name) for name in spec.classes], dtype=np.int32)
    n, c = probabilities.shape
    probs = probabilities.astype(np.float64)
    if spec.multilabel:
        values = probs >= MULTILABEL_THRESHOLD
    else:
        values = np.zeros_like(probs, dtype=bool)
        if n:
            values[np.arange(n), probs.argmax(axis=1)] = True
    confidence = np.where(values, probs, 1.0 - probs).astype(np.float32)
    source = model_source(model_id)
    stamp = pd.Timestamp(now or dt.datetime.now(dt.UTC)).tz_convert("UTC").floor("us")
    repeat = lambda column: np.repeat(frames[column].to_numpy(), c)  # noqa: E731
    columns = {
        "frame_id": repeat("frame_id").astype(str),
        "video_id": repeat("video_id").astype(str),
        "frame_number": repeat("frame_number").astype(np.int64),
        "frame_timestamp": repeat("frame_timestamp").astype(np.float64),
        "label_name": np.tile(np.array(spec.classes, dtype=object), n),
        "label_id": np.tile(label_ids, n),
        "value": values.reshape(-1),
        "float_value": probs.reshape(-1),
        "source": np.full(n * c, source, dtype=object),
        "confidence": confidence.reshape(-1),
        "annotator": np.full(n * c, source, dtype=object),
        "reviewed": np.zeros(n * c, dtype=bool),
        "reviewer": pa.nulls(n * c, pa.string()),
        "date_created": pa.array([stamp] * (n * c), pa.timestamp("us", tz="UTC")),
        "date_modified": pa.array([stamp] * (n * c), pa.timestamp("us", tz="UTC")),
    }
    arrays = [
        column
        if isinstance(column := columns[name], pa.Array)
        else pa.array(column, type=FRAME_LABELS_SCHEMA.field(name).type)
        for name in FRAME_LABELS_SCHEMA.names
    ]
    return pa.Table.from_arrays(arrays, schema=FRAME_LABELS_SCHEMA)


def predict_frames(
    model: nn.Module,
    spec: ModelSpec,
    frames_root: str | Path,
    manifest: pd.DataFrame,
    *,
    batch_size: int = 64,
    device: str = "auto",
    smoothing_window: int = 0,
    model_id: str | None = None,
    label_schema: LabelSchema | None = None,
    num_workers: int = 0,
    now: dt.datetime | None = None,
) -> pa.Table:
    """Predict every frame of ``manifest``: ``len(manifest) * len(spec.classes)`` label rows.

    Args:
        model, spec: the classifier and what it predicts.
        frames_root: folder the manifest's ``frame_relative_path`` are relative to.
        manifest: frame manifest rows (``frame_id``, ``video_id``, ``frame_number``,
            ``frame_timestamp``, ``frame_relative_path``); all rows are predicted.
        batch_size: frames per forward pass.
        device: ``"auto"`` uses CUDA when present, else CPU.
        smoothing_window: frames in the centred moving average of probabilities
            (0 = off; see module docstring).
        model_id: id written in ``source``; default :func:`model_fingerprint` of ``model``.
        label_schema: the project's label ids (default: from ``spec.classes``).
        num_workers: DataLoader worker processes for JPEG decoding (0 = in process).
        now: ``date_created``/``date_modified`` (UTC); default the current time.

    Returns a table with :data:`FRAME_LABELS_SCHEMA`, ordered by ``(video_id, frame_number)``
    then class order. Raises :class:`FrameSelectionError` for missing manifest columns and
    :class:`~medvid.predict.errors.FrameReadError` for an unreadable frame.
    """
    check_manifest(manifest)
    frames = manifest.sort_values(["video_id", "frame_number"], kind="stable").reset_index(
        drop=True
    )
    probs = predict_probabilities(
        model,
        spec,
        frames_root,
        list(frames["frame_relative_path"]),
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
    )
    probs = smooth_probabilities(probs, frames["video_id"].to_numpy(), smoothing_window)
    return probabilities_to_labels(
        frames,
        probs,
        spec,
        model_id or model_fingerprint(model),
        label_schema=label_schema,
        now=now,
    )
