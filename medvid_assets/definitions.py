"""The one Definitions of medvid: every stage's assets and checks, the orchestration (jobs,
sensors, schedule) and the resources, merged (``dg.Definitions.merge``).

Stages (a folder each, same names as in the core): intake, videos, dicom, ocr, deid, frames,
cleaning, labels, labelbox, predict, export, quality. Stages never import each other; they meet
through the core (:mod:`medvid`) and asset keys.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from medvid_assets import (
    cleaning,
    deid,
    dicom,
    export,
    frames,
    intake,
    labelbox,
    labels,
    ocr,
    orchestration,
    predict,
    quality,
    videos,
)
from medvid_assets.executors import executor_from_env
from medvid_assets.resources import medvid_home, resources

STAGES = (
    intake,
    videos,
    dicom,
    ocr,
    deid,
    frames,
    cleaning,
    labels,
    labelbox,
    predict,
    export,
    quality,
)


def build_definitions(
    home: Path | None = None,
    landing_dir: Path | None = None,
    executor: dg.ExecutorDefinition | None = None,
) -> dg.Definitions:
    """All of medvid, with resources rooted at ``home`` (default :func:`medvid_home`), the
    landing zone at ``landing_dir`` when given (the ``medvid`` command's argument) and every
    job on ``executor`` (default: the one ``MEDVID_EXECUTOR`` names, :func:`executor_from_env`)."""
    home = home or medvid_home()
    return dg.Definitions.merge(
        *(stage.defs for stage in STAGES),
        orchestration.defs,
        dg.Definitions(
            resources=resources(home, landing_dir), executor=executor or executor_from_env()
        ),
    )


defs = build_definitions()
