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
clinical video sampled at 10-30 frames per second. Clip aggregation (``aggregate_clip``) goes
further for labels that are a property of the whole clip (a diagnosis, a view): every frame
gets its video's mean probability vector.

:func:`predict_with_flags` adds the trust checks of :mod:`medvid.predict.trust`: a table
(:data:`PREDICTION_FLAGS_SCHEMA`) that flags every frame whose calibrated confidence is low or
whose video is out of distribution, and a per-video summary for asset metadata.

Speed: inference runs on a copy of the network prepared for it (:func:`inference_model`):
BatchNorm folded into the preceding convolutions (exact up to float rounding), channels-last
memory layout (oneDNN's fast path on CPUs), and with ``precision="auto"`` bfloat16 autocast
where the hardware computes bfloat16 natively (CPUs with AVX512-BF16 or AMX, CUDA GPUs with
bf16), which about doubles CPU throughput and moves probabilities by ~1e-3. JPEG decoding of
the next batch overlaps the forward pass of the current one (a reader thread: libjpeg and
OpenCV release the GIL).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils.data import DataLoader

from medvid.labels.schema import FRAME_LABELS_SCHEMA, LabelSchema, model_source
from medvid.predict.data import FrameDataset
from medvid.predict.errors import FrameSelectionError
from medvid.predict.model import ModelSpec, backbone_features, model_fingerprint
from medvid.predict.trust import DEFAULT_MIN_CONFIDENCE, TrustReference

MANIFEST_COLUMNS = (
    "frame_id",
    "video_id",
    "frame_number",
    "frame_timestamp",
    "frame_relative_path",
)
MULTILABEL_THRESHOLD = 0.5
Precision = Literal["auto", "fp32", "bf16"]

#: One row per predicted frame: the trust flags of :func:`predict_with_flags`.
#:
#: - ``predicted``: the top class; ``confidence``: its (calibrated, smoothed) probability
#: - ``low_confidence``: ``confidence`` < the model's ``min_confidence``
#: - ``video_distance``: cosine distance of the video's mean feature to the nearest training
#:   video (NaN when the model has no reference); ``out_of_distribution``: above the model's
#:   threshold (the same for every frame of a video)
#: - ``trusted``: neither flag is set
PREDICTION_FLAGS_SCHEMA = pa.schema(
    [
        pa.field("frame_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("frame_number", pa.int64(), nullable=False),
        pa.field("predicted", pa.string(), nullable=False),
        pa.field("confidence", pa.float32(), nullable=False),
        pa.field("low_confidence", pa.bool_(), nullable=False),
        pa.field("video_distance", pa.float32(), nullable=False),
        pa.field("out_of_distribution", pa.bool_(), nullable=False),
        pa.field("trusted", pa.bool_(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)


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


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX, read from
    ``/proc/cpuinfo``; False where that file does not exist)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: Precision, device: torch.device) -> str:
    """``"bf16"`` or ``"fp32"``: ``auto`` is bf16 on a CUDA GPU with bf16 or a CPU with native
    bf16, else fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) whose ``Conv2d -> BatchNorm2d`` pairs are fused into one
    convolution, the BatchNorm replaced by ``Identity``. Pairs are those of torchvision ResNets
    (stem, every block, downsample paths); a model of another shape is copied unchanged."""
    model = copy.deepcopy(model).eval()
    if not all(hasattr(model, name) for name in ("conv1", "bn1", "layer1", "layer4")):
        return model

    def pairs():
        yield model, "conv1", "bn1"
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            for block in layer:
                for index in (1, 2, 3):
                    if hasattr(block, f"conv{index}") and hasattr(block, f"bn{index}"):
                        yield block, f"conv{index}", f"bn{index}"
                if block.downsample is not None:
                    yield block.downsample, "0", "1"

    for parent, conv, bn in pairs():
        conv_layer, bn_layer = getattr(parent, conv), getattr(parent, bn)
        if isinstance(conv_layer, nn.Conv2d) and isinstance(bn_layer, nn.BatchNorm2d):
            setattr(parent, conv, fuse_conv_bn_eval(conv_layer, bn_layer))
            setattr(parent, bn, nn.Identity())
    return model


def inference_model(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` prepared for inference on ``device``: BatchNorm folded, channels-last, eval
    mode. The original is not modified."""
    return fold_batchnorm(model).to(device).to(memory_format=torch.channels_last).eval()


def _batches(dataset: FrameDataset, batch_size: int):
    """Batches ``(B, 3, S, S) float32`` of ``dataset`` in order, the next read while the
    caller computes on the current one (one reader thread)."""
    starts = range(0, len(dataset), batch_size)

    def read(start: int) -> torch.Tensor:
        stop = min(start + batch_size, len(dataset))
        return torch.stack([dataset[i][0] for i in range(start, stop)])

    if not len(starts):
        return
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(read, starts[0])
        for following in [*starts[1:], None]:
            batch = pending.result()
            pending = reader.submit(read, following) if following is not None else None
            yield batch


def predict_probabilities(
    model: nn.Module,
    spec: ModelSpec,
    frames_root: str | Path,
    relative_paths: list[str],
    *,
    batch_size: int = 64,
    device: str = "auto",
    num_workers: int = 0,
    precision: Precision = "auto",
) -> np.ndarray:
    """Class probabilities ``(N, C) float32`` for the frames at ``relative_paths``.

    Softmax over classes, or sigmoid per class for a multilabel spec. Runs batched under
    ``torch.inference_mode()`` on :func:`select_device`'s device, on a copy of the model
    prepared by :func:`inference_model`, in ``precision`` (:func:`resolve_precision`; the
    softmax is always computed in float32). ``num_workers`` > 0 reads frames in that many
    DataLoader processes instead of the reader thread.
    """
    torch_device = select_device(device)
    ready = inference_model(model, torch_device)
    dtype = resolve_precision(precision, torch_device)
    dataset = FrameDataset(frames_root, relative_paths, input_size=spec.input_size, cache=False)
    if num_workers > 0:
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            pin_memory=torch_device.type == "cuda",
        )
        batches = (images for images, _ in loader)
    else:
        batches = _batches(dataset, batch_size)
    autocast = (
        torch.autocast(torch_device.type, dtype=torch.bfloat16)
        if dtype == "bf16"
        else nullcontext()
    )
    chunks: list[np.ndarray] = []
    with torch.inference_mode():
        for images in batches:
            images = images.to(torch_device, non_blocking=True)
            with autocast:
                logits = ready(images.contiguous(memory_format=torch.channels_last))
            logits = logits.float()
            probs = torch.sigmoid(logits) if spec.multilabel else torch.softmax(logits, dim=1)
            chunks.append(probs.cpu().numpy())
    if not chunks:
        return np.zeros((0, len(spec.classes)), dtype=np.float32)
    return np.concatenate(chunks)


def extract_outputs(
    model: nn.Module,
    spec: ModelSpec,
    frames_root: str | Path,
    relative_paths: list[str],
    device: str | torch.device = "cpu",
    *,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(N, C) float32`` and pooled features ``(N, D) float32``
    (:func:`~medvid.predict.model.backbone_features`) of the frames at ``relative_paths``,
    in float32 (reproducible) on the model prepared by :func:`inference_model`. The model is
    not modified."""
    torch_device = select_device(device) if isinstance(device, str) else device
    ready = inference_model(model, torch_device)
    dataset = FrameDataset(frames_root, relative_paths, input_size=spec.input_size, cache=False)
    logits_out: list[np.ndarray] = []
    features_out: list[np.ndarray] = []
    with torch.inference_mode():
        for images in _batches(dataset, batch_size):
            images = images.to(torch_device).contiguous(memory_format=torch.channels_last)
            features = backbone_features(ready, images)
            logits_out.append(ready.fc(features).float().cpu().numpy())
            features_out.append(features.float().cpu().numpy())
    if not logits_out:
        return (
            np.zeros((0, len(spec.classes)), dtype=np.float32),
            np.zeros((0, int(model.fc.in_features)), dtype=np.float32),
        )
    return np.concatenate(logits_out), np.concatenate(features_out)


def aggregate_clips(probabilities: np.ndarray, video_ids: np.ndarray) -> np.ndarray:
    """Every row replaced by the mean ``(C,)`` probability vector of its video (rows of one
    video need not be contiguous). Returns ``(N, C) float64``."""
    probs = np.asarray(probabilities, dtype=np.float64)
    out = np.empty_like(probs)
    ids = np.asarray(video_ids).astype(str)
    for video in np.unique(ids):
        rows = ids == video
        out[rows] = probs[rows].mean(axis=0)
    return out


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
    precision: Precision = "auto",
    aggregate_clip: bool = False,
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
        num_workers: DataLoader worker processes for JPEG decoding (0 = a reader thread).
        precision: ``auto`` (bf16 where native, see the module docstring), ``fp32`` or ``bf16``.
        now: ``date_created``/``date_modified`` (UTC); default the current time.
        aggregate_clip: after smoothing, give every frame its video's mean probabilities
            (for labels that hold for a whole clip).

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
        precision=precision,
    )
    probs = smooth_probabilities(probs, frames["video_id"].to_numpy(), smoothing_window)
    if aggregate_clip:
        probs = aggregate_clips(probs, frames["video_id"].to_numpy())
    return probabilities_to_labels(
        frames,
        probs,
        spec,
        model_id or model_fingerprint(model),
        label_schema=label_schema,
        now=now,
    )


def predict_with_flags(
    model: nn.Module,
    spec: ModelSpec,
    frames_root: str | Path,
    manifest: pd.DataFrame,
    trust: TrustReference | None,
    *,
    batch_size: int = 64,
    device: str = "auto",
    smoothing_window: int = 0,
    aggregate_clip: bool = False,
    model_id: str | None = None,
    label_schema: LabelSchema | None = None,
    now: dt.datetime | None = None,
) -> tuple[pa.Table, pa.Table, dict[str, dict[str, object]]]:
    """Predict ``manifest`` like :func:`predict_frames` (float32) and flag what not to trust.

    Single-label models only. ``trust`` is the model's
    :class:`~medvid.predict.trust.TrustReference` (``TrustReference.from_dict`` of the sidecar's
    ``metadata["trust"]``); ``None`` flags low confidence only (below
    :data:`~medvid.predict.trust.DEFAULT_MIN_CONFIDENCE`).

    Returns ``(labels, flags, videos)``: the frame-label table, a
    :data:`PREDICTION_FLAGS_SCHEMA` table in the same frame order, and
    ``{video_id: {"frames", "predicted" (majority of frame predictions), "mean_confidence",
    "low_confidence_frames", "video_distance", "out_of_distribution", "trusted"}}`` where a
    video is trusted when it is not out of distribution and at most half its frames are
    low-confidence. Raises :class:`FrameSelectionError` for missing manifest columns.
    """
    if spec.multilabel:
        raise ValueError("predict_with_flags needs a single-label model")
    check_manifest(manifest)
    frames = manifest.sort_values(["video_id", "frame_number"], kind="stable").reset_index(
        drop=True
    )
    logits, features = extract_outputs(
        model, spec, frames_root, list(frames["frame_relative_path"]), device, batch_size=batch_size
    )
    video_ids = frames["video_id"].astype(str).to_numpy()
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    probs = smooth_probabilities(probs, video_ids, smoothing_window)
    if aggregate_clip:
        probs = aggregate_clips(probs, video_ids)
    model_id = model_id or model_fingerprint(model)
    labels = probabilities_to_labels(
        frames, probs, spec, model_id, label_schema=label_schema, now=now
    )
    min_confidence = trust.min_confidence if trust is not None else DEFAULT_MIN_CONFIDENCE
    distances = trust.distances(features, video_ids) if trust is not None and len(frames) else {}
    confidence = probs.max(axis=1) if len(frames) else np.zeros(0)
    predicted = np.array(spec.classes, dtype=object)[probs.argmax(axis=1)] if len(frames) else []
    distance = np.array([distances.get(v, np.nan) for v in video_ids], dtype=np.float64)
    ood = np.array(
        [trust.out_of_distribution(d) if trust is not None else False for d in distance],
        dtype=bool,
    )
    low = confidence < min_confidence
    flags = pa.table(
        {
            "frame_id": frames["frame_id"].astype(str).tolist(),
            "video_id": video_ids.tolist(),
            "frame_number": frames["frame_number"].astype(np.int64).tolist(),
            "predicted": list(predicted),
            "confidence": confidence.astype(np.float32),
            "low_confidence": low,
            "video_distance": distance.astype(np.float32),
            "out_of_distribution": ood,
            "trusted": ~(low | ood),
            "source": [model_source(model_id)] * len(frames),
        },
        schema=PREDICTION_FLAGS_SCHEMA,
    )
    videos: dict[str, dict[str, object]] = {}
    for video in sorted(set(video_ids.tolist())):
        rows = video_ids == video
        names, counts = np.unique(np.asarray(predicted)[rows], return_counts=True)
        video_ood = bool(ood[rows][0])
        low_frames = int(low[rows].sum())
        videos[video] = {
            "frames": int(rows.sum()),
            "predicted": str(names[counts.argmax()]),
            "mean_confidence": float(confidence[rows].mean()),
            "low_confidence_frames": low_frames,
            "video_distance": float(distance[rows][0]),
            "out_of_distribution": video_ood,
            "trusted": bool(not video_ood and low_frames <= rows.sum() / 2),
        }
    return labels, flags, videos
