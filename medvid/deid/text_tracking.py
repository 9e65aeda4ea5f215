"""Following text across the detection points of one video: where a detection is the same text
as before (position: IoU; appearance: normalized cross-correlation of a 16-pixel-high thumbnail
sampled where the track was) and where it is new (to be recognised). Used by
:func:`medvid.deid.video_text.scan_video_text`; boxes are ``(x0, y0, x1, y1)`` pixels, x1/y1
exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from medvid.deid.redaction_plan import Box
from medvid.ocr.parse import is_clinical_annotation

if TYPE_CHECKING:
    from medvid.deid.video_text import TextScanSettings, _Pending


@dataclass
class Track:
    """One text followed across detection points: ``box`` the union of its detections,
    ``last`` the latest one, ``first_dp``/``last_dp`` indices of the detection points it was
    seen on, ``text``/``confidence`` its reading once ``read``."""

    box: Box
    last: Box
    first_dp: int
    last_dp: int
    around: Box  # where its appearance is sampled: the last box grown by half its height
    thumb: np.ndarray
    text: str = ""
    confidence: float = 0.0
    read: bool = False


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def within(a: Box, b: Box) -> bool:
    return a[0] >= b[0] and a[1] >= b[1] and a[2] <= b[2] and a[3] <= b[3]


def union(a: Box, b: Box) -> Box:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def thumbnail(luma: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    crop = luma[y0:y1, x0:x1].astype(np.float32)
    width = int(np.clip(round(16 * (x1 - x0) / max(y1 - y0, 1)), 16, 256))
    return cv2.resize(crop, (width, 16), interpolation=cv2.INTER_AREA)


def similar(a: np.ndarray, b: np.ndarray, threshold: float) -> bool:
    if a.shape != b.shape:
        b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
    a0, b0 = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a0 * a0).sum() * (b0 * b0).sum()))
    if denominator < 1e-6:  # flat patches: compare levels
        return abs(float(a.mean()) - float(b.mean())) < 8.0
    return float((a0 * b0).sum()) / denominator >= threshold


def grow(box: Box, margin: int, width: int, height: int) -> Box:
    return (
        max(box[0] - margin, 0),
        max(box[1] - margin, 0),
        min(box[2] + margin, width),
        min(box[3] + margin, height),
    )


def sample_box(box: Box, shape: tuple[int, ...]) -> Box:
    return grow(box, max(2, (box[3] - box[1]) // 2), shape[1], shape[0])


def crop(rgb: np.ndarray, box: Box) -> np.ndarray:
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = grow(box, max(2, (box[3] - box[1]) // 4), width, height)
    return rgb[y0:y1, x0:x1]


def advance(
    entry: _Pending, live: list[Track], finished: list[Track], settings: TextScanSettings
) -> tuple[list[tuple[Track, np.ndarray]], list[tuple[Track, np.ndarray]]]:
    """Match one detection point's detections to the live tracks. Returns the new tracks with
    the crop to recognise, and the crops that continued a not-yet-read track below the strict
    correlation (read later if the track turns out allow-listed)."""
    luma = cv2.cvtColor(entry.rgb, cv2.COLOR_RGB2GRAY)
    used: set[int] = set()
    still: list[Track] = []
    loose: list[tuple[Track, np.ndarray]] = []
    for track in live:
        if not any(within(track.last, region) for region in entry.regions):
            # Part of it (or all) lies where nothing changed: the text is still on screen.
            track.last_dp = entry.index
            still.append(track)
            continue
        match = None
        kept = track.read and is_clinical_annotation(track.text)
        threshold = settings.match_ncc_kept if kept else settings.match_ncc
        for number, box in enumerate(entry.detections):
            if number in used or iou(track.last, box) < settings.match_iou:
                continue
            # Sampled where the track was, not inside the new box: the two scales draw boxes
            # a few pixels apart around the same text.
            thumb = thumbnail(luma, track.around)
            if similar(track.thumb, thumb, threshold):
                match = number
                if not track.read and not similar(track.thumb, thumb, settings.match_ncc_kept):
                    loose.append((track, crop(entry.rgb, box)))
                break
        if match is None:
            finished.append(track)
            continue
        used.add(match)
        box = entry.detections[match]
        track.last, track.box, track.last_dp = box, union(track.box, box), entry.index
        track.around = sample_box(box, luma.shape)
        track.thumb = thumbnail(luma, track.around)
        still.append(track)
    created = []
    for number, box in enumerate(entry.detections):
        if number in used:
            continue
        around = sample_box(box, luma.shape)
        track = Track(box, box, entry.index, entry.index, around, thumbnail(luma, around))
        created.append((track, crop(entry.rgb, box)))
        still.append(track)
    live[:] = still
    return created, loose
