"""The DICOM stage: per study (a pseudonymous partition), the de-identified header table and"""

import dagster as dg

from medvid_assets.dicom import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
)
