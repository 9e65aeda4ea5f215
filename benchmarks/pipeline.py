"""End to end: real clips and DICOM files through ``medvid run`` on a fresh home.

Reports videos per hour, seconds per stage from Dagster's step statistics, each video's own
seconds per stage (frame extraction, burned-in text scan, residual check: from the per-member
status records), the share of OCR in a video's time, orchestration overhead (each run's wall
time minus its steps', and the command's wall time minus its runs'), and memory: the resident
set of the ``medvid run`` process tree (the process and its children, e.g. tesseract) sampled
every 50 ms from ``/proc`` (see below), its peak, the peak while each asset's step ran (steps'
start and end from the instance's step statistics), and the resident set after each run
(whether memory comes back between runs).

Usage::

    nice -n 10 .venv/bin/python benchmarks/pipeline.py [--samples | --videos DIR]
        [--dicom FILE ...] [--copies N] [--work-dir DIR] [--json OUT]

Defaults: the clips of ``../shared/data/videos`` and two DICOM files of ``../shared/data/dicom``
(a still with burned-in text and a 30-frame cine loop), the home config of ``medvid demo``.
``--samples`` lands what ``medvid demo`` lands instead (``samples/landing``: clips, DICOM files
and label sheets). ``--copies N`` lands every clip N times (re-encoded at another CRF so each
copy is new content) to show how time and memory grow with the number of videos.

The memory sampler reads ``/proc`` (Linux only): the resident set of the ``medvid run``
process plus the pages private to each of its children (tesseract, ffmpeg; a child forked from
medvid shares its parent's pages until it execs, and is not counted twice).
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
import threading
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


def land(
    landing: Path, videos: list[Path], dicom: list[Path], copies: int, others: list[Path] = ()
) -> int:
    """Copy the inputs into ``landing``; returns the number of video files landed."""
    landing.mkdir(parents=True)
    for path in others:
        shutil.copy2(path, landing / path.name)
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


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
SAMPLE_INTERVAL_S = 0.05


def _private_bytes(pid: int) -> int:
    """Pages only process ``pid`` holds (``Private_Clean`` + ``Private_Dirty`` of
    ``/proc/PID/smaps_rollup``): a child forked from medvid shares its parent's pages until it
    execs, and counting its resident set would count them twice."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
        for line in f:
            if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                total += int(line.split()[1]) * 1024
    return total


def tree_rss(root: int) -> int:
    """Resident bytes of process ``root`` (``/proc/PID/statm``) plus the pages private to each
    of its descendants (:func:`_private_bytes`; parent ids from ``/proc/PID/stat``); 0 when
    ``root`` is gone. A child that has not called ``exec`` yet (its stack starts where its
    parent's does) is left out: made by ``vfork`` (CPython's ``subprocess`` does that) it
    shares its parent's memory, and ``smaps_rollup`` shows the parent's pages as its own."""
    parents: dict[int, list[int]] = defaultdict(list)
    stack_of: dict[int, bytes] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name (field 2) may hold spaces; fields after its closing ')' are fixed
        fields = stat[stat.rindex(b")") + 2 :].split()
        parent = int(fields[1])
        parents[parent].append(int(entry.name))
        stack_of[int(entry.name)] = fields[25]  # startstack (field 28)
    try:
        with open(f"/proc/{root}/statm", "rb") as f:
            total = int(f.read().split()[1]) * PAGE_SIZE
    except OSError:
        return 0
    todo = [(pid, root) for pid in parents.get(root, ())]
    while todo:
        pid, parent = todo.pop()
        if stack_of.get(pid) != stack_of.get(parent):
            try:
                total += _private_bytes(pid)
            except OSError:
                continue
        todo.extend((child, pid) for child in parents.get(pid, ()))
    return total


class TreeSampler(threading.Thread):
    """Samples :func:`tree_rss` of ``pid`` every :data:`SAMPLE_INTERVAL_S` seconds into
    ``samples`` (``(unix time s, resident bytes)``) until :meth:`stop`."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            rss = tree_rss(self.pid)
            if rss:
                self.samples.append((time.time(), rss))
            self._halt.wait(SAMPLE_INTERVAL_S)

    def stop(self) -> list[tuple[float, int]]:
        self._halt.set()
        self.join()
        return self.samples


def run_medvid(landing: Path, home: Path, config: Path) -> tuple[float, float, str, list]:
    """Wall seconds, peak RSS (MiB, the kernel's ``ru_maxrss`` of the largest child), output,
    and the memory samples of the ``medvid run`` process tree."""
    env = {**os.environ, "MEDVID_DEID_SALT": "benchmark-salt", "DAGSTER_HOME": str(home)}
    started = time.perf_counter()
    process = subprocess.Popen(
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
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    sampler = TreeSampler(process.pid)
    sampler.start()
    stdout, stderr = process.communicate()
    samples = sampler.stop()
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if process.returncode != 0:
        raise SystemExit(f"medvid run failed:\n{stdout}\n{stderr}")
    return wall, peak, stdout, samples


def memory_by_step(home: Path, samples: list[tuple[float, int]]) -> dict:
    """Attribute memory samples to the runs and steps executing when they were taken.

    Returns the tree's peak (MiB), the peak while each asset's step ran (``step_peak_mib``,
    the largest over all its runs, with the number of runs), the peak outside any step
    (``outside_steps_peak_mib``: planning, run setup, the summary), and per run in order: its
    job, unit tag, peak and the resident set at its start and end (``runs``)."""
    import dagster as dg

    mib = 1024 * 1024
    os.environ["DAGSTER_HOME"] = str(home)
    spans: list[tuple[float, float, str]] = []
    runs = []
    with dg.DagsterInstance.get() as instance:
        records = [r for r in instance.get_run_records() if r.start_time and r.end_time]
        for record in sorted(records, key=lambda r: r.start_time):
            run = record.dagster_run
            runs.append((record.start_time, record.end_time, run.job_name, run.tags))
            for s in instance.get_run_step_stats(run.run_id):
                if s.start_time and s.end_time:
                    spans.append((s.start_time, s.end_time, s.step_key))

    def window(start: float, end: float) -> list[int]:
        return [rss for t, rss in samples if start <= t <= end]

    def nearest(t: float) -> int:
        return min(samples, key=lambda sample: abs(sample[0] - t))[1]

    step_peak: dict[str, int] = defaultdict(int)
    step_runs: dict[str, int] = defaultdict(int)
    in_step = set()
    for start, end, key in spans:
        inside = window(start, end)
        step_runs[key] += 1
        if inside:
            step_peak[key] = max(step_peak[key], max(inside))
        in_step.update(t for t, _ in samples if start <= t <= end)
    outside = [rss for t, rss in samples if t not in in_step]
    per_run = []
    for start, end, job, tags in runs:
        inside = window(start, end)
        per_run.append(
            {
                "job": job,
                "unit": tags.get("medvid/unit", ""),
                "start_mib": nearest(start) / mib,
                "peak_mib": max(inside, default=0) / mib,
                "end_mib": nearest(end) / mib,
            }
        )
    return {
        "samples": len(samples),
        "tree_peak_mib": max((rss for _, rss in samples), default=0) / mib,
        "final_mib": samples[-1][1] / mib if samples else 0.0,
        "step_peak_mib": {
            k: {"peak_mib": v / mib, "runs": step_runs[k]}
            for k, v in sorted(step_peak.items(), key=lambda kv: -kv[1])
        },
        "outside_steps_peak_mib": max(outside, default=0) / mib,
        "runs": per_run,
    }


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
        "--samples", action="store_true", help="land samples/landing (what medvid demo lands)"
    )
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
    if args.samples:
        files = sorted(p for p in (REPO / "samples" / "landing").iterdir() if p.is_file())
        videos = [p for p in files if p.suffix.lower() not in (".dcm", ".csv")]
        dicom = [p for p in files if p.suffix.lower() == ".dcm"]
        others = [p for p in files if p.suffix.lower() == ".csv"]
    else:
        videos = sorted(p for p in args.videos.iterdir() if p.is_file())
        dicom, others = list(args.dicom), []
    count = land(landing, videos, dicom, args.copies, others)
    config = REPO / "samples" / "demo_config.yaml"
    wall, peak, output, samples = run_medvid(landing, home, config)
    report = {
        "landed_videos": count,
        "wall_s": wall,
        "peak_rss_mib": peak,
        **analyse(home),
        "memory": memory_by_step(home, samples),
    }
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
