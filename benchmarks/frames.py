"""Benchmark medvid's frame extraction against the ffmpeg CLI and an OpenCV loop.

Usage::

    python benchmarks/frames.py [VIDEO ...] [--repeats N] [--no-memory]

Without arguments it reads every video in the repo's ``samples/landing/`` folder, or, when that
has none, in ``../shared/data/videos``. For each video, in the same run and interleaved (best of
``--repeats``, because the machine is shared):

- medvid ``extract_frames`` with strategy ``all`` to JPEG (quality 90), and with ``unique``;
- ``ffmpeg -i VIDEO -q:v 2 out/%06d.jpg`` (the ffmpeg CLI, process start included);
- a ``cv2.VideoCapture`` + ``cv2.imwrite`` loop (JPEG quality 90).

Then peak memory: the peak RSS growth of a child process extracting every frame of a short input
and of the same input looped 4x and 16x (packets remuxed, no re-encode) should stay flat.
Outputs go to a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import av  # noqa: E402
import cv2  # noqa: E402

from medvid.frames.extract import extract_frames  # noqa: E402
from medvid.frames.sampling import SamplingConfig  # noqa: E402
from medvid.video.normalize import Clip  # noqa: E402
from medvid.video.probe import probe_video  # noqa: E402

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mpeg", ".mpg", ".mkv", ".gif", ".m4v", ".wmv"}
JPEG_QUALITY = 90


def default_videos() -> list[Path]:
    for folder in (REPO / "samples" / "landing", REPO.parent / "shared" / "data" / "videos"):
        if folder.is_dir():
            found = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if found:
                return found
    return []


def wait_for_ffmpeg(timeout_s: float = 600.0) -> str:
    deadline = time.monotonic() + timeout_s
    while (ffmpeg := shutil.which("ffmpeg")) is None:
        if time.monotonic() > deadline:
            raise SystemExit("ffmpeg not found on PATH")
        print("waiting for ffmpeg to be installed ...", flush=True)
        time.sleep(20)
    return ffmpeg


def whole_video_clip(path: Path) -> tuple[Clip, int]:
    info = probe_video(path)
    return Clip(0, path, 0, info.frame_count, 0.0, info.avg_frame_rate), info.frame_count


def run_medvid(path: Path, out: Path, strategy: str) -> int:
    clip, total = whole_video_clip(path)
    table = extract_frames(
        [clip],
        "bench",
        out,
        sampling=SamplingConfig(strategy=strategy),  # type: ignore[arg-type]
        jpeg_quality=JPEG_QUALITY,
        total_frames=total,
    )
    return table.num_rows


def run_ffmpeg(ffmpeg: str, path: Path, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            ffmpeg,
            "-loglevel",
            "error",
            "-nostdin",
            "-i",
            str(path),
            "-q:v",
            "2",
            str(out / "%06d.jpg"),
        ],
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


def timed(fn: Callable[[Path], int], scratch: Path) -> tuple[float, int, int]:
    """(seconds, frames written, bytes written) for one run into a fresh folder."""
    out = Path(tempfile.mkdtemp(dir=scratch))
    start = time.perf_counter()
    frames = fn(out)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out)
    return seconds, frames, size


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


_MEMORY_CHILD = """
import json, resource, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from medvid.frames.extract import extract_frames
from medvid.frames.sampling import SamplingConfig
from medvid.video.normalize import Clip
from medvid.video.probe import probe_video
def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
path = Path(sys.argv[2])
info = probe_video(path)
clip = Clip(0, path, 0, info.frame_count, 0.0, info.avg_frame_rate)
tiny = Clip(0, path, 0, info.frame_count, 0.0, info.avg_frame_rate)
with tempfile.TemporaryDirectory(dir=sys.argv[3]) as warm:  # load codecs and thread pools
    extract_frames([tiny], "warm", Path(warm), sampling=SamplingConfig("uniform_k", uniform_k=2),
                   total_frames=info.frame_count)
base = rss_kib()
with tempfile.TemporaryDirectory(dir=sys.argv[3]) as out:
    rows = extract_frames([clip], "mem", Path(out), sampling=SamplingConfig("all"),
                          total_frames=info.frame_count).num_rows
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"frames": rows, "base_kib": base, "peak_kib": peak}))
"""


def peak_rss_growth_mib(path: Path, scratch: Path) -> tuple[int, float]:
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(REPO), str(path), str(scratch)],
        check=True,
        capture_output=True,
        text=True,
    )
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return data["frames"], (data["peak_kib"] - data["base_kib"]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs per tool")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory check")
    args = parser.parse_args()
    videos = args.videos or default_videos()
    if not videos:
        raise SystemExit("no videos given and none found in samples/ or ../shared/data/videos")
    ffmpeg = wait_for_ffmpeg()
    print(
        f"ffmpeg: {ffmpeg}; OpenCV {cv2.__version__}; PyAV {av.__version__}; best of {args.repeats}"
    )
    totals = {"medvid": 0.0, "ffmpeg": 0.0, "opencv": 0.0, "unique": 0.0}
    total_frames = 0
    scratch = Path(tempfile.mkdtemp(prefix="medvid-bench-"))
    try:
        for video in videos:
            info = probe_video(video)
            runners: dict[str, Callable[[Path], int]] = {
                "medvid": lambda out, v=video: run_medvid(v, out, "all"),
                "ffmpeg": lambda out, v=video: run_ffmpeg(ffmpeg, v, out),
                "opencv": lambda out, v=video: run_opencv(v, out),
                "unique": lambda out, v=video: run_medvid(v, out, "unique"),
            }
            best: dict[str, tuple[float, int, int]] = {}
            for _ in range(args.repeats):
                for name, fn in runners.items():
                    result = timed(fn, scratch)
                    if name not in best or result[0] < best[name][0]:
                        best[name] = result
            n = info.frame_count
            rate = {name: n / seconds for name, (seconds, _, _) in best.items()}
            for name in totals:
                totals[name] += best[name][0]
            total_frames += n
            kib = {name: size / max(1, frames) / 1024 for name, (_, frames, size) in best.items()}
            print(f"\n{video.name}: {n} frames {info.width}x{info.height} {info.codec}")
            print(
                f"  medvid (all, JPEG q{JPEG_QUALITY}): {rate['medvid']:.0f} frames/s "
                f"({best['medvid'][1]} files, {kib['medvid']:.0f} KiB/frame)"
            )
            print(
                f"  ffmpeg CLI: {rate['ffmpeg']:.0f} frames/s, "
                f"medvid/ffmpeg = {rate['medvid'] / rate['ffmpeg']:.2f}x "
                f"({best['ffmpeg'][1]} files, {kib['ffmpeg']:.0f} KiB/frame)"
            )
            print(
                f"  OpenCV VideoCapture+imwrite: {rate['opencv']:.0f} frames/s, "
                f"medvid/opencv = {rate['medvid'] / rate['opencv']:.2f}x"
            )
            print(
                f"  medvid unique: {rate['unique']:.0f} decoded frames/s ({best['unique'][1]} kept)"
            )

        memory: list[tuple[str, int, float]] = []
        if not args.no_memory:
            source = next((v for v in videos if v.suffix.lower() == ".mp4"), videos[0])
            for times in (1, 4, 16):
                looped = source if times == 1 else scratch / f"loop{times}.mp4"
                if times > 1:
                    loop_video(source, looped, times)
                frames, growth = peak_rss_growth_mib(looped, scratch)
                memory.append((f"{source.name} x{times}", frames, growth))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"\n=== summary: {len(videos)} videos, {total_frames} frames, extracting every frame ===")
    overall = {name: total_frames / seconds for name, seconds in totals.items()}
    print(f"medvid: {overall['medvid']:.0f} frames/s")
    print(
        f"ffmpeg CLI: {overall['ffmpeg']:.0f} frames/s, "
        f"medvid/ffmpeg = {overall['medvid'] / overall['ffmpeg']:.2f}x"
    )
    print(
        f"OpenCV loop: {overall['opencv']:.0f} frames/s, "
        f"medvid/opencv = {overall['medvid'] / overall['opencv']:.2f}x"
    )
    print(f"medvid unique: {overall['unique']:.0f} decoded frames/s")
    for label, frames, growth in memory:
        print(f"peak RSS growth, {label} ({frames} frames): {growth:.1f} MiB")


if __name__ == "__main__":
    main()
