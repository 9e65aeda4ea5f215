"""Quality: every input medvid could not process, in one table for people to act on."""

import dagster as dg

from medvid_assets.quality import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
)
