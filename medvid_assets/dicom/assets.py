"""The DICOM stage: per study (a pseudonymous partition), the de-identified header table and
the decoded pixels; across studies, the study table and the pseudonym map.

Instances were indexed under their study by intake (:mod:`medvid.dicom.registration`). Then:

- ``dicom_instances``: each header de-identified (PS3.15 Annex E basic profile, salted
  pseudonyms, per-patient date shift) and tabulated; the original PHI values kept in the
  protected zone for pixel redaction and the residual checks; a blocking check that nothing
  identifying is left in the de-identified headers;
- ``dicom_pixels``: single frames to lossless PNG and cine loops to H.264 MP4 (protected: the
  pixels still carry burned-in text); each cine loop becomes a video partition, which the
  pipeline sensor sends down the video path (OCR, redaction, frames, labels, export);
- ``dicom_studies`` and ``pseudonym_map``: one row per study; the size of the protected map.
"""

from dataclasses import asdict

import dagster as dg
import pandas as pd
import pyarrow as pa

from medvid.batches import add_member
from medvid.catalog import keys
from medvid.catalog.keys import Tables, table_key
from medvid.catalog.schemas import INSTANCES_SCHEMA, PIXELS_SCHEMA, STUDIES_SCHEMA
from medvid.deid import cine_video_id, deidentify_dataset, residual_header_phi
from medvid.deid.store import deid_passed, open_pseudonym_map, write_deid_status
from medvid.dicom import (
    DEFAULT_CINE_FPS,
    cine_fps,
    instance_record,
    read_frame,
    read_header,
    write_cine_mp4,
    write_png,
)
from medvid.dicom.registration import read_study_index, registered_studies, study_digest
from medvid.ids import content_id, sha256_file
from medvid.intake.ledger import LedgerEntry, ledger_entry_or_none, write_ledger_entry
from medvid.quarantine import is_input_error, quarantine_error
from medvid.store import read_json, read_table, write_json, write_table
from medvid_assets.partitions import FROM_THE_DAYS_INTAKE, batch_partitions
from medvid_assets.policy import MemberResult, per_member, table_preview
from medvid_assets.runs import record_worker
from medvid_resources import DeidentificationResource, MediaStore

Box = tuple[int, int, int, int]
HEADER_CHECK = (
    "No original name part, id, birth date, institution or physician is left in any element of"
    " any de-identified header (the elements medvid writes to describe its own"
    " de-identification excepted). A study with findings stays out of exports and uploads."
)


def _quarantine_instance(store: MediaStore, item: dict, stage: str, error: Exception):
    return quarantine_error(
        store, error, content_id=content_id(item["sha256"]), file=item["name"], stage=stage
    )


def _text_or_none(value: object) -> str | None:
    text = str(value).strip() if value not in (None, "") else ""
    return text or None


@dg.asset(
    partitions_def=batch_partitions,
    group_name="dicom",
    kinds={"dicom", "parquet"},
    deps=[dg.AssetDep("landing_intake", partition_mapping=FROM_THE_DAYS_INTAKE)],
    code_version="3",
    check_specs=[
        dg.AssetCheckSpec(
            "header_deidentified",
            asset="dicom_instances",
            description=HEADER_CHECK,
        )
    ],
    description="One row per SOP instance of every study of the batch, after header"
    " de-identification (DICOM PS3.15 Annex E basic profile via dicognito, salted pseudonyms and"
    " UIDs, per-patient date shift, private tags removed, PatientIdentityRemoved=YES). The"
    " original identifying values stay in the protected zone for pixel redaction and the"
    " residual checks.",
)
@per_member(
    "study",
    version_of=lambda store, study: study_digest(list(read_study_index(store, study))),
    check_descriptions={"header_deidentified": HEADER_CHECK},
)
def dicom_instances(
    context: dg.AssetExecutionContext,
    member_id: str,
    options,
    media_store: MediaStore,
    deid: DeidentificationResource,
):
    study = member_id
    index = read_study_index(media_store, study)
    mapping = open_pseudonym_map(media_store, deid.get_salt())
    rows, phi_values, findings, quarantined = [], {}, {}, 0
    for instance_id, item in sorted(index.items()):
        try:
            header = read_header(media_store.fetch(item["key"]), sha256=item["sha256"])
            ds, phi = deidentify_dataset(
                header.dataset,
                mapping,
                retain_patient_characteristics=deid.retain_patient_characteristics,
                retain_device_identity=deid.retain_device_identity,
            )
        except Exception as error:
            if not is_input_error(error):
                raise
            _quarantine_instance(media_store, item, "dicom_instances", error)
            quarantined += 1
            continue
        if leftover := residual_header_phi(ds, phi):
            findings[instance_id] = leftover
        phi_values[instance_id] = asdict(phi)
        rows.append(
            {
                "study_key": study,
                "instance_id": instance_id,
                "patient_pseudonym": _text_or_none(ds.get("PatientID")),
                "StudyDate": _text_or_none(ds.get("StudyDate")),
                "SeriesNumber": _text_or_none(ds.get("SeriesNumber")),
                "InstanceNumber": _text_or_none(ds.get("InstanceNumber")),
                **instance_record(header).to_row(),
            }
        )
    mapping.save()
    media_store.publish(keys.PSEUDONYM_MAP)
    write_json(media_store, keys.dicom_phi_key(study), phi_values)
    table = pa.Table.from_pylist(rows, schema=INSTANCES_SCHEMA)
    write_table(media_store, table_key(Tables.DICOM_INSTANCES, study), table)
    flat = [f"{instance}: {finding}" for instance, items in findings.items() for finding in items]
    write_deid_status(
        media_store, "study_header", study, passed=not flat, checked=len(rows), findings=flat
    )
    frames = [r["NumberOfFrames"] for r in rows]
    return MemberResult(
        metadata={
            "instances": len(rows),
            "instances_digest": study_digest(list(index)),
            "images": sum(n == 1 for n in frames),
            "cine_loops": sum(n > 1 for n in frames),
            "quarantined_instances": quarantined,
            "modalities": ", ".join(sorted({r["Modality"] or "?" for r in rows})),
        },
        checks={"header_deidentified": flat},
    )


def _region(row: dict) -> Box | None:
    if row["RegionLocationMinX0"] is None:
        return None
    width, height = row["Columns"], row["Rows"]
    x0, y0 = max(row["RegionLocationMinX0"], 0), max(row["RegionLocationMinY0"] or 0, 0)
    x1 = min((row["RegionLocationMaxX1"] or 0) + 1, width or 0)
    y1 = min((row["RegionLocationMaxY1"] or 0) + 1, height or 0)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _register_cine(
    store: MediaStore,
    study: str,
    batch: str,
    instance_id: str,
    item: dict,
    key: str,
    video_id: str,
    region: Box | None,
) -> None:
    """Record a cine loop's MP4 as a video (origin: this study), a member of the study's
    batch."""
    sha = sha256_file(store.fetch(key))
    entry = ledger_entry_or_none(store, video_id)
    if entry is None or entry.sha256 != sha:
        arrival = ledger_entry_or_none(store, item["arrival"])
        write_ledger_entry(
            store,
            LedgerEntry(
                content_id=video_id,
                sha256=sha,
                kind="video",
                original_name=f"cine_{instance_id}.mp4",
                landing_key=key,
                landing_uri=store.uri(key),
                size=store.fetch(key).stat().st_size,
                landed_at=arrival.landed_at if arrival is not None else "",
                display_name=f"study_{study}/cine_{instance_id}.mp4",
                partition=batch,
                origin={
                    "kind": "dicom_cine",
                    "study_key": study,
                    "instance_id": instance_id,
                    "keep_region": list(region) if region else None,
                    "phi_key": keys.dicom_phi_key(study),
                },
            ),
        )
    add_member(store, batch, "video", video_id)


@dg.asset(
    partitions_def=batch_partitions,
    group_name="dicom",
    kinds={"png", "video"},
    deps=["dicom_instances"],
    code_version="3",
    description="Decoded pixels of every instance of the batch's studies (protected: burned-in"
    " text is still there): single frames as lossless PNG with the colour handled (PALETTE COLOR"
    " via the LUT, YBR to RGB, MONOCHROME through the VOI LUT/window), cine loops as H.264 MP4 at"
    " FrameTime/CineRate (1 frame/s without timing, recorded), each a video of the same batch"
    " for the video path. The ultrasound region is kept as a crop box.",
)
@per_member("study", upstream=("dicom_instances",))
def dicom_pixels(
    context: dg.AssetExecutionContext,
    member_id: str,
    options,
    media_store: MediaStore,
    deid: DeidentificationResource,
):
    study, batch = member_id, context.partition_key
    salt = deid.get_salt()
    index = read_study_index(media_store, study)
    instances = read_table(media_store, table_key(Tables.DICOM_INSTANCES, study)).to_pylist()
    rows, cine_ids, quarantined = [], [], 0
    for row in instances:
        instance_id = row["instance_id"]
        item = index[instance_id]
        region = _region(row)
        cine = (row["NumberOfFrames"] or 1) > 1
        key = keys.dicom_pixels_key(study, instance_id, ".mp4" if cine else ".png")
        fps, fps_source, video_id = None, None, None
        try:
            source = media_store.fetch(item["key"])
            if cine:
                video_id = cine_video_id(item["sha256"], salt)
                fps = cine_fps(read_header(source, compute_sha256=False).dataset)
                fps_source = "header" if fps else "default"
                fps = fps or DEFAULT_CINE_FPS
                if not media_store.exists(key):
                    write_cine_mp4(source, media_store.local_path(key), fps)
                    media_store.publish(key)
                _register_cine(media_store, study, batch, instance_id, item, key, video_id, region)
                cine_ids.append(video_id)
            else:
                write_png(read_frame(source, 0), media_store.local_path(key))
                media_store.publish(key)
        except Exception as error:
            if not is_input_error(error):
                raise
            _quarantine_instance(media_store, item, "dicom_pixels", error)
            quarantined += 1
            continue
        rows.append(
            {
                "study_key": study,
                "instance_id": instance_id,
                "kind": "cine" if cine else "image",
                "pixels_key": key,
                "width": row["Columns"],
                "height": row["Rows"],
                "frames": row["NumberOfFrames"],
                "fps": str(fps) if fps else None,
                "fps_source": fps_source,
                "region_x0": region[0] if region else None,
                "region_y0": region[1] if region else None,
                "region_x1": region[2] if region else None,
                "region_y1": region[3] if region else None,
                "video_id": video_id,
            }
        )
    write_table(
        media_store,
        table_key(Tables.DICOM_PIXELS, study),
        pa.Table.from_pylist(rows, schema=PIXELS_SCHEMA),
    )
    return MemberResult(
        metadata={
            "images": sum(r["kind"] == "image" for r in rows),
            "cine_loops": len(cine_ids),
            "quarantined_instances": quarantined,
        }
    )


def _joined(values: pd.Series) -> str | None:
    found = sorted({str(v) for v in values.dropna() if str(v)})
    return "\\".join(found) or None


@dg.asset(
    group_name="dicom",
    kinds={"parquet"},
    deps=["dicom_instances", "dicom_images"],
    code_version="2",
    description="One row per DICOM study: patient pseudonym, shifted StudyDate, modalities,"
    " devices, counts of series, images, cine loops and frames, and whether its header and"
    " pixel de-identification checks passed.",
)
def dicom_studies(context: dg.AssetExecutionContext, media_store: MediaStore):
    record_worker(context)
    rows = []
    for study in registered_studies(media_store):
        key = table_key(Tables.DICOM_INSTANCES, study)
        if not media_store.exists(key):
            continue
        df = read_table(media_store, key).to_pandas()
        if df.empty:
            continue
        frames = df["NumberOfFrames"].fillna(1)
        rows.append(
            {
                "study_key": study,
                "patient_pseudonym": _joined(df["patient_pseudonym"]),
                "StudyDate": _joined(df["StudyDate"]),
                "Modality": _joined(df["Modality"]),
                "Manufacturer": _joined(df["Manufacturer"]),
                "ManufacturerModelName": _joined(df["ManufacturerModelName"]),
                "series": int(df["SeriesInstanceUID"].nunique()),
                "images": int((frames == 1).sum()),
                "cine_loops": int((frames > 1).sum()),
                "frames": int(frames.sum()),
                "header_deidentified": deid_passed(media_store, "study_header", study),
                "pixels_deidentified": deid_passed(media_store, "study_pixels", study),
            }
        )
    table = pa.Table.from_pylist(rows, schema=STUDIES_SCHEMA)
    write_table(media_store, table_key(Tables.DICOM_STUDIES), table)
    return dg.MaterializeResult(
        metadata={
            "studies": len(rows),
            "patients": len({r["patient_pseudonym"] for r in rows}),
            "images": sum(r["images"] for r in rows),
            "cine_loops": sum(r["cine_loops"] for r in rows),
            "table": table_preview(table, empty="(no study yet)"),
        }
    )


@dg.asset(
    group_name="dicom",
    kinds={"json"},
    deps=["dicom_instances"],
    code_version="2",
    description="The salted, persistent patient pseudonym map (protected/pseudonym_map.json):"
    " pseudonyms and date shifts keyed by an HMAC of the patient, so the file itself names no"
    " one. It is PHI-adjacent: never exported. Without the salt nobody can recompute it.",
)
def pseudonym_map(media_store: MediaStore) -> dg.MaterializeResult:
    if not media_store.exists(keys.PSEUDONYM_MAP):
        return dg.MaterializeResult(metadata={"patients": 0})
    data = read_json(media_store, keys.PSEUDONYM_MAP)
    return dg.MaterializeResult(
        metadata={
            "patients": len(data.get("patients", {})),
            "path": dg.MetadataValue.path(keys.PSEUDONYM_MAP),
        }
    )
