"""The DICOM stage: studies from the landing zone, their de-identified header tables, and their
decoded pixels. One partition per study, keyed by a pseudonymous study id.

A DICOM arrival (a ``.dcm`` file, a file with the DICM preamble, a DICOMDIR's referenced files or
a ``.zip`` of studies) is copied into the protected store, unpacked safely, and every instance in
it is indexed under its study by :func:`register_dicom_arrivals`, which the landing sensor, the
daily schedule and the command line share. Then, per study:

- ``dicom_instances``: each header de-identified (PS3.15 Annex E basic profile, salted
  pseudonyms, per-patient date shift) and tabulated; the original PHI values kept in the protected
  zone for pixel redaction and the residual checks; a blocking check that nothing identifying is
  left in the de-identified headers;
- ``dicom_pixels``: single frames to lossless PNG and cine loops to H.264 MP4 (protected: the
  pixels still carry burned-in text), each cine loop registered as a video partition that the
  ``cine_loop_sensor`` sends down the video path (OCR, redaction, frames, labels, export);
- ``dicom_studies`` and ``pseudonym_map``: one row per study; the size of the protected map.

Everything under ``protected/`` holds PHI and is never exported (see :mod:`medvid_assets.deid`).
"""

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath

import dagster as dg
import pandas as pd
import pyarrow as pa
from dagster import AssetExecutionContext

from medvid.deid import (
    PseudonymMap,
    cine_video_id,
    deidentify_dataset,
    instance_key,
    residual_header_phi,
    study_key,
)
from medvid.dicom import (
    find_dicom_files,
    instance_record,
    is_dicomdir,
    read_frame,
    read_header,
    safe_unzip,
    write_cine_mp4,
    write_png,
)
from medvid.errors import CorruptMediaError, MedvidInputError
from medvid.ids import content_id, sha256_file
from medvid.quarantine import QuarantineRecord
from medvid_assets.landing import (
    LedgerEntry,
    ledger_key,
    read_ledger_entry,
    write_ledger_entry,
)
from medvid_assets.metadata import deid_check_result, table_preview
from medvid_assets.partitions import study_partitions
from medvid_assets.quarantine import quarantine_error
from medvid_assets.storage import (
    PROTECTED_PREFIX,
    deid_passed,
    read_json,
    read_table,
    table_key,
    write_deid_status,
    write_json,
    write_table,
)
from medvid_resources import DeidentificationResource, LandingZone, MediaStore

RAW_DICOM_PREFIX = f"{PROTECTED_PREFIX}/dicom"
INDEX_PREFIX = f"{PROTECTED_PREFIX}/dicom_index"
PHI_PREFIX = f"{PROTECTED_PREFIX}/phi"
PIXELS_PREFIX = f"{PROTECTED_PREFIX}/dicom_pixels"
PSEUDONYM_MAP_KEY = f"{PROTECTED_PREFIX}/pseudonym_map.json"

#: Elements read to index a file under its study (the full header is read later, once).
_INDEX_KEYWORDS = ("StudyInstanceUID", "NumberOfFrames", "Rows", "Columns")


def index_key(study: str) -> str:
    return f"{INDEX_PREFIX}/{study}.json"


def phi_key(study: str) -> str:
    return f"{PHI_PREFIX}/{study}.json"


def read_study_index(store: MediaStore, study: str) -> dict[str, dict]:
    """``{instance_id: {"key", "sha256", "arrival", "name"}}`` of a study (protected)."""
    if not store.exists(index_key(study)):
        return {}
    return read_json(store, index_key(study))["instances"]


# --- registration: landing arrivals -> study partitions ----------------------------------------


@dataclass
class DicomRegistration:
    """What :func:`register_dicom_arrivals` found: per study key, the instance ids it added
    (studies whose index did not change are absent), and the inputs it quarantined."""

    studies: dict[str, list[str]] = field(default_factory=dict)
    quarantined: list[QuarantineRecord] = field(default_factory=list)


def _copy_verified(zone: LandingZone, store: MediaStore, entry: LedgerEntry) -> str:
    """Copy the arrival into the protected store (verified by sha256); returns its key."""
    key = f"{RAW_DICOM_PREFIX}/{entry.content_id}/source{entry.suffix}"
    if store.exists(key) and sha256_file(store.fetch(key)) == entry.sha256:
        return key
    local = zone.download(entry.landing_key, store.local_path(key))
    if sha256_file(local) != entry.sha256:
        local.unlink()
        raise CorruptMediaError(
            "file changed in the landing zone after it arrived (sha256 differs)"
        )
    store.publish(key)
    return key


def _instance_files(store: MediaStore, entry: LedgerEntry, raw: str) -> list[tuple[str, str]]:
    """``(store key, display name)`` of every DICOM file of an arrival (a zip is unpacked)."""
    if entry.suffix != ".zip":
        return [(raw, entry.original_name)]
    prefix = f"{RAW_DICOM_PREFIX}/{entry.content_id}/unzipped"
    done = f"{RAW_DICOM_PREFIX}/{entry.content_id}/unzipped.json"
    root = store.local_path(f"{prefix}/.keep").parent
    if not store.exists(done):
        files = safe_unzip(store.fetch(raw), root)
        store.publish_prefix(prefix)
        write_json(store, done, {"files": len(files)})
    else:
        store.fetch_prefix(prefix)
    found = find_dicom_files(root)
    return [
        (f"{prefix}/{path.relative_to(root).as_posix()}", f"{entry.original_name}!{path.name}")
        for path in found
    ]


def register_dicom_arrivals(
    zone: LandingZone, store: MediaStore, entries: list[LedgerEntry], salt: str
) -> DicomRegistration:
    """Index every DICOM instance of new ``dicom`` ledger entries under its study.

    Each arrival is copied into ``protected/dicom/<content_id>/`` (verified), a zip is unpacked
    with :func:`medvid.dicom.safe_unzip`, and each instance's header is read (pixels not
    decoded) to find its StudyInstanceUID. The study key and instance id are salted
    (:func:`medvid.deid.study_key`, :func:`medvid.deid.instance_key`); the index
    ``protected/dicom_index/<study>.json`` maps instance ids to their files. A DICOMDIR is not an
    instance (the files it references arrive as their own entries). Bad arrivals and bad
    instances (not DICOM, truncated, no pixel data, unsupported transfer syntax, no
    StudyInstanceUID, unsafe zip) are quarantined; the rest goes on.
    """
    registration = DicomRegistration()
    by_study: dict[str, dict[str, dict]] = {}
    for entry in entries:
        if entry.original_name.upper() == "DICOMDIR":
            continue
        try:
            raw = _copy_verified(zone, store, entry)
            if entry.suffix != ".zip" and is_dicomdir(store.fetch(raw)):
                continue
            files = _instance_files(store, entry, raw)
        except MedvidInputError as error:
            registration.quarantined.append(
                quarantine_error(
                    store,
                    error,
                    content_id=entry.content_id,
                    file=entry.original_name,
                    stage="dicom_registration",
                )
            )
            continue
        for key, name in files:
            path = store.fetch(key)
            sha = sha256_file(path)
            try:
                header = read_header(path, sha256=sha, keywords=_INDEX_KEYWORDS)
                uid = str(header.dataset.get("StudyInstanceUID", "") or "").strip()
                if not uid:
                    raise CorruptMediaError("no StudyInstanceUID: cannot tell which study it is")
            except MedvidInputError as error:
                registration.quarantined.append(
                    quarantine_error(
                        store,
                        error,
                        content_id=content_id(sha),
                        file=name,
                        stage="dicom_registration",
                    )
                )
                continue
            by_study.setdefault(study_key(uid, salt), {})[instance_key(sha, salt)] = {
                "key": key,
                "sha256": sha,
                "arrival": entry.content_id,
                "name": name,
            }
    for study, instances in sorted(by_study.items()):
        known = read_study_index(store, study)
        added = sorted(set(instances) - set(known))
        if not added:
            continue
        write_json(store, index_key(study), {"instances": {**known, **instances}})
        registration.studies[study] = added
    return registration


def registered_studies(store: MediaStore) -> list[str]:
    """Every study key with an index (registered DICOM), sorted."""
    return sorted(
        PurePosixPath(key).stem for key in store.list_keys(INDEX_PREFIX) if key.endswith(".json")
    )


def study_run_key(store: MediaStore, study: str) -> str:
    """Run key of a study: changes when an instance is added, so late arrivals re-run it."""
    digest = hashlib.sha256(",".join(sorted(read_study_index(store, study))).encode())
    return f"study:{study}:{digest.hexdigest()[:12]}"


# --- per-study assets ---------------------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def quarantine_instance(
    store: MediaStore, item: dict, stage: str, error: MedvidInputError
) -> QuarantineRecord:
    """Quarantine one DICOM instance of a study index (keyed by its file's content id)."""
    return quarantine_error(
        store,
        error,
        content_id=content_id(item["sha256"]),
        file=item["name"],
        stage=stage,
    )


def _pseudonym_map(store: MediaStore, salt: str) -> PseudonymMap:
    path = store.fetch(PSEUDONYM_MAP_KEY) if store.exists(PSEUDONYM_MAP_KEY) else None
    return PseudonymMap(path or store.local_path(PSEUDONYM_MAP_KEY), salt)


INSTANCE_EXTRA_COLUMNS = [
    ("study_key", pa.string()),
    ("instance_id", pa.string()),
    ("patient_pseudonym", pa.string()),
    ("StudyDate", pa.string()),
    ("SeriesNumber", pa.string()),
    ("InstanceNumber", pa.string()),
]
INSTANCES_SCHEMA = pa.schema(
    INSTANCE_EXTRA_COLUMNS
    + [
        ("sha256", pa.string()),
        ("size_bytes", pa.int64()),
        ("StudyInstanceUID", pa.string()),
        ("SeriesInstanceUID", pa.string()),
        ("SOPInstanceUID", pa.string()),
        ("SOPClassUID", pa.string()),
        ("Modality", pa.string()),
        ("Manufacturer", pa.string()),
        ("ManufacturerModelName", pa.string()),
        ("TransferSyntaxUID", pa.string()),
        ("PhotometricInterpretation", pa.string()),
        ("Rows", pa.int32()),
        ("Columns", pa.int32()),
        ("NumberOfFrames", pa.int32()),
        ("FrameTime", pa.float64()),
        ("CineRate", pa.float64()),
        ("RecommendedDisplayFrameRate", pa.float64()),
        ("fps", pa.float64()),
        ("BitsAllocated", pa.int32()),
        ("SamplesPerPixel", pa.int32()),
        ("PhysicalDeltaX", pa.float64()),
        ("PhysicalDeltaY", pa.float64()),
        ("PhysicalUnitsXDirection", pa.int32()),
        ("PhysicalUnitsYDirection", pa.int32()),
        ("RegionLocationMinX0", pa.int32()),
        ("RegionLocationMinY0", pa.int32()),
        ("RegionLocationMaxX1", pa.int32()),
        ("RegionLocationMaxY1", pa.int32()),
        ("BodyPartExamined", pa.string()),
        ("Laterality", pa.string()),
        ("ImageType", pa.string()),
        ("BurnedInAnnotation", pa.string()),
        ("warnings", pa.string()),
    ]
)
"""``dicom_instances``: one row per SOP instance, de-identified values only (UIDs replaced,
dates shifted, pseudonym instead of the patient). Units as in
:class:`medvid.dicom.InstanceRecord`."""


def _text_or_none(value: object) -> str | None:
    text = str(value).strip() if value not in (None, "") else ""
    return text or None


@dg.asset(
    partitions_def=study_partitions,
    group_name="dicom",
    kinds={"dicom", "parquet"},
    check_specs=[dg.AssetCheckSpec("header_deidentified", asset="dicom_instances", blocking=True)],
    description="One row per SOP instance of the study, after header de-identification (DICOM"
    " PS3.15 Annex E basic profile via dicognito, salted pseudonyms and UIDs, per-patient date"
    " shift, private tags removed, PatientIdentityRemoved=YES). The original identifying values"
    " stay in the protected zone for pixel redaction and the residual checks.",
)
def dicom_instances(
    context: AssetExecutionContext, media_store: MediaStore, deid: DeidentificationResource
):
    study = context.partition_key
    salt = deid.get_salt()
    mapping = _pseudonym_map(media_store, salt)
    rows, phi_values, findings, quarantined = [], {}, {}, 0
    for instance_id, item in sorted(read_study_index(media_store, study).items()):
        try:
            header = read_header(media_store.fetch(item["key"]), sha256=item["sha256"])
            ds, phi = deidentify_dataset(
                header.dataset,
                mapping,
                retain_patient_characteristics=deid.retain_patient_characteristics,
                retain_device_identity=deid.retain_device_identity,
            )
        except MedvidInputError as error:
            quarantine_instance(media_store, item, "dicom_instances", error)
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
    media_store.publish(PSEUDONYM_MAP_KEY)
    write_json(media_store, phi_key(study), phi_values)
    table = pa.Table.from_pylist(rows, schema=INSTANCES_SCHEMA)
    write_table(media_store, table_key("dicom_instances", study), table)
    flat = [f"{instance}: {finding}" for instance, items in findings.items() for finding in items]
    write_deid_status(
        media_store, "study_header", study, passed=not flat, checked=len(rows), findings=flat
    )
    frames = [r["NumberOfFrames"] for r in rows]
    yield dg.MaterializeResult(
        metadata={
            "instances": len(rows),
            "images": sum(n == 1 for n in frames),
            "cine_loops": sum(n > 1 for n in frames),
            "quarantined_instances": quarantined,
            "modalities": ", ".join(sorted({r["Modality"] or "?" for r in rows})),
            "preview": table_preview(
                table,
                [
                    "instance_id",
                    "Modality",
                    "ManufacturerModelName",
                    "PhotometricInterpretation",
                    "Rows",
                    "Columns",
                    "NumberOfFrames",
                    "TransferSyntaxUID",
                ],
                empty="(no readable instance)",
            ),
        }
    )
    yield deid_check_result(
        "header_deidentified",
        flat,
        checked=len(rows),
        what="instances",
        passed_text="no PHI value of the original headers left in any element",
    )


PIXELS_SCHEMA = pa.schema(
    [
        ("study_key", pa.string()),
        ("instance_id", pa.string()),
        ("kind", pa.string()),
        ("pixels_key", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("frames", pa.int32()),
        ("fps", pa.string()),
        ("region_x0", pa.int32()),
        ("region_y0", pa.int32()),
        ("region_x1", pa.int32()),
        ("region_y1", pa.int32()),
        ("video_id", pa.string()),
    ]
)
"""``dicom_pixels``: where each instance's decoded pixels are (protected). ``kind`` is ``image``
(PNG, ``(H, W, 3) uint8 RGB``) or ``cine`` (H.264 MP4 at the header's rate, ``fps`` an exact
fraction, entered in the video path as ``video_id``). ``region_*``: the ultrasound region from
SequenceOfUltrasoundRegions as a crop box in pixels (x1/y1 exclusive), null when absent."""


def _region(row: dict) -> tuple[int, int, int, int] | None:
    if row["RegionLocationMinX0"] is None:
        return None
    width, height = row["Columns"], row["Rows"]
    x0, y0 = max(row["RegionLocationMinX0"], 0), max(row["RegionLocationMinY0"] or 0, 0)
    x1 = min((row["RegionLocationMaxX1"] or 0) + 1, width or 0)
    y1 = min((row["RegionLocationMaxY1"] or 0) + 1, height or 0)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _register_cine(
    store: MediaStore, study: str, instance_id: str, key: str, video_id: str, region, name: str
) -> None:
    """Record a cine loop's MP4 as a video arrival (origin: this study) unless unchanged."""
    sha = sha256_file(store.fetch(key))
    if store.exists(ledger_key(video_id)):
        entry = read_ledger_entry(store, video_id)
        if entry.sha256 == sha:
            return
    write_ledger_entry(
        store,
        LedgerEntry(
            content_id=video_id,
            sha256=sha,
            kind="video",
            original_name=name,
            landing_key=key,
            landing_uri=store.uri(key),
            size=store.fetch(key).stat().st_size,
            arrived_at=_now(),
            origin={
                "kind": "dicom_cine",
                "study_key": study,
                "instance_id": instance_id,
                "keep_region": list(region) if region else None,
                "phi_key": phi_key(study),
            },
        ),
    )


@dg.asset(
    partitions_def=study_partitions,
    group_name="dicom",
    kinds={"png", "video"},
    deps=[dicom_instances],
    description="Decoded pixels of every instance (protected: burned-in text is still there):"
    " single frames as lossless PNG with the colour handled (PALETTE COLOR via the LUT, YBR to"
    " RGB, MONOCHROME through the VOI LUT/window), cine loops as H.264 MP4 at FrameTime/CineRate,"
    " each registered as a video partition for the video path. The ultrasound region is kept as a"
    " crop box.",
)
def dicom_pixels(
    context: AssetExecutionContext, media_store: MediaStore, deid: DeidentificationResource
) -> dg.MaterializeResult:
    study = context.partition_key
    salt = deid.get_salt()
    index = read_study_index(media_store, study)
    instances = read_table(media_store, table_key("dicom_instances", study)).to_pylist()
    rows, cine_ids, quarantined = [], [], 0
    for row in instances:
        instance_id = row["instance_id"]
        item = index[instance_id]
        region = _region(row)
        cine = (row["NumberOfFrames"] or 1) > 1
        key = f"{PIXELS_PREFIX}/{study}/{instance_id}.{'mp4' if cine else 'png'}"
        try:
            source = media_store.fetch(item["key"])
            if cine:
                video_id = cine_video_id(item["sha256"], salt)
                fresh = not (
                    media_store.exists(key)
                    and media_store.exists(ledger_key(video_id))
                    and read_ledger_entry(media_store, video_id).sha256
                    == sha256_file(media_store.fetch(key))
                )
                if fresh:
                    context.log.info(
                        f"encoding cine loop {instance_id}: {row['NumberOfFrames']} frames"
                    )
                    write_cine_mp4(source, media_store.local_path(key))
                    media_store.publish(key)
                    _register_cine(
                        media_store,
                        study,
                        instance_id,
                        key,
                        video_id,
                        region,
                        f"study_{study}/cine_{instance_id}.mp4",
                    )
                cine_ids.append(video_id)
            else:
                video_id = None
                write_png(read_frame(source, 0), media_store.local_path(key))
                media_store.publish(key)
        except MedvidInputError as error:
            quarantine_instance(media_store, item, "dicom_pixels", error)
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
                "fps": str(row["fps"]) if row["fps"] else None,
                "region_x0": region[0] if region else None,
                "region_y0": region[1] if region else None,
                "region_x1": region[2] if region else None,
                "region_y1": region[3] if region else None,
                "video_id": video_id,
            }
        )
    write_table(
        media_store,
        table_key("dicom_pixels", study),
        pa.Table.from_pylist(rows, schema=PIXELS_SCHEMA),
    )
    return dg.MaterializeResult(
        metadata={
            "images": sum(r["kind"] == "image" for r in rows),
            "cine_loops": len(cine_ids),
            "cine_video_ids": dg.MetadataValue.json(cine_ids),
            "quarantined_instances": quarantined,
        }
    )


STUDIES_SCHEMA = pa.schema(
    [
        ("study_key", pa.string()),
        ("patient_pseudonym", pa.string()),
        ("StudyDate", pa.string()),
        ("Modality", pa.string()),
        ("Manufacturer", pa.string()),
        ("ManufacturerModelName", pa.string()),
        ("series", pa.int32()),
        ("images", pa.int32()),
        ("cine_loops", pa.int32()),
        ("frames", pa.int64()),
        ("header_deidentified", pa.bool_()),
        ("pixels_deidentified", pa.bool_()),
    ]
)


def _joined(values: pd.Series) -> str | None:
    found = sorted({str(v) for v in values.dropna() if str(v)})
    return "\\".join(found) or None


@dg.asset(
    group_name="dicom",
    kinds={"parquet"},
    deps=[dicom_instances],
    automation_condition=dg.AutomationCondition.eager(),
    description="One row per DICOM study: patient pseudonym, shifted StudyDate, modalities,"
    " devices, counts of series, images, cine loops and frames, and whether its header and"
    " pixel de-identification checks passed.",
)
def dicom_studies(context: AssetExecutionContext, media_store: MediaStore) -> dg.MaterializeResult:
    studies = context.instance.get_dynamic_partitions(study_partitions.name)
    rows = []
    for study in sorted(studies):
        key = table_key("dicom_instances", study)
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
    write_table(media_store, table_key("dicom_studies"), table)
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
    deps=[dicom_instances],
    automation_condition=dg.AutomationCondition.eager(),
    description="The salted, persistent patient pseudonym map (protected/pseudonym_map.json):"
    " pseudonyms and date shifts keyed by an HMAC of the patient, so the file itself names no"
    " one. It is PHI-adjacent: never exported. Without the salt nobody can recompute it.",
)
def pseudonym_map(media_store: MediaStore) -> dg.MaterializeResult:
    if not media_store.exists(PSEUDONYM_MAP_KEY):
        return dg.MaterializeResult(metadata={"patients": 0})
    data = json.loads(media_store.fetch(PSEUDONYM_MAP_KEY).read_text())
    return dg.MaterializeResult(
        metadata={
            "patients": len(data.get("patients", {})),
            "path": dg.MetadataValue.path(str(PurePosixPath(PSEUDONYM_MAP_KEY))),
        }
    )
