"""Schedules: the 05:00 batch for sites that prefer one run a day to a watching sensor."""

import dagster as dg
from dagster import ScheduleEvaluationContext

from medvid_assets.jobs import video_pipeline
from medvid_assets.landing import scan_landing
from medvid_assets.sensors import run_requests_for
from medvid_resources import LandingZone, MediaStore


@dg.schedule(
    job=video_pipeline,
    cron_schedule="0 5 * * *",
    execution_timezone="UTC",
    name="daily_drive_sync",
    description="Every day at 05:00: take every file in the landing zone that has been still for"
    " a minute, record it once, add its video partition and run the video pipeline for it.",
)
def daily_drive_sync(
    context: ScheduleEvaluationContext, landing_zone: LandingZone, media_store: MediaStore
):
    now = context.scheduled_execution_time.timestamp()
    outcome = scan_landing(
        landing_zone, media_store, None, now=now, require_stable=False, min_age_s=60.0
    )
    new_videos = [e.content_id for e in outcome.new_of_kind("video")]
    if new_videos:
        context.instance.add_dynamic_partitions("videos", new_videos)
    requests = [r for r in run_requests_for(outcome) if r.job_name == video_pipeline.name]
    if not requests:
        return dg.SkipReason(f"nothing new in the landing zone ({len(outcome.pending)} pending)")
    return requests
