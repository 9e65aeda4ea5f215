"""``kill -9`` at several moments of a ``medvid run``, then a rerun: the same export as a run
that was never interrupted, nothing left STARTED, no temporary files left."""

import json
import os
import signal
import subprocess
import sys

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

from medvid.deid.store import video_deidentified
from medvid_assets.frames.assets import PENDING
from medvid_resources import LocalMediaStore
from tests.faults.conftest import (
    SALT,
    copy_landing,
    export_snapshot,
    kill_when,
    medvid_process,
    run_medvid,
)


@pytest.fixture(scope="module")
def clean_export(tmp_path_factory, small_landing):
    root = tmp_path_factory.mktemp("clean")
    landing = copy_landing(small_landing, root / "landing")
    code, output = run_medvid(landing, root / "home")
    assert code == 0, output
    return export_snapshot(root / "home" / "exports" / "default")


def _any(folder, pattern):
    return lambda: folder.exists() and any(folder.glob(pattern))


KILL_POINTS = {
    # intake has copied and recorded some files in the ledger, not all outcomes yet
    "during_intake": lambda home: _any(home / "protected" / "ledger", "*.json"),
    # one video's frames are written, the other video and the study are not done
    "during_the_pipelines": lambda home: _any(home / "tables" / "video_frames", "*.parquet"),
    # the export folder is being written into its temporary sibling
    "during_the_export": lambda home: _any(home / "exports", ".tmp-*"),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_rerun_after_kill_9_gives_the_same_export(tmp_path, small_landing, clean_export, point):
    landing = copy_landing(small_landing, tmp_path / "landing")
    home = tmp_path / "home"
    process = medvid_process(landing, home)
    assert kill_when(process, KILL_POINTS[point](home)), "the run ended before the kill point"

    code, output = run_medvid(landing, home)
    assert code == 0, output
    assert export_snapshot(home / "exports" / "default") == clean_export
    assert not list(home.rglob(".tmp-*")) and not list(home.rglob(".old-*"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        stuck = instance.get_runs(
            RunsFilter(statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING])
        )
    assert stuck == []
    # the killed run was left STARTED: the rerun reported it and marked it failed
    assert "1 run(s) left STARTED by a dead process" in output


# Writes every video's frames again (as a changed setting or the UI's "materialize" would):
# video_frames of every batch, every member redone, in a process of its own.
REWRITE_FRAMES = """
import sys
from pathlib import Path

import dagster as dg

from medvid.batches import batch_of
from medvid_resources import LocalMediaStore
from medvid_assets.definitions import build_definitions

home, landing = Path(sys.argv[1]), Path(sys.argv[2])
defs = build_definitions(home, landing)
store = LocalMediaStore(root=str(home))
batches = sorted({batch_of(store, p.stem) for p in (home / "deid_status" / "video").glob("*.json")})
with dg.DagsterInstance.from_config(str(home)) as instance:
    for batch in batches:
        dg.materialize(
            [defs.get_assets_def(dg.AssetKey("video_frames"))],
            partition_key=batch,
            instance=instance,
            resources={k: defs.resources[k] for k in ("media_store", "ocr_engine", "settings")},
            tags={"medvid/redo": "true"},
        )
"""


def test_a_kill_9_while_frames_are_rewritten_leaves_the_video_unvouched(tmp_path, small_landing):
    # A first run passes every residual check; a second process writes every video's frames
    # again and is killed while one video's frames are written and checked. That video's
    # earlier pass must not stand for frames nobody checked; a rerun checks them again.
    landing = copy_landing(small_landing, tmp_path / "landing")
    home = tmp_path / "home"
    code, output = run_medvid(landing, home)
    assert code == 0, output
    statuses = home / "deid_status" / "video"
    assert [json.loads(p.read_text())["passed"] for p in statuses.glob("*.json")] == [True] * 2

    frames = home / "media" / "frames"
    written_at = {d.name: d.stat().st_mtime_ns for d in frames.iterdir() if d.is_dir()}

    def rewritten() -> list[str]:
        """Videos whose frame folder was replaced since the first run (the folder is swapped in
        whole, then the residual check reads it)."""
        found = []
        for name, before in written_at.items():
            try:
                if (frames / name).stat().st_mtime_ns != before:
                    found.append(name.removeprefix("video_"))
            except OSError:  # being swapped this very moment
                continue
        return found

    process = subprocess.Popen(
        [sys.executable, "-c", REWRITE_FRAMES, str(home), str(landing)],
        env={**os.environ, "MEDVID_DEID_SALT": SALT, "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: [
            signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM)
        ],
    )
    assert kill_when(process, lambda: bool(rewritten())), "the rewrite ended before the kill point"
    [killed] = rewritten()
    status = json.loads((statuses / f"{killed}.json").read_text())
    assert not status["passed"] and status["findings"] == [PENDING]
    assert not video_deidentified(LocalMediaStore(root=str(home)), killed)

    # the rewrite again, to its end: every video checked and vouched for again
    rewrite = subprocess.run(
        [sys.executable, "-c", REWRITE_FRAMES, str(home), str(landing)],
        env={**os.environ, "MEDVID_DEID_SALT": SALT, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
    )
    assert rewrite.returncode == 0, rewrite.stderr[-3000:]
    assert [json.loads(p.read_text())["passed"] for p in statuses.glob("*.json")] == [True] * 2
