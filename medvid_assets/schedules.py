"""Schedules: the 05:00 batch for sites that prefer one run a day to a watching sensor.

``daily_drive_sync`` (05:00 UTC) records every settled file of the landing zone, adds the video
and study partitions, and runs the video pipeline for every video not processed yet;
``daily_dicom_sync`` (05:05 UTC) runs the DICOM pipeline for every study not processed yet.
The scan keeps its cursor in the media store, so unchanged files are not hashed again.
"""

import dagster as dg
from dagster import ScheduleEvaluationContext

from medvid_assets.jobs import dicom_pipeline, video_pipeline
from medvid_assets.partitions import study_partitions, video_partitions
from medvid_assets.sensors import scan_and_register
from medvid_assets.storage import read_json, write_json
from medvid_resources import DeidentificationResource, LandingZone, MediaStore

SCHEDULE_CURSOR_KEY = "cursors/daily_drive_sync.json"


def unprocessed(instance: dg.DagsterInstance, partitions: str, last_asset: str) -> list[str]:
    """Partitions of ``partitions`` whose ``last_asset`` was never materialized, sorted."""
    done = instance.get_materialized_partitions(dg.AssetKey(last_asset))
    return sorted(set(instance.get_dynamic_partitions(partitions)) - set(done))


@dg.schedule(
    job=video_pipeline,
    cron_schedule="0 5 * * *",
    execution_timezone="UTC",
    name="daily_drive_sync",
    description="Every day at 05:00: take every file in the landing zone that has been still for"
    " a minute, record it once, add its video or study partition, and run the video pipeline for"
    " every video not processed yet (studies follow at 05:05).",
)
def daily_drive_sync(
    context: ScheduleEvaluationContext,
    landing_zone: LandingZone,
    media_store: MediaStore,
    deid: DeidentificationResource,
):
    cursor = (
        read_json(media_store, SCHEDULE_CURSOR_KEY)
        if media_store.exists(SCHEDULE_CURSOR_KEY)
        else None
    )
    outcome, registration = scan_and_register(
        landing_zone,
        media_store,
        deid,
        cursor,
        now=context.scheduled_execution_time.timestamp(),
        require_stable=False,
        min_age_s=60.0,
    )
    write_json(media_store, SCHEDULE_CURSOR_KEY, outcome.cursor)
    if videos := [e.content_id for e in outcome.new_of_kind("video")]:
        context.instance.add_dynamic_partitions(video_partitions.name, videos)
    if studies := sorted(registration.studies):
        context.instance.add_dynamic_partitions(study_partitions.name, studies)
    day = context.scheduled_execution_time.date().isoformat()
    todo = unprocessed(context.instance, video_partitions.name, "frame_labels")
    if not todo:
        return dg.SkipReason(f"no video to process ({len(outcome.pending)} file(s) pending)")
    return [
        dg.RunRequest(run_key=f"daily:{day}:{video_id}", partition_key=video_id)
        for video_id in todo
    ]


@dg.schedule(
    job=dicom_pipeline,
    cron_schedule="5 5 * * *",
    execution_timezone="UTC",
    name="daily_dicom_sync",
    description="Every day at 05:05: run the DICOM pipeline for every study registered (by the"
    " 05:00 scan or the sensor) and not processed yet.",
)
def daily_dicom_sync(context: ScheduleEvaluationContext):
    day = context.scheduled_execution_time.date().isoformat()
    todo = unprocessed(context.instance, study_partitions.name, "dicom_images")
    if not todo:
        return dg.SkipReason("no study to process")
    return [dg.RunRequest(run_key=f"daily:{day}:{study}", partition_key=study) for study in todo]
