"""The probe orientation of every de-identified still (and OCR-read frame) whose burned-in text
names none, predicted from the orientations OCR read on the others (weak labels).

``probe_orientation`` trains the label-model engine on the weak labels, held out by study
(:mod:`medvid.cleaning.orientation`), writes the model versioned (``models/orientation/
<model_id>.pt`` + ``.json``, never overwritten; ``models/orientation.json`` records the last
run, trained or not and why) and its predictions for the images without orientation text
(``tables/orientation_predictions.parquet``, label set ``model:<model_id>``). Text that was
read is never overwritten. It runs in ``export_job`` before ``training_dataset``, which reads
its table. Torch is imported only when there are weak labels enough to train. The settings
come from the home config's ``cleaning.orientation`` section.
"""

import dataclasses

import dagster as dg
import pyarrow as pa

from medvid.catalog import keys
from medvid.catalog.keys import Tables, table_key
from medvid.cleaning.orientation import (
    OrientationConfig,
    empty_predictions,
    items_to_predict,
    not_trainable_reason,
    predict_orientation,
    stored_items,
    train_orientation_model,
)
from medvid.cleaning.store import cleanable_videos
from medvid.dicom.registration import registered_studies
from medvid.export.gate import exportable_studies
from medvid.intake.ledger import ledger_entries
from medvid.settings import OrientationSettings
from medvid.store import write_json, write_table
from medvid_assets.executors import GPU_OP_TAGS
from medvid_assets.policy import SettingsResource, resolve_settings, settings_config, table_preview
from medvid_assets.runs import record_worker
from medvid_resources import MediaStore
from medvid_resources.torch_device import TorchDeviceResource

ProbeOrientationConfig = settings_config(OrientationSettings, "ProbeOrientationConfig")

BEATS_MAJORITY = "beats_majority_on_held_out_studies"


@dg.asset(
    group_name="cleaning",
    kinds={"pytorch", "parquet"},
    pool="gpu",
    op_tags=GPU_OP_TAGS,
    deps=["dicom_images", "frame_ocr_text"],
    code_version="1",
    check_specs=[
        dg.AssetCheckSpec(
            BEATS_MAJORITY,
            asset="probe_orientation",
            description="The orientation model's accuracy on studies it never saw (grouped"
            " k-fold by study, out of fold) is above the majority class on the same images."
            " Without it the export leaves its predictions out (unless"
            " export.include_untrusted_predictions).",
        )
    ],
    description="Probe orientation (TRANS, LONG, SAG, RAD, ARAD, OBL) of every de-identified"
    " still, and of every frame OCR read (frame_ocr_text), whose text named none: a head on"
    " the frozen small ConvNet (cleaning.orientation) fitted on the orientations OCR read on"
    " the other images, accuracy held out by study beside the majority class. Versioned:"
    " models/orientation/<model_id>.pt + .json; table orientation_predictions (item, kind,"
    " orientation, confidence, label set model:<model_id>). Text that was read is never"
    " overwritten. Too few weak labels: not trained, nothing predicted, the reason in the"
    " metadata. Runs on CUDA when present, else the CPU.",
)
def probe_orientation(
    context: dg.AssetExecutionContext,
    config: ProbeOrientationConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    torch_device: TorchDeviceResource,
    settings: SettingsResource,
):
    record_worker(context)
    options, recorded = resolve_settings(context, settings, "cleaning.orientation", config)
    studies = exportable_studies(media_store, registered_studies(media_store))
    videos = (
        cleanable_videos(
            media_store, [e.content_id for e in ledger_entries(media_store, kind="video")]
        )
        if options.frames
        else []
    )
    root, items = stored_items(media_store, studies, videos)
    orientation_config = OrientationConfig(
        arch=options.arch,
        input_size=options.input_size,
        folds=options.folds,
        min_studies=max(options.min_studies, options.folds),
        min_per_class=options.min_per_class,
        seed=options.seed,
        batch_size=options.batch_size,
        num_threads=torch_device.cpu_threads or None,
    )
    # too few weak labels: no model, and no torch import (the usual case without such text)
    device = None
    if not not_trainable_reason(items, orientation_config):
        device = torch_device.resolve()
        orientation_config = dataclasses.replace(orientation_config, device=device)
    model = train_orientation_model(root, items, orientation_config)
    weights_key = None
    predictions: pa.Table = empty_predictions()
    if model.trained:
        from medvid.predict.model import save_model  # noqa: PLC0415 (torch: only when it runs)

        weights_key = keys.orientation_model_key(model.model_id)
        sidecar = {**model.summary(), "settings": options.model_dump(), **model.metadata}
        save_model(model.model, model.spec, media_store.local_path(weights_key), sidecar)
        media_store.publish(weights_key)
        media_store.publish(weights_key.removesuffix(".pt") + ".json")
        predictions = predict_orientation(
            root,
            items,
            model.model,
            model.spec,
            model.model_id,
            model.beats_majority,
            batch_size=options.batch_size,
            device=device,
        )
    else:
        context.log.warning(f"probe orientation not trained: {model.reason}")
    write_table(media_store, table_key(Tables.ORIENTATION_PREDICTIONS), predictions)
    write_json(
        media_store,
        keys.CURRENT_ORIENTATION_MODEL,
        {**model.summary(), "weights_key": weights_key},
    )
    predicted = predictions.column("orientation").to_pylist()
    yield dg.MaterializeResult(
        metadata={
            "trained": model.trained,
            **({"not_trained_because": model.reason} if model.reason else {}),
            **({"model_id": model.model_id} if model.model_id else {}),
            **({"device": device} if device else {}),
            "images": int((items["kind"] == "image").sum()),
            "frames": int((items["kind"] == "frame").sum()),
            "weak_labels": dg.MetadataValue.json(model.weak_labels),
            "studies_with_weak_labels": model.studies,
            **{
                k: v
                for k, v in {
                    "held_out_study_accuracy": model.held_out_accuracy,
                    "majority_baseline": model.majority_baseline,
                }.items()
                if v is not None
            },
            "without_orientation_text": len(items_to_predict(items)) if len(items) else 0,
            "predicted": len(predicted),
            "predicted_per_orientation": dg.MetadataValue.json(
                {name: predicted.count(name) for name in sorted(set(predicted))}
            ),
            "predictions": table_preview(
                predictions, ["item_id", "kind", "orientation", "confidence"], empty="(none)"
            ),
            **recorded,
        },
        data_version=dg.DataVersion(model.model_id or "not-trained"),
    )
    yield _beats_majority(model)


def _beats_majority(model) -> dg.AssetCheckResult:
    if not model.trained:
        description = f"not trained: {model.reason}"
    elif model.held_out_accuracy is None or model.majority_baseline is None:
        description = "not measured: no held-out studies"
    else:
        description = (
            f"accuracy {model.held_out_accuracy:.3f} on {model.studies} studies held out"
            f" ({model.folds} folds) vs {model.majority_baseline:.3f} for the majority class"
        )
    return dg.AssetCheckResult(
        check_name=BEATS_MAJORITY,
        passed=model.beats_majority,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            k: v
            for k, v in {
                "held_out_study_accuracy": model.held_out_accuracy,
                "majority_baseline": model.majority_baseline,
                "studies": model.studies,
                "folds": model.folds,
            }.items()
            if v is not None
        },
        description=description,
    )
