"""The de-identification stage: burned-in text blacked out, and residual checks that block an
export when anything identifying is left.

Headers are de-identified where they are read (:func:`medvid_assets.dicom.dicom_instances`,
with its blocking ``header_deidentified`` check). Pixels, here:

- ``video_redaction_plan`` (per video): from the OCR of a few frames, which text boxes to black
  out in every frame (text outside the imaging field of view, and text matching PHI: the DICOM
  header's values for cine loops, date/time/name/id patterns for everything); applied by
  ``video_frames`` while it writes the frames; ``video_frames`` then OCRs some written frames
  again in its blocking ``no_residual_phi`` check.
- ``dicom_images`` (per study): every single-frame DICOM image redacted the same way and written
  as a de-identified PNG, with its blocking ``no_residual_phi`` check.

Every check also writes a status record (:func:`medvid_assets.storage.write_deid_status`);
:func:`deidentified` reads them and is what the export and uploads ask before taking anything.
"""

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
from dagster import AssetExecutionContext

from medvid.deid import PhiValues, detect_field_of_view, redact_pixels, residual_phi
from medvid.frames.extract import Redaction
from medvid.images import read_rgb, write_png
from medvid.ocr import OcrEngine, lines_text
from medvid_assets.dicom import dicom_instances, phi_key
from medvid_assets.landing import read_ledger_entry
from medvid_assets.metadata import deid_check_result, table_preview
from medvid_assets.ocr import (
    boxes_of,
    dicom_ocr_text,
    ocr_frame_keys,
    parsed_fields,
    read_ocr_rows,
    video_ocr_text,
)
from medvid_assets.partitions import study_partitions, video_partitions
from medvid_assets.quarantine import skip_if_quarantined
from medvid_assets.storage import (
    deid_passed,
    read_json,
    read_table,
    table_key,
    write_deid_status,
    write_json,
    write_table,
)
from medvid_resources import MediaStore
from medvid_resources.ocr import OcrEngineResource

DICOM_IMAGES_PREFIX = "media/dicom_images"
PLAN_PREFIX = "tables/redaction_plans"

Box = tuple[int, int, int, int]


class RedactionConfig(dg.Config):
    """How burned-in text is blacked out.

    ``pad``: pixels added around each OCR box. ``detect_field_of_view``: when the source gives
    no imaging region (videos; DICOM without SequenceOfUltrasoundRegions), find the scope or
    ultrasound image as the largest lit area of the frame (text outside it is masked).
    ``blank_outside_field_of_view``: also black out every pixel outside the region (off by
    default: a detected region can be smaller than the image, and only text needs to go).
    """

    pad: int = 2
    detect_field_of_view: bool = True
    blank_outside_field_of_view: bool = False


def load_phi(store: MediaStore, origin: dict | None) -> PhiValues | None:
    """Header PHI values behind a DICOM-derived video (None for landing-zone videos)."""
    if not origin or not origin.get("phi_key"):
        return None
    values = read_json(store, origin["phi_key"]).get(origin["instance_id"])
    return phi_from_dict(values) if values else None


def phi_from_dict(values: dict) -> PhiValues:
    return PhiValues(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _union(boxes: list[Box]) -> Box | None:
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


#: A header region covering this much of the frame says nothing about where the image is (some
#: devices declare the whole screen): the field of view is then detected instead.
UNINFORMATIVE_REGION_FRACTION = 0.98


def informative(region: Box | None, width: int, height: int) -> Box | None:
    """``region`` unless it is missing or covers nearly the whole ``width`` x ``height`` frame."""
    if region is None:
        return None
    x0, y0, x1, y1 = region
    covered = max(0, x1 - x0) * max(0, y1 - y0)
    return None if covered >= UNINFORMATIVE_REGION_FRACTION * width * height else region


def plan_key(video_id: str) -> str:
    return f"{PLAN_PREFIX}/{video_id}.json"


def read_redaction(store: MediaStore, video_id: str) -> Redaction:
    """The redaction ``video_frames`` applies to every frame of a video."""
    plan = read_json(store, plan_key(video_id))
    region = plan["keep_region"]
    return Redaction(
        boxes=tuple(tuple(b) for b in plan["mask_boxes"]),
        keep_region=tuple(region) if region else None,
        blank_outside=plan["blank_outside"],
    )


@dg.asset(
    partitions_def=video_partitions,
    group_name="deid",
    kinds={"json"},
    deps=[video_ocr_text],
    description="Which pixels to black out in every frame of the video: text boxes outside the"
    " imaging field of view (the DICOM ultrasound region for cine loops, else the detected"
    " scope/ultrasound image) and text matching PHI (header values, dates, times, names, ids)."
    " Holds rectangles and reason counts only, never the text.",
)
def video_redaction_plan(
    context: AssetExecutionContext, config: RedactionConfig, media_store: MediaStore
) -> dg.MaterializeResult:
    if skipped := skip_if_quarantined(context, media_store):
        return skipped
    video_id = context.partition_key
    origin = read_ledger_entry(media_store, video_id).origin
    phi = load_phi(media_store, origin)
    rows = read_ocr_rows(media_store, "video_ocr_text", video_id)
    frames = ocr_frame_keys(media_store, video_id)
    images = [read_rgb(media_store.fetch(frame["key"])) for frame in frames]
    height, width = images[0].shape[:2] if images else (0, 0)
    region: Box | None = None
    source = "none"
    if origin and origin.get("keep_region"):
        region = informative(tuple(origin["keep_region"]), width, height)
        source = "dicom" if region else "none"
    if region is None and config.detect_field_of_view:
        region = _union([found for image in images if (found := detect_field_of_view(image))])
        source = "detected" if region else "none"
    masks: list[Box] = []
    reasons: dict[str, int] = {}
    kept = 0
    for frame, image in zip(frames, images, strict=True):
        boxes = boxes_of([r for r in rows if r["frame_number"] == frame["frame_number"]])
        _, decisions = redact_pixels(image, boxes, keep_region=region, phi=phi, pad=config.pad)
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
        "blank_outside": bool(config.blank_outside_field_of_view and region),
        "frames_read": len(frames),
    }
    write_json(media_store, plan_key(video_id), plan)
    return dg.MaterializeResult(
        metadata={
            "status": "ok",
            "masked_boxes": len(masks),
            "kept_text_boxes": kept,
            "field_of_view": str(region) if region else "(whole frame)",
            "field_of_view_source": source,
            "masked_reasons": dg.MetadataValue.json(reasons),
        }
    )


class ResidualCheckConfig(dg.Config):
    """How many written frames the residual check reads again (evenly spaced, live frames
    first). Each costs one OCR pass (~0.1-1 s on a CPU)."""

    residual_frames: int = 3


def residual_check_video(
    store: MediaStore,
    engine: OcrEngine,
    video_id: str,
    manifest: pd.DataFrame,
    frames_root,
    n_frames: int,
) -> dg.AssetCheckResult:
    """OCR ``n_frames`` written frames of a video again; any PHI hit fails (blocking) and the
    video is not exported. Writes the ``video`` de-identification status record."""
    origin = read_ledger_entry(store, video_id).origin
    phi = load_phi(store, origin)
    live = manifest[~manifest["is_dead"]] if len(manifest) else manifest
    pool = live if len(live) else manifest
    picks = (
        np.unique(np.linspace(0, len(pool) - 1, min(n_frames, len(pool))).round().astype(int))
        if len(pool)
        else []
    )
    findings: list[str] = []
    for index in picks:
        frame = pool.iloc[int(index)]
        image = read_rgb(frames_root / frame["frame_relative_path"])
        findings += [
            f"frame {frame['frame_number']}: {f}" for f in residual_phi(image, engine, phi)
        ]
    write_deid_status(
        store, "video", video_id, passed=not findings, checked=len(picks), findings=findings
    )
    return deid_check_result(
        "no_residual_phi",
        findings,
        checked=len(picks),
        what="frames",
        passed_text="no PHI readable in the written frames",
    )


def video_deidentified(store: MediaStore, video_id: str) -> bool:
    """A video may leave medvid: its frames passed the residual check and, for a DICOM cine
    loop, its study's header check passed too."""
    if not deid_passed(store, "video", video_id):
        return False
    origin = read_ledger_entry(store, video_id).origin
    if origin and origin.get("study_key"):
        return deid_passed(store, "study_header", origin["study_key"])
    return True


def study_deidentified(store: MediaStore, study: str) -> bool:
    """A study's images may leave medvid: header and pixel checks both passed."""
    return deid_passed(store, "study_header", study) and deid_passed(store, "study_pixels", study)


DICOM_IMAGES_SCHEMA = pa.schema(
    [
        ("study_key", pa.string()),
        ("instance_id", pa.string()),
        ("image_relative_path", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("region_x0", pa.int32()),
        ("region_y0", pa.int32()),
        ("region_x1", pa.int32()),
        ("region_y1", pa.int32()),
        ("region_source", pa.string()),
        ("masked_boxes", pa.int32()),
        ("kept_text_boxes", pa.int32()),
        ("laterality", pa.string()),
        ("clock_position", pa.string()),
        ("distance_from_nipple_cm", pa.float64()),
        ("orientation", pa.string()),
        ("measurements", pa.string()),
        ("depth_cm", pa.float64()),
        ("device_model", pa.string()),
    ]
)
"""``dicom_images``: one row per de-identified single-frame image. ``image_relative_path`` is
``study_<study_key>/image_<instance_id>.png`` under ``media/dicom_images/`` (and under the
export's ``images/``). ``region_*`` is the crop box of the imaging region in pixels (x1/y1
exclusive) from SequenceOfUltrasoundRegions (``region_source`` ``dicom``) or detected
(``detected``). The clinical fields are parsed from the text left visible (see
:func:`medvid.ocr.parse_annotation_text`; ``measurements`` JSON ``[[name, value, unit]]``)."""


def image_relative_path(study: str, instance_id: str) -> str:
    return f"study_{study}/image_{instance_id}.png"


@dg.asset(
    partitions_def=study_partitions,
    group_name="deid",
    kinds={"png", "parquet"},
    deps=[dicom_ocr_text, dicom_instances],
    check_specs=[dg.AssetCheckSpec("no_residual_phi", asset="dicom_images", blocking=True)],
    description="Every single-frame image of the study with burned-in PHI blacked out (text"
    " outside the ultrasound region, text matching the header's PHI or PHI patterns), as a"
    " de-identified PNG, with the clinical annotation fields read from the text that stays."
    " Blocking check: OCR of the redacted images finds no PHI.",
)
def dicom_images(
    context: AssetExecutionContext,
    config: RedactionConfig,
    media_store: MediaStore,
    ocr_engine: OcrEngineResource,
):
    study = context.partition_key
    engine = ocr_engine.engine()
    phi_by_instance = read_json(media_store, phi_key(study))
    ocr = read_ocr_rows(media_store, "dicom_ocr_text", study)
    pixels = read_table(media_store, table_key("dicom_pixels", study)).to_pylist()
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
        if region is None and config.detect_field_of_view and (found := detect_field_of_view(rgb)):
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
            pad=config.pad,
            blank_outside=config.blank_outside_field_of_view,
        )
        relative = image_relative_path(study, instance_id)
        write_png(redacted, media_store.local_path(f"{DICOM_IMAGES_PREFIX}/{relative}"))
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
    media_store.publish_prefix(f"{DICOM_IMAGES_PREFIX}/study_{study}")
    table = pa.Table.from_pylist(rows, schema=DICOM_IMAGES_SCHEMA)
    write_table(media_store, table_key("dicom_images", study), table)
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
        }
    )
    yield deid_check_result(
        "no_residual_phi",
        findings,
        checked=len(rows),
        what="images",
        passed_text="no PHI readable in the redacted images",
    )
