"""End to end: real clips and DICOM files through ``medvid run`` on a fresh home.

Reports videos per hour, seconds per stage from Dagster's step statistics, each video's own
seconds per stage (frame extraction, burned-in text scan, residual check: from the per-member
status records), the share of OCR in a video's time, orchestration overhead (each run's wall
time minus its steps', and the command's wall time minus its runs'), and the peak RSS of the
``medvid run`` process, which executes every run in process.

Usage::

    nice -n 10 .venv/bin/python benchmarks/pipeline.py [--videos DIR] [--dicom FILE ...]
        [--copies N] [--work-dir DIR] [--json OUT]

Defaults: the clips of ``../shared/data/videos`` and two DICOM files of ``../shared/data/dicom``
(a still with burned-in text and a 30-frame cine loop), the home config of ``medvid demo``.
``--copies N`` lands every clip N times (re-encoded at another CRF so each copy is new content)
to show how time and memory grow with the number of videos.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DEFAULT_DICOM = ("OBXXXX1A.dcm", "examples_ybr_color.dcm")


def reencode(source: Path, target: Path, crf: int) -> None:
    import av

    with av.open(str(source)) as src, av.open(str(target), mode="w") as dst:
        stream_in = src.streams.video[0]
        out = dst.add_stream("libx264", rate=stream_in.average_rate)
        out.width, out.height = (
            stream_in.width - stream_in.width % 2,
            stream_in.height - stream_in.height % 2,
        )
        out.pix_fmt, out.options = "yuv420p", {"crf": str(crf), "preset": "veryfast"}
        for frame in src.decode(stream_in):
            frame = frame.reformat(width=out.width, height=out.height, format="yuv420p")
            dst.mux(out.encode(frame))
        dst.mux(out.encode(None))


def land(landing: Path, videos: list[Path], dicom: list[Path], copies: int) -> int:
    landing.mkdir(parents=True)
    count = 0
    for video in videos:
        shutil.copy2(video, landing / video.name)
        count += 1
        for copy in range(1, copies):
            reencode(video, landing / f"copy{copy}_{video.stem}.mp4", 18 + copy)
            count += 1
    for path in dicom:
        shutil.copy2(path, landing / path.name)
    return count


def run_medvid(landing: Path, home: Path, config: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) of the medvid process, and its output."""
    env = {**os.environ, "MEDVID_DEID_SALT": "benchmark-salt", "DAGSTER_HOME": str(home)}
    started = time.perf_counter()
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "medvid_assets.cli",
            "run",
            str(landing),
            "--home",
            str(home),
            "--config",
            str(config),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if process.returncode != 0:
        raise SystemExit(f"medvid run failed:\n{process.stdout}\n{process.stderr}")
    return wall, peak, process.stdout


def analyse(home: Path) -> dict:
    import dagster as dg

    from medvid.status import read_status
    from medvid_resources import LocalMediaStore

    os.environ["DAGSTER_HOME"] = str(home)
    by_step: dict[str, float] = defaultdict(float)
    runs_wall = steps_total = 0.0
    per_job: dict[str, dict] = defaultdict(lambda: {"runs": 0, "wall_s": 0.0, "steps_s": 0.0})
    with dg.DagsterInstance.get() as instance:
        for record in instance.get_run_records():
            run = record.dagster_run
            if record.start_time is None or record.end_time is None:
                continue
            wall = record.end_time - record.start_time
            stats = instance.get_run_step_stats(run.run_id)
            steps = sum((s.end_time or 0) - (s.start_time or 0) for s in stats if s.start_time)
            for s in stats:
                if s.start_time and s.end_time:
                    by_step[s.step_key] += s.end_time - s.start_time
            runs_wall += wall
            steps_total += steps
            job = per_job[run.job_name]
            job["runs"] += 1
            job["wall_s"] += wall
            job["steps_s"] += steps
    store = LocalMediaStore(root=str(home))
    from medvid.intake.ledger import ledger_entries

    videos = [e.content_id for e in ledger_entries(store, kind="video")]
    own: dict[str, float] = defaultdict(float)
    for video in videos:
        frames = read_status(store, "video_frames", video)
        scan = read_status(store, "video_redaction_plan", video)
        if frames is not None:
            own["extract_s"] += frames.metadata.get("extract_s", 0.0)
            own["residual_check_s"] += frames.metadata.get("residual_check_s", 0.0)
        if scan is not None:
            own["text_scan_s"] += scan.metadata.get("text_scan_s", 0.0)
    return {
        "videos": len(videos),
        "step_seconds": dict(sorted(by_step.items(), key=lambda kv: -kv[1])),
        "runs_wall_s": runs_wall,
        "steps_s": steps_total,
        "per_job": dict(per_job),
        "per_video_work_s": dict(own),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=Path, default=SHARED / "videos")
    parser.add_argument(
        "--dicom", type=Path, nargs="*", default=[SHARED / "dicom" / n for n in DEFAULT_DICOM]
    )
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="medvid-pipeline-"))
    landing, home = work / "landing", work / "home"
    shutil.rmtree(work, ignore_errors=True)
    videos = sorted(p for p in args.videos.iterdir() if p.is_file())
    count = land(landing, videos, list(args.dicom), args.copies)
    config = REPO / "samples" / "demo_config.yaml"
    wall, peak, output = run_medvid(landing, home, config)
    report = {"landed_videos": count, "wall_s": wall, "peak_rss_mib": peak, **analyse(home)}
    scan = report["per_video_work_s"]
    video_work = sum(scan.values())
    ocr = scan.get("text_scan_s", 0.0) + scan.get("residual_check_s", 0.0)
    report["ocr_share_of_video_work"] = ocr / video_work if video_work else 0.0
    report["videos_per_hour"] = report["videos"] / wall * 3600
    report["orchestration_overhead_s"] = report["runs_wall_s"] - report["steps_s"]
    report["command_overhead_s"] = wall - report["runs_wall_s"]
    report["load_average"] = os.getloadavg()
    print(json.dumps(report, indent=2, default=float))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
