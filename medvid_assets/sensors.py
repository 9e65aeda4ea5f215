"""Sensors: the landing zone watched every 30 seconds."""

import json
import time

import dagster as dg
from dagster import SensorEvaluationContext

from medvid_assets.jobs import labels_job, video_pipeline
from medvid_assets.landing import ScanOutcome, scan_landing
from medvid_assets.partitions import video_partitions
from medvid_resources import LandingZone, MediaStore


def run_requests_for(outcome: ScanOutcome) -> list[dg.RunRequest]:
    """One ``video_pipeline`` run per new video and one ``labels_job`` run when sheets arrived.

    Run keys are content ids, so Dagster never launches the same content twice.
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


@dg.sensor(
    jobs=[video_pipeline, labels_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the landing zone. A file is taken once its size and mtime are unchanged"
    " across two ticks (temporary upload files are ignored); it is hashed, recorded once per"
    " content id, and each new video gets a dynamic partition and a run.",
)
def drive_landing_sensor(
    context: SensorEvaluationContext, landing_zone: LandingZone, media_store: MediaStore
) -> dg.SensorResult | dg.SkipReason:
    cursor = json.loads(context.cursor) if context.cursor else None
    outcome = scan_landing(landing_zone, media_store, cursor, now=time.time(), require_stable=True)
    new_videos = [e.content_id for e in outcome.new_of_kind("video")]
    for record in outcome.quarantined:
        context.log.warning(f"quarantined {record.file}: {record.reason}")
    if outcome.pending:
        context.log.info(f"waiting for {len(outcome.pending)} file(s) to settle")
    requests = run_requests_for(outcome)
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=(
            [video_partitions.build_add_request(new_videos)] if new_videos else []
        ),
        cursor=json.dumps(outcome.cursor, sort_keys=True),
    )
