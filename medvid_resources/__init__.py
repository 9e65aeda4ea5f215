"""Dagster resources for the world outside the core: where media lands, where it is stored,
which OCR engine reads it, which torch device runs models, and Labelbox.

Every interface has a local twin (a folder) beside the remote one (S3), so sensors and assets
run unchanged on a laptop and at a site with buckets.
"""

from medvid_resources.deid import DeidentificationResource, DeidentificationSecretError
from medvid_resources.landing import (
    DriveFolderLandingZone,
    LandingFile,
    LandingZone,
    S3LandingZone,
)
from medvid_resources.media_store import LocalMediaStore, MediaStore, S3MediaStore

__all__ = [
    "DeidentificationResource",
    "DeidentificationSecretError",
    "DriveFolderLandingZone",
    "LandingFile",
    "LandingZone",
    "LocalMediaStore",
    "MediaStore",
    "S3LandingZone",
    "S3MediaStore",
]
