"""Two ``medvid run`` at once on one home: one waits for the other, no partition runs twice."""

import collections

import dagster as dg

from tests.faults.conftest import copy_landing, medvid_process, run_medvid


def test_two_runs_at_once_run_every_unit_once(tmp_path, small_landing):
    landing = copy_landing(small_landing, tmp_path / "landing")
    home = tmp_path / "home"
    first = medvid_process(landing, home)
    second = medvid_process(landing, home)
    outputs = [p.communicate(timeout=900)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    # whichever got the home first did the work; the other found nothing left to do
    assert sorted(o.count("runs:         0") for o in outputs) == [0, 1], outputs
    with dg.DagsterInstance.from_config(str(home)) as instance:
        units = collections.Counter(
            run.tags["medvid/unit"] for run in instance.get_runs() if "medvid/unit" in run.tags
        )
    assert units and max(units.values()) == 1, units


def test_no_wait_exits_at_once_when_the_home_is_busy(tmp_path, small_landing):
    landing = copy_landing(small_landing, tmp_path / "landing")
    home = tmp_path / "home"
    busy = medvid_process(landing, home)
    try:
        import time

        deadline = time.monotonic() + 120
        while not (home / ".medvid-run.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # it locks the file right after creating it
        code, output = run_medvid(landing, home, "--no-wait", timeout=120)
    finally:
        busy.kill()
        busy.wait()
    assert code == 3, output
    assert "another medvid run is using" in output
