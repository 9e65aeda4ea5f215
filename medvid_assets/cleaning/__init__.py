"""Cleaning: duplicate groups over every de-identified still and frame, the on-image marks of
every de-identified still, and the probe orientation of images whose text names none, read by
the export."""

import dagster as dg

from medvid_assets.cleaning import assets, orientation

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets, orientation]),
    asset_checks=dg.load_asset_checks_from_modules([assets, orientation]),
)
