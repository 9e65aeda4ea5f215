"""medvid's Definitions for the day-backfill test, as the code location the test's in-process
workspace loads: the home and landing folder from ``MEDVID_HOME`` and ``MEDVID_LANDING_DIR``,
every step in the run's process (the backfill's runs execute inside the test)."""

import os
from pathlib import Path

import dagster as dg

from medvid_assets.definitions import build_definitions

defs = build_definitions(
    Path(os.environ["MEDVID_HOME"]),
    Path(os.environ["MEDVID_LANDING_DIR"]),
    executor=dg.in_process_executor,
)
