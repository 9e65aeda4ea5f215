"""Orchestration: the jobs, the one planner, the sensors and the schedule, and run cleanup."""

import dagster as dg

from medvid_assets.orchestration.jobs import JOBS
from medvid_assets.orchestration.sensors import daily_intake, landing_sensor, pipeline_sensor

defs = dg.Definitions(
    jobs=JOBS, sensors=[landing_sensor, pipeline_sensor], schedules=[daily_intake]
)
