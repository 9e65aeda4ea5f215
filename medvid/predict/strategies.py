"""Cold label, blitz label and custom models: three ways to get a model that labels frames.

All three end in the same engine (:func:`medvid.predict.infer.predict_frames` or, for a custom
callable, :func:`predict_with_callable`) and produce frame-label tables with source
``model:<model_id>``. The ideas and their names come from the AIGVA thesis (seed 003, sections
3.1 and 4.3):

- **cold label** (no labels yet): choose K frames per video (:func:`select_frames_for_labelling`),
  write them to a queue a person fills in (:func:`write_labelling_queue`), read the answers
  (:func:`read_labelling_answers`), train and predict every frame of every video
  (:func:`cold_label`);
- **blitz label** (some videos reviewed): train on every ``skip``-th frame of the reviewed videos
  and predict the videos nobody reviewed (:func:`blitz_label`);
- **custom model**: a user's ``package.module:function`` taking ``(N, H, W, 3) uint8 RGB`` frames
  and returning ``(labels, confidences)`` (:func:`load_custom_callable`).
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from medvid.csv_injection import neutralize_formula
from medvid.io import write_bytes_atomic, write_json_atomic
from medvid.labels.schema import (
    FRAME_LABELS_SCHEMA,
    SOURCE_MANUAL,
    LabelSchema,
    UnknownLabelError,
    model_source,
)
from medvid.predict.data import read_frame_rgb
from medvid.predict.errors import CustomModelError, LabellingQueueError, TrainingDataError
from medvid.predict.infer import check_manifest, predict_frames
from medvid.predict.model import ModelSpec, model_fingerprint
from medvid.predict.selection import DEFAULT_HAMMING_THRESHOLD, select_frames
from medvid.predict.train import (
    TrainConfig,
    TrainResult,
    every_nth_frame,
    split_by_patient,
    train_classifier,
)

#: Columns of a labelling queue CSV, in order; a person fills in ``label``.
QUEUE_COLUMNS = (
    "frame_id",
    "video_id",
    "frame_number",
    "frame_timestamp",
    "frame_relative_path",
    "label",
)
QUEUE_FORMAT = "medvid.labelling_queue/1"
#: Default skip factor of blitz label: train on every 3rd frame of the reviewed videos.
DEFAULT_BLITZ_SKIP = 3

#: A custom model: ``(N, H, W, 3) uint8 RGB`` -> (N label names, N confidences in [0, 1]).
CustomModel = Callable[[np.ndarray], tuple[Sequence[str], Sequence[float] | np.ndarray]]


@dataclass
class PredictionRun:
    """Result of :func:`cold_label` or :func:`blitz_label`.

    Attributes:
        labels: predicted frame-label table (``FRAME_LABELS_SCHEMA``).
        model_id: id of the trained model (``source`` is ``model:<model_id>``).
        train: the training result (model, curve, confusion matrix).
        predicted_videos: video ids that were predicted, sorted.
    """

    labels: pa.Table
    model_id: str
    train: TrainResult
    predicted_videos: list[str]


# --- cold label: choose frames, queue them, read the answers --------------------------------


def select_frames_for_labelling(
    manifest: pd.DataFrame,
    k: int | None,
    method: str = "uniform",
    *,
    hamming_threshold: int = DEFAULT_HAMMING_THRESHOLD,
    features: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    already_labelled: Sequence[str] = (),
) -> pd.DataFrame:
    """K frames per video for a person to label.

    See :func:`medvid.predict.selection.select_frames` for the ``uniform``, ``unique`` and
    ``active`` (uncertainty and diversity on ``features``, e.g. of a pretrained backbone,
    with the current model's ``probabilities``) methods; dead frames are never chosen.
    """
    return select_frames(
        manifest,
        k,
        method,
        hamming_threshold=hamming_threshold,
        features=features,
        probabilities=probabilities,
        already_labelled=already_labelled,
    )


def write_labelling_queue(
    selected: pd.DataFrame,
    path: str | Path,
    labels: Sequence[str],
    answers: Mapping[str, str] | None = None,
) -> tuple[Path, Path]:
    """Write the frames to label as ``<path>.csv`` and ``<path>.json`` (atomic); return both.

    The CSV has :data:`QUEUE_COLUMNS` with an empty ``label`` column for a person to fill in
    (any spreadsheet opens it; a cell a spreadsheet would run as a formula is prefixed with
    ``'``, :func:`medvid.csv_injection.neutralize_formula`). The JSON holds ``format``, the
    allowed ``labels`` and the same ``frames`` with ``"label": null``, for a labelling UI.
    ``frame_relative_path`` is relative to the frames root. ``answers`` (``{frame_id: label}``,
    e.g. :func:`queue_answers` of the previous queue) pre-fills the frames already answered,
    so re-writing a queue never loses a person's work.
    """
    answers = answers or {}
    check_manifest(selected)
    base = Path(path)
    rows = selected.sort_values(["video_id", "frame_number"], kind="stable")
    frames = [
        {
            "frame_id": str(r.frame_id),
            "video_id": str(r.video_id),
            "frame_number": int(r.frame_number),
            "frame_timestamp": float(r.frame_timestamp),
            "frame_relative_path": str(r.frame_relative_path),
            "label": answers.get(str(r.frame_id)),
        }
        for r in rows.itertuples(index=False)
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=QUEUE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for frame in frames:
        cells = {
            **frame,
            "label": frame["label"] or "",
            "frame_timestamp": repr(frame["frame_timestamp"]),
        }
        writer.writerow({name: neutralize_formula(str(cells[name])) for name in QUEUE_COLUMNS})
    csv_path = write_bytes_atomic(base.with_suffix(".csv"), buffer.getvalue().encode())
    json_path = write_json_atomic(
        base.with_suffix(".json"),
        {"format": QUEUE_FORMAT, "labels": list(labels), "frames": frames},
    )
    return csv_path, json_path


def _read_queue(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise LabellingQueueError(f"labelling queue not found: {path}")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
            frame = pd.DataFrame(data["frames"])
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, KeyError, TypeError, pd.errors.ParserError) as exc:
        raise LabellingQueueError(f"labelling queue {path} cannot be parsed: {exc}") from None
    missing = [c for c in QUEUE_COLUMNS if c not in frame.columns]
    if missing:
        raise LabellingQueueError(f"labelling queue {path} lacks column(s): {', '.join(missing)}")
    return frame


def queue_answers(path: str | Path) -> dict[str, str]:
    """``{frame_id: label}`` of the answered frames of a queue, read from ``<path>.csv`` and
    ``<path>.json`` (whichever exist; a person fills in one of them, a labelling UI the other).

    Raises :class:`LabellingQueueError` when a file is malformed or the two files answer one
    frame differently.
    """
    base = Path(path)
    found: dict[str, str] = {}
    for file in (base.with_suffix(".csv"), base.with_suffix(".json")):
        if not file.is_file():
            continue
        queue = _read_queue(file)
        for frame, label in zip(queue["frame_id"], queue["label"], strict=True):
            label = "" if label is None or pd.isna(label) else str(label).strip()
            if not label:
                continue
            if found.get(str(frame), label) != label:
                raise LabellingQueueError(
                    f"frame {frame} is answered {found[str(frame)]!r} and {label!r} in the CSV "
                    f"and JSON queues of {base.name}"
                )
            found[str(frame)] = label
    return found


def read_labelling_answers(
    path: str | Path,
    label_schema: LabelSchema,
    *,
    annotator: str = "labeller",
    now: dt.datetime | None = None,
) -> pa.Table:
    """Read a filled-in queue (``.csv`` or ``.json``) as reviewed manual labels.

    Rows with an empty ``label`` are unanswered and skipped. Each answered frame gives one row
    per label of ``label_schema``: ``value`` true for the answer and false for the others
    (one label per frame), ``source`` ``"manual"``, ``confidence`` 1.0, ``float_value`` null,
    ``reviewed`` true with ``reviewer`` = ``annotator``. Raises :class:`LabellingQueueError` for
    a missing/malformed file or a label not in the schema.
    """
    queue = _read_queue(Path(path))
    answered = queue[queue["label"].fillna("").astype(str).str.strip() != ""]
    answers = answered["label"].astype(str).str.strip()
    try:
        for name in sorted(set(answers)):
            label_schema.id_of(name)
    except UnknownLabelError as exc:
        raise LabellingQueueError(f"labelling queue {path}: {exc.reason}") from None
    stamp = pd.Timestamp(now or dt.datetime.now(dt.UTC)).tz_convert("UTC").floor("us")
    records = []
    for row, answer in zip(answered.itertuples(index=False), answers, strict=True):
        for name in label_schema.names:
            records.append(
                {
                    "frame_id": str(row.frame_id),
                    "video_id": str(row.video_id),
                    "frame_number": int(row.frame_number),
                    "frame_timestamp": float(row.frame_timestamp),
                    "label_name": name,
                    "label_id": label_schema.id_of(name),
                    "value": name == answer,
                    "float_value": None,
                    "source": SOURCE_MANUAL,
                    "confidence": 1.0,
                    "annotator": annotator,
                    "reviewed": True,
                    "reviewer": annotator,
                    "date_created": stamp,
                    "date_modified": stamp,
                }
            )
    if not records:
        return FRAME_LABELS_SCHEMA.empty_table()
    return pa.Table.from_pylist(records, schema=FRAME_LABELS_SCHEMA)


# --- shared: labels -> training frames --------------------------------------------------------


def labels_to_items(
    labels: pa.Table | pd.DataFrame,
    manifest: pd.DataFrame,
    spec: ModelSpec,
    *,
    reviewed_only: bool = True,
) -> pd.DataFrame:
    """Training frames from a frame-label table: one row per frame with its image path.

    Only rows for ``spec.classes`` are used, and only reviewed rows when ``reviewed_only``.
    Single-label: each frame needs exactly one true class (frames with none are skipped; with
    several, :class:`TrainingDataError`); the result has ``label_name``. Multilabel: the result
    has ``label_names``, the true classes (possibly none) of every frame with a row. Frames not
    in ``manifest`` (no image) are dropped. Returns columns ``frame_id``, ``video_id``,
    ``frame_number``, ``frame_relative_path`` and the label column, sorted by video and frame.
    """
    df = labels.to_pandas() if isinstance(labels, pa.Table) else labels
    df = df[df["label_name"].isin(spec.classes)]
    if reviewed_only:
        df = df[df["reviewed"].astype(bool)]
    frames = manifest[["frame_id", "video_id", "frame_number", "frame_relative_path"]]
    positive = df[df["value"].astype(bool)]
    if spec.multilabel:
        names = positive.groupby("frame_id")["label_name"].agg(lambda s: tuple(sorted(set(s))))
        ids = pd.Index(sorted(set(df["frame_id"])))
        label_col = pd.DataFrame({"frame_id": ids, "label_names": [names.get(i, ()) for i in ids]})
    else:
        per_frame = positive.groupby("frame_id")["label_name"].agg(lambda s: sorted(set(s)))
        several = per_frame[per_frame.map(len) > 1]
        if len(several):
            raise TrainingDataError(
                f"{len(several)} frame(s) have several true labels for a single-label model, "
                f"e.g. {several.index[0]}: {several.iloc[0]}"
            )
        label_col = pd.DataFrame(
            {"frame_id": per_frame.index, "label_name": [v[0] for v in per_frame]}
        )
    items = frames.merge(label_col, on="frame_id", how="inner")
    return items.sort_values(["video_id", "frame_number"], kind="stable").reset_index(drop=True)


def _train_and_predict(
    items: pd.DataFrame,
    predict_manifest: pd.DataFrame,
    frames_root: str | Path,
    spec: ModelSpec,
    config: TrainConfig,
    smoothing_window: int,
    label_schema: LabelSchema | None,
    now: dt.datetime | None,
    patient_of_video: Mapping[str, str] | None = None,
) -> PredictionRun:
    if len(items) == 0:
        raise TrainingDataError("no reviewed labelled frames with images to train on")
    train_items, val_items = split_by_patient(
        items, patient_of_video, config.val_fraction, config.seed
    )
    result = train_classifier(frames_root, train_items, val_items, spec, config)
    model_id = model_fingerprint(result.model)
    labels = predict_frames(
        result.model,
        spec,
        frames_root,
        predict_manifest,
        device=config.device,
        smoothing_window=smoothing_window,
        model_id=model_id,
        label_schema=label_schema,
        now=now,
    )
    videos = sorted(str(v) for v in predict_manifest["video_id"].unique())
    return PredictionRun(labels=labels, model_id=model_id, train=result, predicted_videos=videos)


def _default_spec(spec: ModelSpec | None, label_schema: LabelSchema | None) -> ModelSpec:
    if spec is not None:
        return spec
    if label_schema is None or len(label_schema) == 0:
        raise TrainingDataError("give a ModelSpec or a non-empty LabelSchema to name the classes")
    return ModelSpec(classes=label_schema.names)


def _live(manifest: pd.DataFrame) -> pd.DataFrame:
    if "is_dead" not in manifest.columns:
        return manifest
    return manifest[~manifest["is_dead"].fillna(False).astype(bool)]


def cold_label(
    manifest: pd.DataFrame,
    frames_root: str | Path,
    answers: pa.Table,
    *,
    spec: ModelSpec | None = None,
    label_schema: LabelSchema | None = None,
    config: TrainConfig | None = None,
    smoothing_window: int = 0,
    now: dt.datetime | None = None,
    patient_of_video: Mapping[str, str] | None = None,
) -> PredictionRun:
    """Train on a person's answers (:func:`read_labelling_answers`) and predict every live frame
    of every video in ``manifest`` (dead frames, ``is_dead`` true, are not predicted).

    ``spec`` defaults to a ResNet18 over ``label_schema``'s names. Validation (early stopping,
    calibration) holds out whole patients of ``patient_of_video`` (videos without one are
    their own patient). Raises :class:`TrainingDataError` when no answered frame has an image
    in ``manifest``.
    """
    spec = _default_spec(spec, label_schema)
    check_manifest(manifest)
    items = labels_to_items(answers, manifest, spec)
    return _train_and_predict(
        items,
        _live(manifest),
        frames_root,
        spec,
        config or TrainConfig(),
        smoothing_window,
        label_schema,
        now,
        patient_of_video,
    )


def blitz_label(
    manifest: pd.DataFrame,
    frames_root: str | Path,
    reviewed_labels: pa.Table,
    *,
    skip: int = DEFAULT_BLITZ_SKIP,
    spec: ModelSpec | None = None,
    label_schema: LabelSchema | None = None,
    config: TrainConfig | None = None,
    smoothing_window: int = 0,
    now: dt.datetime | None = None,
    patient_of_video: Mapping[str, str] | None = None,
) -> PredictionRun:
    """Train on every ``skip``-th labelled frame of the reviewed videos, predict the others.

    A video counts as reviewed when ``reviewed_labels`` has at least one reviewed row for it;
    the live frames of every other video in ``manifest`` are predicted. Validation holds out
    whole patients of ``patient_of_video`` (as :func:`cold_label`). Raises
    :class:`TrainingDataError` when no video is reviewed or none is left to predict.
    """
    spec = _default_spec(spec, label_schema)
    check_manifest(manifest)
    items = labels_to_items(reviewed_labels, manifest, spec)
    reviewed_videos = set(items["video_id"])
    if not reviewed_videos:
        raise TrainingDataError("blitz label needs at least one reviewed video")
    todo = _live(manifest)
    todo = todo[~todo["video_id"].isin(reviewed_videos)]
    if len(todo) == 0:
        raise TrainingDataError("every video in the manifest is reviewed: nothing to predict")
    return _train_and_predict(
        every_nth_frame(items, skip),
        todo,
        frames_root,
        spec,
        config or TrainConfig(),
        smoothing_window,
        label_schema,
        now,
        patient_of_video,
    )


# --- custom model -----------------------------------------------------------------------------


def load_custom_callable(target: str) -> CustomModel:
    """Import ``"package.module:function"`` and return the function.

    Raises :class:`CustomModelError` when the string is not ``module:attribute``, the module
    cannot be imported, the attribute is missing or it is not callable.
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise CustomModelError(f"custom model {target!r} must be 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CustomModelError(
            f"custom model module {module_name!r} cannot be imported: {exc}"
        ) from None
    obj: object = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise CustomModelError(f"custom model {target!r}: {module_name} has no {attribute!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise CustomModelError(f"custom model {target!r} is not callable")
    return obj  # type: ignore[return-value]


def _batches_of_equal_shape(
    frames_root: Path, paths: list[str], batch_size: int
) -> list[tuple[list[int], np.ndarray]]:
    """Group consecutive frames into batches of at most ``batch_size`` frames of one shape."""
    out: list[tuple[list[int], np.ndarray]] = []
    indices: list[int] = []
    images: list[np.ndarray] = []
    for index, rel in enumerate(paths):
        rgb = read_frame_rgb(frames_root / rel)
        if images and (len(images) == batch_size or rgb.shape != images[0].shape):
            out.append((indices, np.stack(images)))
            indices, images = [], []
        indices.append(index)
        images.append(rgb)
    if images:
        out.append((indices, np.stack(images)))
    return out


def predict_with_callable(
    function: CustomModel,
    frames_root: str | Path,
    manifest: pd.DataFrame,
    label_schema: LabelSchema,
    *,
    model_id: str | None = None,
    batch_size: int = 32,
    now: dt.datetime | None = None,
) -> pa.Table:
    """Label every frame of ``manifest`` with a custom callable: one row per frame.

    Frames are read as ``(H, W, 3) uint8 RGB`` at their stored size and passed in batches of
    up to ``batch_size`` frames of equal shape (``(N, H, W, 3)``). The callable returns N label
    names (each in ``label_schema``) and N confidences in [0, 1]. Each frame gets one row for
    its predicted label: ``value`` true, ``float_value`` = ``confidence`` = the returned
    confidence (the callable says nothing about the other labels, so no rows are invented for
    them). ``model_id`` defaults to ``<module>.<qualname>`` of the callable. Rows are ordered by
    ``(video_id, frame_number)``. Raises :class:`CustomModelError` for output of the wrong
    length, range or vocabulary.
    """
    check_manifest(manifest)
    frames = manifest.sort_values(["video_id", "frame_number"], kind="stable").reset_index(
        drop=True
    )
    model_id = model_id or f"{function.__module__}.{getattr(function, '__qualname__', 'model')}"
    names: list[str] = [""] * len(frames)
    scores = np.zeros(len(frames), dtype=np.float64)
    for indices, batch in _batches_of_equal_shape(
        Path(frames_root), list(frames["frame_relative_path"]), batch_size
    ):
        result = function(batch)
        try:
            labels, confidences = result
            labels = [str(x) for x in labels]
            confidences = np.asarray(confidences, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise CustomModelError(
                f"custom model {model_id} must return (labels, confidences): {exc}"
            ) from None
        if len(labels) != len(indices) or len(confidences) != len(indices):
            raise CustomModelError(
                f"custom model {model_id} returned {len(labels)} labels and "
                f"{len(confidences)} confidences for a batch of {len(indices)} frames"
            )
        if not np.all(np.isfinite(confidences)) or confidences.min() < 0 or confidences.max() > 1:
            raise CustomModelError(f"custom model {model_id} returned confidences outside [0, 1]")
        unknown = sorted(set(labels) - set(label_schema.names))
        if unknown:
            raise CustomModelError(
                f"custom model {model_id} returned label(s) {unknown} not in the label schema"
            )
        for index, label, score in zip(indices, labels, confidences, strict=True):
            names[index], scores[index] = label, score
    source = model_source(model_id)
    stamp = pd.Timestamp(now or dt.datetime.now(dt.UTC)).tz_convert("UTC").floor("us")
    n = len(frames)
    columns = {
        "frame_id": frames["frame_id"].astype(str).tolist(),
        "video_id": frames["video_id"].astype(str).tolist(),
        "frame_number": frames["frame_number"].astype(np.int64).tolist(),
        "frame_timestamp": frames["frame_timestamp"].astype(np.float64).tolist(),
        "label_name": names,
        "label_id": [label_schema.id_of(name) for name in names],
        "value": [True] * n,
        "float_value": scores.tolist(),
        "source": [source] * n,
        "confidence": scores.astype(np.float32).tolist(),
        "annotator": [source] * n,
        "reviewed": [False] * n,
        "reviewer": [None] * n,
        "date_created": [stamp] * n,
        "date_modified": [stamp] * n,
    }
    return pa.table(columns, schema=FRAME_LABELS_SCHEMA)
