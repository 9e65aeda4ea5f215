"""Near-duplicate videos (a re-encode, a trimmed or cut copy) from their frame-hash sequences.

A video is compared by the sequence of its frames' 64-bit pHashes in decode order
(:func:`video_frame_hashes`, the same hash the frame manifests hold). Two videos are near
duplicates when, at one frame offset, most frames of the shorter are within ``frame_radius`` bits
of the aligned frames of the longer: a re-encode aligns at offset 0 with distances 0-4 (x264 CRF
23-28 on the real clips of ``shared/data``), a trimmed copy aligns at its cut point. Single
frames of different patients' clips can come that close by chance; whole aligned sequences do
not (see the tests on the lung clips).

Sequences must sample frames the same way (every frame, as :func:`video_frame_hashes` and the
``all`` sampling give); a copy at another frame rate does not align frame by frame and is not
found here (its frames still group in :mod:`medvid.cleaning.dedup`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medvid.cleaning.hamming import check_radius
from medvid.cleaning.hash_index import HashIndex, as_hashes
from medvid.frames.extract import luma_small
from medvid.frames.phash import phash64
from medvid.video.decode import iter_video_frames, open_video

DEFAULT_FRAME_RADIUS = 4
DEFAULT_MIN_SCORE = 0.8
DEFAULT_MIN_MATCHED = 8
_MAX_PROBES = 256
_MAX_OFFSETS = 16
VIDEO_PAIR_COLUMNS = (
    "video_a",
    "video_b",
    "score",
    "offset",
    "overlap",
    "matched",
    "mean_distance",
)
"""Columns of :func:`find_near_duplicate_videos`: ``video_a < video_b``; the rest as in
:class:`VideoMatch`."""


def video_frame_hashes(path: str | Path) -> np.ndarray:
    """pHash of every frame of a video in decode order, ``(frames,) uint64``.

    Measured as :func:`medvid.frames.extract.extract_frames` measures (128-px luma copy,
    :func:`~medvid.frames.phash.phash64`), so the values equal the manifest's ``phash`` of the
    same frames.

    Raises:
        CorruptMediaError, UnsupportedMediaError: as :func:`medvid.video.decode.open_video`.
    """
    with open_video(path) as stream:
        return np.array(
            [phash64(luma_small(frame)) for frame in iter_video_frames(stream)], dtype=np.uint64
        )


@dataclass(frozen=True)
class VideoMatch:
    """The best alignment of two frame-hash sequences.

    ``offset``: frame ``j`` of ``b`` aligns with frame ``j + offset`` of ``a``. ``overlap``:
    aligned frame pairs; ``matched``: those within the frame radius; ``score``: ``matched``
    divided by the shorter sequence's length (1.0: every frame of the shorter has its match);
    ``mean_distance``: mean bits between aligned frames (``nan`` without overlap).
    """

    score: float
    offset: int
    overlap: int
    matched: int
    mean_distance: float

    def is_near_duplicate(
        self, min_score: float = DEFAULT_MIN_SCORE, min_matched: int = DEFAULT_MIN_MATCHED
    ) -> bool:
        """``score >= min_score`` and ``matched >= min_matched`` (lowered to the overlap for
        clips shorter than that)."""
        return self.score >= min_score and self.matched >= min(min_matched, max(self.overlap, 1))


NO_MATCH = VideoMatch(0.0, 0, 0, 0, math.nan)


def _align(a: np.ndarray, b: np.ndarray, offset: int, radius: int) -> VideoMatch:
    first = max(0, -offset)
    last = min(len(b), len(a) - offset)
    if last <= first:
        return NO_MATCH
    distances = np.bitwise_count(a[first + offset : last + offset] ^ b[first:last])
    matched = int((distances <= radius).sum())
    return VideoMatch(
        score=matched / min(len(a), len(b)),
        offset=int(offset),
        overlap=int(last - first),
        matched=matched,
        mean_distance=float(distances.mean()),
    )


def _probe_positions(length: int, probes: int) -> np.ndarray:
    if length <= probes:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, probes).round().astype(np.int64))


def _rank(match: VideoMatch) -> tuple[float, float, int, int]:
    closeness = -match.mean_distance if match.overlap else -math.inf
    return (match.matched, closeness, -abs(match.offset), -match.offset)


def _best_offset(a: np.ndarray, b: np.ndarray, offsets: np.ndarray, radius: int) -> VideoMatch:
    best = NO_MATCH
    for offset in offsets:
        match = _align(a, b, int(offset), radius)
        if _rank(match) > _rank(best):
            best = match
    return best


def _top_offsets(offsets: np.ndarray, limit: int) -> np.ndarray:
    """The ``limit`` most frequent offsets; ties to the smaller ``|offset|``, then smaller."""
    values, votes = np.unique(offsets, return_counts=True)
    order = np.lexsort((values, np.abs(values), -votes))
    return values[order[:limit]]


def video_near_duplicates(
    seq_a: np.ndarray,
    seq_b: np.ndarray,
    *,
    frame_radius: int = DEFAULT_FRAME_RADIUS,
) -> VideoMatch:
    """How well two videos align frame by frame; :meth:`VideoMatch.is_near_duplicate` decides.

    Candidate offsets come from frames of ``b`` (up to 256, evenly spaced) that lie within
    ``frame_radius`` of some frame of ``a``; the 16 most supported offsets are aligned in full
    and the one with the most matched frames wins (ties: lower mean distance, then the offset
    nearest 0). Deterministic.

    Args:
        seq_a, seq_b: ``(frames,) uint64`` pHashes in decode order (or 16-hex-digit text).
        frame_radius: bits two aligned frames may differ by to match (0..32).

    Returns:
        The best :class:`VideoMatch`; ``score`` 0 and ``overlap`` 0 when no frame matches.
    """
    radius = check_radius(frame_radius)
    a, b = as_hashes(seq_a), as_hashes(seq_b)
    if len(a) == 0 or len(b) == 0:
        return NO_MATCH
    probes = _probe_positions(len(b), _MAX_PROBES)
    index = HashIndex(np.arange(len(a)).astype(str), a)
    query, item, _ = index.query_positions(b[probes], radius)
    if len(query) == 0:
        return NO_MATCH
    offsets = _top_offsets(item - probes[query], _MAX_OFFSETS)
    return _best_offset(a, b, offsets, radius)


def find_near_duplicate_videos(
    sequences: Mapping[str, np.ndarray],
    *,
    frame_radius: int = DEFAULT_FRAME_RADIUS,
    min_score: float = DEFAULT_MIN_SCORE,
    min_matched: int = DEFAULT_MIN_MATCHED,
    probes: int = 32,
) -> pd.DataFrame:
    """Near-duplicate pairs among many videos without comparing every pair.

    Every frame of every video goes into one :class:`~medvid.cleaning.hash_index.HashIndex`;
    up to ``probes`` evenly spaced frames of each video are looked up in it, and a pair of videos
    becomes a candidate when at least ``min_score / 2`` of one side's probes hit the other
    side. Only candidates are aligned (:func:`video_near_duplicates`), in both directions.

    Args:
        sequences: video id to its frame pHashes in decode order.
        frame_radius, min_score, min_matched: as :func:`video_near_duplicates` and
            :meth:`VideoMatch.is_near_duplicate`.
        probes: frames per video looked up (more: fewer misses on short shared segments).

    Returns:
        :data:`VIDEO_PAIR_COLUMNS`, one row per near-duplicate pair, sorted by ``video_a``,
        ``video_b``; ``offset`` aligns ``video_b`` onto ``video_a``.
    """
    radius = check_radius(frame_radius)
    names = sorted(str(name) for name in sequences)
    hashes = {name: as_hashes(sequences[name]) for name in names}
    lengths = np.array([len(hashes[name]) for name in names], dtype=np.int64)
    rows: list[dict[str, object]] = []
    if len(names) < 2 or lengths.sum() == 0:
        return pd.DataFrame(rows, columns=list(VIDEO_PAIR_COLUMNS))
    video_of_frame = np.repeat(np.arange(len(names)), lengths)
    everything = np.concatenate([hashes[name] for name in names])
    index = HashIndex(np.arange(len(everything)).astype(str), everything)
    starts = np.cumsum(lengths) - lengths
    probe_video, probe_frame = [], []
    for number, length in enumerate(lengths):
        positions = _probe_positions(int(length), probes)
        probe_video.append(np.full(len(positions), number))
        probe_frame.append(starts[number] + positions)
    probe_video_arr = np.concatenate(probe_video)
    query, item, _ = index.query_positions(everything[np.concatenate(probe_frame)], radius)
    source, target = probe_video_arr[query], video_of_frame[item]
    other = source != target
    pairs = pd.DataFrame({"source": source[other], "target": target[other], "probe": query[other]})
    votes = pairs.drop_duplicates().groupby(["source", "target"]).size()
    probes_of = np.bincount(probe_video_arr, minlength=len(names))
    candidates = sorted(
        {
            (min(s, t), max(s, t))
            for (s, t), count in votes.items()
            if count >= max(1, math.ceil(min_score / 2 * probes_of[s]))
        }
    )
    for first, second in candidates:
        a, b = hashes[names[first]], hashes[names[second]]
        forward = video_near_duplicates(a, b, frame_radius=radius)
        backward = video_near_duplicates(b, a, frame_radius=radius)
        if backward.matched > forward.matched:
            forward = VideoMatch(
                backward.score,
                -backward.offset,
                backward.overlap,
                backward.matched,
                backward.mean_distance,
            )
        if forward.is_near_duplicate(min_score, min_matched):
            rows.append(
                {
                    "video_a": names[first],
                    "video_b": names[second],
                    "score": forward.score,
                    "offset": forward.offset,
                    "overlap": forward.overlap,
                    "matched": forward.matched,
                    "mean_distance": forward.mean_distance,
                }
            )
    return pd.DataFrame(rows, columns=list(VIDEO_PAIR_COLUMNS))
