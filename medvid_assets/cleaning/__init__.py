"""Cleaning: duplicate groups over every de-identified still and frame, and the on-image marks
of every de-identified still, read by the export."""

import dagster as dg

from medvid_assets.cleaning import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
)
