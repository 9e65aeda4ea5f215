"""Real faults against real processes: ``medvid run`` as a subprocess, killed with SIGKILL,
run twice at once, fed bad files beside good ones."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from tests.stages.label_pipeline import LIGHT_EXPORT, LIGHT_TEXT

SALT = "fault-test-salt-not-a-secret"


def medvid_process(landing: Path, home: Path, *extra: str) -> subprocess.Popen:
    """``medvid run LANDING --home HOME`` in a child process (default signal handlers: this
    machine's background processes may inherit SIGINT/SIGTERM as ignored)."""
    env = {**os.environ, "MEDVID_DEID_SALT": SALT, "DAGSTER_HOME": str(home)}
    # fault tests are not PHI tests: the light text scan and PHI-scan sample (label_pipeline)
    config = home.parent / "light_text.yaml"
    if not config.exists():  # written once, whole: a second process may be reading it
        partial = config.with_suffix(".partial")
        partial.write_text(f"text: {json.dumps(LIGHT_TEXT)}\nexport: {json.dumps(LIGHT_EXPORT)}\n")
        partial.replace(config)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medvid_assets.cli",
            "run",
            str(landing),
            "--home",
            str(home),
            "--no-progress",
            "--config",
            str(config),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=lambda: [
            signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM)
        ],
    )


def run_medvid(landing: Path, home: Path, *extra: str, timeout: float = 600) -> tuple[int, str]:
    process = medvid_process(landing, home, *extra)
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, output


def kill_when(process: subprocess.Popen, condition, *, timeout: float = 300) -> bool:
    """SIGKILL ``process`` as soon as ``condition()`` holds; False if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if condition():
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.005)
    process.kill()
    process.wait()
    raise AssertionError("condition never held")


def short_clip(source: Path, target: Path, frames: int) -> Path:
    """The first ``frames`` frames of a real clip, re-encoded (H.264, same size and rate)."""
    with av.open(str(source)) as src, av.open(str(target), mode="w") as dst:
        stream_in = src.streams.video[0]
        stream_out = dst.add_stream("libx264", rate=stream_in.average_rate)
        stream_out.width, stream_out.height = stream_in.width, stream_in.height
        stream_out.pix_fmt = "yuv420p"
        for index, frame in enumerate(src.decode(stream_in)):
            if index >= frames:
                break
            dst.mux(stream_out.encode(frame.reformat(format="yuv420p")))
        dst.mux(stream_out.encode(None))
    return target


@pytest.fixture(scope="session")
def small_landing(tmp_path_factory, shared_data) -> Path:
    """Two short real clips, a DICOM still, a labels sheet and a patients sheet, with fixed
    modification times: one landing folder every fault test copies (copy2 keeps the mtimes)."""
    folder = tmp_path_factory.mktemp("landing")
    videos = shared_data / "videos"
    short_clip(videos / "covid19us_Vir_whitelung_h1n1.mp4", folder / "white_lung.mp4", 30)
    short_clip(videos / "covid19us_Reg_northumbria_1009_vid1.avi", folder / "healthy.mp4", 30)
    shutil.copyfile(shared_data / "dicom" / "US1_J2KR.dcm", folder / "us1.dcm")
    (folder / "labels.csv").write_text(
        "video,start_s,end_s,label\nwhite_lung.mp4,0,0.6,b_lines\nhealthy.mp4,0,2,a_lines\n"
    )
    (folder / "patients.csv").write_text(
        "video,patient_id,diagnosis\nwhite_lung.mp4,MRN001,viral\nhealthy.mp4,MRN002,healthy\n"
    )
    (folder / "medvid.yaml").unlink(missing_ok=True)
    for index, path in enumerate(sorted(folder.iterdir())):
        stamp = 1_735_689_600 + index  # 2025-01-01 UTC
        os.utime(path, (stamp, stamp))
    return folder


def copy_landing(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, copy_function=shutil.copy2)
    return target


def export_snapshot(export: Path) -> dict[str, bytes]:
    """Every file of an export folder, by relative path."""
    return {
        str(p.relative_to(export)): p.read_bytes() for p in sorted(export.rglob("*")) if p.is_file()
    }
