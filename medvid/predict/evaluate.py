"""Evaluate cold and blitz label on videos whose class is known for every frame.

The lung-ultrasound clips shipped with medvid's test data are labelled by file name
(``covid19us_Reg_*`` healthy, ``covid19us_Cov_*`` COVID-19, ``covid19us_Vir_*`` viral
pneumonia), so every frame of a clip has its clip's class. :func:`evaluate_on_videos` runs:

- **blitz label, leave one video out**: for each video, train on every ``blitz_skip``-th frame of
  all the others and predict it; pooled over the folds every frame is predicted once. A class
  with a single video cannot be predicted when that video is held out (its class is absent from
  training), which caps the achievable accuracy; the report says so.
- **cold label, K frames per video** (K = 1, 3, 5 by default): a perfect labeller answers the K
  frames chosen per video; the model predicts the rest, which are scored.
- **reference**: the same classifier trained on every ``reference_skip``-th frame of all videos
  and scored on all frames (in-sample: a ceiling, not a generalisation estimate).

Metrics per method: frame accuracy, macro F1 (mean of per-class F1 over the classes that occur
in the truth or the predictions of the scored frames), and the fraction of all frames a person
labelled. :func:`evaluation_markdown` renders the report for asset metadata.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from medvid.labels.schema import FRAME_LABELS_SCHEMA, SOURCE_MANUAL, LabelSchema
from medvid.predict.errors import TrainingDataError
from medvid.predict.infer import check_manifest, predict_frames
from medvid.predict.model import ModelSpec
from medvid.predict.selection import select_frames
from medvid.predict.strategies import (
    DEFAULT_BLITZ_SKIP,
    blitz_label,
    cold_label,
    labels_to_items,
)
from medvid.predict.train import TrainConfig, every_nth_frame, train_classifier

#: File-name tag -> class of the COVID-19 lung ultrasound clips (jannisborn/covid19_ultrasound).
LUNG_ULTRASOUND_CLASSES = {"Reg": "healthy", "Cov": "covid19", "Vir": "viral_pneumonia"}
_LUNG_NAME = re.compile(r"(?:^|_)(Reg|Cov|Vir)_")

#: Training settings of the evaluation: small input and few epochs so it runs in minutes on a
#: 2-core CPU.
EVALUATION_CONFIG = TrainConfig(epochs=6, batch_size=32, patience=2, seed=0)


def lung_ultrasound_class(file_name: str) -> str | None:
    """Class of a lung ultrasound clip from its file name, ``None`` when it has no tag.

    ``covid19us_Reg_northumbria_1009_vid1.avi`` -> ``"healthy"``.
    """
    match = _LUNG_NAME.search(Path(file_name).name)
    return LUNG_ULTRASOUND_CLASSES[match.group(1)] if match else None


def truth_labels(manifest: pd.DataFrame, video_classes: Mapping[str, str]) -> pa.Table:
    """Reviewed labels giving every frame of each video its video's class (one row per frame
    and class, ``value`` true for the video's class), as a labeller would have entered."""
    schema = LabelSchema.from_names(video_classes.values())
    frames = manifest[manifest["video_id"].isin(list(video_classes))]
    stamp = pd.Timestamp("2000-01-01", tz="UTC")
    records = [
        {
            "frame_id": str(r.frame_id),
            "video_id": str(r.video_id),
            "frame_number": int(r.frame_number),
            "frame_timestamp": float(r.frame_timestamp),
            "label_name": name,
            "label_id": schema.id_of(name),
            "value": name == video_classes[r.video_id],
            "float_value": None,
            "source": SOURCE_MANUAL,
            "confidence": 1.0,
            "annotator": "file name",
            "reviewed": True,
            "reviewer": "file name",
            "date_created": stamp,
            "date_modified": stamp,
        }
        for r in frames.itertuples(index=False)
        for name in schema.names
    ]
    return pa.Table.from_pylist(records, schema=FRAME_LABELS_SCHEMA)


def frame_metrics(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """Frame accuracy and macro F1 of predicted vs true class names (same length).

    Macro F1 averages per-class F1 over the classes present in ``truth`` or ``predicted``; a
    class with no true and no predicted frames does not count. Returns NaN for no frames.
    """
    t, p = np.asarray(truth, dtype=object), np.asarray(predicted, dtype=object)
    if len(t) == 0:
        return {"frame_accuracy": float("nan"), "macro_f1": float("nan")}
    f1s = []
    for name in sorted(set(t) | set(p)):
        tp = float(np.sum((t == name) & (p == name)))
        fp = float(np.sum((t != name) & (p == name)))
        fn = float(np.sum((t == name) & (p != name)))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {"frame_accuracy": float(np.mean(t == p)), "macro_f1": float(np.mean(f1s))}


def _argmax_labels(labels: pa.Table) -> pd.DataFrame:
    df = labels.select(["frame_id", "label_name", "value"]).to_pandas()
    return df[df["value"]][["frame_id", "label_name"]].rename(columns={"label_name": "predicted"})


def _score(
    predictions: pd.DataFrame, truth: pd.Series, exclude: set[str] | None = None
) -> tuple[dict[str, float], int]:
    scored = predictions[~predictions["frame_id"].isin(exclude or set())]
    t = truth.loc[scored["frame_id"]].to_numpy()
    return frame_metrics(list(t), list(scored["predicted"])), len(scored)


def evaluate_on_videos(
    manifest: pd.DataFrame,
    frames_root: str | Path,
    video_classes: Mapping[str, str],
    *,
    k_values: Sequence[int] = (1, 3, 5),
    selection_method: str = "uniform",
    blitz_skip: int = DEFAULT_BLITZ_SKIP,
    reference_skip: int = DEFAULT_BLITZ_SKIP,
    arch: str = "resnet18",
    input_size: int = 128,
    config: TrainConfig = EVALUATION_CONFIG,
    smoothing_window: int = 0,
) -> dict[str, Any]:
    """Run blitz (leave one video out), cold (K per video) and reference; return the report.

    Args:
        manifest: frame manifest (``frame_id``, ``video_id``, ``frame_number``,
            ``frame_timestamp``, ``frame_relative_path``; ``phash`` for ``unique``) of the
            videos in ``video_classes``; other videos are ignored.
        frames_root: folder the manifest's paths are relative to.
        video_classes: ``{video_id: class name}`` (e.g. from :func:`lung_ultrasound_class`).
        k_values: frames per video a person labels in cold label.
        selection_method: ``uniform`` or ``unique`` (cold label frame choice).
        blitz_skip, reference_skip: train on every n-th frame of the training videos.
        arch, input_size: classifier (see :class:`~medvid.predict.model.ModelSpec`).
        config: training settings (shared by every run).
        smoothing_window: temporal smoothing of predictions (0 = off).

    Returns a JSON-serialisable dict: ``classes``, ``videos`` (id, class, frames), ``methods``
    (one row per method: ``method``, ``frame_accuracy``, ``macro_f1``,
    ``human_labelled_fraction``, ``frames_scored``, ``train_seconds``), ``blitz_folds``,
    ``notes`` and ``settings``. Raises :class:`TrainingDataError` with fewer than 2 videos.
    """
    check_manifest(manifest)
    frames = manifest[manifest["video_id"].isin(list(video_classes))].reset_index(drop=True)
    videos = sorted(frames["video_id"].unique())
    if len(videos) < 2:
        raise TrainingDataError("the evaluation needs at least 2 labelled videos")
    schema = LabelSchema.from_names(video_classes[v] for v in videos)
    spec = ModelSpec(classes=schema.names, arch=arch, input_size=input_size)
    truth_table = truth_labels(frames, {v: video_classes[v] for v in videos})
    truth = frames.set_index("frame_id")["video_id"].map(video_classes)
    n_total = len(frames)
    per_video = frames.groupby("video_id").size()
    methods: list[dict[str, Any]] = []
    notes: list[str] = []

    # Blitz label, leave one video out.
    folds, pooled = [], []
    blitz_seconds = 0.0
    for held_out in videos:
        started = time.perf_counter()
        reviewed = truth_table.filter(pc.not_equal(truth_table["video_id"], held_out))
        run = blitz_label(
            frames,
            frames_root,
            reviewed,
            skip=blitz_skip,
            spec=spec,
            label_schema=schema,
            config=config,
            smoothing_window=smoothing_window,
        )
        blitz_seconds += time.perf_counter() - started
        predicted = _argmax_labels(run.labels)
        metrics, scored = _score(predicted, truth)
        trained_classes = sorted({video_classes[v] for v in videos if v != held_out})
        folds.append(
            {
                "held_out_video": held_out,
                "class": video_classes[held_out],
                "class_in_training": video_classes[held_out] in trained_classes,
                "frames": scored,
                **metrics,
            }
        )
        pooled.append(predicted)
    metrics, scored = _score(pd.concat(pooled), truth)
    methods.append(
        {
            "method": f"blitz label, leave one video out (skip {blitz_skip})",
            **metrics,
            "human_labelled_fraction": float(np.mean([1 - per_video[v] / n_total for v in videos])),
            "frames_scored": scored,
            "train_seconds": blitz_seconds,
        }
    )
    unseen = [f for f in folds if not f["class_in_training"]]
    if unseen:
        share = sum(f["frames"] for f in unseen) / n_total
        notes.append(
            f"Blitz: {len(unseen)} held-out video(s) ({share:.0%} of frames) belong to a class no "
            f"other video has ({', '.join(sorted({f['class'] for f in unseen}))}); they cannot "
            f"be predicted correctly, so blitz accuracy is capped at {1 - share:.0%}."
        )

    # Cold label, K frames per video.
    for k in k_values:
        started = time.perf_counter()
        chosen = select_frames(frames, k, selection_method)
        chosen_ids = set(chosen["frame_id"])
        answers = truth_table.filter(
            pc.is_in(truth_table["frame_id"], pa.array(sorted(chosen_ids)))
        )
        run = cold_label(
            frames,
            frames_root,
            answers,
            spec=spec,
            label_schema=schema,
            config=config,
            smoothing_window=smoothing_window,
        )
        metrics, scored = _score(_argmax_labels(run.labels), truth, exclude=chosen_ids)
        methods.append(
            {
                "method": f"cold label, K={k} per video ({selection_method})",
                **metrics,
                "human_labelled_fraction": len(chosen_ids) / n_total,
                "frames_scored": scored,
                "train_seconds": time.perf_counter() - started,
            }
        )
    notes.append(
        "Cold label scores only the frames the person did not label; because the labeller sees "
        "every video, this measures labelling within known videos, not new patients."
    )

    # Reference: trained on all videos (every n-th frame), scored on all frames (in-sample).
    started = time.perf_counter()
    items = every_nth_frame(labels_to_items(truth_table, frames, spec), reference_skip)
    result = train_classifier(frames_root, items, None, spec, config)
    labels = predict_frames(
        result.model,
        spec,
        frames_root,
        frames,
        device=config.device,
        smoothing_window=smoothing_window,
    )
    metrics, scored = _score(_argmax_labels(labels), truth)
    methods.append(
        {
            "method": f"reference: all videos (skip {reference_skip}), in-sample",
            **metrics,
            "human_labelled_fraction": 1.0,
            "frames_scored": scored,
            "train_seconds": time.perf_counter() - started,
        }
    )
    return {
        "classes": list(schema.names),
        "videos": [
            {"video_id": v, "class": video_classes[v], "frames": int(per_video[v])} for v in videos
        ],
        "methods": methods,
        "blitz_folds": folds,
        "notes": notes,
        "settings": {
            "arch": arch,
            "input_size": input_size,
            "epochs": config.epochs,
            "patience": config.patience,
            "batch_size": config.batch_size,
            "seed": config.seed,
            "val_fraction": config.val_fraction,
            "min_images_per_epoch": config.min_images_per_epoch,
            "selection_method": selection_method,
            "smoothing_window": smoothing_window,
        },
    }


def evaluation_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: a methods table, the blitz folds and the notes."""
    lines = [
        "| method | frame accuracy | macro F1 | frames labelled by a person | frames scored "
        "| seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in report["methods"]:
        lines.append(
            f"| {m['method']} | {m['frame_accuracy']:.3f} | {m['macro_f1']:.3f} "
            f"| {m['human_labelled_fraction']:.1%} | {m['frames_scored']} "
            f"| {m['train_seconds']:.0f} |"
        )
    lines += [
        "",
        "| held-out video | class | class in training | frames | accuracy |",
        "|---|---|---|---:|---:|",
    ]
    for f in report["blitz_folds"]:
        lines.append(
            f"| {f['held_out_video']} | {f['class']} | {'yes' if f['class_in_training'] else 'no'} "
            f"| {f['frames']} | {f['frame_accuracy']:.3f} |"
        )
    if report["notes"]:
        lines += [""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"
