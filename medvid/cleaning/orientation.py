"""Probe orientation predicted for stills and frames whose burned-in text names none.

Sonographers type the probe orientation on the screen (TRANS, LONG, SAG, RAD, ARAD, OBL: the
ACR BI-RADS US lexicon, :func:`medvid.ocr.parse.parse_annotation_text`), but not on every
image. The orientations OCR read on some images are **weak labels** for the label-model engine
(:mod:`medvid.predict`): a linear head on the frozen ``small`` ConvNet's pooled features at
64 px (the label model's defaults, :class:`medvid.settings.LabelModelSettings`), calibrated by
temperature scaling, its accuracy measured **held out by study**: grouped k-fold
(:func:`medvid.predict.evaluate.patient_folds`) where the group of a still is its DICOM study
(``study:<study_key>``, the de-identified StudyInstanceUID) and the group of a frame is its
video (``video:<video_id>``), so no study is on both sides of a fold. Beside it, the majority
class predicted for every held-out image (:func:`medvid.predict.train.majority_baseline`).

The model then predicts the images whose text named no orientation, as a label set
``model:<model_id>`` with the calibrated probability of the predicted class as confidence. An
image whose text named an orientation is never predicted, so text that was read is never
overwritten.

Too few weak labels (fewer than 2 orientations with ``min_per_class`` labels each, or fewer
than ``min_studies`` studies among them) is not an error: :func:`train_orientation_model`
returns a model with ``trained=False`` and the reason, and nothing is predicted.

Items are rows of :data:`ITEM_COLUMNS`: ``item_id`` (``image_id`` or ``frame_id``), ``kind``
(``image`` | ``frame``), ``study_id`` (the hold-out group), ``relative_path`` (the image file
under one root shared by every item) and ``text_orientation`` (what the text said, any
synonym; null when it named none).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from medvid.catalog import keys
from medvid.catalog.keys import Tables, protected_table_key, table_key
from medvid.catalog.schemas import ORIENTATION_PREDICTIONS_SCHEMA
from medvid.frames.store import live_manifest
from medvid.labels.schema import model_source
from medvid.ocr.parse import ORIENTATIONS, normalize_orientation
from medvid.store import Store, read_table, read_table_or_empty

ITEM_COLUMNS = ("item_id", "kind", "study_id", "relative_path", "text_orientation")


@dataclass(frozen=True)
class OrientationConfig:
    """How the probe-orientation model is trained and run.

    Attributes:
        arch, input_size: the backbone (:data:`medvid.predict.model.ARCHITECTURES`) and its
            square input (px); its weights are random and frozen, only the head is fitted.
        weights_path: optional local ``state_dict`` or pretrained backbone to start from.
        folds: grouped k-fold over the studies for the held-out accuracy (>= 2).
        min_studies: fewer studies with weak labels than this: not trained (>= ``folds``).
        min_per_class: an orientation with fewer weak labels than this is left out of the
            classes; fewer than 2 classes left: not trained.
        seed: head initialisation and fold assignment.
        batch_size: images per forward pass when predicting.
        device: ``"auto"`` (CUDA when present, else the CPU), ``"cpu"`` or ``"cuda"``.
        num_threads: CPU threads for torch (``None``: all cores).
    """

    arch: str = "small"
    input_size: int = 64
    weights_path: str | None = None
    folds: int = 3
    min_studies: int = 3
    min_per_class: int = 5
    seed: int = 0
    batch_size: int = 64
    device: str = "auto"
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if self.min_studies < self.folds:
            raise ValueError(
                f"min_studies ({self.min_studies}) must be >= folds ({self.folds}): every fold"
                " holds out studies of its own"
            )
        if self.min_per_class < 1:
            raise ValueError(f"min_per_class must be >= 1, got {self.min_per_class}")


def orientation_items_of_stills(images: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """Items (:data:`ITEM_COLUMNS`) of de-identified stills.

    ``images``: rows of ``dicom_images`` (:data:`medvid.catalog.schemas.DICOM_IMAGES_SCHEMA`)
    with ``instance_id`` (or ``image_id``), ``study_key``, ``image_relative_path`` and
    ``orientation``; ``prefix`` is the folder of ``image_relative_path`` under the items' root.
    The group of a still is its study, ``study:<study_key>``.
    """
    ids = images["image_id"] if "image_id" in images else images["instance_id"]
    return pd.DataFrame(
        {
            "item_id": ids.astype(str).to_numpy(),
            "kind": "image",
            "study_id": ("study:" + images["study_key"].astype(str)).to_numpy(),
            "relative_path": [f"{prefix}/{p}" for p in images["image_relative_path"]],
            "text_orientation": images["orientation"].to_numpy(),
        },
        columns=list(ITEM_COLUMNS),
    )


def orientation_items_of_frames(
    manifest: pd.DataFrame, fields: pd.DataFrame, prefix: str
) -> pd.DataFrame:
    """Items (:data:`ITEM_COLUMNS`) of the frames OCR read.

    ``manifest``: frame manifest rows (``frame_id``, ``video_id``, ``frame_relative_path``
    under ``prefix``); ``fields``: ``frame_ocr_text`` rows
    (:data:`medvid.catalog.schemas.FRAME_FIELDS_SCHEMA`: ``frame_id``, ``orientation``). Only
    frames in both are items: a frame OCR did not read has no text to trust or to fill. The
    group of a frame is its video, ``video:<video_id>``.
    """
    merged = manifest[["frame_id", "video_id", "frame_relative_path"]].merge(
        fields[["frame_id", "orientation"]].drop_duplicates("frame_id"), on="frame_id"
    )
    return pd.DataFrame(
        {
            "item_id": merged["frame_id"].astype(str).to_numpy(),
            "kind": "frame",
            "study_id": ("video:" + merged["video_id"].astype(str)).to_numpy(),
            "relative_path": [f"{prefix}/{p}" for p in merged["frame_relative_path"]],
            "text_orientation": merged["orientation"].to_numpy(),
        },
        columns=list(ITEM_COLUMNS),
    )


def weak_labels(items: pd.DataFrame) -> pd.DataFrame:
    """The items whose text named an orientation, one row per ``item_id`` (the first), with
    ``orientation`` the normalised code (:func:`medvid.ocr.parse.normalize_orientation`)."""
    codes = items["text_orientation"].map(normalize_orientation)
    labelled = items.assign(orientation=codes)[codes.notna()]
    return labelled.drop_duplicates("item_id").reset_index(drop=True)


def weak_label_counts(labels: pd.DataFrame) -> dict[str, int]:
    """``{orientation: weak labels}`` in :data:`~medvid.ocr.parse.ORIENTATIONS` order."""
    counts = labels["orientation"].value_counts()
    return {name: int(counts[name]) for name in ORIENTATIONS if name in counts}


def training_items(labels: pd.DataFrame) -> pd.DataFrame:
    """Weak labels as the engine's training items: ``frame_relative_path``, ``video_id`` (the
    item: every image its own unit), ``patient_id`` (the study: the unit held out),
    ``frame_number`` and ``label_name``."""
    return pd.DataFrame(
        {
            "frame_relative_path": labels["relative_path"].astype(str).to_numpy(),
            "video_id": labels["item_id"].astype(str).to_numpy(),
            "patient_id": labels["study_id"].astype(str).to_numpy(),
            "frame_number": np.zeros(len(labels), dtype=np.int64),
            "label_name": labels["orientation"].astype(str).to_numpy(),
        }
    )


def held_out_folds(items: pd.DataFrame, config: OrientationConfig) -> np.ndarray:
    """Fold ``(N,) int64`` of each training item (:func:`training_items`) in the grouped
    k-fold the held-out accuracy is measured with: the call
    :func:`medvid.predict.train.fit_head_by_patient` makes, groups ``patient:<study_id>``."""
    from medvid.predict.evaluate import patient_folds  # noqa: PLC0415 (imports torch)

    groups = [f"patient:{p}" for p in items["patient_id"].astype(str)]
    return patient_folds(groups, list(items["label_name"]), config.folds, config.seed)


@dataclass
class OrientationModel:
    """Outcome of :func:`train_orientation_model`.

    Attributes:
        trained: a model was fitted; else ``reason`` says why not.
        reason: why it was not trained (empty when it was).
        classes: the orientations it predicts, in output order.
        weak_labels: ``{orientation: items whose text named it}`` (every class, kept or not).
        studies: studies (hold-out groups) among the kept weak labels.
        held_out_accuracy: accuracy on studies it never saw (out of fold), or ``None``.
        majority_baseline: the majority class's accuracy on the same items, or ``None``.
        folds: folds of the grouped k-fold.
        model, spec, model_id: the network (eval mode, CPU; calibrated head), its
            :class:`~medvid.predict.model.ModelSpec` and content id; ``None`` when not trained.
        metadata: the engine's summary (:meth:`medvid.predict.train.TrainResult.metadata`).
    """

    trained: bool
    reason: str
    classes: tuple[str, ...] = ()
    weak_labels: dict[str, int] = field(default_factory=dict)
    studies: int = 0
    held_out_accuracy: float | None = None
    majority_baseline: float | None = None
    folds: int = 0
    model: Any = None
    spec: Any = None
    model_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def beats_majority(self) -> bool:
        """Held-out accuracy above the majority class (False when either is unmeasured)."""
        return (
            self.held_out_accuracy is not None
            and self.majority_baseline is not None
            and self.held_out_accuracy > self.majority_baseline
        )

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable record (for the model sidecar and ``models/orientation.json``)."""
        return {
            "trained": self.trained,
            "reason": self.reason,
            "model_id": self.model_id,
            "classes": list(self.classes),
            "weak_labels": self.weak_labels,
            "studies": self.studies,
            "folds": self.folds,
            "held_out_study_accuracy": self.held_out_accuracy,
            "majority_baseline": self.majority_baseline,
            "beats_majority": self.beats_majority,
        }


def not_trainable_reason(items: pd.DataFrame, config: OrientationConfig) -> str:
    """Why the items' weak labels cannot train a model under ``config`` (too few per class,
    fewer than 2 classes, too few studies), or ``""`` when they can. Reads no image."""
    labels = weak_labels(items)
    counts = weak_label_counts(labels)
    kept = [name for name, n in counts.items() if n >= config.min_per_class]
    if len(kept) < 2:
        return (
            f"{len(kept)} orientation(s) with at least {config.min_per_class} weak labels"
            f" (read: {counts or 'none'}); 2 are needed"
        )
    studies = labels.loc[labels["orientation"].isin(kept), "study_id"].nunique()
    if studies < config.min_studies:
        return (
            f"{studies} studies with weak labels; at least {config.min_studies} are needed to"
            " hold whole studies out"
        )
    return ""


def train_orientation_model(
    root: str | Path, items: pd.DataFrame, config: OrientationConfig | None = None
) -> OrientationModel:
    """Fit the probe-orientation model on the items' weak labels (module docstring).

    ``root``: the folder the items' ``relative_path`` are under. Returns an
    :class:`OrientationModel`; ``trained=False`` with the reason when there are too few weak
    labels. Raises :class:`~medvid.predict.errors.FrameReadError` for an unreadable image.
    """
    config = config or OrientationConfig()
    labels = weak_labels(items)
    counts = weak_label_counts(labels)
    kept = tuple(name for name, n in counts.items() if n >= config.min_per_class)
    labels = labels[labels["orientation"].isin(kept)]
    outcome = OrientationModel(
        trained=False,
        reason=not_trainable_reason(items, config),
        classes=kept,
        weak_labels=counts,
        studies=int(labels["study_id"].nunique()),
        folds=config.folds,
    )
    if outcome.reason:
        return outcome

    from medvid.predict.model import ModelSpec, model_fingerprint  # noqa: PLC0415 (torch)
    from medvid.predict.train import (  # noqa: PLC0415 (torch)
        TrainConfig,
        majority_baseline,
        train_classifier,
    )

    train = training_items(labels)
    spec = ModelSpec(classes=kept, arch=config.arch, input_size=config.input_size)
    train_config = TrainConfig(
        seed=config.seed,
        device=config.device,
        num_threads=config.num_threads,
        weights_path=config.weights_path,
        augment=None,
        freeze_backbone=True,
        head_folds=config.folds,
    )
    result = train_classifier(root, train, None, spec, train_config)
    outcome.trained = True
    outcome.model, outcome.spec = result.model, spec
    outcome.model_id = model_fingerprint(result.model)
    outcome.held_out_accuracy = result.held_out.get("frame_accuracy")
    outcome.majority_baseline = majority_baseline(train, train.iloc[0:0], train_config)
    outcome.metadata = result.metadata()
    return outcome


def items_to_predict(items: pd.DataFrame) -> pd.DataFrame:
    """The items whose text named no orientation (one row per ``item_id``): the only ones a
    model may label."""
    unread = items["text_orientation"].map(normalize_orientation).isna()
    return items[unread].drop_duplicates("item_id").reset_index(drop=True)


def predict_orientation(
    root: str | Path,
    items: pd.DataFrame,
    model: Any,
    spec: Any,
    model_id: str,
    beats_majority: bool,
    *,
    batch_size: int = 64,
    device: str = "auto",
) -> pa.Table:
    """Predictions (:data:`~medvid.catalog.schemas.ORIENTATION_PREDICTIONS_SCHEMA`) for the
    items whose text named no orientation (:func:`items_to_predict`), in their order; items
    whose text named one get no row. ``model``/``spec``: a trained or loaded
    (:func:`medvid.predict.model.load_model`) classifier whose classes are orientations."""
    from medvid.predict.infer import predict_probabilities  # noqa: PLC0415 (torch)

    todo = items_to_predict(items)
    probabilities = predict_probabilities(
        model,
        spec,
        root,
        list(todo["relative_path"].astype(str)),
        batch_size=batch_size,
        device=device,
    )
    classes = np.array(spec.classes, dtype=object)
    best = probabilities.argmax(axis=1) if len(todo) else np.zeros(0, dtype=np.int64)
    return pa.table(
        {
            "item_id": todo["item_id"].astype(str).tolist(),
            "kind": todo["kind"].astype(str).tolist(),
            "study_id": todo["study_id"].astype(str).tolist(),
            "orientation": classes[best].tolist(),
            "confidence": probabilities.max(axis=1).astype(np.float32)
            if len(todo)
            else np.zeros(0, dtype=np.float32),
            "label_set": [model_source(model_id)] * len(todo),
            "model_id": [model_id] * len(todo),
            "beats_majority": [bool(beats_majority)] * len(todo),
        },
        schema=ORIENTATION_PREDICTIONS_SCHEMA,
    )


def empty_predictions() -> pa.Table:
    """An orientation prediction table with no rows."""
    return ORIENTATION_PREDICTIONS_SCHEMA.empty_table()


def stored_items(
    store: Store, studies: Sequence[str], video_ids: Sequence[str] = ()
) -> tuple[Path, pd.DataFrame]:
    """The items of a media store and the local root their ``relative_path`` are under.

    Stills: every image of ``dicom_images`` of ``studies`` (their text fields are parsed from
    the text left visible). Frames: the live frames of ``video_ids`` that ``frame_ocr_text``
    read (protected; the text itself is not returned, only its orientation); videos without
    that table add nothing. Fetches the image files it names.
    """
    images = [
        read_table(store, table_key(Tables.DICOM_IMAGES, study)).to_pandas()
        for study in sorted(set(studies))
        if store.exists(table_key(Tables.DICOM_IMAGES, study))
    ]
    images_root = store.fetch_prefix(keys.DICOM_IMAGES)
    frames_root = store.local_path(keys.FRAMES)
    root = common_root([images_root, frames_root])
    parts = [
        orientation_items_of_stills(table, images_root.relative_to(root).as_posix())
        for table in images
        if len(table)
    ]
    for video_id in sorted(set(video_ids)):
        fields_key = protected_table_key(Tables.FRAME_OCR_TEXT, video_id)
        if not store.exists(fields_key):
            continue
        store.fetch_prefix(keys.frames_prefix(video_id))
        parts.append(
            orientation_items_of_frames(
                live_manifest(store, [video_id]),
                read_table(store, fields_key).to_pandas(),
                frames_root.relative_to(root).as_posix(),
            )
        )
    items = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=ITEM_COLUMNS)
    return root, items


def frame_text_orientations(store: Store, video_ids: Sequence[str]) -> pd.DataFrame:
    """``frame_id``, ``text_orientation`` of every frame of ``video_ids`` that
    ``frame_ocr_text`` read (its parsed orientation, null when the text named none; the text
    itself, protected, is not returned). No rows for videos without that table."""
    parts = []
    for video_id in sorted(set(video_ids)):
        key = protected_table_key(Tables.FRAME_OCR_TEXT, video_id)
        if store.exists(key):
            fields = read_table(store, key).select(["frame_id", "orientation"]).to_pandas()
            parts.append(fields.rename(columns={"orientation": "text_orientation"}))
    if not parts:
        return pd.DataFrame(columns=["frame_id", "text_orientation"])
    return pd.concat(parts, ignore_index=True).drop_duplicates("frame_id")


def read_orientation_predictions(store: Store) -> pd.DataFrame:
    """``tables/orientation_predictions.parquet`` as a frame (no rows when absent)."""
    key = table_key(Tables.ORIENTATION_PREDICTIONS)
    return read_table_or_empty(store, key, ORIENTATION_PREDICTIONS_SCHEMA).to_pandas()


def common_root(roots: Sequence[Path]) -> Path:
    """The deepest folder above every path of ``roots`` (where items of several kinds meet)."""
    return Path(os.path.commonpath([str(Path(r)) for r in roots]))


def synthetic_probe_image(
    orientation: str, seed: int, *, size: int = 128, gain: float = 1.0, text: str = ""
) -> np.ndarray:
    """A synthetic B-mode-like image ``(size, size, 3) uint8 RGB`` whose content depends on the
    probe orientation, for tests and ``benchmarks/orientation.py`` (not a model of anatomy).

    A vessel cut across (``TRANS``) is a dark disc; cut along (``LONG``, or any other
    orientation) it is a dark horizontal band. Background: Rayleigh speckle over a depth ramp,
    scaled by ``gain`` (a study's setting). ``text`` is burned in white at the top left, as a
    scanner writes its annotation. Deterministic for ``seed``.
    """
    import cv2  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    depth = np.linspace(1.0, 0.45, size)[:, None]
    speckle = rng.rayleigh(0.35, (size, size)) * depth * 255 * gain
    image = np.clip(speckle, 0, 255).astype(np.float32)
    mask = np.zeros((size, size), np.uint8)
    centre = (
        int(rng.integers(size // 3, 2 * size // 3)),
        int(rng.integers(size // 3, size * 3 // 4)),
    )
    radius = int(rng.integers(size // 12, size // 7))
    if orientation == "TRANS":
        cv2.circle(mask, centre, radius, 1, -1)
    else:
        half = int(rng.integers(size // 3, size // 2))
        cv2.rectangle(
            mask,
            (centre[0] - half, centre[1] - radius),
            (centre[0] + half, centre[1] + radius),
            1,
            -1,
        )
    image[mask > 0] *= 0.15
    rgb = np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if text:
        cv2.putText(rgb, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1)
    return np.ascontiguousarray(rgb)
