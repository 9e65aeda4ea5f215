"""The resources of a deployment, chosen from its environment.

Which twin (folder or bucket) a site uses is decided when the code location loads, from which
variables are set; their values (paths, buckets, endpoints, secrets) are passed as Dagster
``EnvVar`` and read when a run starts, so changing a value needs no code change and secrets are
never part of the definitions. See the README's "Configuration of the deployment" table.

- ``MEDVID_HOME`` (else ``DAGSTER_HOME``, else ``./dagster_home``): the home folder (media store,
  home config ``medvid.yaml``, default landing folder ``landing/``).
- ``MEDVID_LANDING_DIR``, or ``MEDVID_LANDING_BUCKET`` (+ ``MEDVID_LANDING_PREFIX``).
- ``MEDVID_MEDIA_BUCKET`` (+ ``MEDVID_MEDIA_PREFIX``), ``MEDVID_S3_ENDPOINT_URL``, ``AWS_*``.
- ``MEDVID_DEID_SALT`` (else a 0600 salt file in ``protected/``), ``MEDVID_OCR_ENGINE``,
  ``MEDVID_EASYOCR_MODEL_DIR``, ``LABELBOX_API_KEY``, ``MEDVID_LABELBOX_PROJECT_ID``,
  ``MEDVID_LABELBOX_DATASET``, ``MEDVID_TORCH_DEVICE``, ``MEDVID_TORCH_THREADS``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

from medvid.catalog import keys
from medvid.settings import SETTINGS_FILE
from medvid_assets.policy import SettingsResource
from medvid_resources import (
    DeidentificationResource,
    DriveFolderLandingZone,
    LandingZone,
    LocalMediaStore,
    MediaStore,
    S3LandingZone,
    S3MediaStore,
)
from medvid_resources.labelbox import LabelboxResource
from medvid_resources.ocr import OcrEngineResource
from medvid_resources.torch_device import TorchDeviceResource


def medvid_home() -> Path:
    home = os.environ.get("MEDVID_HOME") or os.environ.get("DAGSTER_HOME") or "dagster_home"
    return Path(home).expanduser().resolve()


def _env(name: str, default: str | None = None):
    """``dg.EnvVar(name)`` when the variable is set, else ``default``."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def _s3() -> S3Resource:
    return S3Resource(region_name=_env("AWS_REGION"), endpoint_url=_env("MEDVID_S3_ENDPOINT_URL"))


def landing_zone(home: Path, landing_dir: Path | None = None) -> LandingZone:
    if landing_dir is not None:
        return DriveFolderLandingZone(path=str(landing_dir))
    if os.environ.get("MEDVID_LANDING_BUCKET"):
        return S3LandingZone(
            bucket=dg.EnvVar("MEDVID_LANDING_BUCKET"),
            prefix=_env("MEDVID_LANDING_PREFIX", ""),
            s3=_s3(),
        )
    return DriveFolderLandingZone(path=_env("MEDVID_LANDING_DIR", str(home / "landing")))


def media_store(home: Path) -> MediaStore:
    if os.environ.get("MEDVID_MEDIA_BUCKET"):
        return S3MediaStore(
            bucket=dg.EnvVar("MEDVID_MEDIA_BUCKET"),
            prefix=_env("MEDVID_MEDIA_PREFIX", "medvid"),
            cache_dir=str(home / "s3-cache"),
            s3=_s3(),
        )
    return LocalMediaStore(root=str(home))


def deid(home: Path) -> DeidentificationResource:
    """The salt from ``MEDVID_DEID_SALT`` (resolved at run time, never shown), else a salt file
    in the protected zone of the home folder."""
    if os.environ.get("MEDVID_DEID_SALT"):
        return DeidentificationResource(salt=dg.EnvVar("MEDVID_DEID_SALT"))
    return DeidentificationResource(salt_file=str(home / keys.DEID_SALT))


def resources(home: Path, landing_dir: Path | None = None) -> dict:
    """Every resource medvid's assets, sensors and schedules use, for ``home``."""
    return {
        "landing_zone": landing_zone(home, landing_dir),
        "media_store": media_store(home),
        "deid": deid(home),
        "ocr_engine": OcrEngineResource(
            engine_name=os.environ.get("MEDVID_OCR_ENGINE", "rapidocr"),  # type: ignore[arg-type]
            easyocr_model_dir=_env("MEDVID_EASYOCR_MODEL_DIR"),
        ),
        "labelbox": LabelboxResource(
            api_key=dg.EnvVar("LABELBOX_API_KEY"),
            project_id=dg.EnvVar("MEDVID_LABELBOX_PROJECT_ID"),
            dataset_name=_env("MEDVID_LABELBOX_DATASET", "medvid-frames"),
        ),
        "torch_device": TorchDeviceResource(
            device=os.environ.get("MEDVID_TORCH_DEVICE", "auto"),  # type: ignore[arg-type]
            cpu_threads=int(os.environ.get("MEDVID_TORCH_THREADS", "0")),
        ),
        "settings": SettingsResource(path=str(home / SETTINGS_FILE)),
    }
