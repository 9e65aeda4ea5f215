"""The frames stage: decode each normalized video once and keep sampled frames as redacted"""

import dagster as dg

from medvid_assets.frames import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
)
