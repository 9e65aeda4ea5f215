"""The video stage: the protected raw copy, metadata, normalized H.264 clips (per video)."""

import dagster as dg

from medvid_assets.videos import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
)
