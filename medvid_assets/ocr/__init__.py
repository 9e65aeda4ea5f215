"""The OCR stage: burned-in text of every DICOM image, of a video before its frames are"""

import dagster as dg

from medvid_assets.ocr import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
)
