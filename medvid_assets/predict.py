"""The predict stage: labels predicted by models, and the labelling that trains them.

One engine (:mod:`medvid.predict`), three kinds of model:

- **cold label** (no labels yet): ``cold_label_queue`` picks K frames per video (uniform or the
  ``unique`` perceptual-hash sampler) and writes them to ``<home>/labelling/cold_label_queue.csv``
  and ``.json`` (or, with the Labelbox upload's ``frames: queue``, to a Labelbox project); a
  person fills in the ``label`` column; ``cold_label_answers`` reads the answers (and the
  reviewed Labelbox labels of the queued frames); ``label_model`` with ``strategy: cold`` trains
  on them; ``predicted_labels`` predicts every frame of every video.
- **blitz label** (some videos reviewed): ``label_model`` with ``strategy: blitz`` trains on every
  ``blitz_skip``-th frame of the reviewed label sets (sheets, segments, Labelbox, answers,
  reviewed predictions); ``predicted_labels`` predicts the videos it was not trained on.
- **custom model**: ``custom_model_labels`` runs a user's ``package.module:function``.

Trained models are versioned: ``models/<model_id>.pt`` + ``models/<model_id>.json`` (classes,
input size, the videos and frames it was trained on, its training curve), never overwritten;
``models/label_model.json`` names the current one, which ``predicted_labels`` uses. Training and
inference declare ``pool="gpu"`` and run on the :class:`TorchDeviceResource`'s device (CUDA when
present, else CPU). Predictions are label sets with source ``model:<model_id>``, exported only
once reviewed (see :mod:`medvid_assets.export`).
"""

import base64
import datetime as dt
import io
import time
from pathlib import Path
from typing import Literal

import dagster as dg
import matplotlib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetExecutionContext
from pydantic import Field

from medvid.errors import MedvidInputError
from medvid.frames.extract import FRAME_MANIFEST_SCHEMA
from medvid.labels.labelsets import ground_truth, merge_label_sets
from medvid.labels.schema import LabelSchema, empty_frame_labels
from medvid.predict.errors import TrainingDataError
from medvid.predict.evaluate import evaluate_on_videos, evaluation_markdown, lung_ultrasound_class
from medvid.predict.infer import predict_frames
from medvid.predict.model import ModelSpec, load_model, model_fingerprint, save_model
from medvid.predict.selection import DEFAULT_HAMMING_THRESHOLD
from medvid.predict.strategies import (
    DEFAULT_BLITZ_SKIP,
    labels_to_items,
    load_custom_callable,
    predict_with_callable,
    queue_answers,
    read_labelling_answers,
    select_frames_for_labelling,
    write_labelling_queue,
)
from medvid.predict.train import TrainConfig, every_nth_frame, split_by_video, train_classifier
from medvid.previews import contact_sheet, encode_jpeg
from medvid_assets.frames import read_frame_manifest, video_frames
from medvid_assets.labels import (
    label_sets_of_videos,
    read_label_schema,
    video_aliases,
    videos_with_frames,
)
from medvid_assets.partitions import video_partitions
from medvid_assets.quarantine import skip_if_quarantined
from medvid_assets.storage import (
    FRAMES_PREFIX,
    read_json,
    read_table,
    table_key,
    write_json,
    write_table,
)
from medvid_assets.videos import read_video_metadata
from medvid_resources import MediaStore
from medvid_resources.torch_device import TorchDeviceResource

matplotlib.use("Agg")

QUEUE_BASE = "labelling/cold_label_queue"
MODELS_PREFIX = "models"
CURRENT_MODEL_KEY = f"{MODELS_PREFIX}/label_model.json"
EVALUATION_PREFIX = "reports/label_prediction_evaluation"


# --- shared helpers ---------------------------------------------------------------------------


def live_manifest(store: MediaStore, video_ids: list[str]) -> pd.DataFrame:
    """The frame manifests of ``video_ids`` concatenated, without dead frames."""
    parts = [read_frame_manifest(store, vid).to_pandas() for vid in video_ids]
    manifest = (
        pd.concat(parts, ignore_index=True)
        if parts
        else FRAME_MANIFEST_SCHEMA.empty_table().to_pandas()
    )
    return manifest[~manifest["is_dead"].astype(bool)].reset_index(drop=True)


def video_frames_root(store: MediaStore, video_id: str) -> Path:
    """The local ``frames/`` root with (only) this video's frames fetched: what a per-video
    asset needs, without downloading every video's frames from a remote store."""
    return store.fetch_prefix(f"{FRAMES_PREFIX}/video_{video_id}").parent


def known_videos(context: AssetExecutionContext, store: MediaStore) -> list[str]:
    """Every video with extracted frames whose input is not quarantined, sorted."""
    return videos_with_frames(store, context.instance.get_dynamic_partitions(video_partitions.name))


def queue_frames(store: MediaStore) -> pd.DataFrame:
    """The frames of the cold-label queue (``frame_id``, ``video_id``, ``frame_number``...);
    empty when ``cold_label_queue`` was never materialized."""
    key = f"{QUEUE_BASE}.json"
    if not store.exists(key):
        return pd.DataFrame(columns=["frame_id", "video_id", "frame_number"])
    return pd.DataFrame(read_json(store, key)["frames"])


def _png_markdown(fig, alt: str) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return f"![{alt}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"


def training_curve_plot(history: list[dict[str, float]]) -> str:
    """Train and validation loss (and validation accuracy) per epoch, as PNG markdown."""
    import matplotlib.pyplot as plt

    epochs = [int(h["epoch"]) for h in history]
    fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    ax.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    accuracy = [h["val_accuracy"] for h in history]
    if not all(np.isnan(accuracy)):
        twin = ax.twinx()
        twin.plot(epochs, accuracy, "s--", color="tab:green", label="validation accuracy")
        twin.set_ylim(0, 1)
        twin.set_ylabel("accuracy")
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title("training curve")
    return _png_markdown(fig, "training curve")


def confusion_matrix_plot(matrix: list[list[int]], classes: tuple[str, ...]) -> str:
    """Validation confusion matrix (rows true, columns predicted), as PNG markdown."""
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix, dtype=int)
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(classes), 1.0 + 0.8 * len(classes)), dpi=80)
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (row, column), value in np.ndenumerate(counts):
        ax.text(column, row, str(value), ha="center", va="center", fontsize=8)
    ax.set_title("validation confusion matrix")
    return _png_markdown(fig, "confusion matrix")


def _failure(error: MedvidInputError, what: str) -> dg.Failure:
    return dg.Failure(description=f"{what}: {error.reason}", metadata={"reason": error.reason})


# --- cold label: queue and answers ------------------------------------------------------------


class ColdLabelQueueConfig(dg.Config):
    """Which frames a person labels for cold label.

    frames_per_video: K frames per video. method: ``uniform`` (evenly spaced over the live
    frames: skip factor frames/K) or ``unique`` (frames whose 64-bit pHash differs by at least
    ``hamming_threshold`` bits from every frame already chosen, thinned or topped up to K).
    Dead frames are never queued. Answers already written in the queue are kept when it is
    written again.
    """

    frames_per_video: int = 5
    method: Literal["uniform", "unique"] = "uniform"
    hamming_threshold: int = DEFAULT_HAMMING_THRESHOLD


@dg.asset(
    group_name="predict",
    kinds={"csv", "json"},
    deps=[video_frames],
    description="Cold-label queue: K frames per video for a person to label, written to"
    " labelling/cold_label_queue.csv and .json under the home folder (frame_id, video_id,"
    " frame_number, frame_timestamp, frame_relative_path, label). Fill in the label column"
    " (one of the project's labels) in either file and materialize cold_label_answers; or upload"
    " the queue to Labelbox (labelbox_uploads with frames: queue).",
)
def cold_label_queue(
    context: AssetExecutionContext, config: ColdLabelQueueConfig, media_store: MediaStore
) -> dg.MaterializeResult:
    video_ids = known_videos(context, media_store)
    manifest = live_manifest(media_store, video_ids)
    try:
        selected = select_frames_for_labelling(
            manifest,
            config.frames_per_video,
            config.method,
            hamming_threshold=config.hamming_threshold,
        )
        base = media_store.local_path(f"{QUEUE_BASE}.csv").with_suffix("")
        previous = queue_answers(base)
    except MedvidInputError as error:
        raise _failure(error, "cannot build the cold-label queue") from None
    kept = {f: a for f, a in previous.items() if f in set(selected["frame_id"])}
    labels = read_label_schema(media_store).names
    csv_path, json_path = write_labelling_queue(selected, base, labels, answers=kept)
    media_store.publish(f"{QUEUE_BASE}.csv")
    media_store.publish(f"{QUEUE_BASE}.json")
    frames_root = media_store.fetch_prefix(FRAMES_PREFIX)
    metadata = {
        "frames": len(selected),
        "videos": int(selected["video_id"].nunique()) if len(selected) else 0,
        "answered": len(kept),
        "method": config.method,
        "frames_per_video": config.frames_per_video,
        "labels": dg.MetadataValue.json(list(labels)),
        "csv": dg.MetadataValue.path(str(csv_path)),
        "json": dg.MetadataValue.path(str(json_path)),
    }
    if len(selected):
        sheet = encode_jpeg(
            contact_sheet([frames_root / p for p in selected["frame_relative_path"]])
        )
        metadata["preview"] = dg.MetadataValue.md(
            f"![queue](data:image/jpeg;base64,{base64.b64encode(sheet).decode()})"
        )
    return dg.MaterializeResult(metadata=metadata)


class ColdLabelAnswersConfig(dg.Config):
    """Who answered the cold-label queue, and whether Labelbox answers count.

    annotator: written as annotator and reviewer of the answers (the person vouches for them).
    include_labelbox: also take the Labelbox labels of the queued frames (from labelbox_labels),
    when they are reviewed (approved, or the data row is Done).
    """

    annotator: str = "labeller"
    include_labelbox: bool = True


@dg.asset(
    group_name="predict",
    kinds={"parquet"},
    deps=[cold_label_queue, "labelbox_labels"],
    description="The answers to the cold-label queue as reviewed labels (source 'manual': the"
    " label given is true, the project's other labels false), read from the queue files, plus"
    " the reviewed Labelbox labels of the queued frames.",
)
def cold_label_answers(
    context: AssetExecutionContext, config: ColdLabelAnswersConfig, media_store: MediaStore
) -> dg.MaterializeResult:
    schema = read_label_schema(media_store)
    now = dt.datetime.now(dt.UTC)
    tables = []
    try:
        for suffix in (".csv", ".json"):
            if media_store.exists(QUEUE_BASE + suffix):
                tables.append(
                    read_labelling_answers(
                        media_store.fetch(QUEUE_BASE + suffix),
                        schema,
                        annotator=config.annotator,
                        now=now,
                    )
                )
        queue_answers(media_store.local_path(f"{QUEUE_BASE}.csv").with_suffix(""))  # conflicts
    except MedvidInputError as error:
        raise _failure(error, "the cold-label answers cannot be read") from None
    queued = queue_frames(media_store)
    from_labelbox = 0
    if config.include_labelbox and media_store.exists(table_key("labelbox_labels")):
        labelbox = ground_truth(read_table(media_store, table_key("labelbox_labels")))
        labelbox = labelbox.filter(
            pc.is_in(labelbox["frame_id"], pa.array(queued["frame_id"].astype(str)))
        )
        from_labelbox = labelbox.num_rows
        tables.append(labelbox)
    table = merge_label_sets(tables) if tables else empty_frame_labels()
    write_table(media_store, table_key("cold_label_answers"), table)
    df = table.to_pandas()
    positives = df[df["value"]]
    answered = int(df["frame_id"].nunique()) if len(df) else 0
    context.log.info(f"{answered} of {len(queued)} queued frames answered")
    return dg.MaterializeResult(
        metadata={
            "queued_frames": len(queued),
            "answered_frames": answered,
            "labelbox_rows": from_labelbox,
            "answers_per_label": dg.MetadataValue.json(
                {str(k): int(v) for k, v in positives.groupby("label_name").size().items()}
            ),
            "answered_per_video": dg.MetadataValue.json(
                {str(k): int(v) for k, v in df.groupby("video_id")["frame_id"].nunique().items()}
            ),
        }
    )


# --- the label model --------------------------------------------------------------------------


class LabelModelConfig(dg.Config):
    """How the label model is trained.

    strategy: ``blitz`` (train on the reviewed labels of every source: labels and segments
    sheets, Labelbox, cold-label answers, reviewed predictions; every ``blitz_skip``-th frame of
    each video) or ``cold`` (train on cold_label_answers). labels: the classes, in output order
    (default: every label of the project schema with at least one positive training frame).
    multilabel: several labels per frame (sigmoid outputs) instead of exactly one.
    arch: ``resnet18`` | ``resnet34`` (torchvision, trained from scratch) starting from the local
    ``weights_path`` state_dict when given (no downloads). input_size: square input, pixels.
    Training: up to ``epochs`` passes, ``batch_size`` frames per step, Adam with ``lr``; a
    ``val_fraction`` of the videos is held out for validation (whole videos, every class kept
    in training) and training stops after ``patience`` epochs without a lower validation loss.
    An epoch trains on at least ``min_images_per_epoch`` images (fewer frames, as in cold label,
    are drawn with replacement and augmented).
    """

    strategy: Literal["blitz", "cold"] = "blitz"
    labels: list[str] = Field(default_factory=list)
    multilabel: bool = False
    arch: Literal["resnet18", "resnet34"] = "resnet18"
    input_size: int = 128
    weights_path: str = ""
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 3
    val_fraction: float = 0.2
    blitz_skip: int = DEFAULT_BLITZ_SKIP
    min_images_per_epoch: int = 256
    seed: int = 0


def reviewed_training_labels(store: MediaStore, video_ids: list[str]) -> pa.Table:
    """Ground truth for blitz label: per video, every label set merged (reviewed first), then
    only the reviewed rows."""
    tables = [
        ground_truth(merge_label_sets(sets.values()))
        for sets in label_sets_of_videos(store, video_ids).values()
        if sets
    ]
    return merge_label_sets(tables) if tables else empty_frame_labels()


def _classes(labels: pa.Table, schema: LabelSchema, configured: list[str]) -> tuple[str, ...]:
    if configured:
        for name in configured:
            schema.id_of(name)
        return tuple(configured)
    df = labels.select(["label_name", "value"]).to_pandas()
    present = set(df.loc[df["value"], "label_name"])
    return tuple(name for name in schema.names if name in present)


@dg.asset(
    group_name="predict",
    kinds={"pytorch"},
    pool="gpu",
    deps=[cold_label_answers, "frame_labels", "segment_labels", "labelbox_labels"],
    check_specs=[
        dg.AssetCheckSpec("weights_match_sidecar", asset="label_model", blocking=True),
        dg.AssetCheckSpec("beats_chance_on_held_out_videos", asset="label_model"),
    ],
    description="A ResNet18/34 frame classifier trained on the reviewed labels (blitz) or the"
    " cold-label answers (cold), with a by-video validation split and early stopping. Versioned:"
    " models/<model_id>.pt + .json (classes, input size, the frames it was trained on, history);"
    " models/label_model.json names the current one. Training curve and confusion matrix in the"
    " metadata.",
)
def label_model(
    context: AssetExecutionContext,
    config: LabelModelConfig,
    media_store: MediaStore,
    torch_device: TorchDeviceResource,
):
    schema = read_label_schema(media_store)
    video_ids = known_videos(context, media_store)
    manifest = live_manifest(media_store, video_ids)
    if config.strategy == "cold":
        key = table_key("cold_label_answers")
        if not media_store.exists(key):
            raise dg.Failure("no cold-label answers yet: materialize cold_label_answers first")
        labels = read_table(media_store, key)
    else:
        labels = reviewed_training_labels(media_store, video_ids)
    device = torch_device.resolve()
    try:
        classes = _classes(labels, schema, config.labels)
        if len(classes) < 2 and not config.multilabel:
            raise TrainingDataError(
                f"a single-label model needs at least 2 labels with positive reviewed frames,"
                f" found {list(classes)}"
            )
        spec = ModelSpec(
            classes=classes,
            arch=config.arch,
            input_size=config.input_size,
            multilabel=config.multilabel,
        )
        items = labels_to_items(labels, manifest, spec)
        if config.strategy == "blitz":
            items = every_nth_frame(items, config.blitz_skip)
        train_items, val_items = split_by_video(items, config.val_fraction, config.seed)
        train_config = TrainConfig(
            epochs=config.epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            patience=config.patience,
            seed=config.seed,
            device=device,
            val_fraction=config.val_fraction,
            num_threads=torch_device.cpu_threads or None,
            weights_path=config.weights_path or None,
            min_images_per_epoch=config.min_images_per_epoch,
        )
        context.log.info(
            f"training {config.arch} on {device}: {len(train_items)} frames of"
            f" {train_items['video_id'].nunique()} videos, validating on {len(val_items)} frames"
        )
        result = train_classifier(
            media_store.fetch_prefix(FRAMES_PREFIX),
            train_items,
            val_items,
            spec,
            train_config,
            progress=lambda epoch, n, row: context.log.info(
                f"epoch {epoch}/{n}: train loss {row['train_loss']:.3f},"
                f" val loss {row['val_loss']:.3f}, val accuracy {row['val_accuracy']:.3f}"
            ),
        )
    except MedvidInputError as error:
        raise _failure(error, "cannot train the label model") from None
    model_id = model_fingerprint(result.model)
    weights_key = f"{MODELS_PREFIX}/{model_id}.pt"
    sidecar = {
        "strategy": config.strategy,
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": device,
        "training_frames": len(train_items),
        "validation_frames": len(val_items),
        "config": config.model_dump(),
        **result.metadata(),
    }
    save_model(result.model, spec, media_store.local_path(weights_key), sidecar)
    media_store.publish(weights_key)
    media_store.publish(weights_key.removesuffix(".pt") + ".json")
    write_json(
        media_store,
        CURRENT_MODEL_KEY,
        {"model_id": model_id, "weights_key": weights_key, "strategy": config.strategy},
    )
    best = result.history[result.best_epoch - 1]
    metadata = {
        "model_id": model_id,
        "path": dg.MetadataValue.path(str(media_store.local_path(weights_key))),
        "strategy": config.strategy,
        "classes": dg.MetadataValue.json(list(classes)),
        "arch": config.arch,
        "input_size": config.input_size,
        "device": device,
        "training_frames": len(train_items),
        "training_videos": dg.MetadataValue.json(result.trained_on),
        "validation_videos": dg.MetadataValue.json(result.validated_on),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "val_accuracy": float(best["val_accuracy"]),
        "seconds_per_image": result.seconds_per_image,
        "training_curve": dg.MetadataValue.md(training_curve_plot(result.history)),
    }
    if result.confusion_matrix:
        metadata["confusion_matrix"] = dg.MetadataValue.md(
            confusion_matrix_plot(result.confusion_matrix, classes)
        )
    yield dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(model_id))
    reloaded = load_model(media_store.fetch(weights_key))
    yield dg.AssetCheckResult(
        check_name="weights_match_sidecar",
        passed=reloaded.model_id == model_id and reloaded.spec == spec,
        metadata={"model_id": reloaded.model_id},
    )
    accuracy, chance = float(best["val_accuracy"]), 1.0 / len(classes)
    yield dg.AssetCheckResult(
        check_name="beats_chance_on_held_out_videos",
        passed=bool(len(val_items)) and accuracy > chance,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"val_accuracy": accuracy, "chance": chance, "val_frames": len(val_items)},
        description=(
            "no validation videos (too few videos to hold one out)"
            if not len(val_items)
            else f"validation accuracy {accuracy:.3f} vs chance {chance:.3f}"
        ),
    )


def read_current_model(store: MediaStore) -> dict:
    """``models/label_model.json``: ``model_id``, ``weights_key``, ``strategy``."""
    if not store.exists(CURRENT_MODEL_KEY):
        raise dg.Failure("no label model yet: materialize label_model first")
    return read_json(store, CURRENT_MODEL_KEY)


# --- predictions ------------------------------------------------------------------------------


class PredictedLabelsConfig(dg.Config):
    """How the label model predicts a video.

    batch_size: frames per forward pass. smoothing_window: average each frame's class
    probabilities with its neighbours (a centred window of this many extracted frames; 0 = off).
    skip_training_videos: a blitz model does not predict the videos it was trained or validated
    on (they are reviewed already).
    """

    batch_size: int = 64
    smoothing_window: int = 0
    skip_training_videos: bool = True


@dg.asset(
    partitions_def=video_partitions,
    group_name="predict",
    kinds={"pytorch", "parquet"},
    pool="gpu",
    deps=[label_model, video_frames],
    description="The current label model's predictions for every live frame of the video: one"
    " row per frame and class, value = the predicted class, float_value = its probability,"
    " source 'model:<model_id>', unreviewed. Runs on CUDA when present, else the CPU, batched.",
)
def predicted_labels(
    context: AssetExecutionContext,
    config: PredictedLabelsConfig,
    media_store: MediaStore,
    torch_device: TorchDeviceResource,
) -> dg.MaterializeResult:
    if skipped := skip_if_quarantined(context, media_store):
        return skipped
    video_id = context.partition_key
    current = read_current_model(media_store)
    loaded = load_model(media_store.fetch(current["weights_key"]))
    trained = {**loaded.metadata.get("trained_on", {}), **loaded.metadata.get("validated_on", {})}
    key = table_key("predicted_labels", video_id)
    if current["strategy"] == "blitz" and config.skip_training_videos and video_id in trained:
        write_table(media_store, key, empty_frame_labels())
        return dg.MaterializeResult(
            metadata={"status": "skipped", "reason": "reviewed video the model was trained on"}
        )
    manifest = live_manifest(media_store, [video_id])
    device = torch_device.resolve()
    started = time.perf_counter()
    table = predict_frames(
        loaded.model,
        loaded.spec,
        video_frames_root(media_store, video_id),
        manifest,
        batch_size=config.batch_size,
        device=device,
        smoothing_window=config.smoothing_window,
        model_id=loaded.model_id,
        label_schema=read_label_schema(media_store),
    )
    seconds = time.perf_counter() - started
    write_table(media_store, key, table)
    df = table.select(["label_name", "value", "confidence"]).to_pandas()
    chosen = df[df["value"]]
    return dg.MaterializeResult(
        metadata={
            "status": "ok",
            "model_id": loaded.model_id,
            "device": device,
            "frames": len(manifest),
            "frames_per_second": len(manifest) / seconds if seconds else 0.0,
            "predicted_frames_per_label": dg.MetadataValue.json(
                {str(k): int(v) for k, v in chosen.groupby("label_name").size().items()}
            ),
            "mean_confidence": float(chosen["confidence"].mean()) if len(chosen) else 0.0,
        }
    )


class CustomModelConfig(dg.Config):
    """A custom model: a Python callable importable on the Dagster code location's path.

    function: ``package.module:function`` taking a batch of ``(N, H, W, 3) uint8 RGB`` frames
    and returning ``(labels, confidences)``: N label names of the project schema and N floats in
    [0, 1]. model_id: written in ``source`` as ``model:<model_id>`` (default
    ``<module>.<function>``). batch_size: frames per call (frames of one size per batch).
    """

    function: str
    model_id: str = ""
    batch_size: int = 32


@dg.asset(
    partitions_def=video_partitions,
    group_name="predict",
    kinds={"python", "parquet"},
    pool="gpu",
    deps=[video_frames],
    description="Labels from a user's model callable (package.module:function) for every live"
    " frame of the video: one row per frame for the label it returns, float_value = confidence,"
    " source 'model:<model_id>', unreviewed.",
)
def custom_model_labels(
    context: AssetExecutionContext, config: CustomModelConfig, media_store: MediaStore
) -> dg.MaterializeResult:
    if skipped := skip_if_quarantined(context, media_store):
        return skipped
    video_id = context.partition_key
    manifest = live_manifest(media_store, [video_id])
    try:
        function = load_custom_callable(config.function)
        table = predict_with_callable(
            function,
            video_frames_root(media_store, video_id),
            manifest,
            read_label_schema(media_store),
            model_id=config.model_id or None,
            batch_size=config.batch_size,
        )
    except MedvidInputError as error:
        raise _failure(error, f"custom model {config.function} failed") from None
    write_table(media_store, table_key("custom_model_labels", video_id), table)
    df = table.select(["label_name", "source", "confidence"]).to_pandas()
    return dg.MaterializeResult(
        metadata={
            "status": "ok",
            "source": str(df["source"].iloc[0]) if len(df) else "",
            "frames": len(manifest),
            "frames_per_label": dg.MetadataValue.json(
                {str(k): int(v) for k, v in df.groupby("label_name").size().items()}
            ),
            "mean_confidence": float(df["confidence"].mean()) if len(df) else 0.0,
        }
    )


# --- evaluation -------------------------------------------------------------------------------


class EvaluationConfig(dg.Config):
    """The lung-ultrasound evaluation of cold and blitz label.

    Videos whose original file name carries ``Reg`` (healthy), ``Cov`` (COVID-19) or ``Vir``
    (viral pneumonia) are labelled by it. k_values: frames per video a person labels in cold
    label. selection_method: ``uniform`` | ``unique``. blitz_skip / reference_skip: train on
    every n-th frame. The classifier settings are those of label_model.
    """

    k_values: list[int] = Field(default_factory=lambda: [1, 3, 5])
    selection_method: Literal["uniform", "unique"] = "uniform"
    blitz_skip: int = DEFAULT_BLITZ_SKIP
    reference_skip: int = DEFAULT_BLITZ_SKIP
    arch: Literal["resnet18", "resnet34"] = "resnet18"
    input_size: int = 128
    epochs: int = 6
    batch_size: int = 32
    patience: int = 2
    min_images_per_epoch: int = 256
    smoothing_window: int = 0
    seed: int = 0


@dg.asset(
    group_name="predict",
    kinds={"pytorch", "json"},
    pool="gpu",
    deps=[video_frames],
    description="Evaluation of label prediction on the lung-ultrasound clips labelled by file"
    " name (Reg healthy, Cov COVID-19, Vir viral pneumonia): blitz label leave-one-video-out,"
    " cold label with K frames per video, and the same classifier trained on all videos; frame"
    " accuracy, macro F1 and the fraction of frames a person labelled. Report in"
    " reports/label_prediction_evaluation.json/.md.",
)
def label_prediction_evaluation(
    context: AssetExecutionContext,
    config: EvaluationConfig,
    media_store: MediaStore,
    torch_device: TorchDeviceResource,
) -> dg.MaterializeResult:
    video_ids = known_videos(context, media_store)
    names = {vid: name for name, vid in video_aliases(media_store, video_ids).items()}
    classes = {
        vid: cls
        for vid in video_ids
        if (cls := lung_ultrasound_class(read_video_metadata(media_store, vid)["original_name"]))
    }
    if len(classes) < 2:
        return dg.MaterializeResult(
            metadata={"status": "skipped", "reason": f"{len(classes)} lung video(s); 2 needed"}
        )
    device = torch_device.resolve()
    started = time.perf_counter()
    report = evaluate_on_videos(
        live_manifest(media_store, sorted(classes)),
        media_store.fetch_prefix(FRAMES_PREFIX),
        classes,
        k_values=tuple(config.k_values),
        selection_method=config.selection_method,
        blitz_skip=config.blitz_skip,
        reference_skip=config.reference_skip,
        arch=config.arch,
        input_size=config.input_size,
        config=TrainConfig(
            epochs=config.epochs,
            batch_size=config.batch_size,
            patience=config.patience,
            seed=config.seed,
            device=device,
            num_threads=torch_device.cpu_threads or None,
            min_images_per_epoch=config.min_images_per_epoch,
        ),
        smoothing_window=config.smoothing_window,
    )
    report["seconds"] = time.perf_counter() - started
    report["device"] = device
    for video in report["videos"]:
        video["original_name"] = names.get(video["video_id"], "")
    markdown = evaluation_markdown(report)
    write_json(media_store, f"{EVALUATION_PREFIX}.json", report)
    md_path = media_store.local_path(f"{EVALUATION_PREFIX}.md")
    md_path.write_text(markdown)
    media_store.publish(f"{EVALUATION_PREFIX}.md")
    context.log.info("\n" + markdown)
    methods = {m["method"]: m for m in report["methods"]}
    return dg.MaterializeResult(
        metadata={
            "status": "ok",
            "videos": len(classes),
            "frames": sum(v["frames"] for v in report["videos"]),
            "device": device,
            "seconds": round(report["seconds"], 1),
            "report": dg.MetadataValue.md(markdown),
            "frame_accuracy": dg.MetadataValue.json(
                {k: round(m["frame_accuracy"], 4) for k, m in methods.items()}
            ),
            "path": dg.MetadataValue.path(str(media_store.local_path(f"{EVALUATION_PREFIX}.json"))),
        }
    )
