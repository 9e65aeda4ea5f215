"""The Labelbox round trip: frames up as data rows, labels back as label sets and masks."""

import dagster as dg

from medvid_assets.labelbox import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
)
