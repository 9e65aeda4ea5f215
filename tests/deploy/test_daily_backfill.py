"""A day backfilled as a site does it from the UI: ``daily_snapshot`` with everything upstream of
it, one day, launched through the webserver's GraphQL mutation (``launchPartitionBackfill``,
what the UI's "Launch backfill" sends) and carried out by the daemon's backfill loop. Two days of
arrivals in the landing folder; only the backfilled day's files are taken in, go through the
whole path and make that day's snapshot."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from unittest import mock

import dagster as dg
import pandas as pd
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.daemon import get_default_daemon_logger
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql

from medvid.batches import members_of_day
from medvid.catalog import keys
from medvid.intake.ledger import intake_records, ledger_entries
from medvid_resources import LocalMediaStore
from tests.deploy.conftest import REPO

DAY, OTHER_DAY = "2026-11-28", "2026-11-29"
CLIP_OF_THE_DAY = "covid19us_Vir_whitelung_h1n1.mp4"  # H.264, 123 frames
CLIP_OF_THE_OTHER_DAY = "itkpocus_sonosite-anon-eye1-video.mp4"  # H.264, 100 frames
DATASET = "daily"
HOME_CONFIG = f"""\
frames: {{strategy: uniform_k, uniform_k: 3}}
text: {{detect_interval_s: 2.0}}
export: {{dataset_name: {DATASET}, phi_scan_ocr_images: 1}}
"""
#: Runs start as soon as the backfill submits them, and execute inside the test.
IMMEDIATE_RUNS = {
    "run_coordinator": {
        "module": "dagster._core.run_coordinator",
        "class": "DefaultRunCoordinator",
    },
    "run_launcher": {
        "module": "dagster._core.launcher.sync_in_memory_run_launcher",
        "class": "SyncInMemoryRunLauncher",
    },
}
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def land(landing: Path, day: str, name: str, *, text: str = "", source: Path | None = None):
    """Put ``source`` (a real clip) or a sheet with ``text`` into the landing folder as ``name``,
    its mtime at noon UTC of ``day``: the landing day intake and the batches are keyed by."""
    target = landing / name
    if source is not None:
        shutil.copyfile(source, target)
    else:
        target.write_text(text)
    noon = datetime.fromisoformat(f"{day}T12:00:00+00:00").timestamp()
    os.utime(target, (noon, noon))


@dataclass
class Backfilled:
    store: LocalMediaStore
    instance: dg.DagsterInstance
    status: str
    runs: list[dg.DagsterRun]
    seconds: float


pytestmark = pytest.mark.stack  # the daemon's backfill loop over 20 runs: minutes


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory, videos_dir) -> Backfilled:
    root = tmp_path_factory.mktemp("daily")
    home, landing = root / "home", root / "landing"
    home.mkdir()
    landing.mkdir()
    (home / "medvid.yaml").write_text(HOME_CONFIG)
    sheet = (
        "video,start_s,end_s,label\n"
        f"{CLIP_OF_THE_DAY},0.0,4.9,lung_viral_pneumonia\n"
        f"{CLIP_OF_THE_OTHER_DAY},0.0,4.0,ocular_phantom\n"
    )
    land(landing, DAY, "labels.csv", text=sheet)
    land(landing, DAY, CLIP_OF_THE_DAY, source=videos_dir / CLIP_OF_THE_DAY)
    land(landing, OTHER_DAY, CLIP_OF_THE_OTHER_DAY, source=videos_dir / CLIP_OF_THE_OTHER_DAY)
    env = {
        "MEDVID_HOME": str(home),
        "MEDVID_LANDING_DIR": str(landing),
        "MEDVID_DEID_SALT": "daily-test-salt-not-a-secret",
    }
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            module_name="tests.deploy.daily_defs",
            attribute="defs",
            working_directory=str(REPO),
        ),
        location_name="medvid",
    )
    with (
        mock.patch.dict(os.environ, env),
        dg.instance_for_test(overrides=IMMEDIATE_RUNS) as instance,
        create_test_daemon_workspace_context(
            InProcessWorkspaceLoadTarget(origin), instance
        ) as workspace,
    ):
        began = time.monotonic()
        upstream = dg.AssetSelection.assets("daily_snapshot").upstream()
        graph = workspace.create_request_context().asset_graph
        selection = sorted(upstream.resolve(graph), key=lambda k: k.to_user_string())
        launched = execute_dagster_graphql(
            workspace.create_request_context(),
            LAUNCH_PARTITION_BACKFILL_MUTATION,
            {
                "backfillParams": {
                    "assetSelection": [{"path": key.path} for key in selection],
                    "partitionNames": [DAY],
                }
            },
        )
        assert launched.errors is None, launched.errors
        response = launched.data["launchPartitionBackfill"]
        assert response["__typename"] == "LaunchBackfillSuccess", response
        logger = get_default_daemon_logger("BackfillDaemon")
        for _ in range(60):  # each iteration launches (and here runs) what became ready
            list(execute_backfill_iteration(workspace, logger))
            backfill = instance.get_backfill(response["backfillId"])
            runs = instance.get_runs()
            if backfill.status.value in DONE or any(r.is_failure for r in runs):
                break
        yield Backfilled(
            store=LocalMediaStore(root=str(home)),
            instance=instance,
            status=backfill.status.value,
            runs=list(runs),
            seconds=time.monotonic() - began,
        )


def run_errors(instance: dg.DagsterInstance, run_id: str) -> str:
    lines = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if entry.level >= 40 or (event is not None and event.is_failure):
            lines.append(str(entry.message))
        if event is not None and event.is_engine_event and event.engine_event_data.error:
            lines.append(event.engine_event_data.error.to_string())
    if not lines:  # failed without an error event: what it logged, last lines
        lines = [f"{e.dagster_event_type}: {e.message}" for e in instance.all_logs(run_id)]
    return "\n".join(lines)[-4000:]


def materialized(instance: dg.DagsterInstance, asset: str) -> set[str]:
    return set(instance.get_materialized_partitions(dg.AssetKey(asset)))


def test_the_backfill_completes_every_run_it_launched(backfilled):
    failed = {
        r.tags.get("dagster/partition"): run_errors(backfilled.instance, r.run_id)
        for r in backfilled.runs
        if not r.is_success
    }
    assert not failed
    assert backfilled.status in {"COMPLETED", "COMPLETED_SUCCESS"}
    print(f"\nday backfill: {len(backfilled.runs)} runs in {backfilled.seconds:.1f} s")


def test_only_the_days_partitions_are_materialized(backfilled):
    instance = backfilled.instance
    assert materialized(instance, "landing_intake") == {DAY}
    assert materialized(instance, "daily_snapshot") == {DAY}
    # every shard of the day, nothing of the other day
    assert materialized(instance, "video_frames") == {f"{DAY}|{i:02d}" for i in range(16)}
    # the whole dataset is not part of a day's backfill
    assert instance.get_latest_materialization_event(dg.AssetKey("training_dataset")) is None


def test_only_the_days_files_are_taken_in(backfilled):
    store = backfilled.store
    records = intake_records(store)
    assert {(r.landing_key, r.day, r.outcome) for r in records} == {
        ("labels.csv", DAY, "processed"),
        (CLIP_OF_THE_DAY, DAY, "processed"),
    }
    videos = [e.content_id for e in ledger_entries(store, kind="video")]
    assert members_of_day(store, DAY) == {"video": videos, "study": []}
    assert members_of_day(store, OTHER_DAY) == {"video": [], "study": []}


def test_the_days_snapshot_holds_the_days_video_and_nothing_else(backfilled):
    store = backfilled.store
    (video_id,) = [e.content_id for e in ledger_entries(store, kind="video")]
    snapshot = store.local_path(keys.snapshot_prefix(DATASET, DAY) + "/.keep").parent
    annotations = pd.read_csv(snapshot / "annotations.csv", dtype=str)
    assert set(annotations["video_id"]) == {video_id}
    assert set(annotations["label_name"]) == {"lung_viral_pneumonia"}
    assert annotations["frame_id"].nunique() == 3  # uniform_k: 3
    assert (snapshot / "manifest.json").is_file()
    assert not store.exists(keys.snapshot_prefix(DATASET, OTHER_DAY) + "/annotations.csv")
    assert not store.list_keys(keys.export_prefix(DATASET))


def test_the_days_snapshot_passed_the_blocking_export_checks(backfilled):
    instance = backfilled.instance
    record = instance.fetch_materializations(dg.AssetKey("daily_snapshot"), limit=1).records[0]
    metadata = record.asset_materialization.metadata
    assert metadata["day"].value == DAY
    assert metadata["status"].value == "ok"
    assert metadata["videos_arrived"].value == 1
    checks = {
        e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data.passed
        for e in instance.all_logs(
            record.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
    }
    assert checks == {
        "export_has_no_phi": True,
        "has_annotations": True,
        "frame_paths_resolve": True,
        "no_patient_in_two_splits": True,
        "frame_counts_match_sampling": True,
        "export_is_sound": True,
    }
