"""The one decode loop: open a file's first video stream and yield its frames in decode order.

Normalization and frame extraction both read video through :func:`iter_video_frames`, so they
agree on what "frame number N" is: the N-th frame the decoder outputs (0-based).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import av.error
import numpy as np
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from medvid.errors import CorruptMediaError, UnsupportedMediaError


@contextmanager
def open_video(path: str | Path, *, threads: bool = True) -> Iterator[VideoStream]:
    """Open ``path`` and yield its first video stream (container closed on exit).

    ``threads=True`` lets FFmpeg decode with frame and slice threads (``thread_type="AUTO"``);
    frames still come out one at a time, in order.

    Raises:
        CorruptMediaError: the file cannot be opened as media.
        UnsupportedMediaError: it has no video stream.
    """
    path = Path(path)
    try:
        container: InputContainer = av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise CorruptMediaError(f"{path.name}: not a readable media container ({exc})") from exc
    try:
        if not container.streams.video:
            raise UnsupportedMediaError(f"{path.name}: no video stream")
        stream = container.streams.video[0]
        if threads:
            stream.thread_type = "AUTO"
        yield stream
    finally:
        container.close()


def iter_video_frames(stream: VideoStream) -> Iterator[VideoFrame]:
    """Decode ``stream`` (from :func:`open_video`) and yield each frame in decode order.

    Frames are produced one at a time, so memory does not grow with video length.

    Raises:
        CorruptMediaError: the decoder fails part-way (damaged or truncated data).
    """
    decoded = 0
    try:
        for frame in stream.container.decode(stream):
            decoded += 1
            yield frame
    except av.error.FFmpegError as exc:
        raise CorruptMediaError(
            f"{Path(stream.container.name).name}: decoding failed after {decoded} frames ({exc})"
        ) from exc


def frames_at_times(path: str | Path, times_s: list[float]) -> list[tuple[float, np.ndarray]]:
    """The first frame at or after each time, as ``(time_s, (H, W, 3) uint8 RGB)`` pairs.

    Seeks to the keyframe before each time and decodes forward, so reading a few frames of a
    long video costs a few GOPs, not the whole video. ``time_s`` is the frame's presentation time
    in seconds from the stream start; times past the end give the last frame. Times are visited
    in increasing order and each frame is returned once.

    Raises:
        CorruptMediaError: the file cannot be opened or decoded.
        UnsupportedMediaError: it has no video stream.
    """
    results: list[tuple[float, np.ndarray]] = []
    seen: set[int] = set()
    with open_video(path, threads=False) as stream:
        container = stream.container
        time_base = stream.time_base
        start = stream.start_time or 0
        for wanted in sorted(times_s):
            target = start + int(max(wanted, 0.0) / time_base) if time_base else 0
            try:
                container.seek(target, stream=stream, backward=True, any_frame=False)
                chosen = None
                for frame in container.decode(stream):
                    chosen = frame
                    if frame.pts is None or frame.pts >= target:
                        break
            except av.error.FFmpegError as exc:
                raise CorruptMediaError(f"{Path(path).name}: seeking failed ({exc})") from exc
            if chosen is None or (chosen.pts is not None and chosen.pts in seen):
                continue
            if chosen.pts is not None:
                seen.add(chosen.pts)
            moment = float(chosen.time) if chosen.time is not None else wanted
            results.append((moment, chosen.to_ndarray(format="rgb24")))
    return results
