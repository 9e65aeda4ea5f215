"""The labels stage: the current version of every sheet (labels, segments, patients, reviews),"""

import dagster as dg

from medvid_assets.labels import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
)
