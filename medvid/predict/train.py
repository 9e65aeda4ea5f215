"""Train a frame classifier on labelled frames, with a validation split by video.

Frames of one video are near-duplicates of each other, so a random frame split would measure
memory, not generalisation: :func:`split_by_video` holds out whole videos. Training uses Adam,
cross-entropy (softmax) or binary cross-entropy (multilabel), light deterministic augmentation,
and early stopping on validation loss (the AIGVA tool offered the same switch, seed 003 section
4.3.1); the weights of the best epoch are restored at the end.

Determinism: with the same items, spec, seed and device the weights and history are identical
run to run on CPU (data order from a seeded generator, augmentation from
``(seed, epoch, index)``, initial weights from ``torch.manual_seed(seed)``).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from medvid.predict.data import FrameDataset
from medvid.predict.errors import TrainingDataError
from medvid.predict.infer import select_device
from medvid.predict.model import ModelSpec, build_model

#: ``progress(epoch, n_epochs, history_row)`` called after every epoch.
ProgressCallback = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainConfig:
    """Training knobs with defaults that work on a 2-core CPU for a few hundred frames.

    Attributes:
        epochs: maximum passes over the training frames.
        batch_size: frames per optimiser step.
        lr: Adam learning rate.
        weight_decay: Adam L2 penalty.
        patience: stop after this many epochs without a lower validation loss (0: never).
        seed: seeds weights, data order and augmentation.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        val_fraction: share of *videos* held out for validation by :func:`split_by_video`.
        num_threads: CPU threads for torch (``None``: all cores of the machine).
        weights_path: optional local ``state_dict`` to start from (no downloads).
        min_images_per_epoch: an epoch trains on at least this many images: with fewer
            training frames (cold label: K frames per video) it draws this many with
            replacement, each augmented, so a network trained from scratch gets more than a
            handful of optimiser steps; with more it is one pass over the frames. 0: one pass.
    """

    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 3
    seed: int = 0
    device: str = "auto"
    val_fraction: float = 0.2
    num_threads: int | None = None
    weights_path: str | None = None
    min_images_per_epoch: int = 256


@dataclass
class TrainResult:
    """Outcome of :func:`train_classifier`.

    Attributes:
        model: the network with the best epoch's weights, eval mode, on CPU.
        spec: what it predicts.
        history: one dict per epoch: ``epoch``, ``train_loss``, ``val_loss``,
            ``val_accuracy`` (NaN without validation frames), ``seconds``, ``images`` (trained
            on that epoch).
        best_epoch: 1-based epoch whose weights were kept.
        stopped_early: training ended before ``epochs`` because of ``patience``.
        confusion_matrix: ``[true][predicted]`` frame counts on the validation frames at the
            best epoch (single-label only; empty without validation frames).
        seconds_per_image: training wall time divided by images forwarded and back-propagated.
        trained_on: ``{video_id: training frames}``; ``validated_on`` likewise.
    """

    model: nn.Module
    spec: ModelSpec
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    confusion_matrix: list[list[int]]
    seconds_per_image: float
    trained_on: dict[str, int] = field(default_factory=dict)
    validated_on: dict[str, int] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable summary for a model sidecar or asset metadata."""
        best = self.history[self.best_epoch - 1] if self.history else {}
        return {
            "trained_on": self.trained_on,
            "validated_on": self.validated_on,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "history": self.history,
            "confusion_matrix": self.confusion_matrix,
            "seconds_per_image": self.seconds_per_image,
            "metrics": {k: v for k, v in best.items() if k != "epoch"},
        }


def split_by_video(
    items: pd.DataFrame, val_fraction: float = 0.2, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split labelled frames into (train, validation) by whole videos.

    ``round(val_fraction * n_videos)`` videos (at least one when ``val_fraction > 0``) go to
    validation, chosen in a seeded shuffle, but a
    video is only moved when every class of ``label_name`` stays present in the training videos;
    at least one video always stays in training, so with one video (or when no video can leave
    without taking a class with it) validation is empty. Deterministic for a seed.
    """
    videos = sorted(items["video_id"].unique())
    wanted = max(1, round(val_fraction * len(videos))) if val_fraction > 0 else 0
    n_val = min(wanted, len(videos) - 1) if videos else 0
    order = list(videos)
    random.Random(seed).shuffle(order)
    classes_of = (
        items.groupby("video_id")["label_name"].agg(lambda s: set(s))
        if "label_name" in items.columns
        else pd.Series({v: set() for v in videos})
    )
    val: list[str] = []
    for video in order:
        if len(val) >= n_val:
            break
        remaining = [v for v in videos if v != video and v not in val]
        covered = set().union(*(classes_of[v] for v in remaining)) if remaining else set()
        if classes_of[video] <= covered:
            val.append(video)
    is_val = items["video_id"].isin(val)
    return items[~is_val].reset_index(drop=True), items[is_val].reset_index(drop=True)


def _targets(items: pd.DataFrame, spec: ModelSpec) -> np.ndarray:
    index = {name: i for i, name in enumerate(spec.classes)}
    if spec.multilabel:
        if "label_names" not in items.columns:
            raise TrainingDataError("multilabel training frames need a 'label_names' column")
        out = np.zeros((len(items), len(spec.classes)), dtype=np.float32)
        for row, names in enumerate(items["label_names"]):
            for name in names:
                if name not in index:
                    raise TrainingDataError(f"label {name!r} is not a class of the model")
                out[row, index[name]] = 1.0
        return out
    if "label_name" not in items.columns:
        raise TrainingDataError("training frames need a 'label_name' column")
    unknown = sorted(set(items["label_name"]) - set(index))
    if unknown:
        raise TrainingDataError(f"label(s) {unknown} are not classes of the model")
    return np.array([index[name] for name in items["label_name"]], dtype=np.int64)


def _loader(
    dataset: FrameDataset, batch_size: int, shuffle: bool, seed: int, min_images: int = 0
) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    if shuffle and 0 < len(dataset) < min_images:
        sampler = RandomSampler(
            dataset, replacement=True, num_samples=min_images, generator=generator
        )
        drop_last = min_images > batch_size and min_images % batch_size == 1
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last)
    # BatchNorm cannot train on a batch of one frame: drop a lone last frame of a shuffled
    # epoch (another frame is left over next epoch, so none is excluded for good)
    drop_last = shuffle and len(dataset) > batch_size and len(dataset) % batch_size == 1
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last
    )


def _evaluate(
    model: nn.Module, loader: DataLoader, loss_fn: nn.Module, spec: ModelSpec, device: torch.device
) -> tuple[float, float, np.ndarray]:
    """Mean loss, accuracy and ``(C, C)`` confusion matrix of ``model`` over ``loader``."""
    n_classes = len(spec.classes)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    total_loss, total, correct = 0.0, 0, 0.0
    model.eval()
    with torch.inference_mode():
        for images, targets in loader:
            images, targets = images.to(device), targets.to(device)
            logits = model(images)
            total_loss += float(loss_fn(logits, targets)) * len(images)
            total += len(images)
            if spec.multilabel:
                correct += float(((logits > 0).float() == targets).float().mean(1).sum())
            else:
                predicted = logits.argmax(1)
                correct += float((predicted == targets).sum())
                for t, p in zip(targets.tolist(), predicted.tolist(), strict=True):
                    confusion[t, p] += 1
    if total == 0:
        return math.nan, math.nan, confusion
    return total_loss / total, correct / total, confusion


def train_classifier(
    frames_root: str | Path,
    train_items: pd.DataFrame,
    val_items: pd.DataFrame | None,
    spec: ModelSpec,
    config: TrainConfig | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train a ResNet on labelled frames and keep the weights of the best epoch.

    Args:
        frames_root: folder the items' ``frame_relative_path`` are relative to.
        train_items, val_items: one row per frame with ``frame_relative_path``, ``video_id``
            and ``label_name`` (single-label) or ``label_names`` (multilabel: sequence of the
            labels that apply). ``val_items`` may be ``None`` or empty: then there is no early
            stopping and the last epoch is kept.
        spec: classes (output order), architecture, input size.
        config: :class:`TrainConfig`; defaults when ``None``.
        progress: called after each epoch with ``(epoch, epochs, history_row)``.

    Raises :class:`TrainingDataError` when there are fewer than 2 training frames or a label is
    not one of ``spec.classes``; :class:`~medvid.predict.errors.FrameReadError` for an unreadable
    frame. A shuffled epoch whose last batch would hold a single frame drops it (BatchNorm
    cannot train on one frame); the order is reshuffled each epoch, so no frame is left out for
    good.
    """
    config = config or TrainConfig()
    if len(train_items) < 2:
        raise TrainingDataError(
            f"{len(train_items)} labelled frame(s) to train on; at least 2 are needed"
        )
    val_items = val_items if val_items is not None else train_items.iloc[0:0]
    device = select_device(config.device)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads or os.cpu_count() or 1)
    try:
        torch.manual_seed(config.seed)
        model = build_model(spec, config.weights_path).to(device)
        train_set = FrameDataset(
            frames_root,
            list(train_items["frame_relative_path"]),
            _targets(train_items, spec),
            input_size=spec.input_size,
            augment=True,
            seed=config.seed,
        )
        val_set = FrameDataset(
            frames_root,
            list(val_items["frame_relative_path"]),
            _targets(val_items, spec),
            input_size=spec.input_size,
        )
        train_loader = _loader(
            train_set, config.batch_size, True, config.seed, config.min_images_per_epoch
        )
        val_loader = _loader(val_set, config.batch_size, False, config.seed)
        loss_fn: nn.Module = nn.BCEWithLogitsLoss() if spec.multilabel else nn.CrossEntropyLoss()
        optimiser = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        history: list[dict[str, float]] = []
        best_loss, best_epoch, best_state = math.inf, 0, None
        best_confusion = np.zeros((0, 0), dtype=np.int64)
        stale, stopped_early, images_seen, train_seconds = 0, False, 0, 0.0
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            train_set.set_epoch(epoch)
            model.train()
            running, count = 0.0, 0
            for images, targets in train_loader:
                images, targets = images.to(device), targets.to(device)
                optimiser.zero_grad(set_to_none=True)
                loss = loss_fn(model(images), targets)
                loss.backward()
                optimiser.step()
                running += loss.item() * len(images)
                count += len(images)
            train_seconds += time.perf_counter() - started
            images_seen += count
            val_loss, val_accuracy, confusion = _evaluate(model, val_loader, loss_fn, spec, device)
            row = {
                "epoch": float(epoch),
                "train_loss": running / count,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "seconds": time.perf_counter() - started,
                "images": float(count),
            }
            history.append(row)
            if progress is not None:
                progress(epoch, config.epochs, row)
            # Without validation frames every epoch "improves": the last one is kept.
            score = row["train_loss"] if math.isnan(val_loss) else val_loss
            if math.isnan(val_loss) or score < best_loss:
                best_loss, best_epoch, stale = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best_confusion = confusion
            else:
                stale += 1
                if config.patience and stale >= config.patience and epoch < config.epochs:
                    stopped_early = True
                    break
        assert best_state is not None
        model.load_state_dict(best_state)
    finally:
        torch.set_num_threads(previous_threads)
    model.to("cpu").eval()
    return TrainResult(
        model=model,
        spec=spec,
        history=history,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        confusion_matrix=best_confusion.tolist() if len(val_items) else [],
        seconds_per_image=train_seconds / max(images_seen, 1),
        trained_on=_frame_counts(train_items),
        validated_on=_frame_counts(val_items),
    )


def _frame_counts(items: pd.DataFrame) -> dict[str, int]:
    counts = items.groupby("video_id").size() if len(items) else pd.Series(dtype=int)
    return {str(k): int(v) for k, v in counts.items()}


def every_nth_frame(items: pd.DataFrame, skip: int) -> pd.DataFrame:
    """Every ``skip``-th row of each video in ``frame_number`` order, starting at the first.

    The AIGVA blitz label asked for a skip factor so that near-identical neighbouring frames do
    not dominate training (seed 003, section 4.3.2).
    """
    if skip < 1:
        raise ValueError(f"skip must be >= 1, got {skip}")
    ordered = items.sort_values(["video_id", "frame_number"], kind="stable")
    position = ordered.groupby("video_id").cumcount()
    return ordered[position % skip == 0].reset_index(drop=True)


def class_names(items: Sequence[str]) -> tuple[str, ...]:
    """Sorted distinct label names (the default class order of a new model)."""
    return tuple(sorted(set(items)))
