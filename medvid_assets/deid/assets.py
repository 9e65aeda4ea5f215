"""The de-identification stage: burned-in text blacked out, and residual checks that block an
export when anything identifying is left.

Headers are de-identified where they are read (the DICOM stage's ``dicom_instances``, with its
blocking ``header_deidentified`` check). Pixels, here:

- ``video_redaction_plan`` (per video): which text boxes to black out in every frame (text
  outside the imaging field of view, text matching PHI); applied by ``video_frames`` while it
  writes the frames, whose blocking ``no_residual_phi`` check reads written frames again.
- ``dicom_images`` (per study): every single-frame DICOM image redacted the same way and written
  as a de-identified PNG, with its blocking ``no_residual_phi`` check.

Every check writes a status record (:mod:`medvid.deid.store`) that the export and every upload
read before taking anything.
"""

import dagster as dg
import pyarrow as pa

from medvid.catalog import keys
from medvid.catalog.keys import Tables, table_key
from medvid.catalog.schemas import DICOM_IMAGES_SCHEMA
from medvid.deid import detect_field_of_view, redact_pixels, residual_phi
from medvid.deid.store import (
    informative,
    load_phi,
    phi_from_dict,
    union,
    write_deid_status,
)
from medvid.dicom.registration import read_study_index, study_digest
from medvid.images import read_rgb, write_png
from medvid.intake.ledger import read_ledger_entry
from medvid.ocr import lines_text
from medvid.ocr.tables import boxes_of, parsed_fields, read_ocr_rows
from medvid.settings import RedactionSettings
from medvid.store import read_json, read_table, write_json, write_table
from medvid_assets.runs import record_worker
from medvid_assets.partitions import study_partitions, video_partitions
from medvid_assets.policy import (
    SettingsResource,
    deid_check_result,
    per_file,
    resolve_settings,
    settings_config,
    table_preview,
)
from medvid_resources import MediaStore
from medvid_resources.ocr import OcrEngineResource

RedactionConfig = settings_config(RedactionSettings)
Box = tuple[int, int, int, int]


@dg.asset(
    partitions_def=video_partitions,
    group_name="deid",
    kinds={"json"},
    deps=["video_ocr_text"],
    code_version="2",
    description="Which pixels to black out in every frame of the video: text boxes outside the"
    " imaging field of view (the DICOM ultrasound region for cine loops, else the detected"
    " scope/ultrasound image) and text matching PHI (header values, dates, times, names, ids)."
    " Holds rectangles and reason counts only, never the text.",
)
@per_file
def video_redaction_plan(
    context: dg.AssetExecutionContext,
    config: RedactionConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    settings: SettingsResource,
):
    record_worker(context)
    redaction, recorded = resolve_settings(context, settings, "redaction", config)
    video_id = context.partition_key
    origin = read_ledger_entry(media_store, video_id).origin
    phi = load_phi(media_store, origin)
    rows = read_ocr_rows(media_store, Tables.VIDEO_OCR_TEXT, video_id)
    frames = read_json(media_store, f"{keys.ocr_frames_prefix(video_id)}/frames.json")["frames"]
    images = [read_rgb(media_store.fetch(frame["key"])) for frame in frames]
    height, width = images[0].shape[:2] if images else (0, 0)
    region: Box | None = None
    source = "none"
    if origin and origin.get("keep_region"):
        region = informative(tuple(origin["keep_region"]), width, height)
        source = "dicom" if region else "none"
    if region is None and redaction.detect_field_of_view:
        region = union([found for image in images if (found := detect_field_of_view(image))])
        source = "detected" if region else "none"
    masks: list[Box] = []
    reasons: dict[str, int] = {}
    kept = 0
    for frame, image in zip(frames, images, strict=True):
        boxes = boxes_of([r for r in rows if r["frame_number"] == frame["frame_number"]])
        _, decisions = redact_pixels(image, boxes, keep_region=region, phi=phi, pad=redaction.pad)
        for decision in decisions:
            if not decision.masked:
                kept += 1
                continue
            if decision.mask_rect not in masks:
                masks.append(decision.mask_rect)
            for reason in decision.reasons:
                reasons[reason] = reasons.get(reason, 0) + 1
    plan = {
        "video_id": video_id,
        "keep_region": list(region) if region else None,
        "keep_region_source": source,
        "mask_boxes": [list(b) for b in masks],
        "masked_reasons": reasons,
        "kept_boxes": kept,
        "blank_outside": bool(redaction.blank_outside_field_of_view and region),
        "frames_read": len(frames),
    }
    write_json(media_store, keys.redaction_plan_key(video_id), plan)
    return dg.MaterializeResult(
        metadata={
            "status": "ok",
            "masked_boxes": len(masks),
            "kept_text_boxes": kept,
            "field_of_view": str(region) if region else "(whole frame)",
            "field_of_view_source": source,
            "masked_reasons": dg.MetadataValue.json(reasons),
            **recorded,
        }
    )


@dg.asset(
    partitions_def=study_partitions,
    group_name="deid",
    kinds={"png", "parquet"},
    deps=["dicom_ocr_text", "dicom_instances"],
    code_version="2",
    check_specs=[
        dg.AssetCheckSpec(
            "no_residual_phi",
            asset="dicom_images",
            blocking=True,
            description="OCR of every redacted image finds no PHI (names, ids, dates of the"
            " header or by pattern); any finding keeps the study out of exports and uploads.",
        )
    ],
    description="Every single-frame image of the study with burned-in PHI blacked out (text"
    " outside the ultrasound region, text matching the header's PHI or PHI patterns), as a"
    " de-identified PNG, with the clinical annotation fields read from the text that stays.",
)
@per_file
def dicom_images(
    context: dg.AssetExecutionContext,
    config: RedactionConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    ocr_engine: OcrEngineResource,
    settings: SettingsResource,
):
    record_worker(context)
    redaction, recorded = resolve_settings(context, settings, "redaction", config)
    study = context.partition_key
    digest = study_digest(list(read_study_index(media_store, study)))
    engine = ocr_engine.engine()
    phi_by_instance = read_json(media_store, keys.dicom_phi_key(study))
    ocr = read_ocr_rows(media_store, Tables.DICOM_OCR_TEXT, study)
    pixels = read_table(media_store, table_key(Tables.DICOM_PIXELS, study)).to_pylist()
    rows, findings = [], []
    for image in (p for p in pixels if p["kind"] == "image"):
        instance_id = image["instance_id"]
        rgb = read_rgb(media_store.fetch(image["pixels_key"]))
        region: Box | None = None
        source = None
        if image["region_x0"] is not None:
            header_region = (
                image["region_x0"],
                image["region_y0"],
                image["region_x1"],
                image["region_y1"],
            )
            if region := informative(header_region, rgb.shape[1], rgb.shape[0]):
                source = "dicom"
        if (
            region is None
            and redaction.detect_field_of_view
            and (found := detect_field_of_view(rgb))
        ):
            region, source = found, "detected"
        phi = (
            phi_from_dict(phi_by_instance[instance_id]) if instance_id in phi_by_instance else None
        )
        boxes = boxes_of([r for r in ocr if r["source_id"] == instance_id])
        redacted, decisions = redact_pixels(
            rgb,
            boxes,
            keep_region=region,
            phi=phi,
            pad=redaction.pad,
            blank_outside=redaction.blank_outside_field_of_view,
        )
        relative = keys.dicom_image_relative_path(study, instance_id)
        write_png(redacted, media_store.local_path(f"{keys.DICOM_IMAGES}/{relative}"))
        findings += [f"{instance_id}: {f}" for f in residual_phi(redacted, engine, phi)]
        kept = [d.box for d in decisions if not d.masked]
        rows.append(
            {
                "study_key": study,
                "instance_id": instance_id,
                "image_relative_path": relative,
                "width": rgb.shape[1],
                "height": rgb.shape[0],
                "region_x0": region[0] if region else None,
                "region_y0": region[1] if region else None,
                "region_x1": region[2] if region else None,
                "region_y1": region[3] if region else None,
                "region_source": source,
                "masked_boxes": sum(d.masked for d in decisions),
                "kept_text_boxes": len(kept),
                **parsed_fields(lines_text(kept)),
            }
        )
    media_store.publish_prefix(f"{keys.DICOM_IMAGES}/study_{study}")
    table = pa.Table.from_pylist(rows, schema=DICOM_IMAGES_SCHEMA)
    write_table(media_store, table_key(Tables.DICOM_IMAGES, study), table)
    write_deid_status(
        media_store,
        "study_pixels",
        study,
        passed=not findings,
        checked=len(rows),
        findings=findings,
    )
    yield dg.MaterializeResult(
        metadata={
            "images": len(rows),
            "instances_digest": digest,
            "masked_boxes": sum(r["masked_boxes"] for r in rows),
            "kept_text_boxes": sum(r["kept_text_boxes"] for r in rows),
            "fields": table_preview(
                table,
                [
                    "instance_id",
                    "laterality",
                    "clock_position",
                    "orientation",
                    "measurements",
                    "depth_cm",
                    "device_model",
                ],
                empty="(no single-frame image)",
            ),
            **recorded,
        }
    )
    yield deid_check_result(
        "no_residual_phi",
        findings,
        checked=len(rows),
        what="images",
        passed_text="no PHI readable in the redacted images",
    )
