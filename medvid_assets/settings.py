"""Where medvid lives on this machine: the home folder and the resources built from it.

``MEDVID_HOME`` (default: ``DAGSTER_HOME``, else ``./dagster_home``) holds ``landing/`` (the
default drive folder), ``media/``, ``tables/``, ``ledger/``, ``quarantine/`` and ``exports/``.
``MEDVID_LANDING_DIR`` overrides the landing folder. A site on S3 sets ``MEDVID_LANDING_BUCKET``
and/or ``MEDVID_MEDIA_BUCKET`` (credentials through the usual AWS variables, read by
``dagster_aws.s3.S3Resource``).
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster_aws.s3 import S3Resource

from medvid_resources import (
    DriveFolderLandingZone,
    LandingZone,
    LocalMediaStore,
    MediaStore,
    S3LandingZone,
    S3MediaStore,
)


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
