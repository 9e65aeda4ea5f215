"""Partitions at hospital scale: what one dynamic partition per video costs medvid at 10k, 100k
and 1M videos on the production instance (PostgreSQL, docker/dagster.yaml's storage block).

    nice -n 10 .venv/bin/python benchmarks/partitions.py [--scales 10000 100000 1000000]
        [--materialized 1000] [--quarantined 50] [--backfill 1000] [--backfill-window-s 180]
        [--budget-s 600] [--model videos|sharded] [--json FILE]

``--model sharded`` measures the alternative instead (day x shard partitions, per-video status
in a table; see ``run_sharded``).

A fresh database ``medvid_bench_<time>`` on $DAGSTER_PG_HOST (default 127.0.0.1, user postgres)
is created and dropped at the end (``--keep-db`` keeps it). At each scale, in order:

- ``add_partitions``: register synthetic video ids (16 hex, like content ids) in the ``videos``
  dynamic partitions through ``instance.add_dynamic_partitions``, 10,000 a call, up to the scale.
- once, at the first scale: ``--materialized`` videos get runless materializations of
  ``video_frames`` then ``frame_labels`` (``report_runless_asset_event``), and matching files in
  a local media store (tables, de-identification status, ledger) so that they pass the export
  gate; ``--quarantined`` other videos get a quarantine record.
- (a) what medvid's sensors, schedules and planner call per tick: ``get_dynamic_partitions``,
  ``has_dynamic_partition``, ``get_materialized_partitions(frame_labels)``, the daily schedule's
  ``unprocessed()``, one ``cine_loop_sensor`` tick, and the ``medvid_automation`` sensor's
  evaluation of every automation condition (``evaluate_automation_conditions``, the evaluator
  the sensor runs), first tick and the next one with its cursor.
- (b) the partitions page: the ``PartitionHealthQuery`` the installed dagster-webserver UI sends
  for a partitioned asset (read from the UI bundle, not retyped), for ``frame_labels``, executed
  against the code location (a gRPC code server of ``medvid_assets.definitions``), and the size
  of its JSON answer, which the browser must then parse.
- (d) the export's planning: ``medvid_assets.export.exportable_video_ids`` over the local media
  store, with the number of store calls it makes (each one an S3 request on an S3 media store).
- (c) a backfill of ``--backfill`` partitions of the video pipeline's assets: the UI's
  ``launchPartitionBackfill`` mutation, then the daemon's backfill iteration
  (``execute_backfill_iteration``) for at most ``--backfill-window-s``: the time to its first run,
  and the runs it created (they stay queued: no daemon dequeues them). If it did not create
  them all in the window, the backfill is canceled and the time for all of them is extrapolated
  from its rate.

An operation whose time, extrapolated linearly from the previous scale, would pass
``--budget-s`` is not run: its row says "extrapolated". What the numbers do not show is in
benchmarks/README.md ("partitions").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VIDEO_PIPELINE_ASSETS = [
    "raw_videos",
    "video_metadata",
    "normalized_videos",
    "video_ocr_text",
    "video_redaction_plan",
    "video_frames",
    "frame_labels",
    "segment_labels",
]
ADD_BATCH = 10_000

LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""


@dataclass
class Row:
    scale: int
    operation: str
    seconds: float
    note: str = ""
    extrapolated: bool = False


def video_id(index: int) -> str:
    return hashlib.sha256(f"synthetic-video-{index}".encode()).hexdigest()[:16]


def ui_query(name: str) -> str:
    """The GraphQL document ``name`` as the installed dagster-webserver UI bundle holds it."""
    import dagster_webserver

    chunks = Path(dagster_webserver.__file__).parent / "webapp" / "build"
    pattern = re.compile(r"((?:query|mutation) " + re.escape(name) + r"\(.*?)\"\]", re.S)
    for path in sorted(chunks.rglob("*.js")):
        text = path.read_text(errors="replace")
        if name in text and (match := pattern.search(text)):
            return match.group(1).replace("\\n", "\n")
    raise LookupError(f"{name} not found in the dagster-webserver bundle under {chunks}")


class Budget:
    """Times operations; skips one whose linear extrapolation from the last scale would pass
    ``budget_s`` and records the extrapolation instead."""

    def __init__(self, budget_s: float):
        self.budget_s = budget_s
        self.rows: list[Row] = []
        self.last: dict[str, tuple[int, float]] = {}

    def measure(self, scale: int, operation: str, fn: Callable[[], str | None]) -> None:
        if operation in self.last:
            prev_scale, prev_s = self.last[operation]
            predicted = prev_s * scale / prev_scale
            if predicted > self.budget_s:
                self.rows.append(Row(scale, operation, predicted, "linear", extrapolated=True))
                self.last[operation] = (scale, predicted)
                print(f"  {operation}: ~{predicted:.1f} s (extrapolated)", flush=True)
                return
        started = time.perf_counter()
        note = fn() or ""
        seconds = time.perf_counter() - started
        self.rows.append(Row(scale, operation, seconds, note))
        self.last[operation] = (scale, seconds)
        print(f"  {operation}: {seconds:.3f} s {note}", flush=True)


def write_instance(dagster_home: Path) -> None:
    storage = yaml.safe_load((REPO / "docker" / "dagster.yaml").read_text())["storage"]
    config = {
        "storage": storage,
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
        },
        "telemetry": {"enabled": False},
    }
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def put(store, key: str, data: bytes) -> None:
    path = store.local_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    store.publish(key)


def populate_store(store, materialized: list[str], quarantined: list[str]) -> None:
    """The files that make ``materialized`` pass the export gate and ``quarantined`` fail it."""
    from medvid_assets.landing import ledger_key
    from medvid_assets.storage import table_key

    for vid in materialized:
        put(store, table_key("video_frames", vid), b"")
        put(store, table_key("frame_labels", vid), b"")
        put(store, f"deid_status/video/{vid}.json", json.dumps({"passed": True}).encode())
        entry = {
            "content_id": vid,
            "sha256": vid * 4,
            "kind": "video",
            "original_name": f"{vid}.mp4",
            "landing_key": f"{vid}.mp4",
            "landing_uri": f"file:///landing/{vid}.mp4",
            "size": 1,
            "arrived_at": "2026-01-01T00:00:00+00:00",
        }
        put(store, ledger_key(vid), json.dumps(entry).encode())
    for vid in quarantined:
        record = {
            "content_id": vid,
            "file": f"{vid}.mp4",
            "stage": "video_metadata",
            "reason": "synthetic",
            "error_type": "CorruptMediaError",
            "quarantined_at": "2026-01-01T00:00:00+00:00",
        }
        put(store, f"quarantine/{vid}__video_metadata.json", json.dumps(record).encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--materialized", type=int, default=1_000)
    parser.add_argument("--quarantined", type=int, default=50)
    parser.add_argument("--backfill", type=int, default=1_000)
    parser.add_argument("--backfill-window-s", type=float, default=180.0)
    parser.add_argument("--budget-s", type=float, default=600.0)
    parser.add_argument(
        "--keep-db", action="store_true", help="keep the database and the work folder"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--model",
        choices=["videos", "sharded"],
        default="videos",
        help="videos: medvid today; sharded: day x shard partitions, per-video status in a table",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="medvid-bench-partitions-"))
    database = f"medvid_bench_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:6]}"
    os.environ.setdefault("DAGSTER_PG_USERNAME", "postgres")
    os.environ.setdefault("DAGSTER_PG_PASSWORD", "unused-with-trust-auth")
    os.environ.setdefault("DAGSTER_PG_HOST", "127.0.0.1")
    os.environ["DAGSTER_PG_DB"] = database
    os.environ["DAGSTER_HOME"] = str(work / "dagster_home")
    os.environ["MEDVID_HOME"] = str(work / "home")
    for variable in ("MEDVID_MEDIA_BUCKET", "MEDVID_LANDING_BUCKET", "MEDVID_DEID_SALT"):
        os.environ.pop(variable, None)
    write_instance(work / "dagster_home")
    admin("CREATE DATABASE " + database)
    try:
        rows = run(args, work) if args.model == "videos" else run_sharded(args, work)
    finally:
        if not args.keep_db:
            admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            shutil.rmtree(work, ignore_errors=True)
    table = markdown(rows, args.scales)
    print(table)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))


def admin(sql: str) -> None:
    import psycopg2

    connection = psycopg2.connect(
        host=os.environ["DAGSTER_PG_HOST"],
        user=os.environ["DAGSTER_PG_USERNAME"],
        dbname="postgres",
    )
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


def run(args, work: Path) -> list[Row]:
    import dagster as dg
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.backfill import execute_backfill_iteration
    from dagster_graphql.test.utils import execute_dagster_graphql

    from medvid_assets.definitions import defs
    from medvid_assets.export import exportable_video_ids
    from medvid_assets.schedules import unprocessed
    from medvid_assets.sensors import cine_loop_sensor
    from medvid_resources import LocalMediaStore

    logging.getLogger("dagster").setLevel(logging.WARNING)
    budget = Budget(args.budget_s)
    health_query = ui_query("PartitionHealthQuery")
    store = LocalMediaStore(root=str(work / "home"))
    instance = dg.DagsterInstance.get()
    registered = 0
    target = ModuleTarget(
        module_name="medvid_assets.definitions",
        attribute=None,
        working_directory=str(REPO),
        location_name="medvid",
    )
    with create_test_daemon_workspace_context(target, instance) as workspace:
        for scale in args.scales:
            print(f"scale {scale:,}", flush=True)
            started = time.perf_counter()
            while registered < scale:
                batch = [video_id(i) for i in range(registered, min(scale, registered + ADD_BATCH))]
                instance.add_dynamic_partitions("videos", batch)
                registered += len(batch)
            seconds = time.perf_counter() - started
            budget.rows.append(Row(scale, "add_partitions", seconds, "cumulative to this scale"))
            print(f"  add_partitions: {seconds:.1f} s", flush=True)

            if scale == args.scales[0]:
                materialized = [video_id(i) for i in range(args.materialized)]
                first_q = args.materialized
                quarantined = [video_id(i) for i in range(first_q, first_q + args.quarantined)]
                started = time.perf_counter()
                for asset in ("video_frames", "frame_labels"):
                    for vid in materialized:
                        instance.report_runless_asset_event(
                            dg.AssetMaterialization(asset_key=asset, partition=vid)
                        )
                seconds = time.perf_counter() - started
                note = f"{2 * len(materialized)} events, one call each"
                budget.rows.append(Row(scale, "record_materializations", seconds, note))
                print(f"  record_materializations: {seconds:.1f} s", flush=True)
                populate_store(store, materialized, quarantined)

            measure_ticks(budget, scale, instance, defs, unprocessed, cine_loop_sensor, store)
            measure_health(budget, scale, workspace, health_query, execute_dagster_graphql)
            measure_export(budget, scale, instance, store, exportable_video_ids)
            measure_backfill(
                budget,
                scale,
                instance,
                workspace,
                # the newest videos of this scale: never materialized, never backfilled before
                [video_id(i) for i in range(max(0, scale - args.backfill), scale)],
                args.backfill_window_s,
                execute_dagster_graphql,
                execute_backfill_iteration,
            )
    return budget.rows


def measure_ticks(budget, scale, instance, defs, unprocessed, cine_loop_sensor, store) -> None:
    import dagster as dg

    probe = video_id(scale - 1)
    budget.measure(
        scale,
        "get_dynamic_partitions",
        lambda: f"{len(instance.get_dynamic_partitions('videos'))} keys",
    )
    budget.measure(
        scale,
        "has_dynamic_partition",
        lambda: str(instance.has_dynamic_partition("videos", probe)),
    )
    budget.measure(
        scale,
        "get_materialized_partitions",
        lambda: f"{len(instance.get_materialized_partitions(dg.AssetKey('frame_labels')))} keys",
    )
    budget.measure(
        scale,
        "daily_schedule_unprocessed",
        lambda: f"{len(unprocessed(instance, 'videos', 'frame_labels'))} to run",
    )

    def cine_tick() -> str:
        context = dg.build_sensor_context(instance=instance, resources={"media_store": store})
        result = cine_loop_sensor(context)
        return f"{len(result.run_requests or [])} runs"

    budget.measure(scale, "cine_loop_sensor_tick", cine_tick)

    state = {}

    def automation_tick(first: bool) -> str:
        cursor = None if first else state.get("cursor")
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        state["cursor"] = result.cursor
        return f"{result.total_requested} requested"

    budget.measure(scale, "automation_tick_first", lambda: automation_tick(True))
    budget.measure(scale, "automation_tick_next", lambda: automation_tick(False))


def measure_health(budget, scale, workspace, query, execute) -> None:
    def health() -> str:
        context = workspace.create_request_context()
        result = execute(context, query, {"assetKey": {"path": ["frame_labels"]}})
        if result.errors:
            raise RuntimeError(result.errors)
        node = result.data["assetNodeOrError"]
        size = len(json.dumps(result.data))
        keys = math.prod(len(d["partitionKeys"]) for d in node["partitionKeysByDimension"])
        return f"{keys} partition keys, answer {size / 1e6:.2f} MB"

    budget.measure(scale, "partition_health_query", health)
    budget.measure(scale, "partition_health_query_again", health)


class CountingStore:
    """A media store that counts the calls made to it (``exists``, ``list_keys``, ``fetch``):
    on an S3 media store each is one request or more (HEAD, LIST pages, GET)."""

    def __init__(self, store):
        self._store = store
        self.calls = {"exists": 0, "list_keys": 0, "fetch": 0}

    def __getattr__(self, name):
        attribute = getattr(self._store, name)
        if name in self.calls:

            def counted(*args, **kwargs):
                self.calls[name] += 1
                return attribute(*args, **kwargs)

            return counted
        return attribute


def measure_export(budget, scale, instance, store, exportable_video_ids) -> None:
    context = SimpleNamespace(instance=instance)

    def plan() -> str:
        counting = CountingStore(store)
        exportable = exportable_video_ids(context, counting)
        calls = ", ".join(f"{n} {name}" for name, n in counting.calls.items())
        return f"{len(exportable)} exportable; store calls: {calls}"

    budget.measure(scale, "export_planning_local", plan)


def measure_backfill(
    budget, scale, instance, workspace, keys, window_s, execute, iterate, assets=None
) -> None:
    from dagster._core.execution.backfill import BulkActionStatus
    from dagster._core.storage.dagster_run import RunsFilter

    assets = assets or VIDEO_PIPELINE_ASSETS
    state: dict = {}

    def launch() -> str:
        params = {
            "partitionNames": keys,
            "assetSelection": [{"path": [name]} for name in assets],
        }
        result = execute(
            workspace.create_request_context(), LAUNCH_BACKFILL, {"backfillParams": params}
        )
        answer = result.data["launchPartitionBackfill"]
        if answer["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(answer)
        state["id"] = answer["backfillId"]
        return f"{len(keys)} partitions x {len(assets)} assets"

    budget.measure(scale, "backfill_launch", launch)
    if "id" not in state:
        return
    backfill_id = state["id"]
    logger = logging.getLogger("medvid.bench.backfill")

    def runs_created() -> int:
        return instance.get_runs_count(RunsFilter(tags={"dagster/backfill": backfill_id}))

    # One daemon iteration submits every run of the backfill, checking every 25 runs whether
    # the backfill was canceled: let it work for the window, then cancel it.
    iteration = threading.Thread(target=lambda: list(iterate(workspace, logger)), daemon=True)
    started = time.monotonic()
    iteration.start()
    first_run = None
    while iteration.is_alive() and time.monotonic() - started < window_s:
        if first_run is None and runs_created():
            first_run = time.monotonic() - started
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    created = runs_created()
    instance.update_backfill(
        instance.get_backfill(backfill_id).with_status(BulkActionStatus.CANCELED)
    )
    iteration.join(timeout=600)
    if first_run is not None:
        budget.rows.append(Row(scale, "backfill_first_run", first_run, "daemon iteration start"))
    rate = created / elapsed if created else 0.0
    finished = created >= len(keys)
    note = f"{created} runs in {elapsed:.0f} s ({rate:.2f} runs/s)"
    if finished:
        budget.rows.append(Row(scale, "backfill_create_runs", elapsed, note))
    else:
        estimate = len(keys) / rate if rate else float("inf")
        budget.rows.append(Row(scale, "backfill_create_runs", estimate, note, extrapolated=True))
    print(f"  backfill: first run after {first_run} s; {note}", flush=True)


# --- the alternative: day x shard partitions, per-video status in a table -------------------
#
# Dagster sees one partition per (arrival day, shard): since 2024-01-01, 16 shards a day, 17,024
# partitions on 2026-11-30 (+16 a day) whatever the number of videos; a run processes every
# video of its day and shard. Which video is done, quarantined or de-identified lives in a
# PostgreSQL table (``video_status``), queried by the sensor, the export and the UI's own pages.
# Synthetic assets with the same graph and automation conditions as the video pipeline stand in
# for medvid's.

SHARDS = 16
SHARD_DAYS = ("2024-01-01", "2027-01-01")
STATUS_TABLE = """
CREATE TABLE video_status (
    video_id text PRIMARY KEY,
    arrival_day date NOT NULL,
    shard smallint NOT NULL,
    labels_done boolean NOT NULL DEFAULT false,
    deid_passed boolean NOT NULL DEFAULT false,
    quarantined boolean NOT NULL DEFAULT false
);
CREATE INDEX video_status_partition ON video_status (arrival_day, shard);
CREATE INDEX video_status_todo ON video_status (arrival_day, shard) WHERE NOT labels_done;
"""


def _sharded_definitions():
    import dagster as dg

    partitions = dg.MultiPartitionsDefinition(
        {
            "day": dg.DailyPartitionsDefinition(
                start_date=SHARD_DAYS[0], end_date=SHARD_DAYS[1], timezone="UTC"
            ),
            "shard": dg.StaticPartitionsDefinition([f"{i:02d}" for i in range(SHARDS)]),
        }
    )
    assets = []
    previous = None
    eager = dg.AutomationCondition.eager()
    for name in VIDEO_PIPELINE_ASSETS:
        deps = [previous] if previous and name != "segment_labels" else ["video_frames"]
        if name == "raw_videos":
            deps = []
        condition = eager if name in ("frame_labels", "segment_labels") else None

        @dg.asset(name=name, partitions_def=partitions, deps=deps, automation_condition=condition)
        def _asset() -> None:
            return None

        assets.append(_asset)
        if name != "segment_labels":
            previous = name

    @dg.asset(deps=["frame_labels", "segment_labels"], automation_condition=eager)
    def training_dataset() -> None:
        return None

    return dg.Definitions(assets=[*assets, training_dataset])


sharded_defs = _sharded_definitions()


def run_sharded(args, work: Path) -> list[Row]:
    import dagster as dg
    import psycopg2
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.backfill import execute_backfill_iteration
    from dagster_graphql.test.utils import execute_dagster_graphql

    logging.getLogger("dagster").setLevel(logging.WARNING)
    budget = Budget(args.budget_s)
    instance = dg.DagsterInstance.get()
    partitions = sharded_defs.resolve_assets_def("frame_labels").partitions_def
    keys = partitions.get_partition_keys()
    per_partition = max(scale for scale in args.scales) / len(keys)
    # partitions holding --materialized videos at the largest scale, oldest first
    done = keys[: max(1, round(args.materialized / per_partition))]
    started = time.perf_counter()
    for asset in ("video_frames", "frame_labels"):
        for key in done:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=asset, partition=key)
            )
    budget.rows.append(
        Row(0, "record_materializations", time.perf_counter() - started, f"{2 * len(done)} events")
    )
    target = ModuleTarget(
        module_name="benchmarks.partitions",
        attribute="sharded_defs",
        working_directory=str(REPO),
        location_name="sharded",
    )
    health_query = ui_query("PartitionHealthQuery")
    with create_test_daemon_workspace_context(target, instance) as workspace:
        print(f"Dagster side ({len(keys):,} partitions, any number of videos)", flush=True)
        state: dict = {}

        def automation_tick(first: bool) -> str:
            cursor = None if first else state.get("cursor")
            result = dg.evaluate_automation_conditions(
                defs=sharded_defs, instance=instance, cursor=cursor
            )
            state["cursor"] = result.cursor
            return f"{result.total_requested} requested"

        budget.measure(0, "automation_tick_first", lambda: automation_tick(True))
        budget.measure(0, "automation_tick_next", lambda: automation_tick(False))
        measure_health(budget, 0, workspace, health_query, execute_dagster_graphql)
        # as many day-shards as hold --backfill videos at the largest scale
        count = max(1, round(args.backfill / per_partition))
        measure_backfill(
            budget,
            0,
            instance,
            workspace,
            keys[len(done) : len(done) + count],
            args.backfill_window_s,
            execute_dagster_graphql,
            execute_backfill_iteration,
        )

    connection = psycopg2.connect(
        host=os.environ["DAGSTER_PG_HOST"],
        user=os.environ["DAGSTER_PG_USERNAME"],
        dbname=os.environ["DAGSTER_PG_DB"],
    )
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(STATUS_TABLE)
        for scale in args.scales:
            print(f"video_status with {scale:,} videos", flush=True)
            measure_status_table(budget, scale, connection, args)
    finally:
        connection.close()
    return budget.rows


def measure_status_table(budget, scale, connection, args) -> None:
    """The per-video questions medvid asks, as queries on ``video_status`` with ``scale`` rows
    spread over the day x shard partitions (``--materialized`` done and de-identified,
    ``--quarantined`` quarantined)."""
    days = "SELECT (date %(start)s + (i %% %(days)s)), (i / %(days)s) %% %(shards)s"
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE video_status")
        started = time.perf_counter()
        cursor.execute(
            "INSERT INTO video_status (video_id, arrival_day, shard, labels_done, deid_passed,"
            " quarantined) SELECT substr(md5('synthetic-video-' || i), 1, 16), d.day, d.shard,"
            " i < %(done)s, i < %(done)s, i >= %(done)s AND i < %(done)s + %(quarantined)s"
            f" FROM generate_series(0, %(n)s - 1) AS i, LATERAL ({days}) AS d(day, shard)",
            {
                "start": SHARD_DAYS[0],
                "days": 1096,
                "shards": SHARDS,
                "done": args.materialized,
                "quarantined": args.quarantined,
                "n": scale,
            },
        )
        cursor.execute("ANALYZE video_status")
        budget.rows.append(Row(scale, "status_table_load", time.perf_counter() - started))

        def query(sql: str, params: tuple = ()) -> str:
            cursor.execute(sql, params)
            return f"{len(cursor.fetchall())} rows"

        budget.measure(
            scale,
            "status_todo_of_one_partition",
            lambda: query(
                "SELECT video_id FROM video_status WHERE arrival_day = %s AND shard = %s"
                " AND NOT labels_done",
                ("2025-06-01", 3),
            ),
        )
        budget.measure(
            scale,
            "status_partitions_with_todo",
            lambda: query(
                "SELECT DISTINCT arrival_day, shard FROM video_status WHERE NOT labels_done"
            ),
        )
        budget.measure(
            scale,
            "status_export_gate",
            lambda: query(
                "SELECT video_id FROM video_status WHERE labels_done AND deid_passed"
                " AND NOT quarantined ORDER BY video_id"
            ),
        )


def markdown(rows: list[Row], scales: list[int]) -> str:
    """Seconds per operation and scale; scale 0 (the sharded model's Dagster side, the same
    for any number of videos) gets its own column."""
    operations = list(dict.fromkeys(r.operation for r in rows))
    by_key = {(r.operation, r.scale): r for r in rows}
    if any(r.scale == 0 for r in rows):
        scales = [0, *scales]
    names = ["any" if s == 0 else f"{s:,}" for s in scales]
    header = "| operation | " + " | ".join(names) + " |"
    lines = [header, "|---|" + "---:|" * len(scales)]
    for operation in operations:
        cells = []
        for scale in scales:
            row = by_key.get((operation, scale))
            if row is None:
                cells.append("")
            elif row.extrapolated:
                cells.append(f"~{row.seconds:.0f} (extrap.)")
            else:
                cells.append(f"{row.seconds:.3g}")
        lines.append(f"| {operation} | " + " | ".join(cells) + " |")
    notes = [f"- {r.operation} @ {r.scale:,}: {r.note}" for r in rows if r.note]
    return "\n".join(lines + ["", *notes])


if __name__ == "__main__":
    main()
