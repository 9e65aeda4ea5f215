"""The export stage: a training dataset folder under ``<home>/exports/<dataset_name>/``, built"""

import dagster as dg

from medvid_assets.export import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
)
