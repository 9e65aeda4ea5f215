"""Runs left behind: runs whose process died (``kill -9``, a crash, a lost machine) and the
temporary files their writers left.

Dagster marks a run STARTED when it begins and SUCCESS/FAILURE when it ends; a run whose process
is killed stays STARTED forever (the default run launcher cannot check its worker). medvid tags
its runs with *process tokens* (:mod:`medvid.processes`): ``medvid/launcher`` for runs the
``medvid`` command executes in its own process, ``medvid/worker`` for the process of the last
step that started (every medvid asset records it). A STARTED run is *stale* when the process its
launcher token names is gone, or, without one, when its last worker is gone and nothing has
happened in the run for :data:`QUIET_S` seconds (between two steps of a live run the last
step's process has ended, but the next one starts within a second).
"""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

from medvid.processes import process_token, stale_temporaries, token_alive

UNIT_TAG = "medvid/unit"
"""What a run is for: ``intake:<day>``, ``video:<id>``, ``study:<key>``, ``labels``, ..."""
VERSION_TAG = "medvid/version"
"""The state of its inputs when it was planned (failures are counted per unit and version)."""
LAUNCHER_TAG = "medvid/launcher"
WORKER_TAG = "medvid/worker"
QUIET_S = 60.0

IN_PROGRESS = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def record_worker(context: dg.AssetExecutionContext) -> None:
    """Tag the run with this step's process token (see the module docstring)."""
    token = process_token()
    if context.run.tags.get(WORKER_TAG) != token:
        context.instance.add_run_tags(context.run_id, {WORKER_TAG: token})


def is_stale(instance: dg.DagsterInstance, run: dg.DagsterRun, now: float | None = None) -> bool:
    """Whether an in-progress run's process is gone (see the module docstring)."""
    if run.status not in (DagsterRunStatus.STARTED, DagsterRunStatus.STARTING):
        return False
    launcher = run.tags.get(LAUNCHER_TAG)
    if launcher:
        return token_alive(launcher) is False
    worker = run.tags.get(WORKER_TAG)
    if not worker or token_alive(worker) is not False:
        return False
    records = instance.get_records_for_run(run.run_id, ascending=False, limit=1).records
    last = records[0].event_log_entry.timestamp if records else 0.0
    return (now or time.time()) - last > QUIET_S


def in_progress_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Runs queued or running whose process is not gone."""
    runs = instance.get_runs(RunsFilter(statuses=IN_PROGRESS))
    return [run for run in runs if not is_stale(instance, run)]


def reap_stale_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Mark every stale run failed (with the reason in its event log); returns them."""
    stale = [
        run
        for run in instance.get_runs(RunsFilter(statuses=IN_PROGRESS))
        if is_stale(instance, run)
    ]
    for run in stale:
        instance.report_run_failed(
            run, "medvid: the process executing this run is gone (killed or crashed)"
        )
    return stale


def remove_stale_temporaries(root: str | Path) -> list[Path]:
    """Delete the temporaries of dead writers under ``root``; returns what was removed."""
    import shutil

    removed = []
    for path in stale_temporaries(root):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def failures(instance: dg.DagsterInstance, unit: str, version: str) -> int:
    """How many runs of ``unit`` at ``version`` failed or were canceled."""
    return instance.get_runs_count(
        RunsFilter(
            tags={UNIT_TAG: unit, VERSION_TAG: version},
            statuses=[DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED],
        )
    )
