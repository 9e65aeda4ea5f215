"""Launching planned runs in this process, through the instance: what the ``medvid`` command
does, and what tests use to run medvid end to end exactly as the sensors would."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from medvid.intake.ledger import has_intake_record
from medvid.intake.pending import look
from medvid.memory import release_free_heap
from medvid.processes import process_token
from medvid_assets.orchestration.planner import PlannedRun, plan
from medvid_assets.runs import LAUNCHER_TAG


@dataclass
class Launched:
    """What :func:`run_until_done` launched: each run with its outcome, and the units left
    alone after failing repeatedly."""

    runs: list[tuple[PlannedRun, bool]] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [run.unit for run, ok in self.runs if not ok]

    def units(self, prefix: str = "") -> list[str]:
        return [run.unit for run, _ in self.runs if run.unit.startswith(prefix)]


def execute(
    defs: dg.Definitions, instance: dg.DagsterInstance, planned: PlannedRun, *, log_level="WARNING"
) -> dg.ExecuteInProcessResult:
    """Execute one planned run in this process, tagged with this process's token; then return
    the heap it freed to the operating system (:func:`release_free_heap`), so what one run
    held is not kept resident through the next."""
    try:
        return _execute(defs, instance, planned, log_level)
    finally:
        release_free_heap()


def _execute(
    defs: dg.Definitions, instance: dg.DagsterInstance, planned: PlannedRun, log_level: str
) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(planned.job_name).execute_in_process(
        instance=instance,
        partition_key=planned.partition_key,
        run_config={
            **planned.run_config,
            "loggers": {"console": {"config": {"log_level": log_level}}},
        },
        tags={**planned.tags, LAUNCHER_TAG: process_token()},
        raise_on_error=False,
    )


def run_until_done(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    resources,
    *,
    on_batch: Callable[[str, list[PlannedRun]], object] | None = None,
    only: set[str] | None = None,
    max_rounds: int = 50,
) -> Launched:
    """Look at the landing zone, plan, execute; again, until the planner has nothing new.

    ``resources`` holds the built ``landing_zone``, ``media_store`` and ``settings``. Each round
    executes the runs of one kind (intake, then videos and studies, then labels...), since later
    kinds wait for earlier ones. A unit is attempted at most once per call and version, so a
    failing run never loops. ``on_batch(kind, runs)`` may wrap the batch (a progress bar);
    ``only`` limits the kinds executed (``{"intake"}``: take in, process nothing)."""
    zone, store, settings = resources.landing_zone, resources.media_store, resources.settings
    launched = Launched()
    attempted: set[tuple[str, str]] = set()
    for _ in range(max_rounds):
        found = look(
            zone.list_files(),
            zone.uri,
            lambda fp: has_intake_record(store, fp),
            require_stable=False,
            now=time.time(),
        )
        planned = plan(instance, store, settings.load(), look=found)
        launched.given_up = sorted(set(launched.given_up) | set(planned.given_up))
        todo = [
            r
            for r in planned.runs
            if (r.unit, r.version) not in attempted
            and (only is None or r.unit.split(":", 1)[0] in only)
        ]
        if not todo:
            break
        kind = todo[0].unit.split(":", 1)[0]
        batch = [r for r in todo if r.unit.split(":", 1)[0] == kind]
        for planned_run in on_batch(kind, batch) if on_batch else batch:
            attempted.add((planned_run.unit, planned_run.version))
            result = execute(defs, instance, planned_run)
            launched.runs.append((planned_run, result.success))
    return launched
