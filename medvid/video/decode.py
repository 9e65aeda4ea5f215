"""The one decode loop: open a file's first video stream and yield its frames in decode order.

Normalization and frame extraction both read video through :func:`iter_video_frames`, so they
agree on what "frame number N" is: the N-th frame the decoder outputs (0-based).

Decoding keeps what decodes: a packet the decoder rejects (damaged bytes in the middle of a file)
is skipped and counted in :class:`DecodeStats`, and decoding goes on with the next packet. Frames
that follow a rejected packet until the next keyframe still decode, but from damaged references:
on the real clips of ``shared/data`` they are 5-30 grey levels off the intact file, while the
decoder flags only the first of them corrupt (``VideoFrame.is_corrupt``). :class:`DecodeStats`
therefore marks every frame decoded from damaged data (``frame_damaged``), so later stages can
flag it disturbed rather than pass it off as clean. Whether what is left is enough is the
caller's decision: :func:`check_decoded` is the rule normalization applies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.error
import numpy as np
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from medvid.errors import CorruptMediaError, UnsupportedMediaError

#: A video is kept when at least this fraction of the frames its container announces decode.
#: Below it, what decodes is a few fragments of the exam rather than the exam: a training set
#: built from it would misrepresent the recording, so the file is quarantined instead. The
#: shortfalls met on real files are far from it: edit-list pre-roll (1 and 18 of 145 and 210
#: announced frames in the lung QuickTime clips of ``shared/data``), a tenth of the media data
#: overwritten in the middle (9-11% of the frames lost on three real clips).
MIN_DECODED_FRACTION = 0.5
_DAMAGE_RANGES_KEPT = 8


@dataclass
class DecodeStats:
    """What :func:`iter_video_frames` met while decoding one stream (updated as it goes).

    Attributes:
        frames: frames the decoder output so far.
        decode_errors: packets the decoder rejected (``avcodec_send_packet`` failed), skipped.
        demux_error: the demuxer's error message if reading the file stopped early (its data
            after that point is unreadable), else ``None``.
        frame_damaged: whether the frame just yielded was decoded from damaged data: flagged
            corrupt by the decoder, or later in decode order (``dts``) than a rejected packet
            and not preceded in decode order by a keyframe after it. Measured on three real
            clips damaged in the middle: every frame that differs from the intact file's by more
            than a grey level on average is marked, plus the one frame before the rejection, the
            same with and without frame threads.
        damaged_frames: frames yielded with ``frame_damaged`` set.
    """

    frames: int = 0
    decode_errors: int = 0
    demux_error: str | None = None
    frame_damaged: bool = False
    damaged_frames: int = 0
    # dts ranges [start, end) of damaged decoding: from a rejected packet to the next keyframe
    _damage: list[list[int | None]] = field(default_factory=list, repr=False)

    def _reject(self, dts: int | None) -> None:
        self.decode_errors += 1
        if self._damage and self._damage[-1][1] is None:
            return  # already damaged since an earlier rejected packet
        self._damage.append([dts if dts is not None else -(2**62), None])
        # Frames leave the decoder at most a few (reordering delay) behind their packets, so
        # only the last few damaged ranges can still concern frames to come.
        del self._damage[:-_DAMAGE_RANGES_KEPT]

    def _judge(self, frame: VideoFrame) -> None:
        dts = frame.dts
        if frame.key_frame and dts is not None:
            for span in self._damage:
                if span[1] is None and span[0] < dts:
                    span[1] = dts
        if dts is None:
            damaged = any(end is None for _, end in self._damage)
        else:
            damaged = any(start < dts and (end is None or dts < end) for start, end in self._damage)
        self.frame_damaged = damaged or frame.is_corrupt
        self.damaged_frames += self.frame_damaged


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


def iter_video_frames(
    stream: VideoStream, stats: DecodeStats | None = None
) -> Iterator[VideoFrame]:
    """Decode ``stream`` (from :func:`open_video`) and yield each frame in decode order.

    Frames are produced one at a time, so memory does not grow with video length. Packets the
    decoder rejects are skipped and counted in ``stats.decode_errors``; right after each frame
    is yielded, ``stats.frame_damaged`` says whether it was decoded from damaged data. If the
    demuxer fails part-way, the frames still buffered in the decoder are flushed out and
    iteration ends, with ``stats.demux_error`` set. It never raises for damaged data: check
    ``stats`` (or :func:`check_decoded`) to decide whether what decoded is enough.
    """
    stats = stats if stats is not None else DecodeStats()
    packets = stream.container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:
            stats.demux_error = str(exc)
            break
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            stats._reject(packet.dts)
            continue
        for frame in frames:
            stats.frames += 1
            stats._judge(frame)
            yield frame
    # The demuxer gave up before its end-of-stream flush packet: drain the decoder ourselves.
    try:
        frames = stream.codec_context.decode(None)
    except av.error.FFmpegError:
        stats._reject(None)
        return
    for frame in frames:
        stats.frames += 1
        stats._judge(frame)
        yield frame


def check_decoded(name: str, decoded: int, announced: int) -> None:
    """Raise unless enough of a video decoded to keep it (:data:`MIN_DECODED_FRACTION`).

    Args:
        name: the file's name, for the reason.
        decoded: frames the decoder output.
        announced: frames the container announced (demuxed video packets).

    Raises:
        CorruptMediaError: no frame decoded, or fewer than ``MIN_DECODED_FRACTION`` of
            ``announced``.
    """
    if decoded == 0:
        raise CorruptMediaError(f"{name}: no video frame decodes ({announced} announced)")
    if decoded < MIN_DECODED_FRACTION * announced:
        raise CorruptMediaError(
            f"{name}: only {decoded} of the {announced} announced frames decode "
            f"(less than {MIN_DECODED_FRACTION:.0%})"
        )


def frames_at_times(path: str | Path, times_s: list[float]) -> list[tuple[float, np.ndarray]]:
    """The first frame at or after each time, as ``(time_s, (H, W, 3) uint8 RGB)`` pairs.

    Seeks to the keyframe before each time and decodes forward, so reading a few frames of a
    long video costs a few GOPs, not the whole video. ``time_s`` is the frame's presentation time
    in seconds from the stream start; times past the end give the last frame. Times are visited
    in increasing order and each frame is returned once. Damaged packets are skipped; when
    seeking itself fails (a damaged file), the whole stream is decoded forward instead, with the
    same result for the frames that decode.

    Raises:
        CorruptMediaError: the file cannot be opened, or no frame of it decodes.
        UnsupportedMediaError: it has no video stream.
    """
    wanted = sorted(max(t, 0.0) for t in times_s)
    if not wanted:
        return []
    with open_video(path, threads=False) as stream:
        try:
            chosen = _frames_by_seeking(stream, wanted)
        except av.error.FFmpegError:
            chosen = None
    if chosen is None:
        with open_video(path, threads=False) as stream:
            chosen = _frames_decoding_forward(stream, wanted)
    if not chosen:
        raise CorruptMediaError(f"{Path(path).name}: no video frame decodes")
    results: list[tuple[float, np.ndarray]] = []
    seen: set[int] = set()
    for wanted_s, frame in chosen:
        if frame.pts is not None and frame.pts in seen:
            continue
        if frame.pts is not None:
            seen.add(frame.pts)
        moment = float(frame.time) if frame.time is not None else wanted_s
        results.append((moment, frame.to_ndarray(format="rgb24")))
    return results


def _target_pts(stream: VideoStream, time_s: float) -> int:
    start = stream.start_time or 0
    return start + int(time_s / stream.time_base) if stream.time_base else 0


def _frames_by_seeking(
    stream: VideoStream, wanted: list[float]
) -> list[tuple[float, VideoFrame]] | None:
    """Seek and decode forward for each time; ``None`` when a time finds no frame at all (the
    seek landed in damaged data), so the caller decodes the stream forward instead. Raises
    ``av.error.FFmpegError`` when seeking fails."""
    chosen: list[tuple[float, VideoFrame]] = []
    for time_s in wanted:
        target = _target_pts(stream, time_s)
        stream.container.seek(target, stream=stream, backward=True, any_frame=False)
        stream.codec_context.flush_buffers()
        frame = None
        for frame in iter_video_frames(stream):
            if frame.pts is None or frame.pts >= target:
                break
        if frame is None:
            return None
        chosen.append((time_s, frame))
    return chosen


def _frames_decoding_forward(
    stream: VideoStream, wanted: list[float]
) -> list[tuple[float, VideoFrame]]:
    """One pass over the whole stream: for each time the first frame at or after it, else the
    last frame."""
    chosen: list[tuple[float, VideoFrame]] = []
    targets = [_target_pts(stream, t) for t in wanted]
    last: VideoFrame | None = None
    index = 0
    for frame in iter_video_frames(stream):
        last = frame
        while index < len(targets) and (frame.pts is None or frame.pts >= targets[index]):
            chosen.append((wanted[index], frame))
            index += 1
        if index == len(targets):
            break
    if last is not None:
        chosen.extend((time_s, last) for time_s in wanted[index:])
    return chosen
