"""Video stage: probe a file, decode it, normalize it into H.264/MP4 clips."""

from medvid.video.decode import (
    MIN_DECODED_FRACTION,
    DecodeStats,
    check_decoded,
    frames_at_times,
    iter_video_frames,
    open_video,
)
from medvid.video.normalize import Clip, decode_summary, normalize_video, plan_clips
from medvid.video.probe import VideoInfo, needs_transcode, probe_video

__all__ = [
    "MIN_DECODED_FRACTION",
    "Clip",
    "DecodeStats",
    "VideoInfo",
    "check_decoded",
    "decode_summary",
    "frames_at_times",
    "iter_video_frames",
    "needs_transcode",
    "normalize_video",
    "open_video",
    "plan_clips",
    "probe_video",
]
