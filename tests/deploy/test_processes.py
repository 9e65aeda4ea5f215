"""The process helpers every deployment test relies on to start servers and always stop them."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from tests.deploy.processes import Processes, ProcessFailed, free_port, port_open

PYTHON = sys.executable


def signal_mask(status: str, field: str) -> int:
    line = next(line for line in status.splitlines() if line.startswith(field + ":"))
    return int(line.split()[1], 16)


def is_set(mask: int, signum: int) -> bool:
    return bool(mask >> (signum - 1) & 1)


@pytest.fixture
def parent_ignoring_sigint_and_sigterm():
    """This process with SIGINT and SIGTERM ignored, as a CI runner may start it."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_child_gets_default_sigint_and_sigterm_back(tmp_path, parent_ignoring_sigint_and_sigterm):
    processes = Processes(tmp_path)
    try:
        child = processes.start(
            "status",
            [PYTHON, "-c", "print(open('/proc/self/status').read(), flush=True); input()"],
        )
        child.wait_for_log(r"SigIgn:\s+[0-9a-f]+")
        ignored = signal_mask(child.log(), "SigIgn")
        assert not is_set(ignored, signal.SIGINT)
        assert not is_set(ignored, signal.SIGTERM)
    finally:
        processes.stop_all()


def test_stop_ends_a_child_with_sigterm(tmp_path, parent_ignoring_sigint_and_sigterm):
    processes = Processes(tmp_path)
    child = processes.start(
        "sleeper", [PYTHON, "-c", "import time; print('up', flush=True); time.sleep(60)"]
    )
    child.wait_for_log("up")
    assert child.stop(grace=10) == -signal.SIGTERM


def test_stop_kills_a_child_that_ignores_sigterm_and_the_children_it_started(tmp_path):
    script = (
        "import signal, subprocess, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "grandchild = subprocess.Popen(['sleep', '60'])\n"
        "print('grandchild', grandchild.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    processes = Processes(tmp_path)
    child = processes.start("stubborn", [PYTHON, "-c", script])
    grandchild = int(child.wait_for_log(r"grandchild (\d+)").group(1))

    started = time.monotonic()
    assert child.stop(grace=1) == -signal.SIGKILL
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 10
    while Path(f"/proc/{grandchild}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # killed, then reaped by init
    assert not Path(f"/proc/{grandchild}").exists()


def test_wait_for_log_fails_with_the_log_of_a_child_that_exited(tmp_path):
    processes = Processes(tmp_path)
    child = processes.start("crash", [PYTHON, "-c", "print('config missing'); raise SystemExit(3)"])
    with pytest.raises(ProcessFailed, match="(?s)crash.*exited.*config missing"):
        child.wait_for_log("ready", timeout=30)
    assert child.stop() == 3


def test_wait_for_port_returns_once_the_child_listens(tmp_path):
    port = free_port()
    processes = Processes(tmp_path)
    try:
        child = processes.start("http", [PYTHON, "-m", "http.server", str(port), "-b", "127.0.0.1"])
        child.wait_for_port(port, timeout=30)
        assert port_open(port)
    finally:
        processes.stop_all()
    assert not port_open(port)


def test_stop_all_stops_every_child(tmp_path):
    processes = Processes(tmp_path)
    children = [
        processes.start(f"sleeper{i}", [PYTHON, "-c", "import time; time.sleep(60)"])
        for i in range(3)
    ]
    processes.stop_all()
    assert [child.running() for child in children] == [False, False, False]
    assert [child.popen.returncode for child in children] == [-signal.SIGTERM] * 3


def test_moto_s3_fixture_serves_buckets(moto_s3):
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=moto_s3,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket="landing")
    s3.put_object(Bucket="landing", Key="clip.mp4", Body=b"\x00")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="landing")["Contents"]] == ["clip.mp4"]
