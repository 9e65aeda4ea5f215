"""Helpers of the label, Labelbox and prediction tests: real clips taken in and through the
whole video pipeline once per module (as the planner runs them), with Labelbox replaced at its
SDK client boundary and the torch device on the CPU."""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from medvid.batches import batch_of
from medvid.ids import content_id, sha256_file
from medvid.settings import SETTINGS_FILE
from medvid.status import read_status
from medvid_assets.definitions import build_definitions
from medvid_resources import DeidentificationResource
from medvid_resources.labelbox import LabelboxResource
from medvid_resources.torch_device import TorchDeviceResource
from tests.fakes.labelbox_fake import FakeLabelboxClient

LABELBOX_PROJECT = "8ikpemouf4oszagoc7vlj67wq"  # the project of the export v2 fixture
SALT = "test-salt-not-a-secret"
#: Frames every 10th frame: 92-frame AVI -> 10 frames, 123-frame MP4 -> 13 frames.
EVERY_10 = {"strategy": "every_n", "every_n": 10}


def fake_labelbox(fake: FakeLabelboxClient, masks: dict[str, bytes] | None = None):
    """The production :class:`LabelboxResource` with only its SDK client (and the mask
    download, its one plain HTTP call) replaced by the fake."""

    class FakeClientLabelbox(LabelboxResource):
        def _client(self) -> Any:
            return fake

        def fetch_mask(self, url: str) -> bytes:
            fake.calls.append(("fetch_mask", {"url": url}))
            return (masks or {})[url]

    return FakeClientLabelbox(api_key="lb-test-key-not-a-secret", project_id=LABELBOX_PROJECT)


def medvid_resources(home: Path, labelbox: LabelboxResource | None = None) -> dict:
    """The resources of ``build_definitions(home)`` (landing zone ``home/landing``, media store
    ``home``, the test salt...), with the torch device on the CPU and Labelbox faked."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("MEDVID_")}
    try:
        resources = dict(build_definitions(home, home / "landing").resources)
    finally:
        os.environ.update(saved)
    resources["deid"] = DeidentificationResource(salt=SALT)
    resources["torch_device"] = TorchDeviceResource(device="cpu", cpu_threads=2)
    resources["labelbox"] = labelbox or fake_labelbox(
        FakeLabelboxClient(project_id=LABELBOX_PROJECT)
    )
    return resources


def _defs(home: Path) -> dg.Definitions:
    return build_definitions(home, home / "landing")


def materialize(
    instance: dg.DagsterInstance,
    resources: dict,
    *names: str,
    partition_key: str | None = None,
    run_config: dict | None = None,
    raise_on_error: bool = True,
    member: str | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize the named assets (of all of medvid) in-process; with ``member``, a batch
    asset for that video only (its batch, tagged ``medvid/only``, recomputed)."""
    home = Path(resources["media_store"].root)
    defs = _defs(home)
    assets = [defs.get_assets_def(dg.AssetKey(n)) for n in names]
    tags = None
    if member is not None:
        partition_key = batch_of(resources["media_store"], member)
        tags = {"medvid/only": member, "medvid/redo": "true"}
    return dg.materialize(
        assets,
        partition_key=partition_key,
        instance=instance,
        resources=resources,
        run_config=run_config or {},
        raise_on_error=raise_on_error,
        tags=tags,
    )


def member_metadata(resources: dict, asset: str, member: str) -> dict:
    """What a batch asset recorded for one of its members (its status metadata)."""
    status = read_status(resources["media_store"], asset, member)
    assert status is not None, (asset, member)
    return status.metadata


#: The text scan of the label and prediction fixtures: a detection every second and one text frame
#: plus one random frame in the residual check. These fixtures test labels, models and cleaning,
#: not the PHI guarantee (tests/core/test_video_text.py, the cine-loop and endoscopy tests of
#: tests/stages/test_dicom.py, tests/cli/test_cli_dicom.py and benchmarks/phi.py keep the
#: default 0.25 s); the whole-video scan is most of a pipeline's time.
LIGHT_TEXT = {"detect_interval_s": 1.0, "residual_text_frames": 1, "residual_random_frames": 1}
#: Likewise the export's blocking PHI scan OCRs 2 sampled images instead of 16 (about 1 s each).
LIGHT_EXPORT = {"phi_scan_ocr_images": 2}


@dataclass(frozen=True)
class Processed:
    """A medvid home whose videos went through the whole video pipeline and labels."""

    home: Path
    video_ids: dict[str, str]  # clip file name -> video_id


def write_settings(home: Path, settings: dict) -> None:
    (home / SETTINGS_FILE).write_text(yaml.safe_dump(settings))


def process_clips(
    root: Path,
    videos_dir: Path,
    clips: list[str],
    sheets: dict[str, str] | None = None,
    labels_config: dict | None = None,
) -> Processed:
    """Drop ``clips`` (and sheets: file name -> CSV text) into ``root/home/landing`` and run
    intake, the video pipeline (every 10th frame) and the labels, as the planner would."""
    from medvid_assets.orchestration.launch import run_until_done

    home = root / "home"
    (home / "landing").mkdir(parents=True)
    for clip in clips:
        shutil.copyfile(videos_dir / clip, home / "landing" / clip)
    for name, text in (sheets or {}).items():
        (home / "landing" / name).write_text(text)
    write_settings(
        home,
        {
            "frames": EVERY_10,
            "text": LIGHT_TEXT,
            "labels": labels_config or {},
            "export": LIGHT_EXPORT,
        },
    )
    with dg.instance_for_test() as instance:
        resources = medvid_resources(home)
        keys = ("landing_zone", "media_store", "settings")
        with dg.build_resources({k: resources[k] for k in keys}, instance=instance) as res:
            launched = run_until_done(
                _defs(home), instance, res, only={"intake", "batch", "labels"}
            )
        assert not launched.failed, launched.failed
    ids = {clip: content_id(sha256_file(videos_dir / clip)) for clip in clips}
    return Processed(home=home, video_ids=ids)


@contextmanager
def open_copy(
    processed: Processed, target: Path, labelbox: LabelboxResource | None = None
) -> Iterator[tuple[dg.DagsterInstance, dict, Path]]:
    """A copy of a processed home with a fresh instance that knows its videos, so tests share
    one pipeline run and stay independent. Yields ``(instance, resources, home)``."""
    home = target / "home"
    shutil.copytree(processed.home, home, symlinks=True)
    with dg.instance_for_test() as instance:
        yield instance, medvid_resources(home, labelbox), home


def take_in(instance: dg.DagsterInstance, resources: dict) -> None:
    """Intake runs for whatever landed since (as the landing sensor would launch them)."""
    from medvid_assets.orchestration.launch import run_until_done

    home = Path(resources["media_store"].root)
    keys = ("landing_zone", "media_store", "settings")
    with dg.build_resources({k: resources[k] for k in keys}, instance=instance) as res:
        launched = run_until_done(_defs(home), instance, res, only={"intake"})
    assert not launched.failed
