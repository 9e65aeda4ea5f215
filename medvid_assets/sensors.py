"""Sensors: the landing zone watched every 30 seconds, and DICOM cine loops sent down the video
path as soon as their study's pixels are decoded."""

import json
import time

import dagster as dg
from dagster import SensorEvaluationContext

from medvid_assets.dicom import DicomRegistration, register_dicom_arrivals, study_run_key
from medvid_assets.jobs import dicom_pipeline, labels_job, video_pipeline
from medvid_assets.landing import ScanOutcome, read_ledger_entry, scan_landing
from medvid_assets.partitions import study_partitions, video_partitions
from medvid_resources import DeidentificationResource, LandingZone, MediaStore


def run_requests_for(
    outcome: ScanOutcome,
    registration: DicomRegistration | None = None,
    store: MediaStore | None = None,
) -> list[dg.RunRequest]:
    """One ``video_pipeline`` run per new video, one ``dicom_pipeline`` run per study that
    gained instances, and one ``labels_job`` run when sheets arrived.

    Run keys are content ids (for a study: its key and the set of its instances), so Dagster
    never launches the same content twice.
    """
    requests = [
        dg.RunRequest(
            run_key=f"video:{entry.content_id}",
            job_name=video_pipeline.name,
            partition_key=entry.content_id,
            tags={"medvid/original_name": entry.original_name},
        )
        for entry in outcome.new_of_kind("video")
    ]
    if registration is not None and store is not None:
        requests += [
            dg.RunRequest(
                run_key=study_run_key(store, study),
                job_name=dicom_pipeline.name,
                partition_key=study,
                tags={"medvid/new_instances": str(len(instances))},
            )
            for study, instances in sorted(registration.studies.items())
        ]
    sheets = outcome.new_of_kind("sheet")
    if sheets:
        requests.append(
            dg.RunRequest(
                run_key="sheets:" + ",".join(sorted(e.content_id for e in sheets)),
                job_name=labels_job.name,
                tags={"medvid/sheets": ",".join(e.original_name for e in sheets)[:200]},
            )
        )
    return requests


def partition_requests(
    outcome: ScanOutcome, registration: DicomRegistration
) -> list[dg.AddDynamicPartitionsRequest]:
    """Dynamic partitions for new videos and for studies that gained instances."""
    requests = []
    if videos := [e.content_id for e in outcome.new_of_kind("video")]:
        requests.append(video_partitions.build_add_request(videos))
    if studies := sorted(registration.studies):
        requests.append(study_partitions.build_add_request(studies))
    return requests


def scan_and_register(
    landing_zone: LandingZone,
    media_store: MediaStore,
    deid: DeidentificationResource,
    cursor: dict | None,
    *,
    now: float,
    require_stable: bool,
    min_age_s: float = 0.0,
) -> tuple[ScanOutcome, DicomRegistration]:
    """What the sensor, the schedule and the command line all do first: record what arrived,
    and index new DICOM files under their (pseudonymous) studies."""
    outcome = scan_landing(
        landing_zone,
        media_store,
        cursor,
        now=now,
        require_stable=require_stable,
        min_age_s=min_age_s,
    )
    dicom = outcome.new_of_kind("dicom")
    registration = (
        register_dicom_arrivals(landing_zone, media_store, dicom, deid.get_salt())
        if dicom
        else DicomRegistration()
    )
    return outcome, registration


@dg.sensor(
    jobs=[video_pipeline, dicom_pipeline, labels_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the landing zone. A file is taken once its size and mtime are unchanged"
    " across two ticks (temporary upload files are ignored); it is hashed and recorded once per"
    " content id. Each new video gets a dynamic partition and a run; DICOM files (zips unpacked)"
    " are indexed under pseudonymous study ids, and each study that gained instances gets a"
    " partition and a run.",
)
def drive_landing_sensor(
    context: SensorEvaluationContext,
    landing_zone: LandingZone,
    media_store: MediaStore,
    deid: DeidentificationResource,
) -> dg.SensorResult:
    cursor = json.loads(context.cursor) if context.cursor else None
    outcome, registration = scan_and_register(
        landing_zone, media_store, deid, cursor, now=time.time(), require_stable=True
    )
    for record in outcome.quarantined + registration.quarantined:
        context.log.warning(f"quarantined {record.file}: {record.reason}")
    if outcome.pending:
        context.log.info(f"waiting for {len(outcome.pending)} file(s) to settle")
    return dg.SensorResult(
        run_requests=run_requests_for(outcome, registration, media_store),
        dynamic_partitions_requests=partition_requests(outcome, registration),
        cursor=json.dumps(outcome.cursor, sort_keys=True),
    )


def new_cine_loops(instance: dg.DagsterInstance, after_storage_id: int | None) -> tuple[list, int]:
    """Video ids of cine loops announced by ``dicom_pixels`` materializations after the cursor,
    and the new cursor (storage id of the last event read)."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("dicom_pixels"), after_storage_id=after_storage_id
        ),
        limit=1000,
        ascending=True,
    )
    video_ids: list[str] = []
    last = after_storage_id or 0
    for record in result.records:
        last = max(last, record.storage_id)
        materialization = record.asset_materialization
        value = materialization.metadata.get("cine_video_ids") if materialization else None
        for video_id in value.value if value is not None else []:
            if video_id not in video_ids:
                video_ids.append(video_id)
    return video_ids, last


def cine_run_requests(store: MediaStore, video_ids: list[str]) -> list[dg.RunRequest]:
    """One ``video_pipeline`` run per cine loop; the run key follows the MP4's sha256 so a loop
    encoded again runs again, and an unchanged one does not."""
    requests = []
    for video_id in video_ids:
        entry = read_ledger_entry(store, video_id)
        requests.append(
            dg.RunRequest(
                run_key=f"video:{video_id}:{entry.sha256[:12]}",
                job_name=video_pipeline.name,
                partition_key=video_id,
                tags={"medvid/origin": "dicom_cine", "medvid/study": entry.origin["study_key"]},
            )
        )
    return requests


@dg.sensor(
    job=video_pipeline,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends every DICOM cine loop that dicom_pixels encoded down the video path:"
    " a video partition (salted id) and a video_pipeline run, which OCRs, redacts and extracts"
    " its frames like any video.",
)
def cine_loop_sensor(context: SensorEvaluationContext, media_store: MediaStore) -> dg.SensorResult:
    cursor = int(context.cursor) if context.cursor else None
    video_ids, last = new_cine_loops(context.instance, cursor)
    known = set(context.instance.get_dynamic_partitions(video_partitions.name))
    new = [v for v in video_ids if v not in known]
    return dg.SensorResult(
        run_requests=cine_run_requests(media_store, video_ids),
        dynamic_partitions_requests=[video_partitions.build_add_request(new)] if new else [],
        cursor=str(last),
    )
