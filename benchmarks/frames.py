"""Benchmark medvid's frame extraction against the ffmpeg CLI and an OpenCV loop.

Usage::

    python benchmarks/frames.py [VIDEO ...] [--repeats N] [--no-memory] [--baseline DIR]
                                [--frames-8k N] [--work-dir DIR]

Without arguments it reads every video in ``../shared/data/videos`` (the eight real clips of
the issue), or, when that is missing, the repo's ``samples/landing/``. For each video, in the
same run and interleaved (best of ``--repeats``, because the machine is shared):

- medvid ``extract_frames`` with strategy ``all`` to JPEG (quality 90), and with ``unique``;
- ``ffmpeg -i VIDEO -q:v 2 out/%06d.jpg`` (the ffmpeg CLI, process start included);
- a ``cv2.VideoCapture`` + ``cv2.imwrite`` loop (JPEG quality 90), the tool most labs have;
- with ``--baseline DIR``, an earlier medvid (a source tree holding ``medvid/``, e.g. from
  ``git archive <rev> medvid | tar -x -C DIR``) run in a child process that times only its
  second ``extract_frames`` call on the video (the first warms it up, as medvid is warm in this
  process), for before/after numbers from the same run.

Wall-clock seconds decide the ratios; CPU seconds (all threads, the ffmpeg child included) are
printed beside them, because on a shared machine a tool's wall time depends on what the others
do while CPU time mostly does not.

Then peak memory, in child processes: the peak RSS growth while extracting every frame of a
short input and of the same input looped 4x, 16x and 64x (packets remuxed, no re-encode) should stay
flat, and that of a synthetic 8K (7680x4320) H.264 clip shows how many full-frame copies are
held. Outputs go to a temporary folder (under ``--work-dir``, default the system's temporary
folder) that is removed at the end. Every tool writes one file per frame there, so the cost of
creating a file in that folder is printed first: on the dev VM it varied from 0.06 to 0.74 ms
of CPU under ``/tmp`` within an hour (0.02-0.35 ms under ``/var/tmp``, same ext4 disk), a fixed
cost per frame that every tool pays and that narrows their ratios when it is high.
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
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from medvid.frames.extract import extract_frames  # noqa: E402
from medvid.frames.sampling import SamplingConfig  # noqa: E402
from medvid.video.normalize import Clip  # noqa: E402
from medvid.video.probe import probe_video  # noqa: E402

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mpeg", ".mpg", ".mkv", ".gif", ".m4v", ".wmv"}
JPEG_QUALITY = 90
TOOLS = ("medvid", "ffmpeg", "opencv", "baseline", "unique")


def default_videos() -> list[Path]:
    for folder in (REPO.parent / "shared" / "data" / "videos", REPO / "samples" / "landing"):
        if folder.is_dir():
            found = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if found:
                return found
    return []


def whole_video_clip(path: Path) -> tuple[Clip, int]:
    info = probe_video(path)
    return Clip(0, path, 0, info.frame_count, 0.0, info.avg_frame_rate), info.frame_count


def run_medvid(clip: Clip, out: Path, strategy: str) -> int:
    table = extract_frames(
        [clip],
        "bench",
        out,
        sampling=SamplingConfig(strategy=strategy),  # type: ignore[arg-type]
        jpeg_quality=JPEG_QUALITY,
        total_frames=clip.frame_count,
    )
    return table.num_rows


def run_ffmpeg(ffmpeg: str, path: Path, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [ffmpeg, "-loglevel", "error", "-nostdin", "-i", str(path)]
        + ["-q:v", "2", str(out / "%06d.jpg")],
        check=True,
    )
    return sum(1 for _ in out.iterdir())


def run_opencv(path: Path, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(path))
    count = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        cv2.imwrite(str(out / f"{count:06d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        count += 1
    capture.release()
    return count


_BASELINE_CHILD = """
import json, shutil, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from medvid.frames.extract import extract_frames
from medvid.frames.sampling import SamplingConfig
from medvid.video.normalize import Clip
from medvid.video.probe import probe_video
path = Path(sys.argv[2])
info = probe_video(path)
clip = Clip(0, path, 0, info.frame_count, 0.0, info.avg_frame_rate)
# an untimed first run, so that the timed one is as warm (codecs loaded, thread pools started,
# allocator grown) as medvid's in the parent process
extract_frames([clip], "warm", Path(sys.argv[3]) / "warm", sampling=SamplingConfig("all"),
               jpeg_quality=int(sys.argv[4]), total_frames=info.frame_count)
shutil.rmtree(Path(sys.argv[3]) / "warm")
wall, cpu = time.perf_counter(), time.process_time()
rows = extract_frames([clip], "bench", Path(sys.argv[3]), sampling=SamplingConfig("all"),
                      jpeg_quality=int(sys.argv[4]), total_frames=info.frame_count).num_rows
print(json.dumps({"rows": rows, "wall": time.perf_counter() - wall,
                  "cpu": time.process_time() - cpu}))
"""


class Timing:
    """Best-of-N wall seconds of one tool on one video, with the CPU seconds of that run."""

    def __init__(self) -> None:
        self.wall = float("inf")
        self.cpu = 0.0
        self.frames = 0
        self.bytes = 0

    def add(self, wall: float, cpu: float, frames: int, size: int) -> None:
        if wall < self.wall:
            self.wall, self.cpu, self.frames, self.bytes = wall, cpu, frames, size


def timed(fn: Callable[[Path], int], scratch: Path) -> tuple[float, float, int, int]:
    """(wall s, CPU s of this process and its children, frames written, bytes written)."""
    out = Path(tempfile.mkdtemp(dir=scratch))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time()
    start = time.perf_counter()
    frames = fn(out)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu
    cpu += (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out)
    return wall, cpu, frames, size


def timed_baseline(baseline: Path, video: Path, scratch: Path) -> tuple[float, float, int, int]:
    out = Path(tempfile.mkdtemp(dir=scratch))
    result = subprocess.run(
        [sys.executable, "-c", _BASELINE_CHILD, str(baseline), str(video), str(out)]
        + [str(JPEG_QUALITY)],
        check=True,
        capture_output=True,
        text=True,
    )
    data = json.loads(result.stdout.strip().splitlines()[-1])
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out)
    return data["wall"], data["cpu"], data["rows"], size


def loop_video(src: Path, dst: Path, times: int) -> int:
    """Write ``src``'s video packets ``times`` times back to back into ``dst`` (no re-encode)."""
    with av.open(str(src)) as probe:
        stream = probe.streams.video[0]
        packets = [p for p in probe.demux(stream) if p.size]
        step = max((p.pts or 0) + (p.duration or 0) for p in packets) - min(
            p.pts or 0 for p in packets
        )
        with av.open(str(dst), "w", format="mp4") as out:
            out_stream = out.add_stream_from_template(stream)
            for loop in range(times):
                for packet in packets:
                    copy = av.Packet(bytes(packet))
                    copy.pts = packet.pts + loop * step
                    copy.dts = packet.dts + loop * step
                    copy.duration = packet.duration
                    copy.is_keyframe = packet.is_keyframe
                    copy.time_base = packet.time_base
                    copy.stream = out_stream
                    out.mux(copy)
    return probe_video(dst).frame_count


def write_8k_clip(source: Path, dst: Path, frames: int) -> Path:
    """An H.264 7680x4320 clip of ``frames`` frames: ``source``'s frames scaled up 6x
    (x264 ultrafast, so that it is quick to make; the content is real, the detail is not)."""
    width, height = 7680, 4320
    with av.open(str(source)) as src, av.open(str(dst), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 25)
        stream.options = {"preset": "ultrafast", "crf": "23"}
        for index, frame in enumerate(src.decode(video=0)):
            if index == frames:
                break
            rgb = cv2.resize(frame.to_ndarray(format="rgb24"), (width, height))
            big = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            big = big.reformat(format="yuv420p")
            big.pts = index
            out.mux(stream.encode(big))
        out.mux(stream.encode(None))
    return dst


_MEMORY_CHILD = """
import json, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from medvid.frames.extract import extract_frames
from medvid.frames.sampling import SamplingConfig
from medvid.video.normalize import Clip
from medvid.video.probe import probe_video
def status_kib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
def clip_of(path):
    info = probe_video(path)
    return Clip(0, path, 0, info.frame_count, 0.0, info.avg_frame_rate), info.frame_count
warm, warm_total = clip_of(Path(sys.argv[3]))  # a small clip: loads codecs and thread pools
with tempfile.TemporaryDirectory(dir=sys.argv[4]) as out:
    extract_frames([warm], "warm", Path(out), sampling=SamplingConfig("uniform_k", uniform_k=2),
                   total_frames=warm_total)
clip, total = clip_of(Path(sys.argv[2]))
base = status_kib("VmRSS:")
with tempfile.TemporaryDirectory(dir=sys.argv[4]) as out:
    rows = extract_frames([clip], "mem", Path(out), sampling=SamplingConfig("all"),
                          total_frames=total).num_rows
# VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork + exec
peak = status_kib("VmHWM:")
print(json.dumps({"frames": rows, "base_kib": base, "peak_kib": peak}))
"""


def peak_rss_growth_mib(source_tree: Path, path: Path, warm: Path, scratch: Path):
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(source_tree), str(path), str(warm), str(scratch)],
        check=True,
        capture_output=True,
        text=True,
    )
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return data["frames"], (data["peak_kib"] - data["base_kib"]) / 1024


def file_create_ms(folder: Path, count: int = 200) -> float:
    """CPU milliseconds to create, write 16 KiB to and close one new file in ``folder``."""
    data = b"\0" * 16384
    probe = Path(tempfile.mkdtemp(dir=folder))
    started = time.process_time()
    for index in range(count):
        fd = os.open(probe / f"{index}.jpg", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.close(fd)
    spent = time.process_time() - started
    shutil.rmtree(probe)
    return spent / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=5, help="best of N runs per tool")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory checks")
    parser.add_argument("--baseline", type=Path, help="source tree of an earlier medvid")
    parser.add_argument("--frames-8k", type=int, default=12, help="frames of the 8K clip")
    parser.add_argument("--work-dir", type=Path, default=None, help="where outputs are written")
    args = parser.parse_args()
    videos = args.videos or default_videos()
    if not videos:
        raise SystemExit("no videos given and none found in ../shared/data/videos or samples/")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("ffmpeg not found on PATH")
    print(
        f"ffmpeg: {ffmpeg}; OpenCV {cv2.__version__}; PyAV {av.__version__}; "
        f"best of {args.repeats}, interleaved; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the start"
    )
    tools = [t for t in TOOLS if t != "baseline" or args.baseline]
    totals = {name: Timing() for name in tools}
    for timing in totals.values():
        timing.wall = 0.0
    total_frames = 0
    scratch = Path(tempfile.mkdtemp(prefix="medvid-bench-", dir=args.work_dir))
    create_ms = file_create_ms(scratch)
    print(f"outputs under {scratch.parent}: {create_ms:.3f} ms of CPU per file created")
    try:
        for video in videos:
            info = probe_video(video)
            # probing is medvid's earlier stage (video_metadata), not part of extraction
            clip, n = whole_video_clip(video)
            runners: dict[str, Callable[[], tuple[float, float, int, int]]] = {
                "medvid": lambda c=clip: timed(lambda out: run_medvid(c, out, "all"), scratch),
                "ffmpeg": lambda v=video: timed(lambda out: run_ffmpeg(ffmpeg, v, out), scratch),
                "opencv": lambda v=video: timed(lambda out: run_opencv(v, out), scratch),
                "baseline": lambda v=video: timed_baseline(args.baseline, v, scratch),
                "unique": lambda c=clip: timed(lambda out: run_medvid(c, out, "unique"), scratch),
            }
            best = {name: Timing() for name in tools}
            for _ in range(args.repeats):
                for name in tools:
                    best[name].add(*runners[name]())
            total_frames += n
            for name in tools:
                totals[name].wall += best[name].wall
                totals[name].cpu += best[name].cpu
            print(f"\n{video.name}: {n} frames {info.width}x{info.height} {info.codec}")
            for name in tools:
                b = best[name]
                ratio = best["medvid"].wall and b.wall / best["medvid"].wall
                print(
                    f"  {name:8s} {n / b.wall:6.0f} frames/s  medvid/{name} {ratio:4.2f}x  "
                    f"CPU {b.cpu / n * 1000:5.2f} ms/frame  {b.frames} files "
                    f"{b.bytes / max(1, b.frames) / 1024:4.0f} KiB/frame"
                )

        memory: list[tuple[str, str, int, float]] = []
        if not args.no_memory:
            trees = [("medvid", REPO)] + ([("baseline", args.baseline)] if args.baseline else [])
            source = next((v for v in videos if v.suffix.lower() == ".mp4"), videos[0])
            warm = min(videos, key=lambda v: v.stat().st_size)
            inputs = []
            for times in (1, 4, 16, 64):
                looped = source if times == 1 else scratch / f"loop{times}.mp4"
                if times > 1:
                    loop_video(source, looped, times)
                inputs.append((f"{source.name} x{times}", looped))
            if args.frames_8k:
                endo = next((v for v in videos if "endo" in v.name), source)
                clip_8k = write_8k_clip(endo, scratch / "8k.mp4", args.frames_8k)
                inputs.append(("8K 7680x4320 H.264", clip_8k))
            for label, path in inputs:
                for tree_name, tree in trees:
                    frames, growth = peak_rss_growth_mib(tree, path, warm, scratch)
                    memory.append((label, tree_name, frames, growth))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(
        f"\n=== summary: {len(videos)} videos, {total_frames} frames, every frame to JPEG; "
        f"load average {os.getloadavg()[0]:.1f} at the end ==="
    )
    print("| tool | frames/s | medvid / tool | CPU ms/frame |")
    print("|---|---:|---:|---:|")
    medvid = totals["medvid"]
    labels = {
        "medvid": "medvid (all, JPEG q90)",
        "ffmpeg": "ffmpeg CLI (`-q:v 2`)",
        "opencv": "OpenCV VideoCapture + imwrite (q90)",
        "baseline": f"medvid before ({args.baseline})",
        "unique": "medvid `unique` (decoded frames/s)",
    }
    for name in tools:
        t = totals[name]
        ratio = "" if name in ("medvid", "unique") else f"{t.wall / medvid.wall:.2f}x"
        print(
            f"| {labels[name]} | {total_frames / t.wall:.0f} | {ratio} | "
            f"{t.cpu / total_frames * 1000:.2f} |"
        )
    for label, tree_name, frames, growth in memory:
        print(f"peak RSS growth, {tree_name}, {label} ({frames} frames): {growth:.1f} MiB")


if __name__ == "__main__":
    main()
