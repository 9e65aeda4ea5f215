"""A medvid home on a temporary instance: build the definitions, run what the planner says,
materialize single assets, read the store."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from medvid.batches import batch_of
from medvid.dicom.registration import registered_studies
from medvid.intake.ledger import ledger_entries
from medvid.settings import SETTINGS_FILE
from medvid_assets.definitions import build_definitions
from medvid_assets.orchestration.launch import Launched, run_until_done
from medvid_resources import LocalMediaStore

AVI = "covid19us_Reg_northumbria_1009_vid1.avi"  # MPEG-4 part 2 in AVI, 92 frames
MP4 = "covid19us_Vir_whitelung_h1n1.mp4"  # H.264 MP4, 123 frames at 25 fps
SONOSITE = "itkpocus_sonosite-anon-eye1-video.mp4"  # H.264 MP4, 100 frames


@dataclass
class Home:
    """One medvid home (``path``) with its landing folder, instance and definitions."""

    path: Path
    landing: Path
    instance: dg.DagsterInstance

    def __post_init__(self) -> None:
        self.defs = build_definitions(self.path, self.landing)

    @property
    def store(self) -> LocalMediaStore:
        return LocalMediaStore(root=str(self.path))

    def videos(self) -> list[str]:
        """Every video id medvid knows (landing videos and cine loops)."""
        return sorted(e.content_id for e in ledger_entries(self.store, kind="video"))

    def studies(self) -> list[str]:
        return registered_studies(self.store)

    def batch_of(self, member_id: str) -> str:
        return batch_of(self.store, member_id)

    def resources(self, *keys: str) -> dict:
        """Some of the deployment's resources (Labelbox's need its variables set)."""
        return {k: self.defs.resources[k] for k in keys if k in self.defs.resources}

    def configure(self, yaml_text: str) -> None:
        """Write the home config (``medvid.yaml``)."""
        (self.path / SETTINGS_FILE).write_text(yaml_text)

    def run(self, *only: str) -> Launched:
        """What the sensors would launch, executed until nothing is left (like ``medvid run``);
        ``only`` kinds of run (``"intake"``, ``"batch"``, ``"labels"``...) when given."""
        keys = ("landing_zone", "media_store", "settings")
        with dg.build_resources(
            {k: self.defs.resources[k] for k in keys}, instance=self.instance
        ) as res:
            return run_until_done(self.defs, self.instance, res, only=set(only) or None)

    def materialize(
        self, *names: str, partition_key=None, run_config=None, selection=None, tags=None
    ):
        """Materialize assets by name in-process with this home's resources."""
        assets = [self.defs.get_assets_def(dg.AssetKey(n)) for n in names]
        needed = set().union(*(a.required_resource_keys for a in assets))
        return dg.materialize(
            assets,
            selection=selection,
            partition_key=partition_key,
            instance=self.instance,
            resources=self.resources(*needed),
            run_config=run_config,
            tags=tags,
            raise_on_error=False,
        )


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def medvid_home(tmp_path: Path, instance, monkeypatch) -> Home:
    monkeypatch.setenv("MEDVID_DEID_SALT", "test-salt-not-a-secret")
    home, landing = tmp_path / "home", tmp_path / "landing"
    home.mkdir()
    landing.mkdir()
    return Home(home, landing, instance)


def drop(source_dir: Path, landing: Path, name: str, as_name: str | None = None) -> Path:
    """Copy a real file into the landing folder (as an uploader would)."""
    target = landing / (as_name or name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_dir / name, target)
    return target
