import shutil
import time
from pathlib import Path

import dagster as dg
import pytest

from medvid_assets.landing import scan_landing
from medvid_resources import DeidentificationResource, DriveFolderLandingZone, LocalMediaStore
from medvid_resources.ocr import OcrEngineResource

AVI = "covid19us_Reg_northumbria_1009_vid1.avi"  # MPEG-4 part 2 in AVI, 92 frames
MP4 = "covid19us_Vir_whitelung_h1n1.mp4"  # H.264 MP4, 123 frames at 25 fps
SONOSITE = "itkpocus_sonosite-anon-eye1-video.mp4"  # H.264 MP4, 100 frames


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    path = tmp_path / "landing"
    path.mkdir()
    return path


@pytest.fixture
def resources(home: Path, landing: Path) -> dict:
    return {
        "landing_zone": DriveFolderLandingZone(path=str(landing)),
        "media_store": LocalMediaStore(root=str(home)),
        "deid": DeidentificationResource(salt="test-salt-not-a-secret"),
        "ocr_engine": OcrEngineResource(),
    }


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def drop(videos_dir: Path, landing: Path, name: str, as_name: str | None = None) -> Path:
    """Copy a real clip into the landing folder (as an uploader would)."""
    target = landing / (as_name or name)
    shutil.copyfile(videos_dir / name, target)
    return target


def register(instance: dg.DagsterInstance, resources: dict) -> list[str]:
    """Record everything in the landing zone; add a partition per new video."""
    outcome = scan_landing(
        resources["landing_zone"],
        resources["media_store"],
        None,
        now=time.time(),
        require_stable=False,
    )
    ids = [e.content_id for e in outcome.new_of_kind("video")]
    instance.add_dynamic_partitions("videos", ids)
    return ids
