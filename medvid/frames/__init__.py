"""Frames stage: sample frames from normalized clips, hash them, flag dead/disturbed ones."""

from medvid.frames.encode import Redaction, encode_frame
from medvid.frames.extract import FRAME_MANIFEST_SCHEMA, extract_frames, frame_relative_path
from medvid.frames.phash import hamming, phash64, phash_hex
from medvid.frames.quality import FrameQuality, QualityThresholds, frame_quality
from medvid.frames.sampling import (
    SamplingConfig,
    SamplingStrategy,
    expected_frame_count,
    planned_frame_numbers,
)

__all__ = [
    "FRAME_MANIFEST_SCHEMA",
    "FrameQuality",
    "QualityThresholds",
    "Redaction",
    "SamplingConfig",
    "SamplingStrategy",
    "encode_frame",
    "expected_frame_count",
    "extract_frames",
    "frame_quality",
    "frame_relative_path",
    "hamming",
    "phash64",
    "phash_hex",
    "planned_frame_numbers",
]
