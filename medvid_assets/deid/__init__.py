"""The de-identification stage: burned-in text blacked out, and residual checks that block an"""

import dagster as dg

from medvid_assets.deid import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
)
