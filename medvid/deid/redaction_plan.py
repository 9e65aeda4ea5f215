"""The redaction plan of one video: rectangles to black out in every frame, and rectangles to
black out in given frame spans. Rectangles, spans and reason counts only, never text: it is
stored beside the frames (``redaction_plans/<video_id>.json``) and converts one to one to
``medvid.frames.extract.Redaction(boxes, keep_region, blank_outside, spans)``. Made by
:func:`medvid.deid.video_text.scan_video_text`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) pixels of the original frame, x1/y1 exclusive
Span = tuple[Box, int, int]  # (box, first_frame, last_frame), frame numbers inclusive


@dataclass(frozen=True)
class VideoRedactionPlan:
    """Which pixels to black out in which frames of one video. Holds no text.

    Attributes:
        width, height: frame size, pixels (normalization padding excluded).
        frame_count: decoded frames; ``fps``: frames per second.
        keep_region: imaging field of view ``(x0, y0, x1, y1)`` or None (whole frame);
            ``keep_region_source``: ``"given"`` (e.g. DICOM ultrasound region), ``"detected"`` or
            ``"none"``. ``blank_outside``: also black out everything outside it.
        boxes: rectangles masked in every frame.
        spans: ``(box, first_frame, last_frame)`` rectangles masked in those frames only
            (inclusive, frame numbers of the original video).
        masked_reasons: reason -> number of masked text tracks.
        kept_boxes: text tracks kept (allow-listed clinical annotation inside the field of view).
        text_spans: ``(first_frame, last_frame)`` ranges where the detector saw any text (masked
            or kept), extended like the masks; the residual check reads the written frames in
            them.
        detect_step: longest gap between detection points, frames.
        detection_points: frames detection ran on; ``detector_crops``: crops detected;
            ``recognitions``: crops recognised.
    """

    width: int
    height: int
    frame_count: int
    fps: float
    keep_region: Box | None
    keep_region_source: str
    blank_outside: bool
    boxes: tuple[Box, ...]
    spans: tuple[Span, ...]
    masked_reasons: tuple[tuple[str, int], ...]
    kept_boxes: int
    text_spans: tuple[tuple[int, int], ...]
    detect_step: int
    detection_points: int
    detector_crops: int
    recognitions: int

    def redaction_spans(self) -> tuple[Span, ...]:
        """The spans as ``medvid.frames.extract.Redaction(spans=...)`` takes them."""
        return self.spans

    def redaction_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``medvid.frames.extract.Redaction`` for this plan."""
        return {
            "boxes": self.boxes,
            "keep_region": self.keep_region,
            "blank_outside": self.blank_outside,
            "spans": self.spans,
        }

    def boxes_for_frame(self, frame_number: int) -> list[Box]:
        """Rectangles masked in ``frame_number``: every-frame boxes, then the spans covering it."""
        return list(self.boxes) + [
            box for box, first, last in self.spans if first <= frame_number <= last
        ]

    def apply(self, image: np.ndarray, frame_number: int) -> np.ndarray:
        """Black out this plan's rectangles (and the outside, with ``blank_outside``) of frame
        ``frame_number``, an ``(H, W, C)`` image, in place; returns it."""
        height, width = image.shape[:2]
        for x0, y0, x1, y1 in self.boxes_for_frame(frame_number):
            image[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)] = 0
        if self.blank_outside and self.keep_region is not None:
            x0, y0, x1, y1 = self.keep_region
            image[: max(y0, 0)] = 0
            image[min(y1, height) :] = 0
            image[:, : max(x0, 0)] = 0
            image[:, min(x1, width) :] = 0
        return image

    def in_text_span(self, frame_number: int) -> bool:
        return any(first <= frame_number <= last for first, last in self.text_spans)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``redaction_plans/<video_id>.json``); keeps the keys the 3-frame plan
        had (``keep_region``, ``mask_boxes``, ``blank_outside``, ``frames_read``...)."""
        return {
            "width": self.width,
            "height": self.height,
            "frame_count": self.frame_count,
            "fps": self.fps,
            "keep_region": list(self.keep_region) if self.keep_region else None,
            "keep_region_source": self.keep_region_source,
            "blank_outside": self.blank_outside,
            "mask_boxes": [list(b) for b in self.boxes],
            "mask_spans": [[*box, first, last] for box, first, last in self.spans],
            "masked_reasons": dict(self.masked_reasons),
            "kept_boxes": self.kept_boxes,
            "text_spans": [list(s) for s in self.text_spans],
            "detect_step": self.detect_step,
            "frames_read": self.detection_points,
            "detector_crops": self.detector_crops,
            "recognitions": self.recognitions,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoRedactionPlan:
        """Inverse of :meth:`as_dict`."""
        region = data["keep_region"]
        return cls(
            width=int(data["width"]),
            height=int(data["height"]),
            frame_count=int(data["frame_count"]),
            fps=float(data["fps"]),
            keep_region=tuple(region) if region else None,
            keep_region_source=data["keep_region_source"],
            blank_outside=bool(data["blank_outside"]),
            boxes=tuple(tuple(b) for b in data["mask_boxes"]),
            spans=tuple((tuple(s[:4]), int(s[4]), int(s[5])) for s in data["mask_spans"]),
            masked_reasons=tuple(sorted(data["masked_reasons"].items())),
            kept_boxes=int(data["kept_boxes"]),
            text_spans=tuple((int(a), int(b)) for a, b in data["text_spans"]),
            detect_step=int(data["detect_step"]),
            detection_points=int(data["frames_read"]),
            detector_crops=int(data["detector_crops"]),
            recognitions=int(data["recognitions"]),
        )
