"""Probe a video file: container, codec, geometry, frame rate and the announced frame count.

The frame count is never taken on faith from the header: the video packets are always demuxed
(cheap, no decoding) and counted, and the counted value wins when the header is missing or
disagrees with it. It is still an announcement: each packet is supposed to hold one frame, but
an edit list can hide some (pre-roll flagged for discard) and damaged packets do not decode.
The frames that actually decode are counted by normalization
(:func:`medvid.video.normalize.normalize_video`), and every later stage indexes by those. Only
the first frame is decoded here, to prove the stream is decodable at all."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import av.error

from medvid.errors import CorruptMediaError, EmptyFileError, UnsupportedMediaError

#: Format name FFmpeg's mov/mp4 demuxer reports for every ISO-BMFF flavour (MP4, MOV, 3GP, ...).
MP4_FORMAT_NAME = "mov,mp4,m4a,3gp,3g2,mj2"

FrameCountSource = Literal["header", "counted"]


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learnt about a file's first video stream.

    Attributes:
        container: FFmpeg demuxer name, e.g. ``"avi"``, ``"mpeg"``, ``"mov,mp4,m4a,3gp,3g2,mj2"``.
        codec: FFmpeg decoder name, e.g. ``"h264"``, ``"mpeg4"``, ``"mpeg2video"``, ``"mjpeg"``.
        pix_fmt: decoded pixel format, e.g. ``"yuv420p"``, ``"yuvj422p"``, ``"bgra"``.
        width, height: coded picture size in pixels (before any display rotation).
        avg_frame_rate: frames per second as an exact fraction (stream ``avg_frame_rate``, else
            the guessed / ``r_frame_rate``).
        frame_count: number of video packets in the stream: the frames the container announces.
            The decoder can yield fewer (edit-list discards, damaged packets); normalization
            keeps the decoded ones and records this count as ``Clip.frame_count_announced``.
        frame_count_source: ``"header"`` when the container's count was confirmed by demuxing,
            ``"counted"`` when the header lacked it or disagreed and the demuxed count is used.
        duration_s: stream duration in seconds, from the demuxed packets' pts and durations
            (else the stream header, else the container, else ``frame_count / avg_frame_rate``).
        bit_rate: overall bit rate in bits/s, ``None`` when unknown.
        rotation: display rotation in degrees (display-matrix side data or ``rotate`` tag), 0 if
            none. Pixels are never rotated by medvid; this only records the intent.
        has_audio: whether the container holds at least one audio stream.
        time_base: the video stream's time base (seconds per pts tick).
        start_pts: pts of the stream's first frame, in ``time_base`` ticks.
    """

    container: str
    codec: str
    pix_fmt: str
    width: int
    height: int
    avg_frame_rate: Fraction
    frame_count: int
    frame_count_source: FrameCountSource
    duration_s: float
    bit_rate: int | None
    rotation: int
    has_audio: bool
    time_base: Fraction
    start_pts: int

    @property
    def fps(self) -> float:
        """``avg_frame_rate`` as a float (frames per second)."""
        return float(self.avg_frame_rate)

    def as_row(self) -> dict[str, Any]:
        """A flat dict for a table row: fractions as ``"num/den"`` strings, plus ``fps`` float."""
        row = asdict(self)
        row["avg_frame_rate"] = _fraction_str(self.avg_frame_rate)
        row["time_base"] = _fraction_str(self.time_base)
        row["fps"] = self.fps
        return row


def _fraction_str(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def _frame_rate(stream: av.video.stream.VideoStream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return Fraction(rate)
    return None


def _rotation_from_tag(stream: av.video.stream.VideoStream) -> int:
    tag = stream.metadata.get("rotate", "0")
    try:
        return int(float(tag)) % 360
    except ValueError:
        return 0


def probe_video(path: str | Path) -> VideoInfo:
    """Probe ``path`` and return its :class:`VideoInfo`.

    Reads the whole file once (packets only, no decoding) plus the first frame decoded.

    Raises:
        FileNotFoundError: ``path`` does not exist (an environment problem, not bad input).
        EmptyFileError: the file has zero bytes.
        CorruptMediaError: not a media container, no decodable video stream, the first frame
            cannot be decoded, or the file is truncated (the demuxer flags a short packet).
        UnsupportedMediaError: the container holds no video stream (e.g. audio only).
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise EmptyFileError(f"{path.name}: file is empty (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise CorruptMediaError(f"{path.name}: not a readable media container ({exc})") from exc
    try:
        return _probe_open(container, path)
    except av.error.FFmpegError as exc:
        raise CorruptMediaError(f"{path.name}: cannot read video stream ({exc})") from exc
    finally:
        container.close()


def _probe_open(container: av.container.InputContainer, path: Path) -> VideoInfo:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise UnsupportedMediaError(f"{path.name}: no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if ctx is None or not ctx.name or ctx.width <= 0 or ctx.height <= 0:
        raise CorruptMediaError(f"{path.name}: video stream has no decodable codec or size")
    header_frames = int(stream.frames or 0)

    # One pass over the video packets: count them all (no decoding) and decode only until the
    # first frame comes out, which proves the codec works and carries the display rotation.
    first = None
    counted = 0
    min_pts: int | None = None
    end_pts: int | None = None  # pts + duration of the last-ending packet
    for packet in container.demux(stream):
        if packet.size == 0:  # the demuxer's end-of-stream flush packet
            continue
        if packet.is_corrupt:
            raise CorruptMediaError(
                f"{path.name}: truncated or damaged: video packet {counted} is incomplete"
            )
        counted += 1
        if packet.pts is not None:
            end = packet.pts + (packet.duration or 0)
            min_pts = packet.pts if min_pts is None else min(min_pts, packet.pts)
            end_pts = end if end_pts is None else max(end_pts, end)
        if first is None:
            frames = packet.decode()
            if frames:
                first = frames[0]
    if first is None and counted:
        flushed = stream.codec_context.decode(None)
        first = flushed[0] if flushed else None
    if first is None:
        raise CorruptMediaError(f"{path.name}: the first video frame cannot be decoded")
    rotation = int(first.rotation) % 360 or _rotation_from_tag(stream)
    pix_fmt = first.format.name
    if counted == 0:
        raise CorruptMediaError(f"{path.name}: video stream has no packets")

    source: FrameCountSource = "header" if header_frames == counted else "counted"
    fps = _frame_rate(stream)
    if fps is None:
        raise CorruptMediaError(f"{path.name}: video stream has no frame rate")
    time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1)
    if stream.start_time is not None:
        start_pts = int(stream.start_time)
    elif first.pts is not None:
        start_pts = int(first.pts)
    else:
        start_pts = 0
    # Duration from the packets themselves (a header can lie, like its frame count), falling
    # back to the header, then to frame_count / fps.
    if min_pts is not None and end_pts is not None and end_pts > min_pts:
        duration_s = float((end_pts - min_pts) * time_base)
    elif stream.duration:
        duration_s = float(stream.duration * time_base)
    elif container.duration:
        duration_s = container.duration / av.time_base
    else:
        duration_s = float(counted / fps)
    bit_rate = container.bit_rate or stream.bit_rate or None
    return VideoInfo(
        container=container.format.name,
        codec=ctx.name,
        pix_fmt=pix_fmt,
        width=int(ctx.width),
        height=int(ctx.height),
        avg_frame_rate=fps,
        frame_count=counted,
        frame_count_source=source,
        duration_s=duration_s,
        bit_rate=int(bit_rate) if bit_rate else None,
        rotation=rotation,
        has_audio=bool(container.streams.audio),
        time_base=time_base,
        start_pts=start_pts,
    )


def needs_transcode(info: VideoInfo, path: str | Path | None = None) -> bool:
    """True unless the video is already H.264, yuv420p, in an MP4 file.

    "MP4 file" means FFmpeg's ISO-BMFF demuxer (:data:`MP4_FORMAT_NAME`) *and* a ``.mp4`` file
    extension when ``path`` is given (a QuickTime ``.mov`` uses the same demuxer but is
    transcoded, so every normalized clip is a plain ``.mp4``).
    """
    if path is not None and Path(path).suffix.lower() != ".mp4":
        return True
    return not (
        info.codec == "h264" and info.container == MP4_FORMAT_NAME and info.pix_fmt == "yuv420p"
    )
