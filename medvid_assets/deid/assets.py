"""The de-identification stage: burned-in text found and blacked out, with checks that keep
anything identifying out of exports and uploads.

Headers are de-identified where they are read (the DICOM stage's ``dicom_instances``, with its
``header_deidentified`` check). Pixels, here, member by member of each batch:

- ``video_redaction_plan`` (videos): text detection over the whole video (every written frame
  and at least every 0.25 s, :func:`medvid.deid.scan_video_text`), each piece of text judged by
  the allow-list policy (outside the field of view: masked; inside: kept only when it is all a
  known clinical annotation; unreadable: masked) and masked over the frames it is on screen.
  The plan holds rectangles and frame spans only; the text read stays in the protected zone.
  ``video_frames`` applies it while writing and reads written frames again in its check.
- ``dicom_images`` (studies): every single-frame image redacted by the same policy and written
  as a de-identified PNG, with its ``no_residual_phi`` check.

Every check writes a status record (:mod:`medvid.deid.store`) that the export and every upload
read before taking anything.
"""

import dagster as dg
import pyarrow as pa

from medvid.catalog import keys
from medvid.catalog.keys import Tables, protected_table_key, table_key
from medvid.catalog.schemas import DICOM_IMAGES_SCHEMA, TEXT_TRACKS_SCHEMA
from medvid.deid import TextScanSettings, detect_field_of_view, redact_pixels, scan_video_text
from medvid.deid.residual import residual_text_findings
from medvid.deid.store import informative, load_phi, phi_from_dict, write_deid_status
from medvid.frames.sampling import planned_frame_numbers
from medvid.images import read_rgb, write_png
from medvid.intake.ledger import read_ledger_entry
from medvid.ocr import lines_text
from medvid.ocr.tables import boxes_of, parsed_fields, read_ocr_rows
from medvid.settings import RedactionSettings, TextSettings
from medvid.store import read_json, read_table, write_json, write_table
from medvid.video.store import read_clips
from medvid_assets.partitions import batch_partitions
from medvid_assets.policy import MemberResult, SettingsResource, per_member, settings_config
from medvid_resources import MediaStore
from medvid_resources.ocr import OcrEngineResource

TextConfig = settings_config(TextSettings, "VideoTextConfig")
RedactionConfig = settings_config(RedactionSettings)
Box = tuple[int, int, int, int]


@dg.asset(
    partitions_def=batch_partitions,
    group_name="deid",
    kinds={"json", "parquet"},
    deps=["normalized_videos"],
    code_version="3",
    description="Which pixels to black out in which frames of every video of the batch: text"
    " detected over the whole video (every written frame, at least every 0.25 s, down to 8 px),"
    " masked outside the imaging field of view and inside it unless it is a known clinical"
    " annotation, unreadable text masked, masks spanning the frames the text is on screen."
    " tables/redaction_plans/<video_id>.json holds rectangles and spans only; the text read is"
    " in protected/tables/video_ocr_text/.",
)
@per_member("video", section="text", upstream=("normalized_videos",), also=("frames", "redaction"))
def video_redaction_plan(
    context: dg.AssetExecutionContext,
    member_id: str,
    options: TextSettings,
    config: TextConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    settings: SettingsResource,
    ocr_engine: OcrEngineResource,
):
    home = settings.load()
    redaction = home.redaction
    origin = read_ledger_entry(media_store, member_id).origin
    clips = read_clips(media_store, member_id)
    total = sum(c.frame_count for c in clips)
    planned = planned_frame_numbers(home.frames.sampling(), total, clips[0].fps)
    keep_region: Box | None = None
    if origin and origin.get("keep_region"):
        info = read_table(media_store, table_key(Tables.VIDEO_METADATA, member_id)).to_pylist()[0]
        width, height = info["width"], info["height"]
        keep_region = informative(tuple(origin["keep_region"]), width, height)
    scan = scan_video_text(
        clips,
        detector=ocr_engine.detector(),
        recognizer=ocr_engine.recognizer(),
        settings=TextScanSettings(
            detect_interval_s=options.detect_interval_s,
            min_text_height_px=options.min_text_height_px,
            max_text_height_px=options.max_text_height_px,
            min_confidence=options.min_confidence,
            span_margin=options.span_margin,
            pad=redaction.pad,
        ),
        keep_region=keep_region,
        detect_fov=redaction.detect_field_of_view,
        phi=load_phi(media_store, origin),
        sampled_frames=planned.tolist() if planned is not None else None,
        blank_outside=redaction.blank_outside_field_of_view,
    )
    plan = scan.plan.as_dict()
    write_json(media_store, keys.redaction_plan_key(member_id), plan)
    rows = [{"video_id": member_id, **t.as_row()} for t in scan.tracks]
    write_table(
        media_store,
        protected_table_key(Tables.VIDEO_OCR_TEXT, member_id),
        pa.Table.from_pylist(rows, schema=TEXT_TRACKS_SCHEMA),
    )
    return MemberResult(
        metadata={
            "text_tracks": len(scan.tracks),
            "masked": sum(t.masked for t in scan.tracks),
            "kept": sum(not t.masked for t in scan.tracks),
            "field_of_view": plan.get("keep_region_source") or "none",
            "text_scan_s": round(scan.seconds, 3),
        }
    )


@dg.asset(
    partitions_def=batch_partitions,
    group_name="deid",
    kinds={"png", "parquet"},
    deps=["dicom_ocr_text", "dicom_instances"],
    code_version="3",
    check_specs=[
        dg.AssetCheckSpec(
            "no_residual_phi",
            asset="dicom_images",
            description="Every redacted image read again, enlarged 2x, with rapidocr and"
            " tesseract: no PHI and no readable text beyond allow-listed clinical annotation."
            " A study with findings stays out of exports and uploads.",
        )
    ],
    description="Every single-frame image of the batch's studies with burned-in text redacted"
    " (outside the ultrasound region: masked; inside: kept only when it is a known clinical"
    " annotation; header PHI and PHI patterns: masked), as a de-identified PNG, with the"
    " clinical annotation fields read from the text that stays.",
)
@per_member(
    "study", section="redaction", upstream=("dicom_ocr_text", "dicom_instances", "dicom_pixels")
)
def dicom_images(
    context: dg.AssetExecutionContext,
    member_id: str,
    options: RedactionSettings,
    config: RedactionConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    ocr_engine: OcrEngineResource,
    settings: SettingsResource,
):
    study = member_id
    phi_by_instance = read_json(media_store, keys.dicom_phi_key(study))
    ocr = read_ocr_rows(media_store, Tables.DICOM_OCR_TEXT, study)
    pixels = read_table(media_store, table_key(Tables.DICOM_PIXELS, study)).to_pylist()
    rows, findings = [], []
    for image in (p for p in pixels if p["kind"] == "image"):
        instance_id = image["instance_id"]
        rgb = read_rgb(media_store.fetch(image["pixels_key"]))
        region, source = None, None
        if image["region_x0"] is not None:
            header_region = (
                image["region_x0"],
                image["region_y0"],
                image["region_x1"],
                image["region_y1"],
            )
            if region := informative(header_region, rgb.shape[1], rgb.shape[0]):
                source = "dicom"
        detect = region is None and options.detect_field_of_view
        if detect and (found := detect_field_of_view(rgb)):
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
            pad=options.pad,
            blank_outside=options.blank_outside_field_of_view,
        )
        relative = keys.dicom_image_relative_path(study, instance_id)
        write_png(redacted, media_store.local_path(f"{keys.DICOM_IMAGES}/{relative}"))
        findings += [
            f"{instance_id}: {f}"
            for f in residual_text_findings([(0, redacted)], ocr_engine.residual_engines(), phi=phi)
        ]
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
    return MemberResult(
        metadata={
            "images": len(rows),
            "masked_boxes": sum(r["masked_boxes"] for r in rows),
            "kept_text_boxes": sum(r["kept_text_boxes"] for r in rows),
        },
        checks={"no_residual_phi": findings},
    )
