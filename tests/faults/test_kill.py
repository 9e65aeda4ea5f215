"""``kill -9`` at several moments of a ``medvid run``, then a rerun: the same export as a run
that was never interrupted, nothing left STARTED, no temporary files left."""

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

from tests.faults.conftest import (
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
