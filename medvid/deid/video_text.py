"""Burned-in text anywhere in a video: seen cheaply, masked by allow-list, planned as time spans.

One sequential decode of the whole video (:func:`medvid.video.decode.iter_video_frames`, no
seeking). Text *detection* (rapidocr's DB model, :class:`medvid.ocr.detect.TextDetector`) runs at
*detection points*: every sampled frame (the frames that will be written) and, between them,
enough decoded frames that no gap is longer than ``step = max(1, floor(detect_interval_s x
fps))`` frames (0.25 s by default). Detection points take the detector's two input scales in
turn (1 and 1.5 for 8-pixel text: each finds lines the other misses). At a detection point only
the regions that changed since they were last detected at its scale are detected again
(absolute luma difference above ``change_threshold`` in 32-pixel tiles), so a static screen
costs one detection per scale and a moving ultrasound image one detection of the image area per
detection point. Detections are tracked across detection points by position (IoU) and
appearance (normalized cross-correlation of a 16-pixel-high thumbnail of the place the track
was); only new tracks are *recognised* (rapidocr's recogniser,
:class:`medvid.ocr.detect.TextRecognizer`). Each track is then masked or kept by
:func:`medvid.deid.pixels.text_decision` (outside the field of view, unreadable, PHI, or not
allow-listed clinical annotation: masked).

Temporal guarantee. Let ``F`` be the detection points. A track seen from detection point
``F[i]`` to ``F[j]`` is masked over frames ``F[i - 1 - m] .. F[j + 1 + m]`` (``m`` =
``span_margin``, default 1; clipped to the video), a superset of every frame it can have been
visible in if the detector saw it at each detection point it was on screen. Gaps between detection
points are at most ``step`` frames, so text on screen for at least ``step`` consecutive decoded
frames is on at least one detection point, and text on screen for 0.5 s or more
(``>= 2 x step`` frames) on at least two consecutive ones, so at both scales: it is detected
unless the detector misses it at both. Measured in ``benchmarks/phi.py``.

The result, :class:`VideoTextScan`, holds the :class:`VideoRedactionPlan` (rectangles, frame
spans and reason counts: JSON-serialisable, no text, deterministic) and the recognised tracks
(text: protected zone only).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from medvid.deid.phi import PhiValues
from medvid.deid.pixels import detect_field_of_view, text_decision
from medvid.deid.redaction_plan import Box, Span, VideoRedactionPlan
from medvid.deid.text_tracking import Track, advance, grow, iou, union, within
from medvid.ocr.detect import TextDetector, TextRecognizer
from medvid.ocr.parse import is_clinical_annotation
from medvid.video.decode import iter_video_frames, open_video
from medvid.video.normalize import Clip


@dataclass(frozen=True)
class TextScanSettings:
    """How the video text scan looks.

    Attributes:
        detect_interval_s: longest gap between detection points, seconds (``step`` =
            ``max(1, floor(detect_interval_s x fps))`` frames). 0.25 s puts text shown for 0.5 s
            on at least two detection points.
        min_text_height_px: smallest text height (cap height of letters and digits, pixels of
            the original frame) the scan must find; the detector input is enlarged by
            ``detector_text_px / min_text_height_px`` when that is above 1.
        detector_text_px: text height at the detector's input that it finds reliably: 12 px
            (8 px grey-on-grey text on a real echo frame: 4 of 6 lines found at scale 1, 6 of 6
            at 1.5), so 8 px text is detected on a 1.5x enlargement.
        max_text_height_px: tallest text height (pixels of the original frame) the scan looks
            for; detections taller than twice this are the detector answering to texture
            (ultrasound speckle, vessel walls), not a line of text, and are dropped.
        change_threshold: luma difference (0..255) that counts a pixel as changed.
        change_min_pixels: changed pixels that make a 32-pixel tile changed.
        span_margin: extra detection points each masked span is extended by, on each side.
        pad: pixels added around each masked box.
        fov_every: the field of view is detected on every ``fov_every``-th detection point (when
            not given); the union is used.
        min_confidence: recognition confidence below which text is unreadable (masked).
        match_iou: overlap for a detection to continue a track.
        match_ncc: thumbnail correlation for a detection to continue a track (below it the
            text changed: a new track, recognised again).
        match_ncc_kept: the same for a track whose text is allow-listed: stricter, so new text
            in the place of a kept annotation is read, not inherited. A track whose text is not
            read yet continues at ``match_ncc``; the detections it took below
            ``match_ncc_kept`` are read too when its text turns out allow-listed, and any
            reading that is not makes the track masked.
    """

    detect_interval_s: float = 0.25
    min_text_height_px: float = 8.0
    detector_text_px: float = 12.0
    max_text_height_px: float = 64.0
    change_threshold: int = 10
    change_min_pixels: int = 3
    span_margin: int = 1
    pad: int = 2
    fov_every: int = 8
    min_confidence: float = 0.5
    match_iou: float = 0.5
    match_ncc: float = 0.75
    match_ncc_kept: float = 0.92

    @property
    def detect_scales(self) -> tuple[float, ...]:
        """Detector input scales, taken in turn at successive detection points: 1 and, when
        ``min_text_height_px`` is below ``detector_text_px``, the enlargement that brings it
        there. The detector misses some lines at one scale that it finds at the other (small
        low-contrast text at 1, some large thin text at 1.5), so each is used."""
        small = self.detector_text_px / self.min_text_height_px
        return (1.0, small) if small > 1.0 else (1.0,)

    def step(self, fps: float) -> int:
        """Longest gap between detection points, in frames, at ``fps`` frames per second."""
        return max(1, math.floor(self.detect_interval_s * fps + 1e-9))


@dataclass(frozen=True)
class TextTrack:
    """One piece of text followed across detection points. ``text`` is PHI-bearing (protected
    zone). ``box``: union of its detections, unpadded; ``first_frame``/``last_frame``: the
    detection points it was seen on; ``masked`` and ``reasons`` from
    :func:`medvid.deid.pixels.text_decision`."""

    box: Box
    first_frame: int
    last_frame: int
    text: str
    confidence: float
    masked: bool
    reasons: tuple[str, ...]

    def as_row(self) -> dict[str, Any]:
        x0, y0, x1, y1 = self.box
        return {
            "x": x0,
            "y": y0,
            "w": x1 - x0,
            "h": y1 - y0,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "text": self.text,
            "confidence": self.confidence,
            "masked": self.masked,
            "reasons": ", ".join(self.reasons),
        }


@dataclass(frozen=True)
class VideoTextScan:
    """The outcome of :func:`scan_video_text`: the plan (shareable), the tracks (protected) and
    wall-clock seconds spent (``seconds``: total; ``detect_seconds``, ``recognize_seconds``)."""

    plan: VideoRedactionPlan
    tracks: tuple[TextTrack, ...]
    seconds: float
    detect_seconds: float
    recognize_seconds: float


@dataclass
class _Pending:
    index: int
    frame_number: int
    rgb: np.ndarray
    regions: list[Box]
    scale: float
    detections: list[Box] = field(default_factory=list)


def _frames(
    source: str | Path | Sequence[Clip],
) -> tuple[Iterator[tuple[int, Any, int, int]], float]:
    """``((frame_number, VideoFrame, pad_right, pad_bottom) iterator, fps)``."""
    if isinstance(source, str | Path):
        path = Path(source)
        with open_video(path) as stream:
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        clips = [Clip(0, path, 0, 0, 0.0, Fraction(rate))]
        counted = False
    else:
        clips = list(source)
        counted = True
    fps = float(clips[0].fps) if clips else 25.0

    def generate() -> Iterator[tuple[int, Any, int, int]]:
        for clip in clips:
            with open_video(clip.path) as stream:
                for index, frame in enumerate(iter_video_frames(stream)):
                    if counted and index >= clip.frame_count:
                        break
                    yield clip.frame_offset + index, frame, clip.pad_right, clip.pad_bottom

    return generate(), fps


def _changed_regions(
    luma: np.ndarray, reference: np.ndarray | None, settings: TextScanSettings, tile: int = 32
) -> list[Box]:
    height, width = luma.shape
    if reference is None:
        return [(0, 0, width, height)]
    changed = (cv2.absdiff(luma, reference) > settings.change_threshold).astype(np.uint8)
    rows, cols = math.ceil(height / tile), math.ceil(width / tile)
    padded = np.zeros((rows * tile, cols * tile), np.uint8)
    padded[:height, :width] = changed
    counts = padded.reshape(rows, tile, cols, tile).sum(axis=(1, 3))
    tiles = (counts >= settings.change_min_pixels).astype(np.uint8)
    if not tiles.any():
        return []
    tiles = cv2.dilate(tiles, np.ones((3, 3), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(tiles, connectivity=8)
    regions = []
    for x, y, w, h, _area in stats[1:count]:
        regions.append(
            (
                int(x * tile),
                int(y * tile),
                min(int((x + w) * tile), width),
                min(int((y + h) * tile), height),
            )
        )
    area = sum((r[2] - r[0]) * (r[3] - r[1]) for r in regions)
    if len(regions) > 1 and area > 0.5 * width * height:
        merged = regions[0]
        for region in regions[1:]:
            merged = union(merged, region)
        return [merged]
    return regions


def scan_video_text(
    source: str | Path | Sequence[Clip],
    *,
    detector: TextDetector,
    recognizer: TextRecognizer,
    settings: TextScanSettings = TextScanSettings(),  # noqa: B008 (frozen, immutable)
    keep_region: Box | None = None,
    detect_fov: bool = True,
    phi: PhiValues | None = None,
    sampled_frames: Sequence[int] | None = None,
    blank_outside: bool = False,
) -> VideoTextScan:
    """Detect, track, recognise and judge the burned-in text of a whole video.

    Args:
        source: a video file, or its normalized clips in order (``Clip.frame_offset`` gives
            original frame numbers; ``pad_right``/``pad_bottom`` padding is cropped away).
        detector, recognizer: rapidocr's models (:mod:`medvid.ocr.detect`); their provider
            (CPU or CUDA) is the caller's choice.
        settings: :class:`TextScanSettings`.
        keep_region: the imaging field of view when the source knows it (DICOM ultrasound
            region); otherwise, with ``detect_fov``, the union of
            :func:`medvid.deid.pixels.detect_field_of_view` over detection points.
        phi: header PHI values (cine loops), forcing masks wherever they are read.
        sampled_frames: frame numbers that will be written; each becomes a detection point,
            unless they are denser than the detection grid (median gap below ``step``), when
            the grid alone is used.
        blank_outside: recorded in the plan (black out everything outside the field of view).

    Returns:
        :class:`VideoTextScan`.

    Raises:
        CorruptMediaError, UnsupportedMediaError: the video cannot be opened or decoded.
    """
    started = time.perf_counter()
    frames, fps = _frames(source)
    step = settings.step(fps)
    sampled = sorted(set(int(n) for n in sampled_frames)) if sampled_frames is not None else []
    if len(sampled) > 1 and float(np.median(np.diff(sampled))) < step:
        # Denser than the detection grid (e.g. every frame written): the grid's spans cover
        # the written frames, detecting each one would only multiply the cost.
        sampled = []
    sampled_set = set(sampled)
    scales = settings.detect_scales
    detection_frames: list[int] = []
    live: list[Track] = []
    finished: list[Track] = []
    pending: list[_Pending] = []
    # One reference per scale: a change is detected again at every scale, in turn.
    references: list[np.ndarray | None] = [None] * len(scales)
    fovs: list[Box] = []
    counters = {"crops": 0, "recognitions": 0}
    timers = {"detect": 0.0, "recognize": 0.0}
    size = (0, 0)

    def flush() -> None:
        owners, found = [], []
        tick = time.perf_counter()
        for scale in scales:
            crops = []
            for entry in pending:
                if entry.scale != scale:
                    continue
                for region in entry.regions:
                    x0, y0, x1, y1 = region
                    crops.append(entry.rgb[y0:y1, x0:x1])
                    owners.append((entry, region))
            found += detector.detect(crops, scale=scale) if crops else []
            counters["crops"] += len(crops)
        timers["detect"] += time.perf_counter() - tick
        tallest = 2 * settings.max_text_height_px
        for (entry, region), detections in zip(owners, found, strict=True):
            entry.detections += [
                d.shifted(region[0], region[1]).box for d in detections if d.height <= tallest
            ]
        new_tracks: list[tuple[Track, np.ndarray]] = []
        unverified: list[tuple[Track, np.ndarray]] = []
        for entry in pending:
            created, loose = advance(entry, live, finished, settings)
            new_tracks += created
            unverified += loose

        def read(pairs: list[tuple[Track, np.ndarray]]) -> list[tuple[str, float]]:
            tick = time.perf_counter()
            readings = recognizer.recognize([crop for _, crop in pairs]) if pairs else []
            timers["recognize"] += time.perf_counter() - tick
            counters["recognitions"] += len(pairs)
            return readings

        for (track, _), (text, confidence) in zip(new_tracks, read(new_tracks), strict=True):
            track.text, track.confidence, track.read = text, confidence, True
        doubtful = [(t, crop) for t, crop in unverified if is_clinical_annotation(t.text)]
        for (track, _), (text, confidence) in zip(doubtful, read(doubtful), strict=True):
            if not is_clinical_annotation(text) and is_clinical_annotation(track.text):
                track.text, track.confidence = text, confidence
        pending.clear()

    last_seen: tuple[int, Any, int, int] | None = None
    for item in frames:
        frame_number = item[0]
        last_seen = item
        if not (
            not detection_frames
            or frame_number in sampled_set
            or frame_number - detection_frames[-1] >= step
        ):
            continue
        size = _add_detection_point(
            item,
            detection_frames,
            pending,
            references,
            scales,
            fovs,
            settings,
            keep_region,
            detect_fov,
        )
        if sum(len(p.regions) for p in pending) >= detector.batch_size:
            flush()
    if last_seen is not None and detection_frames and last_seen[0] != detection_frames[-1]:
        size = _add_detection_point(
            last_seen,
            detection_frames,
            pending,
            references,
            scales,
            fovs,
            settings,
            keep_region,
            detect_fov,
        )
    flush()
    finished += live
    frame_count = (last_seen[0] + 1) if last_seen is not None else 0

    region, source_name = keep_region, "given" if keep_region else "none"
    if region is None and fovs:
        region = fovs[0]
        for other in fovs[1:]:
            region = union(region, other)
        source_name = "detected"
    plan, tracks = _plan(
        finished,
        detection_frames,
        frame_count,
        fps,
        size,
        region,
        source_name,
        blank_outside,
        phi,
        settings,
        step,
        counters,
    )
    return VideoTextScan(
        plan=plan,
        tracks=tracks,
        seconds=time.perf_counter() - started,
        detect_seconds=timers["detect"],
        recognize_seconds=timers["recognize"],
    )


def _add_detection_point(
    item: tuple[int, Any, int, int],
    detection_frames: list[int],
    pending: list[_Pending],
    references: list[np.ndarray | None],
    scales: tuple[float, ...],
    fovs: list[Box],
    settings: TextScanSettings,
    keep_region: Box | None,
    detect_fov: bool,
) -> tuple[int, int]:
    frame_number, frame, pad_right, pad_bottom = item
    rgb = frame.to_ndarray(format="rgb24")
    height, width = rgb.shape[0] - pad_bottom, rgb.shape[1] - pad_right
    rgb = np.ascontiguousarray(rgb[:height, :width])
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    index = len(detection_frames)
    detection_frames.append(frame_number)
    turn = index % len(scales)
    reference = references[turn]
    regions = _changed_regions(luma, reference, settings)
    if reference is None:
        references[turn] = luma.copy()
    else:
        for x0, y0, x1, y1 in regions:
            reference[y0:y1, x0:x1] = luma[y0:y1, x0:x1]
    fov_due = keep_region is None and detect_fov and index % max(settings.fov_every, 1) == 0
    if fov_due and (found := detect_field_of_view(rgb)):
        fovs.append(found)
    pending.append(_Pending(index, frame_number, rgb, regions, scales[turn]))
    return width, height


def _plan(
    tracks: list[Track],
    detection_frames: list[int],
    frame_count: int,
    fps: float,
    size: tuple[int, int],
    region: Box | None,
    source_name: str,
    blank_outside: bool,
    phi: PhiValues | None,
    settings: TextScanSettings,
    step: int,
    counters: dict[str, int],
) -> tuple[VideoRedactionPlan, tuple[TextTrack, ...]]:
    width, height = size
    last_frame = max(frame_count - 1, 0)
    margin = 1 + settings.span_margin

    def frame_at(index: int) -> int:
        if index < 0:
            return 0
        if index >= len(detection_frames):
            return last_frame
        return detection_frames[index]

    spans: dict[Box, list[list[int]]] = {}
    text_ranges: list[list[int]] = []
    reasons: dict[str, int] = {}
    kept = 0
    results = []
    for track in sorted(tracks, key=lambda t: (t.first_dp, t.box)):
        inside = region is None or within(track.box, region)
        masked, why = text_decision(
            track.text,
            track.confidence,
            inside_field_of_view=inside,
            phi=phi,
            min_confidence=settings.min_confidence,
        )
        first, last = frame_at(track.first_dp - margin), frame_at(track.last_dp + margin)
        text_ranges.append([first, last])
        results.append(
            TextTrack(
                track.box,
                detection_frames[track.first_dp],
                detection_frames[track.last_dp],
                track.text,
                track.confidence,
                masked,
                why,
            )
        )
        if not masked:
            kept += 1
            continue
        for reason in why:
            reasons[reason] = reasons.get(reason, 0) + 1
        box = grow(track.box, settings.pad, width, height)
        # The same text re-found with a jittered box is one rectangle: fewer, longer spans.
        same = next((b for b in spans if iou(b, box) >= 0.7), None)
        if same is not None:
            ranges = spans.pop(same)
            box = union(same, box)
            spans[box] = spans.get(box, []) + ranges
        spans.setdefault(box, []).append([first, last])
    every_frame: list[Box] = []
    timed: list[Span] = []
    for box in sorted(spans):
        for first, last in _merge(spans[box]):
            if first <= 0 and last >= last_frame:
                every_frame.append(box)
            else:
                timed.append((box, first, last))
    plan = VideoRedactionPlan(
        width=width,
        height=height,
        frame_count=frame_count,
        fps=fps,
        keep_region=region,
        keep_region_source=source_name,
        blank_outside=bool(blank_outside and region),
        boxes=tuple(every_frame),
        spans=tuple(sorted(timed, key=lambda s: (s[1], s[0]))),
        masked_reasons=tuple(sorted(reasons.items())),
        kept_boxes=kept,
        text_spans=tuple((a, b) for a, b in _merge(text_ranges)),
        detect_step=step,
        detection_points=len(detection_frames),
        detector_crops=counters["crops"],
        recognitions=counters["recognitions"],
    )
    return plan, tuple(results)


def _merge(ranges: list[list[int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return [(a, b) for a, b in merged]
