"""Normalize a video into H.264/MP4/yuv420p clips at the source's exact frame rate.

Every later stage reads normalized clips only, so it sees one codec and one container whatever
the hospital sent (AVI with MJPEG or MPEG-4 part 2, MPEG-2 program streams, QuickTime MOV,
animated GIF, ...). The rules:

- 1:1 frames: normalized frame ``i`` is decoded frame ``i`` of the source; nothing is dropped or
  duplicated. Output is constant frame rate: frame ``i`` of a clip has ``pts = i`` in time base
  ``1/fps``, with ``fps`` the source's ``avg_frame_rate`` (exact fraction). Both the frame count
  and the frame rate are verified by probing each written clip.
- Geometry: odd widths/heights are padded by one black pixel on the right/bottom (H.264 4:2:0
  needs even sizes); nothing is scaled. The padding is recorded on the :class:`Clip`.
- Long videos (longer than ``max_duration_s``) are split into clips of ``clip_duration_s``
  (``round(clip_duration_s * fps)`` frames); each clip records the frame number and time of its
  first frame in the original video, so frame numbers and timestamps map back.
- An H.264/yuv420p ``.mp4`` under the limit is not re-encoded: its video packets are copied
  byte-for-byte into a fresh MP4 (a remux), which drops tags and audio.
- Outputs carry no container or stream metadata tags (they may hold PHI: names, dates) and no
  audio. Files are written atomically as ``out_dir/clip_000.mp4``, ``clip_001.mp4``, ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np
from av.container import OutputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from medvid.errors import CorruptMediaError
from medvid.io import atomic_path
from medvid.video.decode import iter_video_frames, open_video
from medvid.video.probe import VideoInfo, needs_transcode, probe_video

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(frames_done, frames_total)``."""

# Keyframe interval of the encoded clips, in frames: short enough for cheap seeking.
_GOP_FRAMES = 50
_MP4_OPTIONS = {"movflags": "+faststart"}


@dataclass(frozen=True)
class Clip:
    """One normalized clip file and where it sits in the original video.

    Attributes:
        clip_index: 0-based position of the clip in the video.
        path: the clip's ``.mp4`` file.
        frame_offset: frame number (0-based, decode order) in the original video of the clip's
            first frame; clip frame ``i`` is original frame ``frame_offset + i``.
        frame_count: frames in the clip.
        time_offset_s: time of the clip's first frame in the original video, in seconds
            (``frame_offset / fps``).
        fps: frame rate of the clip, frames per second (equal to the source's).
        pad_right, pad_bottom: pixels of black padding added to make the size even (0 or 1).
    """

    clip_index: int
    path: Path
    frame_offset: int
    frame_count: int
    time_offset_s: float
    fps: Fraction
    pad_right: int = 0
    pad_bottom: int = 0

    def as_row(self) -> dict[str, Any]:
        """A flat dict for a table row (``path`` as string, ``fps`` as ``"num/den"``)."""
        return {
            "clip_index": self.clip_index,
            "path": str(self.path),
            "frame_offset": self.frame_offset,
            "frame_count": self.frame_count,
            "time_offset_s": self.time_offset_s,
            "fps": f"{self.fps.numerator}/{self.fps.denominator}",
            "pad_right": self.pad_right,
            "pad_bottom": self.pad_bottom,
        }


def clip_name(clip_index: int) -> str:
    """File name of clip ``clip_index``: ``clip_000.mp4``, ``clip_001.mp4``, ..."""
    return f"clip_{clip_index:03d}.mp4"


def plan_clips(
    frame_count: int, fps: Fraction, *, max_duration_s: float, clip_duration_s: float
) -> list[tuple[int, int]]:
    """``(frame_offset, frame_count)`` of each clip; one clip unless longer than the limit.

    The video's length is ``frame_count / fps`` seconds. Clips cover every frame exactly once.
    """
    if frame_count <= 0:
        raise ValueError(f"frame_count must be positive, got {frame_count}")
    if clip_duration_s <= 0 or max_duration_s <= 0:
        raise ValueError("max_duration_s and clip_duration_s must be positive")
    if float(frame_count / Fraction(fps)) <= max_duration_s:
        return [(0, frame_count)]
    per_clip = max(1, round(clip_duration_s * fps))
    return [
        (start, min(per_clip, frame_count - start)) for start in range(0, frame_count, per_clip)
    ]


def normalize_video(
    src: Path,
    out_dir: Path,
    info: VideoInfo,
    *,
    max_duration_s: float = 240.0,
    clip_duration_s: float = 120.0,
    crf: int = 18,
    preset: str = "veryfast",
    progress: ProgressCallback | None = None,
) -> list[Clip]:
    """Write ``src`` as normalized clips into ``out_dir`` and return them in order.

    Args:
        src: the original video file.
        out_dir: folder for ``clip_NNN.mp4`` (created if missing).
        info: :func:`~medvid.video.probe.probe_video` of ``src``.
        max_duration_s: videos longer than this (seconds) are split.
        clip_duration_s: length of each clip when splitting (seconds; the last one is shorter).
        crf: x264 constant rate factor (18 is visually lossless for ultrasound/endoscopy).
        preset: x264 speed preset.
        progress: called with ``(frames_done, frames_total)`` as frames are written.

    Raises:
        CorruptMediaError: decoding fails part-way, or a written clip's frame count or frame
            rate differs from what was planned.
    """
    src, out_dir = Path(src), Path(out_dir)
    fps = info.avg_frame_rate
    plan = plan_clips(
        info.frame_count, fps, max_duration_s=max_duration_s, clip_duration_s=clip_duration_s
    )
    if len(plan) == 1 and not needs_transcode(info, src):
        clips = [_remux(src, out_dir / clip_name(0), info)]
        if progress is not None:
            progress(info.frame_count, info.frame_count)
    else:
        clips = _transcode(src, out_dir, info, plan, crf=crf, preset=preset, progress=progress)
    for clip in clips:
        _verify(clip)
    return clips


def _remux(src: Path, target: Path, info: VideoInfo) -> Clip:
    """Copy the video packets of ``src`` into a fresh MP4 without tags or other streams."""
    with (
        open_video(src, threads=False) as in_stream,
        atomic_path(target) as tmp,
        av.open(str(tmp), mode="w", format="mp4", options=_MP4_OPTIONS) as out,
    ):
        out_stream = out.add_stream_from_template(in_stream)
        out_stream.metadata.clear()
        for packet in in_stream.container.demux(in_stream):
            if packet.dts is None:  # end-of-stream flush packet
                continue
            packet.stream = out_stream
            out.mux(packet)
    return Clip(0, target, 0, info.frame_count, 0.0, info.avg_frame_rate)


def _transcode(
    src: Path,
    out_dir: Path,
    info: VideoInfo,
    plan: list[tuple[int, int]],
    *,
    crf: int,
    preset: str,
    progress: ProgressCallback | None,
) -> list[Clip]:
    fps = info.avg_frame_rate
    pad_right, pad_bottom = info.width % 2, info.height % 2
    width, height = info.width + pad_right, info.height + pad_bottom
    clips: list[Clip] = []
    done = 0
    with open_video(src) as in_stream:
        frames = iter_video_frames(in_stream)
        for clip_index, (frame_offset, frame_count) in enumerate(plan):
            target = out_dir / clip_name(clip_index)
            with atomic_path(target) as tmp:
                with av.open(str(tmp), mode="w", format="mp4", options=_MP4_OPTIONS) as out:
                    stream = _add_h264_stream(out, fps, width, height, crf=crf, preset=preset)
                    written = 0
                    for frame in _take(frames, frame_count):
                        picture = _to_yuv420p(frame, pad_right, pad_bottom)
                        picture.pts = written
                        picture.time_base = stream.codec_context.time_base
                        out.mux(stream.encode(picture))
                        written += 1
                        done += 1
                        if progress is not None:
                            progress(done, info.frame_count)
                    out.mux(stream.encode(None))
                if written != frame_count:
                    raise CorruptMediaError(
                        f"{src.name}: expected {info.frame_count} frames but the decoder stopped "
                        f"after {frame_offset + written}"
                    )
            clips.append(
                Clip(
                    clip_index,
                    target,
                    frame_offset,
                    frame_count,
                    float(frame_offset / fps),
                    fps,
                    pad_right,
                    pad_bottom,
                )
            )
        if next(frames, None) is not None:
            raise CorruptMediaError(
                f"{src.name}: the decoder gave more frames than the {info.frame_count} counted"
            )
    return clips


def _take(frames: Iterator[VideoFrame], count: int) -> Iterator[VideoFrame]:
    for _ in range(count):
        frame = next(frames, None)
        if frame is None:
            return
        yield frame


def _add_h264_stream(
    out: OutputContainer, fps: Fraction, width: int, height: int, *, crf: int, preset: str
) -> VideoStream:
    stream = out.add_stream("libx264", rate=fps)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.time_base = Fraction(1) / fps
    stream.codec_context.time_base = Fraction(1) / fps
    stream.codec_context.gop_size = _GOP_FRAMES
    stream.options = {"crf": str(crf), "preset": preset}
    return stream


def _to_yuv420p(frame: VideoFrame, pad_right: int, pad_bottom: int) -> VideoFrame:
    """The frame as yuv420p, padded with black on the right/bottom when asked."""
    if not (pad_right or pad_bottom):
        if frame.format.name == "yuv420p":
            return frame
        return frame.reformat(format="yuv420p")
    rgb = frame.to_ndarray(format="rgb24")
    rgb = np.pad(rgb, ((0, pad_bottom), (0, pad_right), (0, 0)))
    return VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def _verify(clip: Clip) -> None:
    """Probe a written clip; its frame count and frame rate must be what was planned."""
    got = probe_video(clip.path)
    if got.frame_count != clip.frame_count:
        raise CorruptMediaError(
            f"{clip.path.name}: wrote {clip.frame_count} frames but the file holds "
            f"{got.frame_count}"
        )
    if got.avg_frame_rate != clip.fps:
        raise CorruptMediaError(
            f"{clip.path.name}: frame rate is {got.avg_frame_rate}, expected {clip.fps}"
        )
