"""Normalize a video into H.264/MP4/yuv420p clips at the source's exact frame rate.

Every later stage reads normalized clips only, so it sees one codec and one container whatever
the hospital sent (AVI with MJPEG or MPEG-4 part 2, MPEG-2 program streams, QuickTime MOV,
animated GIF, ...). The rules:

- 1:1 frames: normalized frame ``i`` is decoded frame ``i`` of the source; nothing is dropped or
  duplicated. The decoded frames are the truth, not the container's count: a source whose
  container announces more frames than decode (edit-list pre-roll, damaged packets) keeps every
  frame that decodes, and each clip records the announced count and the packets the decoder
  rejected (:class:`Clip`). Only a source of which nothing, or less than
  :data:`~medvid.video.decode.MIN_DECODED_FRACTION` of the announced frames, decodes is
  rejected. Output is constant frame rate: frame ``i`` of a clip has ``pts = i`` in time base
  ``1/fps``, with ``fps`` the source's ``avg_frame_rate`` (exact fraction). Both the frame count
  and the frame rate are verified by probing each written clip.
- Geometry: odd widths/heights are padded by one black pixel on the right/bottom (H.264 4:2:0
  needs even sizes); nothing is scaled. The padding is recorded on the :class:`Clip`.
- Long videos (longer than ``max_duration_s``) are split into clips of ``clip_duration_s``
  (``round(clip_duration_s * fps)`` frames); each clip records the frame number and time of its
  first frame in the original video, so frame numbers and timestamps map back.
- An H.264/yuv420p ``.mp4`` under the limit is not re-encoded: its video packets are copied
  byte-for-byte into a fresh MP4 (a remux), which drops tags and audio. The remuxed clip is
  decoded once to verify it: if a packet fails to decode or the frame count differs from the
  packet count (an edit list hiding frames), the source is transcoded instead.
- Outputs carry no container or stream metadata tags (they may hold PHI: names, dates) and no
  audio. Files are written atomically as ``out_dir/clip_000.mp4``, ``clip_001.mp4``, ...
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, replace
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
from medvid.video.decode import DecodeStats, check_decoded, iter_video_frames, open_video
from medvid.video.probe import VideoInfo, needs_transcode, probe_video

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(frames_done, frames_total)``."""

# Keyframe interval of the encoded clips, in frames: short enough for cheap seeking.
_GOP_FRAMES = 50
_MAX_FRAME = 2**62
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
        frame_count_announced: frames the source's container announced for the *whole video*
            (:attr:`VideoInfo.frame_count <medvid.video.probe.VideoInfo.frame_count>`, its
            demuxed video packets), the same on every clip of a video; ``None`` when unknown
            (a clip described by hand). The video's decoded count is the sum of its clips'
            ``frame_count``; see :func:`decode_summary`.
        decode_errors: source packets the decoder rejected and skipped while this clip's frames
            were decoded (since the previous clip's last frame; the last clip also counts those
            after its last frame).
        damaged_spans: ``(first, last)`` frame numbers (original video, inclusive) of this
            clip's frames that were decoded from damaged data
            (:attr:`~medvid.video.decode.DecodeStats.frame_damaged`): kept, but frame extraction
            flags them disturbed. Sorted, disjoint.
    """

    clip_index: int
    path: Path
    frame_offset: int
    frame_count: int
    time_offset_s: float
    fps: Fraction
    pad_right: int = 0
    pad_bottom: int = 0
    frame_count_announced: int | None = None
    decode_errors: int = 0
    damaged_spans: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        # Rows read back from a table give lists; bisect needs one comparable type.
        spans = tuple((int(first), int(last)) for first, last in self.damaged_spans)
        object.__setattr__(self, "damaged_spans", spans)

    def is_damaged(self, frame_number: int) -> bool:
        """Whether frame ``frame_number`` (original video) lies in :attr:`damaged_spans`."""
        index = bisect_right(self.damaged_spans, (frame_number, _MAX_FRAME)) - 1
        return index >= 0 and self.damaged_spans[index][1] >= frame_number

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
            "frame_count_announced": self.frame_count_announced,
            "decode_errors": self.decode_errors,
            "damaged_spans": [list(span) for span in self.damaged_spans],
        }


def decode_summary(clips: list[Clip]) -> dict[str, int | None]:
    """A video's decoding record from its normalized clips, for its metadata.

    Returns:
        ``frame_count_announced`` (the container's count, ``None`` if unknown),
        ``frame_count_decoded`` (frames kept: the sum of the clips' ``frame_count``),
        ``frames_not_decoded`` (announced minus decoded, ``None`` if unknown; negative when the
        decoder gave more frames than packets), ``decode_errors`` (packets rejected) and
        ``frames_damaged`` (frames kept that were decoded from damaged data).
    """
    announced = clips[0].frame_count_announced if clips else None
    decoded = sum(clip.frame_count for clip in clips)
    return {
        "frame_count_announced": announced,
        "frame_count_decoded": decoded,
        "frames_not_decoded": None if announced is None else announced - decoded,
        "decode_errors": sum(clip.decode_errors for clip in clips),
        "frames_damaged": sum(last - first + 1 for c in clips for first, last in c.damaged_spans),
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

    Every frame that decodes is kept, in decode order; packets the decoder rejects are skipped
    and counted (:attr:`Clip.decode_errors`). The clips' ``frame_count`` values are the decoded
    frames, which may differ from ``info.frame_count`` (the container's announcement, recorded
    as :attr:`Clip.frame_count_announced`); a split video's last clip is shorter or longer
    accordingly, or clips are dropped or added at the end.

    Args:
        src: the original video file.
        out_dir: folder for ``clip_NNN.mp4`` (created if missing).
        info: :func:`~medvid.video.probe.probe_video` of ``src``.
        max_duration_s: videos longer than this (seconds) are split.
        clip_duration_s: length of each clip when splitting (seconds; the last one is shorter).
        crf: x264 constant rate factor (18 is visually lossless for ultrasound/endoscopy).
        preset: x264 speed preset.
        progress: called with ``(frames_done, info.frame_count)`` as frames are written, and
            once more with ``(frames_done, frames_done)`` at the end when the decoded count
            differs from the announced one.

    Raises:
        CorruptMediaError: no frame decodes, or fewer than
            :data:`~medvid.video.decode.MIN_DECODED_FRACTION` of ``info.frame_count`` (no clip
            is left in ``out_dir``), or a written clip's frame count or frame rate differs from
            what was written.
    """
    src, out_dir = Path(src), Path(out_dir)
    fps = info.avg_frame_rate
    plan = plan_clips(
        info.frame_count, fps, max_duration_s=max_duration_s, clip_duration_s=clip_duration_s
    )
    clips: list[Clip] | None = None
    if len(plan) == 1 and not needs_transcode(info, src):
        clips = _remux(src, out_dir / clip_name(0), info)
        if clips is not None and progress is not None:
            progress(info.frame_count, info.frame_count)
    if clips is None:
        frames_per_clip = plan[0][1] if len(plan) > 1 else None
        clips = _transcode(
            src, out_dir, info, frames_per_clip, crf=crf, preset=preset, progress=progress
        )
    for clip in clips:
        _verify(clip)
    return clips


def _remux(src: Path, target: Path, info: VideoInfo) -> list[Clip] | None:
    """Copy the video packets of ``src`` into a fresh MP4 without tags or other streams.

    Returns the one clip, or ``None`` when the remuxed file does not decode to one frame per
    packet without errors (damaged packets, edit-list pre-roll): such a source is transcoded.
    """
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
    stats = DecodeStats()
    with open_video(target) as stream:
        for _ in iter_video_frames(stream, stats):
            pass
    if stats.decode_errors or stats.demux_error or stats.frames != info.frame_count:
        target.unlink(missing_ok=True)
        return None
    return [
        Clip(
            0,
            target,
            0,
            info.frame_count,
            0.0,
            info.avg_frame_rate,
            frame_count_announced=info.frame_count,
        )
    ]


def _transcode(
    src: Path,
    out_dir: Path,
    info: VideoInfo,
    frames_per_clip: int | None,
    *,
    crf: int,
    preset: str,
    progress: ProgressCallback | None,
) -> list[Clip]:
    """Encode every decoded frame of ``src``, ``frames_per_clip`` frames a clip (``None``: one
    clip), until the decoder ends."""
    fps = info.avg_frame_rate
    pad_right, pad_bottom = info.width % 2, info.height % 2
    width, height = info.width + pad_right, info.height + pad_bottom
    clips: list[Clip] = []
    stats = DecodeStats()
    errors_before = 0
    done = 0
    try:
        with open_video(src) as in_stream:
            frames = iter_video_frames(in_stream, stats)
            frame = next(frames, None)
            frame_damaged = stats.frame_damaged
            while frame is not None:
                clip_index = len(clips)
                target = out_dir / clip_name(clip_index)
                frame_offset = done
                with (
                    atomic_path(target) as tmp,
                    av.open(str(tmp), mode="w", format="mp4", options=_MP4_OPTIONS) as out,
                ):
                    stream = _add_h264_stream(out, fps, width, height, crf=crf, preset=preset)
                    written = 0
                    damaged: list[list[int]] = []
                    while frame is not None:
                        if frame_damaged:
                            if damaged and damaged[-1][1] == done - 1:
                                damaged[-1][1] = done
                            else:
                                damaged.append([done, done])
                        picture = _to_yuv420p(frame, pad_right, pad_bottom)
                        picture.pts = written
                        picture.time_base = stream.codec_context.time_base
                        out.mux(stream.encode(picture))
                        written += 1
                        done += 1
                        if progress is not None:
                            progress(done, info.frame_count)
                        if frames_per_clip is not None and written == frames_per_clip:
                            break
                        frame = next(frames, None)
                        frame_damaged = stats.frame_damaged
                    out.mux(stream.encode(None))
                clips.append(
                    Clip(
                        clip_index,
                        target,
                        frame_offset,
                        written,
                        float(frame_offset / fps),
                        fps,
                        pad_right,
                        pad_bottom,
                        frame_count_announced=info.frame_count,
                        decode_errors=stats.decode_errors - errors_before,
                        damaged_spans=tuple((first, last) for first, last in damaged),
                    )
                )
                errors_before = stats.decode_errors
                # Fetched only now, so that errors met on the way to the next clip's first
                # frame count on that clip.
                frame = next(frames, None) if frame is not None else None
                frame_damaged = stats.frame_damaged
        if clips and stats.decode_errors > errors_before:  # after the last frame
            last = clips[-1]
            extra = stats.decode_errors - errors_before
            clips[-1] = replace(last, decode_errors=last.decode_errors + extra)
        check_decoded(src.name, done, info.frame_count)
    except BaseException:
        for clip in clips:
            clip.path.unlink(missing_ok=True)
        raise
    if progress is not None and done != info.frame_count:
        progress(done, done)
    return clips


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
