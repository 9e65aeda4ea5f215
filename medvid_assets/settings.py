"""Where medvid lives on this machine: the home folder and the resources built from it.

``MEDVID_HOME`` (default: ``DAGSTER_HOME``, else ``./dagster_home``) holds ``landing/`` (the
default drive folder), ``media/``, ``tables/``, ``ledger/``, ``quarantine/`` and ``exports/``.
``MEDVID_LANDING_DIR`` overrides the landing folder. A site on S3 sets ``MEDVID_LANDING_BUCKET``
and/or ``MEDVID_MEDIA_BUCKET`` (credentials through the usual AWS variables, read by
``dagster_aws.s3.S3Resource``). ``MEDVID_DEID_SALT`` is the de-identification secret (without
it a random salt is kept in ``<home>/protected/deid_salt``). ``MEDVID_OCR_ENGINE`` picks the OCR
engine (rapidocr, tesseract, easyocr with ``MEDVID_EASYOCR_MODEL_DIR``).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

from medvid_resources import (
    DeidentificationResource,
    DriveFolderLandingZone,
    LandingZone,
    LocalMediaStore,
    MediaStore,
    S3LandingZone,
    S3MediaStore,
)
from medvid_resources.ocr import OcrEngineResource


def medvid_home() -> Path:
    home = os.environ.get("MEDVID_HOME") or os.environ.get("DAGSTER_HOME") or "dagster_home"
    return Path(home).expanduser().resolve()


def _s3() -> S3Resource:
    return S3Resource(
        region_name=os.environ.get("AWS_REGION") or None,
        endpoint_url=os.environ.get("MEDVID_S3_ENDPOINT_URL") or None,
    )


def landing_zone_from_env(home: Path) -> LandingZone:
    if bucket := os.environ.get("MEDVID_LANDING_BUCKET"):
        return S3LandingZone(
            bucket=bucket, prefix=os.environ.get("MEDVID_LANDING_PREFIX", ""), s3=_s3()
        )
    return DriveFolderLandingZone(
        path=os.environ.get("MEDVID_LANDING_DIR") or str(home / "landing")
    )


def media_store_from_env(home: Path) -> MediaStore:
    if bucket := os.environ.get("MEDVID_MEDIA_BUCKET"):
        return S3MediaStore(
            bucket=bucket,
            prefix=os.environ.get("MEDVID_MEDIA_PREFIX", "medvid"),
            cache_dir=str(home / "s3-cache"),
            s3=_s3(),
        )
    return LocalMediaStore(root=str(home))


def deid_from_env(home: Path) -> DeidentificationResource:
    """The salt from ``MEDVID_DEID_SALT`` (as an ``EnvVar``: resolved at run time, never shown),
    else a salt file in the protected part of the home folder."""
    if os.environ.get("MEDVID_DEID_SALT"):
        return DeidentificationResource(salt=dg.EnvVar("MEDVID_DEID_SALT"))
    return DeidentificationResource(salt_file=str(home / "protected" / "deid_salt"))


def ocr_engine_from_env() -> OcrEngineResource:
    return OcrEngineResource(
        engine_name=os.environ.get("MEDVID_OCR_ENGINE", "rapidocr"),
        easyocr_model_dir=os.environ.get("MEDVID_EASYOCR_MODEL_DIR") or None,
    )
