"""The predict stage: labels predicted by models, and the labelling that trains them."""

import dagster as dg

from medvid_assets.predict import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
)
