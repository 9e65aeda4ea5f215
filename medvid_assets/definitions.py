"""The one Definitions of medvid: every asset, check, job, sensor, schedule and resource."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from medvid_assets import deid, dicom, export, frames, labels, landing, ocr, quarantine, videos
from medvid_assets import labelbox as labelbox_stage
from medvid_assets import predict as predict_stage
from medvid_assets.jobs import LABEL_JOBS, dicom_pipeline, export_job, labels_job, video_pipeline
from medvid_assets.labelbox import labelbox_from_env
from medvid_assets.schedules import daily_dicom_sync, daily_drive_sync
from medvid_assets.sensors import cine_loop_sensor, drive_landing_sensor
from medvid_assets.settings import (
    deid_from_env,
    landing_zone_from_env,
    media_store_from_env,
    medvid_home,
    ocr_engine_from_env,
)
from medvid_resources.torch_device import TorchDeviceResource

STAGES = [
    landing,
    videos,
    dicom,
    ocr,
    deid,
    frames,
    labels,
    labelbox_stage,
    predict_stage,
    export,
    quarantine,
]


def build_definitions(home: Path | None = None) -> dg.Definitions:
    """All of medvid, with resources rooted at ``home`` (default :func:`medvid_home`)."""
    home = home or medvid_home()
    return dg.Definitions(
        assets=dg.load_assets_from_modules(STAGES),
        asset_checks=dg.load_asset_checks_from_modules(STAGES),
        jobs=[video_pipeline, dicom_pipeline, labels_job, export_job, *LABEL_JOBS],
        sensors=[
            drive_landing_sensor,
            cine_loop_sensor,
            dg.AutomationConditionSensorDefinition(
                "medvid_automation",
                target=dg.AssetSelection.all(),
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=30,
            ),
        ],
        schedules=[daily_drive_sync, daily_dicom_sync],
        resources={
            "landing_zone": landing_zone_from_env(home),
            "media_store": media_store_from_env(home),
            "deid": deid_from_env(home),
            "ocr_engine": ocr_engine_from_env(),
            "labelbox": labelbox_from_env(),
            "torch_device": TorchDeviceResource(),
        },
    )


defs = build_definitions()
