"""Helpers of the label, Labelbox and prediction asset tests: real clips through the whole video
pipeline (the job's own asset selection, so the tests follow the pipeline as it grows), with
every resource of medvid in-process and Labelbox replaced at its SDK client boundary."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from medvid.ids import content_id, sha256_file
from medvid_assets.definitions import STAGES, build_definitions
from medvid_assets.jobs import VIDEO_PIPELINE_ASSETS
from medvid_resources.labelbox import LabelboxResource
from medvid_resources.torch_device import TorchDeviceResource
from tests.assets.conftest import register  # noqa: F401 (re-exported to the label tests)
from tests.fakes.labelbox_fake import FakeLabelboxClient

ALL_ASSETS = dg.load_assets_from_modules(STAGES)
LABELBOX_PROJECT = "8ikpemouf4oszagoc7vlj67wq"  # the project of the export v2 fixture
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
    ``home``, de-identification, OCR...), with the torch device on the CPU and Labelbox faked."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("MEDVID_")}
    try:
        resources = dict(build_definitions(home).resources)
    finally:
        os.environ.update(saved)
    resources["torch_device"] = TorchDeviceResource(device="cpu", cpu_threads=2)
    resources["labelbox"] = labelbox or fake_labelbox(
        FakeLabelboxClient(project_id=LABELBOX_PROJECT)
    )
    return resources


def materialize(
    instance: dg.DagsterInstance,
    resources: dict,
    *names: str,
    partition_key: str | None = None,
    run_config: dict | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """Materialize the named assets (of all of medvid) in-process."""
    return dg.materialize(
        ALL_ASSETS,
        selection=dg.AssetSelection.assets(*names),
        partition_key=partition_key,
        instance=instance,
        resources=resources,
        run_config=run_config or {},
        raise_on_error=raise_on_error,
    )


def process_videos(
    instance: dg.DagsterInstance,
    resources: dict,
    video_ids: list[str],
    labels_config: dict | None = None,
) -> None:
    """``label_sheets`` then the whole video pipeline of each video, every 10th frame."""
    materialize(
        instance,
        resources,
        "label_sheets",
        run_config={"ops": {"label_sheets": {"config": labels_config or {}}}},
    )
    for video_id in video_ids:
        materialize(
            instance,
            resources,
            *VIDEO_PIPELINE_ASSETS,
            partition_key=video_id,
            run_config={"ops": {"video_frames": {"config": EVERY_10}}},
        )


@dataclass(frozen=True)
class Processed:
    """A medvid home whose videos went through the whole video pipeline."""

    home: Path
    video_ids: dict[str, str]  # clip file name -> video_id


def process_clips(
    root: Path,
    videos_dir: Path,
    clips: list[str],
    sheets: dict[str, str] | None = None,
    labels_config: dict | None = None,
) -> Processed:
    """Drop ``clips`` (and sheets: file name -> CSV text) into ``root/home/landing`` and run
    label_sheets and the video pipeline on them."""
    home = root / "home"
    (home / "landing").mkdir(parents=True)
    for clip in clips:
        shutil.copyfile(videos_dir / clip, home / "landing" / clip)
    for name, text in (sheets or {}).items():
        (home / "landing" / name).write_text(text)
    with dg.instance_for_test() as instance:
        resources = medvid_resources(home)
        process_videos(instance, resources, register(instance, resources), labels_config)
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
        instance.add_dynamic_partitions("videos", sorted(processed.video_ids.values()))
        yield instance, medvid_resources(home, labelbox), home
