"""Sensors and the schedule: they look (list, stat, read records), runs work.

- ``landing_sensor`` (every 30 s, on by default): lists the landing zone and requests an
  ``intake_job`` run for the file versions that settled since the last tick and have no outcome.
  It writes nothing: its state is its cursor, saved only when Dagster applies the tick, so
  "Preview tick result" in the UI changes nothing.
- ``pipeline_sensor`` (every 30 s, on by default): requests what :func:`plan` says the
  batches, labels, predictions and export need.
- ``daily_intake`` (05:00 UTC, off by default): the same intake as the sensor, for sites that
  prefer one batch a day (files still for a minute are taken).

``MEDVID_SENSOR_INTERVAL_S`` (read when the code location loads; default 30) sets both sensors'
minimum interval. The daemon evaluates sensors at most every 5 s whatever the interval, and a
landing file is taken on the second tick that sees it unchanged, so the shortest time from
upload to intake run is about two daemon loops.
"""

import json
import os
import time
from collections.abc import Mapping

import dagster as dg

from medvid.intake.ledger import has_intake_record
from medvid.intake.pending import look
from medvid_assets.orchestration.jobs import JOBS, intake_job
from medvid_assets.orchestration.planner import MAX_ATTEMPTS, plan
from medvid_assets.policy import SettingsResource
from medvid_resources import LandingZone, MediaStore

DEFAULT_SENSOR_INTERVAL_S = 30


def sensor_interval_s(environ: Mapping[str, str] = os.environ) -> int:
    """The sensors' ``minimum_interval_seconds``: ``MEDVID_SENSOR_INTERVAL_S`` (whole seconds,
    at least 1), else :data:`DEFAULT_SENSOR_INTERVAL_S`.

    Raises ``ValueError`` naming the variable when it is not a positive whole number."""
    raw = environ.get("MEDVID_SENSOR_INTERVAL_S", "").strip()
    if not raw:
        return DEFAULT_SENSOR_INTERVAL_S
    try:
        seconds = int(raw)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise ValueError(
            f"MEDVID_SENSOR_INTERVAL_S must be a whole number of seconds >= 1, not {raw!r}"
        )
    return seconds


def _look(zone: LandingZone, store: MediaStore, cursor: dict | None, **kwargs):
    return look(
        zone.list_files(),
        zone.uri,
        lambda fp: has_intake_record(store, fp),
        cursor,
        now=time.time(),
        **kwargs,
    )


@dg.sensor(
    job=intake_job,
    minimum_interval_seconds=sensor_interval_s(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Lists the landing zone. A file version is taken once its size and mtime are"
    " unchanged across two ticks (temporary upload files are ignored) and it has no recorded"
    " outcome: one intake_job run per UTC day of landing. Writes nothing (safe to preview).",
)
def landing_sensor(
    context: dg.SensorEvaluationContext,
    landing_zone: LandingZone,
    media_store: MediaStore,
    settings: SettingsResource,
) -> dg.SensorResult:
    cursor = json.loads(context.cursor) if context.cursor else None
    found = _look(landing_zone, media_store, cursor, require_stable=True)
    planned = plan(context.instance, media_store, settings.load(), look=found, pipelines=False)
    if found.waiting:
        context.log.info(f"waiting for {len(found.waiting)} file(s) to settle")
    for unit in planned.given_up:
        context.log.warning(f"{unit}: failed {MAX_ATTEMPTS} times at these inputs; not retried")
    return dg.SensorResult(
        run_requests=[r.run_request() for r in planned.runs],
        cursor=json.dumps(found.cursor, sort_keys=True),
    )


def touched_batches(instance: dg.DagsterInstance, after: int | None) -> tuple[set[str], int | None]:
    """Batches intake added members to after the event-log ``after`` storage id, and the
    storage id to look after next time."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("landing_intake"), after_storage_id=after),
        limit=10_000,
        ascending=True,
    ).records
    touched: set[str] = set()
    for record in records:
        value = (record.asset_materialization.metadata or {}).get("batches")
        touched.update(value.value if value is not None else [])
        after = record.storage_id
    return touched, after


@dg.sensor(
    jobs=[job for job in JOBS if job is not intake_job],
    minimum_interval_seconds=sensor_interval_s(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests the runs medvid's planner finds needed: the batch_pipeline of every"
    " batch that is new or gained members, then (when those are done) labels, the label model"
    " and predictions when configured, and the export. Looks only (runs, materializations,"
    " records); its cursor remembers which batches are not done yet.",
)
def pipeline_sensor(
    context: dg.SensorEvaluationContext, media_store: MediaStore, settings: SettingsResource
) -> dg.SensorResult:
    cursor = json.loads(context.cursor) if context.cursor else None
    if cursor is None:  # first tick: look at every batch once
        touched, after = None, touched_batches(context.instance, None)[1]
    else:
        new, after = touched_batches(context.instance, cursor["after"])
        touched = new | set(cursor["pending"])
    planned = plan(context.instance, media_store, settings.load(), intake=False, touched=touched)
    for unit in planned.given_up:
        context.log.warning(f"{unit}: failed {MAX_ATTEMPTS} times at these inputs; not retried")
    given_up = {u.split(":", 1)[1] for u in planned.given_up if u.startswith("batch:")}
    next_cursor = json.dumps(
        {"after": after, "pending": sorted(planned.pending_batches - given_up)}, sort_keys=True
    )
    if not planned.runs:
        return dg.SensorResult(skip_reason=dg.SkipReason("nothing to do"), cursor=next_cursor)
    return dg.SensorResult(run_requests=[r.run_request() for r in planned.runs], cursor=next_cursor)


@dg.schedule(
    job=intake_job,
    cron_schedule="0 5 * * *",
    execution_timezone="UTC",
    name="daily_intake",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every day at 05:00 UTC: take every landing file still for a minute that has no"
    " outcome yet (the landing sensor does the same continuously; turn this on instead of it"
    " for a nightly batch).",
)
def daily_intake(
    context: dg.ScheduleEvaluationContext,
    landing_zone: LandingZone,
    media_store: MediaStore,
    settings: SettingsResource,
):
    found = look(
        landing_zone.list_files(),
        landing_zone.uri,
        lambda fp: has_intake_record(media_store, fp),
        None,
        require_stable=False,
        min_age_s=60.0,
        now=context.scheduled_execution_time.timestamp(),
    )
    planned = plan(context.instance, media_store, settings.load(), look=found, pipelines=False)
    if not planned.runs:
        return dg.SkipReason(f"nothing to take in ({len(found.waiting)} file(s) too recent)")
    return [r.run_request() for r in planned.runs]
