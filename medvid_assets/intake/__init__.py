"""Intake: each landing file version taken once, into the protected zone, with its outcome."""

import dagster as dg

from medvid_assets.intake import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
)
