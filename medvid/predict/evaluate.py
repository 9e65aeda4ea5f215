"""Evaluate label models on patients they never saw: grouped k-fold and the labelling-cost curve.

A model that labels the rest of a clip it was trained on is scoring near copies of its
training frames; what a site needs to know is how it labels the *next patient*.
:func:`evaluate_by_patient` therefore splits by patient, never by frame or clip: grouped
k-fold (:func:`patient_folds`, stratified by class), each patient in exactly one test fold.
Within a fold, the training patients are split again by patient for early stopping and
calibration (:func:`medvid.predict.train.split_by_patient`), and the test patients are only
predicted.

For each fold, backbone and seed the same steps as a label model run
(:func:`medvid.predict.train.train_classifier` with ``freeze_backbone``): pooled features of
the backbone, a class-balanced linear head with early stopping
(:func:`~medvid.predict.train.fit_head`), temperature calibration; then temporal smoothing of
the test probabilities. Backbones: ``none`` (the architecture's random initialisation, no
pretraining) and ``simclr`` (:func:`medvid.predict.pretrain.pretrain_backbone` on unlabelled
frames of the training patients only, or of every frame when ``pretrain_scope="all_frames"``,
which is legitimate for self-supervision because no label is used, but is then stated).

Labelling budgets (the curve): **cold label** with K frames per training video chosen
``uniform`` or ``active`` (:mod:`medvid.predict.selection`; active rounds add frames by
uncertainty and diversity on the model of the previous budget), and **blitz label** with a
fraction of the training videos fully reviewed (every ``blitz_skip``-th frame used). Metrics,
pooled over the test folds: frame accuracy, macro F1, clip accuracy (majority vote of frame
predictions per video), the confusion matrix, frames a person labelled; beside them the
majority-class baseline (the most frequent class of each fold's training frames, predicted
for every test frame). With several seeds every number is a mean with its standard deviation.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from medvid.labels.schema import FRAME_LABELS_SCHEMA, SOURCE_MANUAL, LabelSchema
from medvid.predict.data import IMAGENET_MEAN, IMAGENET_STD, read_frame_resized
from medvid.predict.errors import TrainingDataError
from medvid.predict.infer import check_manifest, select_device, smooth_probabilities
from medvid.predict.model import ModelSpec, backbone_features, build_model
from medvid.predict.pretrain import PretrainConfig, backbone_fingerprint, pretrain_backbone
from medvid.predict.selection import active_positions, evenly_spaced_positions
from medvid.predict.train import (
    TrainConfig,
    deterministic_algorithms,
    fit_head_by_patient,
)
from medvid.predict.trust import softmax

#: ``log(message)`` receives one line per finished step of a long evaluation.
Log = Callable[[str], None]

#: Head settings of the evaluation (the label model's :func:`fit_head` path).
EVALUATION_TRAIN = TrainConfig(freeze_backbone=True, val_fraction=0.2)


@dataclass(frozen=True)
class EvaluationConfig:
    """What :func:`evaluate_by_patient` runs.

    Attributes:
        folds: grouped folds (each patient in one test fold).
        seeds: every seed repeats the whole evaluation (backbone initialisation, pretraining,
            validation split, head); numbers are mean and standard deviation over seeds.
        k_values: cold label budgets, frames per training video.
        selection_methods: cold label frame choice, ``uniform`` and/or ``active``.
        blitz_fractions: blitz label budgets, share of training videos reviewed (every class
            keeps at least one video).
        blitz_skip: blitz trains on every n-th frame of a reviewed video.
        arch, input_size: the label model (:class:`~medvid.predict.model.ModelSpec`).
        backbones: ``"none"`` (random initialisation) and/or ``"simclr"`` (pretrained).
        pretrain: settings of the ``simclr`` backbone (``arch``/``input_size`` are forced to
            the label model's).
        pretrain_scope: ``"training_patients"`` (each fold pretrains on its training
            patients' frames) or ``"all_frames"`` (once, on every frame, labels unused).
        train: head settings (``seed`` is replaced by each seed).
        smoothing_window: temporal smoothing of test probabilities (frames; 0 = off).
        device: where backbones run (features, pretraining): ``"auto"`` (CUDA when present),
            ``"cpu"``, ``"cuda"``...; heads are fitted on the CPU (full-batch, small).
    """

    folds: int = 5
    seeds: tuple[int, ...] = (0,)
    k_values: tuple[int, ...] = (1, 3, 5, 10)
    selection_methods: tuple[str, ...] = ("uniform", "active")
    blitz_fractions: tuple[float, ...] = (0.25, 0.5, 1.0)
    blitz_skip: int = 3
    arch: str = "small"
    input_size: int = 64
    backbones: tuple[str, ...] = ("none", "simclr")
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    pretrain_scope: Literal["training_patients", "all_frames"] = "training_patients"
    train: TrainConfig = EVALUATION_TRAIN
    smoothing_window: int = 9
    device: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["train"] = {k: v for k, v in out["train"].items() if k != "augment"}
        return out


# --- inputs ---------------------------------------------------------------------------------


def frame_classes(labels: pa.Table | pd.DataFrame | Mapping[str, str]) -> dict[str, str]:
    """``{frame_id: class}`` from reviewed frame labels (:data:`FRAME_LABELS_SCHEMA` rows: the
    reviewed rows with a true ``value``) or from a ``{frame_id: class}`` mapping.

    Frames with several true reviewed classes are left out (not single-label). Raises
    :class:`TrainingDataError` for a table without the needed columns.
    """
    if isinstance(labels, Mapping):
        return {str(k): str(v) for k, v in labels.items()}
    df = labels.to_pandas() if isinstance(labels, pa.Table) else labels
    missing = [c for c in ("frame_id", "label_name", "value") if c not in df.columns]
    if missing:
        raise TrainingDataError(f"frame labels lack column(s): {', '.join(missing)}")
    if "reviewed" in df.columns:
        df = df[df["reviewed"].astype(bool)]
    positive = df[df["value"].astype(bool)]
    names = positive.groupby("frame_id")["label_name"].agg(lambda s: sorted(set(s)))
    return {str(f): n[0] for f, n in names.items() if len(n) == 1}


def truth_labels(manifest: pd.DataFrame, video_classes: Mapping[str, str]) -> pa.Table:
    """Reviewed labels giving every frame of each video its video's class (one row per frame
    and class, ``value`` true for the video's class), as a labeller would have entered."""
    schema = LabelSchema.from_names(sorted(set(video_classes.values())))
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
            "annotator": "video class",
            "reviewed": True,
            "reviewer": "video class",
            "date_created": stamp,
            "date_modified": stamp,
        }
        for r in frames.itertuples(index=False)
        for name in schema.names
    ]
    return pa.Table.from_pylist(records, schema=FRAME_LABELS_SCHEMA)


def patient_folds(
    patients: Sequence[str], classes: Sequence[str], n_folds: int, seed: int = 0
) -> np.ndarray:
    """Fold index ``(N,) int64`` of each frame: grouped by patient, stratified by class.

    Like scikit-learn's ``StratifiedGroupKFold``: patients are taken largest first (ties in a
    seeded shuffle) and each goes to the fold where the per-class share of frames across folds
    stays most even (smallest summed standard deviation of ``fold frames of a class / frames of
    the class``; ties to the fold with fewest frames, then the lowest index). Every patient is
    in exactly one fold. Raises ``ValueError`` when there are fewer patients than folds.
    """
    patients = np.asarray(patients).astype(str)
    names = sorted(set(classes))
    index = {c: i for i, c in enumerate(names)}
    y = np.array([index[c] for c in classes], dtype=np.int64)
    groups = sorted(set(patients.tolist()))
    if len(groups) < n_folds:
        raise ValueError(f"{len(groups)} patient(s) for {n_folds} folds")
    rng = np.random.default_rng(seed)
    rng.shuffle(groups)
    counts = {g: np.bincount(y[patients == g], minlength=len(names)) for g in groups}
    groups.sort(key=lambda g: -int(counts[g].sum()))  # stable: shuffled order breaks ties
    totals = np.maximum(np.bincount(y, minlength=len(names)), 1)
    fold_counts = np.zeros((n_folds, len(names)))
    assignment: dict[str, int] = {}
    for group in groups:
        best: tuple[float, float, int] | None = None
        for fold in range(n_folds):
            trial = fold_counts.copy()
            trial[fold] += counts[group]
            key = ((trial / totals).std(axis=0).sum(), fold_counts[fold].sum(), fold)
            if best is None or key < best:
                best = key
        assert best is not None
        fold_counts[best[2]] += counts[group]
        assignment[group] = best[2]
    return np.array([assignment[p] for p in patients], dtype=np.int64)


# --- metrics --------------------------------------------------------------------------------


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


def clip_accuracy(video_ids: Sequence[str], truth: Sequence[int], predicted: Sequence[int]):
    """Share of videos whose majority-vote prediction (ties: lowest class index) equals their
    majority true class."""
    frames = pd.DataFrame({"v": np.asarray(video_ids).astype(str), "t": truth, "p": predicted})
    if frames.empty:
        return float("nan")
    votes = frames.groupby("v").agg(
        t=("t", lambda s: s.value_counts().sort_index().idxmax()),
        p=("p", lambda s: s.value_counts().sort_index().idxmax()),
    )
    return float(np.mean(votes["t"] == votes["p"]))


def _scores(
    truth: np.ndarray, predicted: np.ndarray, videos: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    names = np.asarray(classes, dtype=object)
    metrics = frame_metrics(list(names[truth]), list(names[predicted]))
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return {
        **metrics,
        "clip_accuracy": clip_accuracy(videos, truth, predicted),
        "confusion_matrix": matrix.tolist(),
    }


# --- the evaluation -------------------------------------------------------------------------


@dataclass
class _Frames:
    """The labelled frames in memory: ``images`` ``(N, S, S, 3) uint8``, classes as indices."""

    table: pd.DataFrame
    images: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    patients: np.ndarray
    videos: np.ndarray


def _load_frames(
    manifest: pd.DataFrame,
    frames_root: Path,
    classes_of: Mapping[str, str],
    patient_of_video: Mapping[str, str],
    input_size: int,
) -> _Frames:
    table = manifest[manifest["frame_id"].astype(str).isin(classes_of)]
    if "is_dead" in table.columns:
        table = table[~table["is_dead"].fillna(False).astype(bool)]
    table = table.sort_values(["video_id", "frame_number"], kind="stable").reset_index(drop=True)
    classes = tuple(sorted({classes_of[str(f)] for f in table["frame_id"]}))
    if len(classes) < 2:
        raise TrainingDataError(f"the evaluation needs at least 2 classes, found {classes}")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[classes_of[str(f)]] for f in table["frame_id"]], dtype=np.int64)
    videos = table["video_id"].astype(str).to_numpy()
    patients = np.array(
        [
            f"patient:{patient_of_video[v]}" if patient_of_video.get(v) else f"video:{v}"
            for v in videos
        ]
    )
    images = np.stack(
        [read_frame_resized(frames_root / p, input_size) for p in table["frame_relative_path"]]
    )
    return _Frames(table, images, y, classes, patients, videos)


def _features(
    model: torch.nn.Module, images: np.ndarray, device: str = "cpu", batch_size: int = 256
) -> np.ndarray:
    """Pooled features ``(N, D) float32`` of ``(N, S, S, 3) uint8`` frames (ImageNet
    normalisation, as :func:`medvid.predict.data.to_tensor`), computed on ``device``."""
    torch_device = select_device(device)
    model = model.to(torch_device).eval()
    mean = torch.from_numpy(IMAGENET_MEAN).view(1, 3, 1, 1).to(torch_device)
    std = torch.from_numpy(IMAGENET_STD).view(1, 3, 1, 1).to(torch_device)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(images[start : start + batch_size]).to(torch_device)
            x = (x.permute(0, 3, 1, 2).float() / 255.0 - mean) / std
            out.append(backbone_features(model, x).float().cpu().numpy())
    model.to("cpu")
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def _blitz_videos(
    videos: list[str], video_class: Mapping[str, int], fraction: float, seed: int
) -> list[str]:
    """``round(fraction * n)`` of ``videos`` in a seeded shuffle, at least one per class."""
    order = list(videos)
    np.random.default_rng(seed).shuffle(order)
    wanted = max(1, round(fraction * len(order)))
    chosen: list[str] = []
    for c in sorted({video_class[v] for v in order}):
        chosen.append(next(v for v in order if video_class[v] == c))
    for v in order:
        if len(chosen) >= wanted:
            break
        if v not in chosen:
            chosen.append(v)
    return sorted(chosen)


def _fit_and_predict(
    data: _Frames,
    features: np.ndarray,
    labelled: np.ndarray,
    test: np.ndarray,
    patient_of_video: Mapping[str, str],
    train_config: TrainConfig,
    smoothing_window: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a head on the ``labelled`` rows as :func:`fit_head_by_patient` does, and return
    (smoothed test probabilities, probabilities of every row) ``float64``."""
    items = data.table.iloc[labelled][["frame_id", "video_id"]].assign(
        label_name=[data.classes[c] for c in data.y[labelled]], _row=labelled
    )
    head, temperature, _ = fit_head_by_patient(
        features, data.y, data.videos, items, patient_of_video, len(data.classes), train_config
    )
    logits = features.astype(np.float64) @ head.weight.T.astype(np.float64) + head.bias
    probs = softmax(logits / temperature)
    test_probs = smooth_probabilities(probs[test], data.videos[test], smoothing_window)
    return test_probs, probs


def evaluate_by_patient(
    manifest: pd.DataFrame,
    frames_root: str | Path,
    labels: pa.Table | pd.DataFrame | Mapping[str, str],
    patient_of_video: Mapping[str, str],
    config: EvaluationConfig | None = None,
    *,
    log: Log | None = None,
) -> dict[str, Any]:
    """Grouped k-fold evaluation of label prediction by patient, with the labelling-cost curve.

    Args:
        manifest: frame manifest rows (``frame_id``, ``video_id``, ``frame_number``,
            ``frame_timestamp``, ``frame_relative_path``; dead frames are skipped).
        frames_root: folder the manifest's paths are relative to.
        labels: reviewed frame labels (:data:`FRAME_LABELS_SCHEMA` rows) or a
            ``{frame_id: class}`` mapping; only frames with exactly one class are evaluated.
        patient_of_video: ``{video_id: patient id}`` (from the patients sheet); a video
            without one is a patient of its own.
        config: :class:`EvaluationConfig`.
        log: receives a line per finished step.

    Returns a JSON-serialisable report: ``classes``, ``frames``, ``videos``, ``patients``,
    ``class_frames``, ``folds`` (patients, videos and frames per class of each test fold),
    ``baseline`` (majority class: frame and clip accuracy, macro F1, confusion matrix),
    ``results`` (one row per backbone, method, selection and budget: ``frames_labelled`` and
    ``labelled_fraction`` per fold on average, ``frame_accuracy``, ``macro_f1``,
    ``clip_accuracy`` with ``_sd`` over seeds, ``fold_accuracy``, ``confusion_matrix`` summed
    over seeds, ``seconds``), ``pretraining`` (per fold and seed: backbone id, frames,
    seconds, final loss), ``settings`` and ``seconds``. Memory: every labelled frame is held
    at ``input_size`` (``N * S * S * 3`` bytes).

    Raises :class:`TrainingDataError` with fewer than 2 classes or fewer patients than folds.
    """
    config = config or EvaluationConfig()
    log = log or (lambda message: None)
    check_manifest(manifest)
    started_all = time.perf_counter()
    root = Path(frames_root)
    classes_of = frame_classes(labels)
    data = _load_frames(manifest, root, classes_of, patient_of_video, config.input_size)
    n_groups = len(set(data.patients.tolist()))
    if n_groups < config.folds:
        raise TrainingDataError(f"{n_groups} patient(s) for {config.folds} folds")
    fold_of = patient_folds(data.patients, list(data.y.astype(str)), config.folds, seed=0)
    spec = ModelSpec(classes=data.classes, arch=config.arch, input_size=config.input_size)
    pretrain_config = dataclasses.replace(
        config.pretrain, arch=config.arch, input_size=config.input_size, device=config.device
    )
    videos_all = sorted(set(data.videos.tolist()))
    video_class = {v: int(np.bincount(data.y[data.videos == v]).argmax()) for v in videos_all}
    log(
        f"{len(data.y)} frames, {len(videos_all)} videos, {n_groups} patients, "
        f"classes {list(data.classes)}, {config.folds} folds"
    )

    # (backbone, method, selection, budget) -> seed -> pooled test predictions
    pooled: dict[tuple[str, str, str, str], dict[int, dict[str, Any]]] = {}
    pretraining: list[dict[str, Any]] = []
    baseline_pred = np.zeros(len(data.y), dtype=np.int64)
    shared_backbones: dict[tuple[str, int], torch.nn.Module] = {}

    def backbone(kind: str, seed: int, fold: int, train_rows: np.ndarray) -> torch.nn.Module:
        if kind == "none":
            torch.manual_seed(seed)
            return build_model(spec)
        if kind != "simclr":
            raise ValueError(f"unknown backbone {kind!r}")
        if config.pretrain_scope == "all_frames" and (kind, seed) in shared_backbones:
            return shared_backbones[(kind, seed)]
        rows = np.arange(len(data.y)) if config.pretrain_scope == "all_frames" else train_rows
        result = pretrain_backbone(
            root,
            data.table.iloc[rows],
            dataclasses.replace(pretrain_config, seed=seed),
        )
        state = {k: v for k, v in result.model.state_dict().items() if not k.startswith("fc.")}
        pretraining.append(
            {
                "fold": None if config.pretrain_scope == "all_frames" else fold,
                "seed": seed,
                "backbone_id": backbone_fingerprint(state),
                "frames": result.frames,
                "seconds": result.seconds,
                "final_loss": result.history[-1]["loss"] if result.history else None,
            }
        )
        log(
            f"pretrained simclr (seed {seed}, fold {fold}, {result.frames} frames) in "
            f"{result.seconds:.0f} s, loss {result.history[-1]['loss']:.3f}"
        )
        if config.pretrain_scope == "all_frames":
            shared_backbones[(kind, seed)] = result.model
        return result.model

    def record(key, seed, test, probs, frames_labelled, seconds):
        entry = pooled.setdefault(key, {}).setdefault(
            seed,
            {"pred": np.full(len(data.y), -1), "labelled": [], "seconds": 0.0},
        )
        entry["pred"][test] = probs.argmax(axis=1)
        entry["labelled"].append(frames_labelled)
        entry["seconds"] += seconds

    with deterministic_algorithms(True):
        for seed in config.seeds:
            train_config = dataclasses.replace(config.train, seed=seed)
            for fold in range(config.folds):
                test = np.flatnonzero(fold_of == fold)
                train_rows = np.flatnonzero(fold_of != fold)
                if seed == config.seeds[0]:
                    majority = int(np.bincount(data.y[train_rows]).argmax())
                    baseline_pred[test] = majority
                train_videos = sorted(set(data.videos[train_rows].tolist()))
                rows_of_video = {v: train_rows[data.videos[train_rows] == v] for v in train_videos}
                for kind in config.backbones:
                    started = time.perf_counter()
                    model = backbone(kind, seed, fold, train_rows)
                    features = _features(model, data.images, config.device)
                    feature_seconds = time.perf_counter() - started
                    for method in config.selection_methods:
                        chosen: dict[str, list[int]] = {v: [] for v in train_videos}
                        probs_all: np.ndarray | None = None
                        for k in sorted(config.k_values):
                            started = time.perf_counter()
                            for v in train_videos:
                                rows = rows_of_video[v]
                                if method == "uniform":
                                    chosen[v] = evenly_spaced_positions(len(rows), k)
                                else:
                                    chosen[v] = active_positions(
                                        features[rows],
                                        k,
                                        None if probs_all is None else probs_all[rows],
                                        chosen[v],
                                    )
                            labelled = np.sort(
                                np.concatenate([rows_of_video[v][chosen[v]] for v in train_videos])
                            )
                            test_probs, probs_all = _fit_and_predict(
                                data,
                                features,
                                labelled,
                                test,
                                patient_of_video,
                                train_config,
                                config.smoothing_window,
                            )
                            record(
                                (kind, "cold", method, f"K={k}"),
                                seed,
                                test,
                                test_probs,
                                len(labelled),
                                time.perf_counter() - started,
                            )
                    for fraction in config.blitz_fractions:
                        started = time.perf_counter()
                        reviewed = _blitz_videos(train_videos, video_class, fraction, seed)
                        labelled = np.sort(
                            np.concatenate(
                                [rows_of_video[v][:: config.blitz_skip] for v in reviewed]
                            )
                        )
                        test_probs, _ = _fit_and_predict(
                            data,
                            features,
                            labelled,
                            test,
                            patient_of_video,
                            train_config,
                            config.smoothing_window,
                        )
                        record(
                            (kind, "blitz", "videos", f"{fraction:.0%} of videos"),
                            seed,
                            test,
                            test_probs,
                            len(labelled),
                            time.perf_counter() - started,
                        )
                    log(
                        f"seed {seed} fold {fold} backbone {kind}: "
                        f"{time.perf_counter() - started + feature_seconds:.0f} s"
                    )

    n_train_frames = [int((fold_of != f).sum()) for f in range(config.folds)]
    results = []
    for (kind, method, selection, budget), by_seed in pooled.items():
        runs = []
        for _seed, entry in sorted(by_seed.items()):
            scores = _scores(data.y, entry["pred"], data.videos, data.classes)
            scores["fold_accuracy"] = [
                float(np.mean(entry["pred"][fold_of == f] == data.y[fold_of == f]))
                for f in range(config.folds)
            ]
            runs.append((scores, entry))
        row: dict[str, Any] = {
            "backbone": kind,
            "method": method,
            "selection": selection,
            "budget": budget,
            "frames_labelled": float(np.mean([np.mean(e["labelled"]) for _, e in runs])),
            "labelled_fraction": float(
                np.mean(
                    [np.mean(np.array(e["labelled"]) / np.array(n_train_frames)) for _, e in runs]
                )
            ),
            "seconds": float(np.mean([e["seconds"] for _, e in runs])),
        }
        for metric in ("frame_accuracy", "macro_f1", "clip_accuracy"):
            values = [s[metric] for s, _ in runs]
            row[metric] = float(np.mean(values))
            row[f"{metric}_sd"] = float(np.std(values)) if len(values) > 1 else 0.0
            row[f"{metric}_by_seed"] = [float(v) for v in values]
        row["fold_accuracy"] = np.mean([s["fold_accuracy"] for s, _ in runs], axis=0).tolist()
        row["confusion_matrix"] = np.sum([s["confusion_matrix"] for s, _ in runs], axis=0).tolist()
        results.append(row)

    folds = []
    for f in range(config.folds):
        test = fold_of == f
        folds.append(
            {
                "fold": f,
                "patients": int(len(set(data.patients[test].tolist()))),
                "videos": int(len(set(data.videos[test].tolist()))),
                "frames": int(test.sum()),
                "class_frames": {
                    c: int((data.y[test] == i).sum()) for i, c in enumerate(data.classes)
                },
            }
        )
    baseline = _scores(data.y, baseline_pred, data.videos, data.classes)
    return {
        "classes": list(data.classes),
        "frames": int(len(data.y)),
        "videos": len(videos_all),
        "patients": n_groups,
        "class_frames": {c: int((data.y == i).sum()) for i, c in enumerate(data.classes)},
        "folds": folds,
        "baseline": {"method": "majority class of the training folds", **baseline},
        "results": results,
        "pretraining": pretraining,
        "settings": config.to_dict(),
        "seconds": time.perf_counter() - started_all,
    }


# --- report -----------------------------------------------------------------------------------


def _cell(row: Mapping[str, Any], metric: str) -> str:
    value, sd = row[metric], row.get(f"{metric}_sd", 0.0)
    return f"{value:.3f} ± {sd:.3f}" if sd else f"{value:.3f}"


def evaluation_markdown(report: Mapping[str, Any]) -> str:
    """The report of :func:`evaluate_by_patient` as Markdown: the curve (one row per method
    and budget, one column group per backbone) with the majority baseline, the confusion
    matrix of the best full-budget row, and the folds."""
    rows = report["results"]
    backbones = list(dict.fromkeys(r["backbone"] for r in rows))
    header = "| method | budget | frames labelled |" + "".join(
        f" {b}: frame acc | {b}: macro F1 | {b}: clip acc |" for b in backbones
    )
    lines = [header, "|---|---|---:|" + "---:|---:|---:|" * len(backbones)]
    keys = list(dict.fromkeys((r["method"], r["selection"], r["budget"]) for r in rows))
    by_key = {(r["method"], r["selection"], r["budget"], r["backbone"]): r for r in rows}
    for method, selection, budget in keys:
        first = next(
            r
            for r in rows
            if (r["method"], r["selection"], r["budget"]) == (method, selection, budget)
        )
        name = f"cold label, {selection}" if method == "cold" else "blitz label"
        cells = ""
        for b in backbones:
            r = by_key.get((method, selection, budget, b))
            cells += (
                f" {_cell(r, 'frame_accuracy')} | {_cell(r, 'macro_f1')} "
                f"| {_cell(r, 'clip_accuracy')} |"
                if r
                else " | | |"
            )
        lines.append(
            f"| {name} | {budget} | {first['frames_labelled']:.0f} "
            f"({first['labelled_fraction']:.1%}) |{cells}"
        )
    base = report["baseline"]
    lines.append(
        "| majority class (baseline) | - | 0 |"
        + f" {base['frame_accuracy']:.3f} | {base['macro_f1']:.3f} "
        f"| {base['clip_accuracy']:.3f} |" * len(backbones)
    )
    full = [r for r in rows if r["method"] == "blitz" and r["budget"].startswith("100%")]
    if full:
        best = max(full, key=lambda r: r["frame_accuracy"])
        classes = report["classes"]
        lines += [
            "",
            f"Confusion matrix (rows true, columns predicted; frames pooled over folds and "
            f"seeds), blitz label 100%, backbone {best['backbone']}:",
            "",
            "| true \\ predicted | " + " | ".join(classes) + " |",
            "|---|" + "---:|" * len(classes),
        ]
        for name, counts in zip(classes, best["confusion_matrix"], strict=True):
            lines.append(f"| {name} | " + " | ".join(str(c) for c in counts) + " |")
    lines += [
        "",
        "| test fold | patients | videos | frames | frames per class |",
        "|---:|---:|---:|---:|---|",
    ]
    for f in report["folds"]:
        per_class = ", ".join(f"{c} {n}" for c, n in f["class_frames"].items())
        lines.append(
            f"| {f['fold']} | {f['patients']} | {f['videos']} | {f['frames']} | {per_class} |"
        )
    return "\n".join(lines) + "\n"
