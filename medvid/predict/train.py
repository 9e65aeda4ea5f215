"""Train a frame classifier on labelled frames, validated on patients it never saw.

Frames of one patient are near-duplicates of each other (same anatomy, probe and session), so
a frame or clip split measures memory, not generalisation: :func:`split_by_patient` holds out
whole patients (a video without a known patient is its own), :func:`split_by_video` whole
videos. What the field does when labels are scarce is built in:

- **ultrasound augmentation** (:class:`medvid.predict.data.UltrasoundAugment`: gain, gamma,
  speckle, depth cut, flips, small rotations, shifts);
- **class-balanced sampling**: each epoch draws frames with probability
  ``1 / (classes x frames of the frame's class)``, so every class weighs the same
  (``balance="class"``, the default); ``"class_video"`` also weighs every video of a class
  alike, ``1 / (classes x videos of the class x frames of the video)``; ``"none"`` draws
  uniformly. (On the lung evaluation ``class`` beat ``class_video`` for every seed: long
  clips carry more of what varies within a class.)
- **early stopping** on the validation loss of the held-out patients (the AIGVA tool offered
  the same switch, seed 003 section 4.3.1); the weights of the best epoch are restored (a
  head on a frozen backbone is then refitted on every labelled patient for that many steps,
  :func:`fit_head_by_patient`);
- **a frozen backbone** (``freeze_backbone``): only the final layer is trained, on pooled
  features computed once (:func:`fit_head`): the usual linear evaluation of a self-supervised
  backbone (Chen et al., SimCLR, ICML 2020), and what works with a few labelled frames;
- **calibration** (temperature scaling on the held-out patients, :mod:`medvid.predict.trust`)
  and the **out-of-distribution reference** stored with the model.

Determinism: with the same items, spec, config and device the weights are identical bytes run
to run on a CPU: seeded weights (``torch.manual_seed``), data order and sampler
(``torch.Generator``), augmentation from ``(seed, epoch, index)``, single-process loading and
``torch.use_deterministic_algorithms(True)`` during training. On CUDA a few kernels have no
deterministic version; torch then warns (``warn_only``) instead of failing, and
:attr:`TrainResult.deterministic` records whether any did.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler

from medvid.predict.data import DEFAULT_AUGMENT, FrameDataset, UltrasoundAugment
from medvid.predict.errors import TrainingDataError
from medvid.predict.infer import extract_outputs, select_device
from medvid.predict.model import ModelSpec, build_model
from medvid.predict.trust import (
    TrustReference,
    build_trust_reference,
    expected_calibration_error,
    fit_temperature,
    fold_temperature,
    softmax,
)

Balance = Literal["class_video", "class", "none"]

#: ``progress(epoch, n_epochs, history_row)`` called after every epoch.
ProgressCallback = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainConfig:
    """Training knobs with defaults that work on a 2-core CPU for a few hundred frames.

    Attributes:
        epochs: maximum passes over the training frames (fine-tuning).
        batch_size: frames per optimiser step.
        lr: Adam learning rate.
        weight_decay: Adam L2 penalty.
        patience: stop after this many epochs without a lower validation loss (0: never).
        seed: seeds weights, data order, sampler and augmentation.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        val_fraction: share of *patients* (or videos) held out for validation.
        num_threads: CPU threads for torch (``None``: all cores of the machine).
        weights_path: optional local ``state_dict`` or pretrained backbone to start from.
        min_images_per_epoch: an epoch trains on at least this many images (drawn with
            replacement, each augmented) so a few labelled frames still give enough optimiser
            steps; with more frames it is one pass. 0: one pass.
        balance: ``"class_video"`` | ``"class"`` | ``"none"`` sampling (module docstring).
        augment: ultrasound augmentation of training frames; ``None``: none.
        freeze_backbone: train only the final layer on pooled features computed once; the
            backbone keeps ``weights_path``'s weights. The training and validation frames
            are pooled and :func:`fit_head_by_patient` measures the held-out accuracy and fits
            the temperature out of fold over their patients, then fits on all of them.
        head_epochs, head_lr, head_weight_decay, head_patience: the same for :func:`fit_head`
            (full passes over the features, early stopping on the validation loss).
        calibrate: fit a temperature on the validation frames and fold it into ``fc``.
        refit: with a frozen backbone, fit the head again on every labelled frame (training
            and validation patients) for the number of steps validation chose
            (:func:`fit_head_validated`).
        head_folds: with a frozen backbone, fit the temperature and measure held-out accuracy
            by grouped k-fold over the labelled patients (:func:`fit_head_by_patient`) instead
            of one split; fewer patients than folds (or < 2) fall back to the split.
        head_early_stopping: stop the linear head at the lowest held-out-patient loss. Off by
            default: the head is convex with an L2 penalty and converges; on the lung
            evaluation stopping at the best held-out loss cost 0.12 frame accuracy on
            new patients (the held-out loss rises as soon as confidences grow on patients
            unlike the training ones, while accuracy still improves). Fine-tuning always
            stops early (``patience``).
        deterministic: ``torch.use_deterministic_algorithms(True)`` while training.
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
    balance: Balance = "class"
    augment: UltrasoundAugment | None = DEFAULT_AUGMENT
    freeze_backbone: bool = False
    head_epochs: int = 200
    head_lr: float = 0.01
    head_weight_decay: float = 0.01
    head_patience: int = 20
    calibrate: bool = True
    refit: bool = True
    head_folds: int = 3
    head_early_stopping: bool = False
    deterministic: bool = True


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
        held_out: the model (calibrated) on the validation patients: ``patients``, ``videos``,
            ``frames``, ``frame_accuracy``, ``clip_accuracy`` (majority vote per video),
            ``temperature``, ``ece_before``/``ece_after`` calibration; empty without them.
            With a refitted head (``refit``) it is the accuracy of the head *before* it also
            saw the validation patients.
            This is the number to show next to a model: accuracy on patients it never saw.
        trust: the out-of-distribution reference (:class:`~medvid.predict.trust.TrustReference`)
            for :func:`medvid.predict.infer.predict_with_flags`.
        deterministic: every kernel ran deterministically (False only where torch warned).
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
    held_out: dict[str, Any] = field(default_factory=dict)
    trust: TrustReference | None = None
    deterministic: bool = True

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable summary for a model sidecar or asset metadata (``held_out`` is
        the patient-held-out accuracy; ``trust`` the out-of-distribution reference)."""
        best = self.history[self.best_epoch - 1] if self.history else {}
        return {
            "trained_on": self.trained_on,
            "validated_on": self.validated_on,
            "held_out": self.held_out,
            "trust": self.trust.to_dict() if self.trust is not None else None,
            "deterministic": self.deterministic,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "history": self.history,
            "confusion_matrix": self.confusion_matrix,
            "seconds_per_image": self.seconds_per_image,
            "metrics": {k: v for k, v in best.items() if k != "epoch"},
        }


def split_by_patient(
    items: pd.DataFrame,
    patient_of_video: Mapping[str, str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split labelled frames into (train, validation) by whole patients.

    A patient is ``patient_of_video[video_id]``; a video without one (or with no mapping at
    all) is a patient of its own. ``round(val_fraction * n_patients)`` patients (at least one
    when ``val_fraction > 0``) go to validation, chosen in a seeded shuffle, but a patient is
    only moved when every class of ``label_name`` stays present in training; at least one
    patient always stays in training, so with one patient (or when none can leave without
    taking a class with it) validation is empty. Both frames get a ``patient_id`` column.
    Deterministic for a seed.
    """
    patient_of_video = patient_of_video or {}
    video_patient = {
        str(v): f"patient:{patient_of_video[v]}"
        if patient_of_video.get(v) not in (None, "")
        else f"video:{v}"
        for v in items["video_id"].unique()
    }
    patient = items["video_id"].astype(str).map(video_patient)
    items = items.assign(patient_id=patient.str.split(":", n=1).str[1])
    groups = sorted(set(video_patient.values()))
    wanted = max(1, round(val_fraction * len(groups))) if val_fraction > 0 else 0
    n_val = min(wanted, len(groups) - 1) if groups else 0
    order = list(groups)
    random.Random(seed).shuffle(order)
    has_labels = "label_name" in items.columns
    classes_of = (
        items.assign(_g=patient).groupby("_g")["label_name"].agg(lambda s: set(s))
        if has_labels
        else pd.Series({g: set() for g in groups})
    )
    val: list[str] = []
    for group in order:
        if len(val) >= n_val:
            break
        remaining = [g for g in groups if g != group and g not in val]
        covered = set().union(*(classes_of[g] for g in remaining)) if remaining else set()
        if classes_of[group] <= covered:
            val.append(group)
    is_val = patient.isin(val)
    return items[~is_val].reset_index(drop=True), items[is_val].reset_index(drop=True)


def split_by_video(
    items: pd.DataFrame, val_fraction: float = 0.2, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split labelled frames into (train, validation) by whole videos: :func:`split_by_patient`
    with every video its own patient (use that one when patients are known)."""
    train, val = split_by_patient(items, None, val_fraction, seed)
    return train.drop(columns="patient_id"), val.drop(columns="patient_id")


def sampling_weights(
    video_ids: Sequence[str], labels: Sequence[Any], balance: Balance = "class_video"
) -> np.ndarray:
    """Per-frame draw probabilities ``(N,) float64`` summing to 1 (module docstring).

    ``labels`` is one hashable per frame (the class; a tuple of classes for multilabel).
    """
    frames = pd.DataFrame({"video": np.asarray(video_ids).astype(str), "label": list(labels)})
    n = len(frames)
    if n == 0:
        return np.zeros(0)
    if balance == "none":
        return np.full(n, 1.0 / n)
    per_class = frames.groupby("label")["label"].transform("size").to_numpy(float)
    n_classes = frames["label"].nunique()
    if balance == "class":
        weights = 1.0 / (n_classes * per_class)
    elif balance == "class_video":
        per_video = frames.groupby(["label", "video"])["video"].transform("size").to_numpy(float)
        videos_in_class = frames.groupby("label")["video"].transform("nunique").to_numpy(float)
        weights = 1.0 / (n_classes * videos_in_class * per_video)
    else:
        raise ValueError(f"balance must be class_video, class or none, got {balance!r}")
    return weights / weights.sum()


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
    dataset: FrameDataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    min_images: int = 0,
    weights: np.ndarray | None = None,
) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    if shuffle and weights is not None and len(dataset):
        n = max(len(dataset), min_images)
        sampler = WeightedRandomSampler(
            torch.as_tensor(weights, dtype=torch.float64), n, replacement=True, generator=generator
        )
        # BatchNorm cannot train on a batch of one frame
        drop_last = n > batch_size and n % batch_size == 1
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last)
    if shuffle and 0 < len(dataset) < min_images:
        sampler = RandomSampler(
            dataset, replacement=True, num_samples=min_images, generator=generator
        )
        drop_last = min_images > batch_size and min_images % batch_size == 1
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last)
    # A lone last frame of a shuffled epoch is dropped (another frame is left over next
    # epoch, so none is excluded for good).
    drop_last = shuffle and len(dataset) > batch_size and len(dataset) % batch_size == 1
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last
    )


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[list[str]]:
    """Run the block with ``torch.use_deterministic_algorithms(True, warn_only=True)`` (and
    cuDNN autotuning off); yields a list that collects the warnings of kernels that could
    not run deterministically. The previous settings are restored."""
    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    before_benchmark = torch.backends.cudnn.benchmark
    caught: list[str] = []
    if not enabled:
        yield caught
        return
    # cuBLAS needs a fixed workspace to be deterministic; it is read when CUDA starts.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            yield caught
        caught += [str(r.message) for r in records if "deterministic" in str(r.message)]
        for r in records:
            if "deterministic" not in str(r.message):
                warnings.warn_explicit(r.message, r.category, r.filename, r.lineno)
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)
        torch.backends.cudnn.benchmark = before_benchmark


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


@dataclass
class HeadFit:
    """A final layer fitted by :func:`fit_head`: ``weight (C, D)`` and ``bias (C,)`` float32
    acting on raw pooled features (the standardisation is folded in), its history and best
    epoch."""

    weight: np.ndarray
    bias: np.ndarray
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool


def fit_head(
    train_features: np.ndarray,
    train_targets: np.ndarray,
    train_videos: Sequence[str],
    val_features: np.ndarray | None,
    val_targets: np.ndarray | None,
    val_videos: Sequence[str] | None,
    n_classes: int,
    config: TrainConfig | None = None,
) -> HeadFit:
    """Fit a linear softmax layer on pooled features with balanced weights.

    Features are standardised with the training mean and standard deviation; the loss is the
    cross-entropy weighted by :func:`sampling_weights` (``config.balance``): the expectation of
    balanced sampling, without its noise. Full-batch Adam (``head_lr``, L2 ``head_weight_decay``)
    for ``head_epochs`` steps; the validation loss (weighted the same way) is recorded, and
    with ``head_early_stopping`` training stops ``head_patience`` steps after it last fell and
    the best step is kept (else the last). The weights are returned with the standardisation
    folded in, so they apply to raw features. Deterministic for ``config.seed``.

    Args:
        train_features: ``(N, D) float32``; ``train_targets`` ``(N,) int64`` class indices;
            ``train_videos`` the ``N`` video ids (for the balance).
        val_features, val_targets, val_videos: the same for validation, or ``None``.
        n_classes: ``C``, outputs of the layer.
    """
    config = config or TrainConfig()
    x = torch.as_tensor(np.asarray(train_features, dtype=np.float32))
    y = torch.as_tensor(np.asarray(train_targets, dtype=np.int64))
    mean = x.mean(0)
    std = x.std(0, unbiased=False).clamp_min(1e-6)
    w = torch.as_tensor(sampling_weights(train_videos, y.tolist(), config.balance))
    has_val = val_features is not None and len(val_features) > 0
    if has_val:
        xv = (torch.as_tensor(np.asarray(val_features, dtype=np.float32)) - mean) / std
        yv = torch.as_tensor(np.asarray(val_targets, dtype=np.int64))
        wv = torch.as_tensor(sampling_weights(val_videos, yv.tolist(), config.balance))
    generator = torch.Generator().manual_seed(config.seed)
    layer = nn.Linear(x.shape[1], n_classes)
    with torch.no_grad():
        bound = 1.0 / math.sqrt(x.shape[1])
        layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) * 2 * bound - bound)
        layer.bias.zero_()
    xs = (x - mean) / std
    optimiser = torch.optim.Adam(layer.parameters(), lr=config.head_lr)
    history: list[dict[str, float]] = []
    best = (math.inf, 0, layer.weight.detach().clone(), layer.bias.detach().clone())
    stale, stopped = 0, False
    for step in range(1, config.head_epochs + 1):
        optimiser.zero_grad(set_to_none=True)
        losses = nn.functional.cross_entropy(layer(xs), y, reduction="none")
        loss = (losses * w).sum() + config.head_weight_decay * (layer.weight**2).sum()
        loss.backward()
        optimiser.step()
        row = {"epoch": float(step), "train_loss": float((losses.detach() * w).sum())}
        if has_val:
            with torch.no_grad():
                logits = layer(xv)
                val_loss = float(
                    (nn.functional.cross_entropy(logits, yv, reduction="none") * wv).sum()
                )
                row["val_loss"] = val_loss
                row["val_accuracy"] = float((logits.argmax(1) == yv).float().mean())
        else:
            val_loss = math.nan
            row["val_loss"], row["val_accuracy"] = math.nan, math.nan
        history.append(row)
        if not config.head_early_stopping or math.isnan(val_loss) or val_loss < best[0]:
            best = (
                val_loss if has_val else math.inf,
                step,
                layer.weight.detach().clone(),
                layer.bias.detach().clone(),
            )
            stale = 0
        else:
            stale += 1
            if config.head_patience and stale >= config.head_patience:
                stopped = True
                break
    weight = best[2] / std
    bias = best[3] - weight @ mean
    return HeadFit(
        weight=weight.numpy().astype(np.float32),
        bias=bias.numpy().astype(np.float32),
        history=history,
        best_epoch=best[1],
        stopped_early=stopped,
    )


def fit_head_validated(
    train: tuple[np.ndarray, np.ndarray, Sequence[str]],
    val: tuple[np.ndarray, np.ndarray, Sequence[str]],
    val_patients: int,
    n_classes: int,
    config: TrainConfig,
) -> tuple[HeadFit, float, dict[str, Any]]:
    """:func:`fit_head` on ``train`` early-stopped on ``val`` (each ``(features (N, D),
    targets (N,), video ids)``, ``val`` from other patients), the temperature and held-out
    accuracy measured on ``val``; then, with ``config.refit`` and validation frames, the head
    fitted again on ``train + val`` for the chosen number of steps, keeping the temperature.
    Returns ``(head, temperature, held_out)`` (``held_out`` empty without validation)."""
    has_val = len(val[1]) > 0
    head = fit_head(
        train[0],
        train[1],
        list(train[2]),
        val[0] if has_val else None,
        val[1] if has_val else None,
        list(val[2]) if has_val else None,
        n_classes,
        config,
    )
    if not has_val:
        return head, 1.0, {}
    logits = val[0].astype(np.float64) @ head.weight.T.astype(np.float64) + head.bias
    temperature = fit_temperature(logits, val[1]) if config.calibrate else 1.0
    before, after = softmax(logits), softmax(logits / temperature)
    held_out = {
        "patients": int(val_patients),
        "videos": len(set(val[2])),
        "frames": len(val[1]),
        **held_out_metrics(after, val[1], list(val[2])),
        "temperature": temperature,
        "ece_before": expected_calibration_error(before, val[1]),
        "ece_after": expected_calibration_error(after, val[1]),
        "best_step": head.best_epoch,
        "refit": config.refit,
    }
    if config.refit:
        refit = dataclasses.replace(config, head_epochs=max(head.best_epoch, 1))
        head = fit_head(
            np.concatenate([train[0], val[0]]),
            np.concatenate([train[1], val[1]]),
            [*train[2], *val[2]],
            None,
            None,
            None,
            n_classes,
            refit,
        )
    return head, temperature, held_out


def fit_head_by_patient(
    features: np.ndarray,
    targets: np.ndarray,
    videos: np.ndarray,
    items: pd.DataFrame,
    patient_of_video: Mapping[str, str] | None,
    n_classes: int,
    config: TrainConfig,
) -> tuple[HeadFit, float, dict[str, Any]]:
    """A head for the labelled frames ``items`` (rows ``_row`` of ``features``/``targets``/
    ``videos``, with ``video_id`` and ``label_name``), tuned on patients it did not see.

    With at least ``config.head_folds`` patients (a video without one is its own), grouped
    k-fold by patient (:func:`medvid.predict.evaluate.patient_folds`' rule): a head is fitted
    on each fold's other patients (with ``head_early_stopping``, the step with the lowest
    summed validation loss is chosen; else all ``head_epochs``); the temperature is fitted on
    the out-of-fold logits, and ``held_out`` is the out-of-fold accuracy, so every labelled
    patient is predicted once by a head that never saw them. Then the head is fitted on every
    labelled frame. With fewer patients (or ``head_folds < 2``), one
    :func:`split_by_patient` split and :func:`fit_head_validated`. Returns
    ``(head, temperature, held_out)``; ``held_out`` is empty without validation patients.
    """
    with_patient = items.assign(
        _patient=[
            f"patient:{patient_of_video[v]}"
            if patient_of_video and patient_of_video.get(v)
            else f"video:{v}"
            for v in items["video_id"].astype(str)
        ]
    )
    groups = sorted(set(with_patient["_patient"]))
    if config.head_folds < 2 or len(groups) < config.head_folds:
        train_items, val_items = split_by_patient(
            items, patient_of_video, config.val_fraction, config.seed
        )
        tr, va = train_items["_row"].to_numpy(), val_items["_row"].to_numpy()
        return fit_head_validated(
            (features[tr], targets[tr], list(videos[tr])),
            (features[va], targets[va], list(videos[va])),
            val_items["patient_id"].nunique(),
            n_classes,
            config,
        )
    from medvid.predict.evaluate import patient_folds  # noqa: PLC0415 (evaluate imports train)

    rows = with_patient["_row"].to_numpy()
    fold_of = patient_folds(
        list(with_patient["_patient"]),
        list(with_patient["label_name"]),
        config.head_folds,
        config.seed,
    )
    curves, heads = [], []
    for fold in range(config.head_folds):
        tr, va = rows[fold_of != fold], rows[fold_of == fold]
        head = fit_head(
            features[tr],
            targets[tr],
            list(videos[tr]),
            features[va],
            targets[va],
            list(videos[va]),
            n_classes,
            dataclasses.replace(config, head_patience=0),
        )
        curves.append([h["val_loss"] * len(va) for h in head.history])
        heads.append(head)
    total = np.sum(curves, axis=0)
    best_step = int(np.argmin(total)) + 1 if config.head_early_stopping else config.head_epochs
    out_of_fold = np.zeros((len(rows), n_classes))
    for fold in range(config.head_folds):
        va = fold_of == fold
        snapshot = fit_head(
            features[rows[~va]],
            targets[rows[~va]],
            list(videos[rows[~va]]),
            None,
            None,
            None,
            n_classes,
            dataclasses.replace(config, head_epochs=best_step),
        )
        out_of_fold[va] = (
            features[rows[va]].astype(np.float64) @ snapshot.weight.T.astype(np.float64)
            + snapshot.bias
        )
    y = targets[rows]
    temperature = fit_temperature(out_of_fold, y) if config.calibrate else 1.0
    before, after = softmax(out_of_fold), softmax(out_of_fold / temperature)
    held_out = {
        "patients": len(groups),
        "videos": int(with_patient["video_id"].nunique()),
        "frames": len(rows),
        "folds": config.head_folds,
        **held_out_metrics(after, y, list(videos[rows])),
        "temperature": temperature,
        "ece_before": expected_calibration_error(before, y),
        "ece_after": expected_calibration_error(after, y),
        "best_step": best_step,
    }
    head = fit_head(
        features[rows],
        y,
        list(videos[rows]),
        None,
        None,
        None,
        n_classes,
        dataclasses.replace(config, head_epochs=best_step),
    )
    return head, temperature, held_out


def held_out_metrics(
    probabilities: np.ndarray, targets: np.ndarray, video_ids: Sequence[str]
) -> dict[str, float]:
    """Frame accuracy and clip accuracy (majority vote of frame predictions per video) of
    ``(N, C)`` probabilities against ``(N,)`` targets; for clip accuracy a video's truth is
    its most frequent target."""
    if len(targets) == 0:
        return {}
    predicted = probabilities.argmax(axis=1)
    frames = pd.DataFrame(
        {"video": np.asarray(video_ids).astype(str), "p": predicted, "t": targets}
    )
    votes = frames.groupby("video").agg(
        p=("p", lambda s: s.value_counts().sort_index().idxmax()),
        t=("t", lambda s: s.value_counts().sort_index().idxmax()),
    )
    return {
        "frame_accuracy": float(np.mean(predicted == targets)),
        "clip_accuracy": float(np.mean(votes["p"] == votes["t"])),
    }


def majority_baseline(
    train_items: pd.DataFrame, val_items: pd.DataFrame, config: TrainConfig
) -> float | None:
    """Frame accuracy of the majority-class baseline on the frames :attr:`TrainResult.held_out`
    was measured on: the most frequent ``label_name`` of the frames a model was fitted on
    (ties: the first name in sorted order), predicted for every held-out frame.

    With ``freeze_backbone`` and at least ``head_folds`` patients (``patient_id`` column, else
    the video) the held-out frames are every labelled frame, out of fold: each fold of
    :func:`fit_head_by_patient`'s grouped k-fold is predicted with the majority of the other
    folds. Otherwise the held-out frames are ``val_items`` and the majority is that of
    ``train_items``. ``None`` without held-out frames (single-label only).
    """

    def majority(labels: pd.Series) -> str:
        counts = labels.value_counts()
        return sorted(counts[counts == counts.max()].index)[0]

    pooled = pd.concat([train_items, val_items], ignore_index=True)
    if "label_name" not in pooled.columns or (not len(val_items) and not config.freeze_backbone):
        return None
    if config.freeze_backbone:
        patients = [
            f"patient:{p}" if not pd.isna(p) else f"video:{v}"
            for v, p in zip(
                pooled["video_id"].astype(str),
                pooled["patient_id"] if "patient_id" in pooled else [pd.NA] * len(pooled),
                strict=True,
            )
        ]
        if config.head_folds >= 2 and len(set(patients)) >= config.head_folds:
            from medvid.predict.evaluate import patient_folds  # noqa: PLC0415 (cycle)

            fold_of = patient_folds(
                patients, list(pooled["label_name"]), config.head_folds, config.seed
            )
            labels = pooled["label_name"].to_numpy()
            correct = sum(
                int((labels[fold_of == f] == majority(pooled["label_name"][fold_of != f])).sum())
                for f in range(config.head_folds)
            )
            return correct / len(pooled)
    if not len(val_items) or not len(train_items):
        return None
    return float((val_items["label_name"] == majority(train_items["label_name"])).mean())


def calibrate_and_reference(
    model: nn.Module,
    spec: ModelSpec,
    train_features: np.ndarray,
    train_items: pd.DataFrame,
    val_logits: np.ndarray,
    val_features: np.ndarray,
    val_items: pd.DataFrame,
    calibrate: bool = True,
) -> tuple[dict[str, Any], TrustReference]:
    """Fit the temperature on the validation logits and fold it into ``model.fc`` (when
    ``calibrate``, single-label, with validation frames), then build the out-of-distribution
    reference (:func:`medvid.predict.trust.build_trust_reference`). Returns the held-out
    summary for :attr:`TrainResult.held_out` and the reference."""
    held_out: dict[str, Any] = {}
    if len(val_items) and not spec.multilabel:
        targets = _targets(val_items, spec)
        temperature = fit_temperature(val_logits, targets) if calibrate else 1.0
        before, after = softmax(val_logits), softmax(val_logits / temperature)
        fold_temperature(model, temperature)
        patients = val_items["patient_id"] if "patient_id" in val_items else val_items["video_id"]
        held_out = {
            "patients": int(patients.nunique()),
            "videos": int(val_items["video_id"].nunique()),
            "frames": len(val_items),
            **held_out_metrics(after, targets, list(val_items["video_id"])),
            "temperature": temperature,
            "ece_before": expected_calibration_error(before, targets),
            "ece_after": expected_calibration_error(after, targets),
        }
    patients = train_items["patient_id"] if "patient_id" in train_items else train_items["video_id"]
    trust = build_trust_reference(
        train_features,
        list(train_items["video_id"].astype(str)),
        list(patients.astype(str)),
        val_features,
        list(val_items["video_id"].astype(str)),
    )
    return held_out, trust


def train_classifier(
    frames_root: str | Path,
    train_items: pd.DataFrame,
    val_items: pd.DataFrame | None,
    spec: ModelSpec,
    config: TrainConfig | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train a classifier on labelled frames, keep the best epoch, calibrate it and store what
    it needs to flag its own predictions.

    Args:
        frames_root: folder the items' ``frame_relative_path`` are relative to.
        train_items, val_items: one row per frame with ``frame_relative_path``, ``video_id``
            and ``label_name`` (single-label) or ``label_names`` (multilabel: sequence of the
            labels that apply); a ``patient_id`` column (as :func:`split_by_patient` adds)
            groups videos of one patient. ``val_items`` should hold other *patients* than
            ``train_items``; it may be ``None`` or empty: then there is no early stopping, no
            calibration, and the last epoch is kept.
        spec: classes (output order), architecture, input size.
        config: :class:`TrainConfig`; defaults when ``None``.
        progress: called after each epoch with ``(epoch, epochs, history_row)``.

    Raises :class:`TrainingDataError` when there are fewer than 2 training frames or a label is
    not one of ``spec.classes``; :class:`~medvid.predict.errors.FrameReadError` for an unreadable
    frame; :class:`~medvid.predict.errors.ModelFileError` for bad ``weights_path``. A shuffled
    epoch whose last batch would hold a single frame drops it (BatchNorm cannot train on one
    frame); the order is redrawn each epoch, so no frame is left out for good.
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
    val_targets = _targets(val_items, spec)
    train_paths = list(train_items["frame_relative_path"])
    val_paths = list(val_items["frame_relative_path"])
    started_all = time.perf_counter()
    try:
        with deterministic_algorithms(config.deterministic) as nondeterministic:
            torch.manual_seed(config.seed)
            model = build_model(spec, config.weights_path).to(device)
            if config.freeze_backbone:
                if spec.multilabel:
                    raise TrainingDataError("freeze_backbone trains a softmax head: single-label")
                _, train_features = extract_outputs(model, spec, frames_root, train_paths, device)
                _, val_features = extract_outputs(model, spec, frames_root, val_paths, device)
                head, temperature, frozen_held_out = _frozen_head(
                    train_items, val_items, train_features, val_features, spec, config
                )
                with torch.no_grad():
                    model.fc.weight.copy_(torch.from_numpy(head.weight / temperature))
                    model.fc.bias.copy_(torch.from_numpy(head.bias / temperature))
                history, best_epoch, stopped_early = (
                    head.history,
                    head.best_epoch,
                    head.stopped_early,
                )
                images_seen = len(train_items) * len(history)
                for row in history:
                    if progress is not None:
                        progress(int(row["epoch"]), config.head_epochs, row)
            else:
                history, best_epoch, stopped_early, images_seen = _fine_tune(
                    model, frames_root, train_items, val_items, spec, config, device, progress
                )
            train_seconds = time.perf_counter() - started_all
            model.to("cpu").eval()
            train_logits, train_features = extract_outputs(model, spec, frames_root, train_paths)
            val_logits, val_features = extract_outputs(model, spec, frames_root, val_paths)
            confusion: list[list[int]] = []
            if len(val_items) and not spec.multilabel:
                matrix = np.zeros((len(spec.classes),) * 2, dtype=np.int64)
                np.add.at(matrix, (val_targets, val_logits.argmax(1)), 1)
                confusion = matrix.tolist()
            held_out, trust = calibrate_and_reference(
                model,
                spec,
                train_features,
                train_items,
                val_logits,
                val_features,
                val_items,
                # a frozen backbone's head is calibrated (and maybe refitted) already
                calibrate=config.calibrate and not config.freeze_backbone,
            )
            if config.freeze_backbone:
                held_out = frozen_held_out
    finally:
        torch.set_num_threads(previous_threads)
    return TrainResult(
        model=model,
        spec=spec,
        history=history,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        confusion_matrix=confusion,
        seconds_per_image=train_seconds / max(images_seen, 1),
        trained_on=_frame_counts(train_items),
        validated_on=_frame_counts(val_items),
        held_out=held_out,
        trust=trust,
        deterministic=not nondeterministic,
    )


def _frozen_head(
    train_items: pd.DataFrame,
    val_items: pd.DataFrame,
    train_features: np.ndarray,
    val_features: np.ndarray,
    spec: ModelSpec,
    config: TrainConfig,
) -> tuple[HeadFit, float, dict[str, Any]]:
    """The head of a frozen backbone: training and validation frames pooled and
    :func:`fit_head_by_patient` over their patients (``patient_id`` column, else the video)."""
    pooled = pd.concat([train_items, val_items], ignore_index=True)
    if "patient_id" not in pooled.columns:
        pooled["patient_id"] = pd.NA
    patient_of_video = {
        str(v): str(p)
        for v, p in zip(pooled["video_id"], pooled["patient_id"], strict=True)
        if not pd.isna(p)
    }
    pooled = pooled.assign(_row=np.arange(len(pooled)))
    return fit_head_by_patient(
        np.concatenate([train_features, val_features]),
        np.concatenate([_targets(train_items, spec), _targets(val_items, spec)]),
        pooled["video_id"].astype(str).to_numpy(),
        pooled,
        patient_of_video,
        len(spec.classes),
        config,
    )


def _fine_tune(
    model: nn.Module,
    frames_root: str | Path,
    train_items: pd.DataFrame,
    val_items: pd.DataFrame,
    spec: ModelSpec,
    config: TrainConfig,
    device: torch.device,
    progress: ProgressCallback | None,
) -> tuple[list[dict[str, float]], int, bool, int]:
    """Train every layer with augmentation and balanced sampling; restore the best epoch.
    Returns ``(history, best_epoch, stopped_early, images_seen)``."""
    train_targets = _targets(train_items, spec)
    train_set = FrameDataset(
        frames_root,
        list(train_items["frame_relative_path"]),
        train_targets,
        input_size=spec.input_size,
        augment=config.augment,
        seed=config.seed,
    )
    val_set = FrameDataset(
        frames_root,
        list(val_items["frame_relative_path"]),
        _targets(val_items, spec),
        input_size=spec.input_size,
    )
    labels = (
        [tuple(row) for row in train_targets.tolist()]
        if spec.multilabel
        else train_targets.tolist()
    )
    weights = (
        None
        if config.balance == "none"
        else sampling_weights(list(train_items["video_id"]), labels, config.balance)
    )
    train_loader = _loader(
        train_set, config.batch_size, True, config.seed, config.min_images_per_epoch, weights
    )
    val_loader = _loader(val_set, config.batch_size, False, config.seed)
    loss_fn: nn.Module = nn.BCEWithLogitsLoss() if spec.multilabel else nn.CrossEntropyLoss()
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: list[dict[str, float]] = []
    best_loss, best_epoch, best_state = math.inf, 0, None
    stale, stopped_early, images_seen = 0, False, 0
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
        images_seen += count
        val_loss, val_accuracy, _ = _evaluate(model, val_loader, loss_fn, spec, device)
        row = {
            "epoch": float(epoch),
            "train_loss": running / max(count, 1),
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "seconds": time.perf_counter() - started,
            "images": float(count),
        }
        history.append(row)
        if progress is not None:
            progress(epoch, config.epochs, row)
        # Without validation frames every epoch "improves": the last one is kept.
        if math.isnan(val_loss) or val_loss < best_loss:
            best_loss = val_loss if not math.isnan(val_loss) else best_loss
            best_epoch, stale = epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if config.patience and stale >= config.patience and epoch < config.epochs:
                stopped_early = True
                break
    assert best_state is not None
    model.load_state_dict(best_state)
    return history, best_epoch, stopped_early, images_seen


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
