"""The predict stage: labels predicted by models, the labelling that trains them, and how well
they label patients they never saw.

One engine (:mod:`medvid.predict`), three kinds of model:

- **cold label** (no labels yet): ``cold_label_queue`` picks K frames per video and writes them
  to ``<home>/labelling/cold_label_queue.csv`` and ``.json`` (or, with the Labelbox upload's
  ``frames: queue``, to a Labelbox project); a person fills in the ``label`` column;
  ``cold_label_answers`` reads the answers (and the reviewed Labelbox labels of the queued
  frames); ``label_model`` with ``strategy: cold`` trains on them; ``predicted_labels`` predicts
  every frame of every video.
- **blitz label** (some videos reviewed): ``label_model`` with ``strategy: blitz`` trains on
  every ``blitz_skip``-th frame of the reviewed label sets; ``predicted_labels`` predicts the
  videos it was not trained on.
- **custom model**: ``custom_model_labels`` runs a user's ``package.module:function``.

``label_model`` holds out whole patients (the patients sheet's and DICOM studies' pseudonyms,
:func:`medvid.predict.store.patients_of_videos`) and records its accuracy on them beside the
majority-class baseline; ``predicted_labels`` writes the model's trust flags
(``tables/prediction_flags/``) that keep flagged predictions out of exports;
``pretrained_backbone`` is a SimCLR backbone a label model may start from;
``label_prediction_evaluation`` (``evaluation_job``, launched by hand) is the grouped k-fold
evaluation by patient with the labelling-cost curve.

Trained models are versioned (``models/<model_id>.pt`` + ``.json``, never overwritten;
``models/label_model.json`` names the current one). Training and inference declare
``pool="gpu"`` and run on the ``torch_device`` resource (CUDA when present, else the CPU).
Predictions are label sets with source ``model:<model_id>``, exported only once reviewed.
The settings come from the home config's ``predict`` section.
"""

import dataclasses
import datetime as dt
import math
import time
from typing import Literal

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from medvid.catalog import keys
from medvid.catalog.keys import Tables, table_key
from medvid.errors import MedvidInputError
from medvid.frames.store import live_manifest
from medvid.io import write_bytes_atomic
from medvid.labels.labelsets import ground_truth, merge_label_sets
from medvid.labels.queue import queue_frames
from medvid.labels.schema import LabelSchema, empty_frame_labels
from medvid.labels.store import read_label_schema, reviewed_training_labels, videos_with_frames
from medvid.plots import confusion_matrix_png, labelling_cost_curve_png, training_curve_png
from medvid.predict.errors import TrainingDataError
from medvid.predict.selection import DEFAULT_HAMMING_THRESHOLD
from medvid.predict.store import patients_of_videos, read_current_backbone
from medvid.previews import contact_sheet, encode_jpeg
from medvid.settings import (
    CustomModelSettings,
    EvaluationSettings,
    LabelModelSettings,
    PredictedLabelsSettings,
    PretrainSettings,
)
from medvid.store import read_json, read_table, write_json, write_table
from medvid_assets.executors import GPU_OP_TAGS
from medvid_assets.partitions import batch_partitions
from medvid_assets.policy import (
    MemberResult,
    SettingsResource,
    markdown_image,
    per_member,
    resolve_settings,
    settings_config,
)
from medvid_assets.runs import record_worker
from medvid_resources import MediaStore
from medvid_resources.torch_device import TorchDeviceResource

LabelModelConfig = settings_config(LabelModelSettings, "LabelModelConfig")
PredictedLabelsConfig = settings_config(PredictedLabelsSettings, "PredictedLabelsConfig")
CustomModelConfig = settings_config(CustomModelSettings, "CustomModelConfig")
PretrainConfigOverrides = settings_config(PretrainSettings, "PretrainedBackboneConfig")
EvaluationConfigOverrides = settings_config(EvaluationSettings, "LabelPredictionEvaluationConfig")


def video_frames_root(store: MediaStore, video_id: str):
    """The local ``frames/`` root with (only) this video's frames fetched."""
    return store.fetch_prefix(keys.frames_prefix(video_id)).parent


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
    deps=["video_frames"],
    code_version="2",
    description="Cold-label queue: K frames per video for a person to label, written to"
    " labelling/cold_label_queue.csv and .json under the home folder (frame_id, video_id,"
    " frame_number, frame_timestamp, frame_relative_path, label). Fill in the label column"
    " (one of the project's labels) in either file and materialize cold_label_answers; or upload"
    " the queue to Labelbox (labelbox_uploads with frames: queue).",
)
def cold_label_queue(
    context: dg.AssetExecutionContext, config: ColdLabelQueueConfig, media_store: MediaStore
) -> dg.MaterializeResult:
    # torch loads here, not when the definitions load (about 6 s per process)
    from medvid.predict.strategies import (
        queue_answers,
        select_frames_for_labelling,
        write_labelling_queue,
    )

    record_worker(context)
    video_ids = videos_with_frames(media_store)
    manifest = live_manifest(media_store, video_ids)
    try:
        selected = select_frames_for_labelling(
            manifest,
            config.frames_per_video,
            config.method,
            hamming_threshold=config.hamming_threshold,
        )
        base = media_store.local_path(f"{keys.LABELLING_QUEUE}.csv").with_suffix("")
        previous = queue_answers(base)
    except MedvidInputError as error:
        raise _failure(error, "cannot build the cold-label queue") from None
    kept = {f: a for f, a in previous.items() if f in set(selected["frame_id"])}
    labels = read_label_schema(media_store).names
    csv_path, json_path = write_labelling_queue(selected, base, labels, answers=kept)
    media_store.publish(f"{keys.LABELLING_QUEUE}.csv")
    media_store.publish(f"{keys.LABELLING_QUEUE}.json")
    frames_root = media_store.fetch_prefix(keys.FRAMES)
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
        metadata["preview"] = markdown_image(sheet, "queue", "image/jpeg")
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
    deps=["cold_label_queue", "labelbox_labels"],
    code_version="2",
    description="The answers to the cold-label queue as reviewed labels (source 'manual': the"
    " label given is true, the project's other labels false), read from the queue files, plus"
    " the reviewed Labelbox labels of the queued frames.",
)
def cold_label_answers(
    context: dg.AssetExecutionContext, config: ColdLabelAnswersConfig, media_store: MediaStore
) -> dg.MaterializeResult:
    # torch loads here, not when the definitions load (about 6 s per process)
    from medvid.predict.strategies import queue_answers, read_labelling_answers

    record_worker(context)
    schema = read_label_schema(media_store)
    now = dt.datetime.now(dt.UTC)
    tables = []
    try:
        for suffix in (".csv", ".json"):
            if media_store.exists(keys.LABELLING_QUEUE + suffix):
                tables.append(
                    read_labelling_answers(
                        media_store.fetch(keys.LABELLING_QUEUE + suffix),
                        schema,
                        annotator=config.annotator,
                        now=now,
                    )
                )
        queue_answers(
            media_store.local_path(f"{keys.LABELLING_QUEUE}.csv").with_suffix("")
        )  # conflicts
    except MedvidInputError as error:
        raise _failure(error, "the cold-label answers cannot be read") from None
    queued = queue_frames(media_store)
    from_labelbox = 0
    if config.include_labelbox and media_store.exists(table_key(Tables.LABELBOX_LABELS)):
        labelbox = ground_truth(read_table(media_store, table_key(Tables.LABELBOX_LABELS)))
        labelbox = labelbox.filter(
            pc.is_in(labelbox["frame_id"], pa.array(queued["frame_id"].astype(str)))
        )
        from_labelbox = labelbox.num_rows
        tables.append(labelbox)
    table = merge_label_sets(tables) if tables else empty_frame_labels()
    write_table(media_store, table_key(Tables.COLD_LABEL_ANSWERS), table)
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


# --- the pretrained backbone -----------------------------------------------------------------


@dg.asset(
    group_name="predict",
    kinds={"pytorch"},
    pool="gpu",
    op_tags=GPU_OP_TAGS,
    deps=["video_frames"],
    code_version="1",
    description="A backbone pretrained with SimCLR (Chen et al., ICML 2020) on every"
    " frame_step-th live frame of every video, no labels used, with the label model's"
    " architecture and input size (predict.model). Versioned by content:"
    " models/backbones/<backbone_id>.pt + .json (settings, frames and videos seen, loss per"
    " epoch); models/backbone.json names the current one, which label_model starts from with"
    " backbone: pretrained.",
)
def pretrained_backbone(
    context: dg.AssetExecutionContext,
    config: PretrainConfigOverrides,  # type: ignore[valid-type]
    media_store: MediaStore,
    torch_device: TorchDeviceResource,
    settings: SettingsResource,
):
    # torch loads here, not when the definitions load (about 6 s per process)
    from medvid.predict.pretrain import (
        PretrainConfig,
        backbone_fingerprint,
        backbone_state,
        pretrain_backbone,
        save_backbone,
    )

    record_worker(context)
    options, recorded = resolve_settings(context, settings, "predict.pretrain", config)
    model_options, _ = resolve_settings(context, settings, "predict.model")
    video_ids = videos_with_frames(media_store)
    manifest = live_manifest(media_store, video_ids)
    device = torch_device.resolve()
    pretrain_config = PretrainConfig(
        arch=model_options.arch,
        input_size=model_options.input_size,
        epochs=options.epochs,
        frame_step=options.frame_step,
        batch_size=options.batch_size,
        temporal_gap=options.temporal_gap,
        seed=options.seed,
        device=device,
        num_threads=torch_device.cpu_threads or None,
    )
    try:
        result = pretrain_backbone(
            media_store.fetch_prefix(keys.FRAMES),
            manifest,
            pretrain_config,
            progress=lambda epoch, n, row: context.log.info(
                f"epoch {epoch}/{n}: loss {row['loss']:.3f} ({row['seconds']:.1f} s)"
            ),
        )
    except MedvidInputError as error:
        raise _failure(error, "cannot pretrain a backbone") from None
    backbone_id = backbone_fingerprint(backbone_state(result.model))
    weights_key = keys.backbone_key(backbone_id)
    save_backbone(result, media_store.local_path(weights_key))
    media_store.publish(weights_key)
    media_store.publish(weights_key.removesuffix(".pt") + ".json")
    write_json(
        media_store,
        keys.CURRENT_BACKBONE,
        {"backbone_id": backbone_id, "weights_key": weights_key},
    )
    return dg.MaterializeResult(
        metadata={
            "backbone_id": backbone_id,
            "path": dg.MetadataValue.path(str(media_store.local_path(weights_key))),
            "arch": pretrain_config.arch,
            "input_size": pretrain_config.input_size,
            "device": device,
            "frames": result.frames,
            "videos": len(result.videos),
            "final_loss": float(result.history[-1]["loss"]) if result.history else float("nan"),
            "seconds": round(result.seconds, 1),
            **recorded,
        },
        data_version=dg.DataVersion(backbone_id),
    )


# --- the label model --------------------------------------------------------------------------


def _classes(labels: pa.Table, schema: LabelSchema, configured: list[str]) -> tuple[str, ...]:
    if configured:
        for name in configured:
            schema.id_of(name)
        return tuple(configured)
    df = labels.select(["label_name", "value"]).to_pandas()
    present = set(df.loc[df["value"], "label_name"])
    return tuple(name for name in schema.names if name in present)


LABEL_MODEL_CHECKS = {
    "weights_match_sidecar": "The weights read back have the sidecar's model id and spec.",
    "beats_majority_on_held_out_patients": "Frame accuracy on patients the model never saw"
    " (held out by patient: grouped k-fold out of fold for a frozen backbone, else the"
    " validation patients) is above the majority-class baseline on the same frames.",
}


def _epoch_logger(context: dg.AssetExecutionContext):
    """Log about ten epochs of a run (a linear head runs hundreds of full-batch steps, and
    every log line is an event in the instance)."""

    def log(epoch: int, epochs: int, row: dict) -> None:
        if epoch == 1 or epoch == epochs or epoch % max(epochs // 10, 1) == 0:
            context.log.info(
                f"epoch {epoch}/{epochs}: train loss {row['train_loss']:.3f},"
                f" val loss {row['val_loss']:.3f}, val accuracy {row['val_accuracy']:.3f}"
            )

    return log


def _start_weights(store: MediaStore, options: LabelModelSettings) -> str | None:
    """The local weights a label model starts from: the current pretrained backbone
    (``backbone: pretrained``), a user's ``weights_path``, or none (random)."""
    if options.backbone == "none":
        return options.weights_path or None
    if options.weights_path:
        raise dg.Failure(
            "set either backbone: pretrained or weights_path, not both (which to start from?)"
        )
    current = read_current_backbone(store)
    if current is None:
        raise dg.Failure(
            "backbone: pretrained, but no backbone yet: materialize pretrained_backbone"
        )
    store.fetch(current["weights_key"].removesuffix(".pt") + ".json")
    return str(store.fetch(current["weights_key"]))


@dg.asset(
    group_name="predict",
    kinds={"pytorch"},
    pool="gpu",
    op_tags=GPU_OP_TAGS,
    deps=[
        "cold_label_answers",
        "frame_labels",
        "segment_labels",
        "labelbox_labels",
        "label_sheets",
        "pretrained_backbone",
    ],
    code_version="3",
    check_specs=[
        dg.AssetCheckSpec(
            "weights_match_sidecar",
            asset="label_model",
            blocking=True,
            description=LABEL_MODEL_CHECKS["weights_match_sidecar"],
        ),
        dg.AssetCheckSpec(
            "beats_majority_on_held_out_patients",
            asset="label_model",
            description=LABEL_MODEL_CHECKS["beats_majority_on_held_out_patients"],
        ),
    ],
    description="A frame classifier (tiny/small ConvNet or ResNet18/34) trained on the reviewed"
    " labels (blitz) or the cold-label answers (cold), validated on patients it never saw"
    " (patients sheet and DICOM study pseudonyms; a video without a patient is its own):"
    " a calibrated linear head on a frozen backbone tuned by grouped k-fold over the patients,"
    " or fine-tuning with early stopping on held-out patients. Versioned: models/<model_id>.pt"
    " + .json (classes, input size, frames trained on, held-out-patient accuracy, majority"
    " baseline, trust reference, history); models/label_model.json names the current one.",
)
def label_model(
    context: dg.AssetExecutionContext,
    config: LabelModelConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    torch_device: TorchDeviceResource,
    settings: SettingsResource,
):
    # torch loads here, not when the definitions load (about 6 s per process)
    from medvid.predict.data import DEFAULT_AUGMENT
    from medvid.predict.model import ModelSpec, load_model, model_fingerprint, save_model
    from medvid.predict.strategies import labels_to_items
    from medvid.predict.train import (
        TrainConfig,
        every_nth_frame,
        majority_baseline,
        split_by_patient,
        train_classifier,
    )

    record_worker(context)
    options, recorded = resolve_settings(context, settings, "predict.model", config)
    config = options
    schema = read_label_schema(media_store)
    video_ids = videos_with_frames(media_store)
    manifest = live_manifest(media_store, video_ids)
    if config.strategy == "cold":
        key = table_key(Tables.COLD_LABEL_ANSWERS)
        if not media_store.exists(key):
            raise dg.Failure("no cold-label answers yet: materialize cold_label_answers first")
        labels = read_table(media_store, key)
    else:
        labels = reviewed_training_labels(media_store, video_ids)
    device = torch_device.resolve()
    # a video without a patient is a patient of its own (its id never collides with a pseudonym)
    patients = patients_of_videos(media_store, video_ids)
    patient_of_video = {v: patients.get(v, v) for v in video_ids}
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
        train_items, val_items = split_by_patient(
            items, patient_of_video, config.val_fraction, config.seed
        )
        train_config = TrainConfig(
            epochs=config.epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            patience=config.patience,
            seed=config.seed,
            device=device,
            val_fraction=config.val_fraction,
            num_threads=torch_device.cpu_threads or None,
            weights_path=_start_weights(media_store, config),
            min_images_per_epoch=config.min_images_per_epoch,
            balance=config.class_balance,
            augment=DEFAULT_AUGMENT if config.augmentation else None,
            freeze_backbone=config.freeze_backbone and not config.multilabel,
        )
        context.log.info(
            f"training {config.arch} on {device}: {len(train_items)} frames of"
            f" {train_items['patient_id'].nunique()} patients, validating on {len(val_items)}"
            f" frames of {val_items['patient_id'].nunique()} other patients"
        )
        result = train_classifier(
            media_store.fetch_prefix(keys.FRAMES),
            train_items,
            val_items,
            spec,
            train_config,
            progress=_epoch_logger(context),
        )
    except MedvidInputError as error:
        raise _failure(error, "cannot train the label model") from None
    held_out = {
        "held_out_patient_accuracy": result.held_out.get("frame_accuracy"),
        "majority_baseline": None
        if config.multilabel
        else majority_baseline(train_items, val_items, train_config),
        "held_out_patients": int(result.held_out.get("patients", 0)),
    }
    model_id = model_fingerprint(result.model)
    weights_key = keys.model_key(model_id)
    sidecar = {
        "strategy": config.strategy,
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": device,
        "training_frames": len(train_items),
        "validation_frames": len(val_items),
        "config": config.model_dump(),
        "backbone_weights": train_config.weights_path,
        **held_out,
        **result.metadata(),
    }
    save_model(result.model, spec, media_store.local_path(weights_key), sidecar)
    media_store.publish(weights_key)
    media_store.publish(weights_key.removesuffix(".pt") + ".json")
    write_json(
        media_store,
        keys.CURRENT_MODEL,
        {"model_id": model_id, "weights_key": weights_key, "strategy": config.strategy},
    )
    best = result.history[result.best_epoch - 1] if result.best_epoch else {}
    metadata = {
        "model_id": model_id,
        "path": dg.MetadataValue.path(str(media_store.local_path(weights_key))),
        "strategy": config.strategy,
        "classes": dg.MetadataValue.json(list(classes)),
        "arch": config.arch,
        "input_size": config.input_size,
        "freeze_backbone": train_config.freeze_backbone,
        "backbone": config.backbone,
        "device": device,
        "training_frames": len(train_items),
        "training_patients": int(train_items["patient_id"].nunique()),
        "training_videos": dg.MetadataValue.json(result.trained_on),
        "validation_videos": dg.MetadataValue.json(result.validated_on),
        **{k: v for k, v in held_out.items() if v is not None},
        "held_out": dg.MetadataValue.json(result.held_out),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "seconds_per_image": result.seconds_per_image,
        "training_curve": markdown_image(training_curve_png(result.history), "training curve"),
        **recorded,
    }
    if best and not math.isnan(best.get("val_accuracy", math.nan)):
        metadata["val_accuracy"] = float(best["val_accuracy"])
    if result.confusion_matrix:
        metadata["confusion_matrix"] = markdown_image(
            confusion_matrix_png(result.confusion_matrix, classes, "validation confusion matrix"),
            "confusion matrix",
        )
    yield dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(model_id))
    reloaded = load_model(media_store.fetch(weights_key))
    yield dg.AssetCheckResult(
        check_name="weights_match_sidecar",
        passed=reloaded.model_id == model_id and reloaded.spec == spec,
        metadata={"model_id": reloaded.model_id},
    )
    yield _beats_majority(held_out, len(val_items))


def _beats_majority(held_out: dict, validation_frames: int) -> dg.AssetCheckResult:
    accuracy, baseline = held_out["held_out_patient_accuracy"], held_out["majority_baseline"]
    if accuracy is None or baseline is None:
        description = (
            f"not measured: {held_out['held_out_patients']} held-out patient(s) and"
            f" {validation_frames} validation frame(s); too few patients to hold one out while"
            " every class stays in training (or a multilabel model)"
        )
        passed = False
    else:
        passed = accuracy > baseline
        description = (
            f"frame accuracy {accuracy:.3f} on {held_out['held_out_patients']} patient(s) it"
            f" never saw vs {baseline:.3f} for the majority class"
        )
    return dg.AssetCheckResult(
        check_name="beats_majority_on_held_out_patients",
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            k: v
            for k, v in {**held_out, "validation_frames": validation_frames}.items()
            if v is not None
        },
        description=description,
    )


def read_current_model(store: MediaStore) -> dict:
    """``models/label_model.json``: ``model_id``, ``weights_key``, ``strategy``."""
    if not store.exists(keys.CURRENT_MODEL):
        raise dg.Failure("no label model yet: materialize label_model first")
    return read_json(store, keys.CURRENT_MODEL)


# --- predictions ------------------------------------------------------------------------------


def _current_model_id(store: MediaStore, member_id: str) -> str | None:
    return (
        read_json(store, keys.CURRENT_MODEL)["model_id"]
        if store.exists(keys.CURRENT_MODEL)
        else None
    )


@dg.asset(
    partitions_def=batch_partitions,
    group_name="predict",
    kinds={"pytorch", "parquet"},
    pool="gpu",
    op_tags=GPU_OP_TAGS,
    deps=["label_model", "video_frames"],
    code_version="4",
    description="The current label model's predictions for every live frame of every video of"
    " the batch: one row per frame and class, value = the predicted class, float_value = its"
    " calibrated probability, source 'model:<model_id>', unreviewed; and their trust flags"
    " (tables/prediction_flags/<video_id>.parquet: low confidence below the model's"
    " min_confidence, out-of-distribution video by its distance to the training videos), which"
    " keep them out of exports unless export.include_untrusted_predictions. The metadata shows"
    " the model's accuracy on patients it never saw. Runs on CUDA when present, else the CPU.",
)
@per_member(
    "video",
    section="predict.predicted_labels",
    upstream=("video_frames",),
    version_of=_current_model_id,
)
def predicted_labels(
    context: dg.AssetExecutionContext,
    member_id: str,
    options: PredictedLabelsSettings,
    config: PredictedLabelsConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    torch_device: TorchDeviceResource,
    settings: SettingsResource,
):
    # torch loads here, not when the definitions load (about 6 s per process)
    from medvid.predict.infer import PREDICTION_FLAGS_SCHEMA, predict_frames, predict_with_flags
    from medvid.predict.model import load_model
    from medvid.predict.trust import TrustReference

    current = read_current_model(media_store)
    loaded = load_model(media_store.fetch(current["weights_key"]))
    trained = {**loaded.metadata.get("trained_on", {}), **loaded.metadata.get("validated_on", {})}
    key = table_key(Tables.PREDICTED_LABELS, member_id)
    flags_key = table_key(Tables.PREDICTION_FLAGS, member_id)
    model_accuracy = {
        "model_id": loaded.model_id,
        "held_out_patient_accuracy": loaded.metadata.get("held_out_patient_accuracy"),
        "majority_baseline": loaded.metadata.get("majority_baseline"),
    }
    if current["strategy"] == "blitz" and options.skip_training_videos and member_id in trained:
        write_table(media_store, key, empty_frame_labels())
        write_table(media_store, flags_key, PREDICTION_FLAGS_SCHEMA.empty_table())
        return MemberResult(metadata={"predicted": "no: reviewed video it was trained on"})
    manifest = live_manifest(media_store, [member_id])
    device = torch_device.resolve()
    started = time.perf_counter()
    common = {
        "batch_size": options.batch_size,
        "device": device,
        "smoothing_window": options.smoothing_window,
        "model_id": loaded.model_id,
        "label_schema": read_label_schema(media_store),
    }
    frames_root = video_frames_root(media_store, member_id)
    if loaded.spec.multilabel:  # the trust checks are for single-label models
        table = predict_frames(loaded.model, loaded.spec, frames_root, manifest, **common)
        flags = PREDICTION_FLAGS_SCHEMA.empty_table()
    else:
        stored = loaded.metadata.get("trust")  # absent in models from before trust flags
        trust = TrustReference.from_dict(stored) if stored else None
        if trust is not None and options.min_confidence is not None:
            trust = dataclasses.replace(trust, min_confidence=options.min_confidence)
        table, flags, _ = predict_with_flags(
            loaded.model, loaded.spec, frames_root, manifest, trust, **common
        )
    seconds = time.perf_counter() - started
    write_table(media_store, key, table)
    write_table(media_store, flags_key, flags)
    df = table.select(["label_name", "value", "confidence"]).to_pandas()
    chosen = df[df["value"]]
    flagged = flags.select(["low_confidence", "out_of_distribution", "trusted"]).to_pandas()
    return MemberResult(
        metadata={
            **{k: v for k, v in model_accuracy.items() if v is not None},
            "device": device,
            "frames": len(manifest),
            "frames_per_second": round(len(manifest) / seconds, 1) if seconds else 0.0,
            "mean_confidence": round(float(chosen["confidence"].mean()), 3) if len(chosen) else 0.0,
            "flagged_low_confidence": int(flagged["low_confidence"].sum()),
            "flagged_out_of_distribution": int(flagged["out_of_distribution"].sum()),
            "trusted_frames": int(flagged["trusted"].sum()),
        }
    )


@dg.asset(
    partitions_def=batch_partitions,
    group_name="predict",
    kinds={"python", "parquet"},
    pool="gpu",
    op_tags=GPU_OP_TAGS,
    deps=["video_frames"],
    code_version="3",
    description="Labels from a user's model callable (package.module:function) for every live"
    " frame of every video of the batch: one row per frame for the label it returns,"
    " float_value = confidence, source 'model:<model_id>', unreviewed.",
)
@per_member("video", section="predict.custom_model", upstream=("video_frames",))
def custom_model_labels(
    context: dg.AssetExecutionContext,
    member_id: str,
    options: CustomModelSettings,
    config: CustomModelConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    settings: SettingsResource,
):
    # torch loads here, not when the definitions load (about 6 s per process)
    from medvid.predict.strategies import load_custom_callable, predict_with_callable

    if not options.function:
        raise dg.Failure("no custom model: set predict.custom_model.function (package.module:fn)")
    manifest = live_manifest(media_store, [member_id])
    try:
        function = load_custom_callable(options.function)
        table = predict_with_callable(
            function,
            video_frames_root(media_store, member_id),
            manifest,
            read_label_schema(media_store),
            model_id=options.model_id or None,
            batch_size=options.batch_size,
        )
    except MedvidInputError as error:  # the model is at fault, not the video: fail the run
        raise _failure(error, f"custom model {options.function} failed") from None
    write_table(media_store, table_key(Tables.CUSTOM_MODEL_LABELS, member_id), table)
    df = table.select(["label_name", "source", "confidence"]).to_pandas()
    return MemberResult(
        metadata={
            "source": str(df["source"].iloc[0]) if len(df) else "",
            "frames": len(manifest),
            "mean_confidence": round(float(df["confidence"].mean()), 3) if len(df) else 0.0,
        }
    )


# --- evaluation on new patients ---------------------------------------------------------------


def _without_timings(value):
    """The report with its wall-clock fields removed, so a rerun writes the same bytes."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _headline(report: dict) -> dict:
    """The row the metadata leads with: blitz label on every training video with the first
    backbone (the label model's own setting), else the row with the most frames labelled."""
    rows = report["results"]
    full = [r for r in rows if r["method"] == "blitz" and r["budget"].startswith("100%")]
    return (full or sorted(rows, key=lambda r: -r["labelled_fraction"]))[0]


@dg.asset(
    group_name="predict",
    kinds={"pytorch", "json"},
    pool="gpu",
    op_tags=GPU_OP_TAGS,
    deps=["frame_labels", "segment_labels", "labelbox_labels", "cold_label_answers"],
    code_version="1",
    description="How well label prediction works on patients it never saw, for this project's"
    " reviewed labels (any labels, any videos): grouped k-fold by patient (patients sheet and"
    " DICOM study pseudonyms; a video without a patient is its own), stratified by class; cold"
    " label with K frames per training video and blitz label with a share of the training"
    " videos, against the majority-class baseline (medvid.predict.evaluate). Writes"
    " reports/label_prediction_evaluation.json and .md. Not part of the default run:"
    " evaluation_job.",
)
def label_prediction_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfigOverrides,  # type: ignore[valid-type]
    media_store: MediaStore,
    torch_device: TorchDeviceResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    # torch loads here, not when the definitions load (about 6 s per process)
    from medvid.predict.evaluate import (
        EvaluationConfig,
        evaluate_by_patient,
        evaluation_markdown,
    )

    record_worker(context)
    options, recorded = resolve_settings(context, settings, "predict.evaluation", config)
    video_ids = videos_with_frames(media_store)
    manifest = live_manifest(media_store, video_ids)
    labels = reviewed_training_labels(media_store, video_ids)
    evaluation = EvaluationConfig(
        folds=options.folds,
        seeds=tuple(options.seeds),
        k_values=tuple(options.k_values),
        selection_methods=tuple(options.selection_methods),
        blitz_fractions=tuple(options.blitz_fractions),
        blitz_skip=options.blitz_skip,
        arch=options.arch,
        input_size=options.input_size,
        backbones=tuple(options.backbones),
        smoothing_window=options.smoothing_window,
        device=torch_device.resolve(),
    )
    try:
        report = evaluate_by_patient(
            manifest,
            media_store.fetch_prefix(keys.FRAMES),
            labels,
            patients_of_videos(media_store, video_ids),
            evaluation,
            log=context.log.info,
        )
    except MedvidInputError as error:
        raise dg.Failure(
            description=f"cannot evaluate label prediction by patient: {error.reason}"
            f" (each of the {options.folds} test folds needs patients of its own: label more"
            " patients or lower predict.evaluation.folds)",
            metadata={"reason": error.reason, "folds": options.folds},
        ) from None
    markdown = evaluation_markdown(report)
    write_json(media_store, f"{keys.EVALUATION_REPORT}.json", _without_timings(report))
    write_bytes_atomic(
        media_store.local_path(f"{keys.EVALUATION_REPORT}.md"), markdown.encode("utf-8")
    )
    media_store.publish(f"{keys.EVALUATION_REPORT}.md")
    row, baseline = _headline(report), report["baseline"]
    return dg.MaterializeResult(
        metadata={
            "patients": report["patients"],
            "videos": report["videos"],
            "frames": report["frames"],
            "folds": options.folds,
            "setting": f"{row['method']} {row['budget']}, backbone {row['backbone']}",
            "frame_accuracy": row["frame_accuracy"],
            "macro_f1": row["macro_f1"],
            "clip_accuracy": row["clip_accuracy"],
            "majority_baseline": baseline["frame_accuracy"],
            "majority_baseline_macro_f1": baseline["macro_f1"],
            "confusion_matrix": markdown_image(
                confusion_matrix_png(
                    row["confusion_matrix"], report["classes"], "new patients, pooled folds"
                ),
                "confusion matrix",
            ),
            "labelling_cost_curve": dg.MetadataValue.md(markdown),
            "labelling_cost_plot": markdown_image(
                labelling_cost_curve_png(report["results"], baseline["frame_accuracy"]),
                "labelling-cost curve",
            ),
            "report": dg.MetadataValue.path(
                str(media_store.local_path(f"{keys.EVALUATION_REPORT}.json"))
            ),
            "seconds": round(report["seconds"], 1),
            **recorded,
        }
    )
