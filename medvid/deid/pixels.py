"""Burned-in PHI in pixels: field-of-view detection, redaction and the residual check.

Policy (one rule per box of OCR text, :func:`text_decision`; an allow-list, not a block-list):

1. Text not fully inside the imaging field of view (``keep_region``: the ultrasound region from
   SequenceOfUltrasoundRegions, or :func:`detect_field_of_view` for endoscopy) is masked: the
   screen margins are where devices print patient panels, dates and institution names.
2. Text the OCR cannot read (empty, or confidence below ``min_confidence``) is masked.
3. Text anywhere that matches the header's PHI values or a PHI pattern
   (:mod:`medvid.deid.phi`) is masked.
4. Text inside the field of view is kept only when all of it is allow-listed clinical
   annotation (:func:`medvid.ocr.parse.is_clinical_annotation`: laterality, clock position,
   orientation, measurements, depth, probe, preset and imaging settings); anything else is
   masked.

Masks are filled black rectangles grown by ``pad`` pixels. ``blank_outside=True`` additionally
blacks out every pixel outside ``keep_region`` (for text the OCR may have missed).
:func:`residual_phi` then runs OCR again on the result; an empty list is the pass condition of the
blocking de-identification check.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from medvid.deid.phi import PhiValues, phi_hits
from medvid.ocr.engines import OcrBox, OcrEngine
from medvid.ocr.parse import is_clinical_annotation

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) pixels, x1/y1 exclusive


@dataclass(frozen=True)
class RedactionBox:
    """The decision for one OCR box: ``masked`` (with the padded rectangle that was filled,
    ``(x0, y0, x1, y1)``) or kept; ``reasons`` say why (e.g. "outside field of view",
    "patient name", "date")."""

    box: OcrBox
    masked: bool
    reasons: tuple[str, ...]
    mask_rect: Box | None


def _inside(box: OcrBox, region: Box) -> bool:
    x0, y0, x1, y1 = region
    return box.x >= x0 and box.y >= y0 and box.x1 <= x1 and box.y1 <= y1


#: Recognition confidence (0..1) below which text counts as unreadable, and is masked.
MIN_READABLE_CONFIDENCE = 0.5

KEPT_REASON = "clinical text inside field of view"


def text_decision(
    text: str,
    confidence: float,
    *,
    inside_field_of_view: bool,
    phi: PhiValues | None,
    min_confidence: float = MIN_READABLE_CONFIDENCE,
) -> tuple[bool, tuple[str, ...]]:
    """Mask or keep one piece of burned-in text: ``(masked, reasons)``.

    Masked, with every reason that applies, when the text is outside the field of view, is
    unreadable (no letter or digit, or ``confidence`` below ``min_confidence``), matches PHI
    (:func:`medvid.deid.phi.phi_hits`: header values, dates, times, name/id fields, id-like
    numbers), or is not entirely allow-listed clinical annotation
    (:func:`medvid.ocr.parse.is_clinical_annotation`). Kept otherwise, with the reason
    :data:`KEPT_REASON`.
    """
    reasons: list[str] = []
    if not inside_field_of_view:
        reasons.append("outside field of view")
    readable = confidence >= min_confidence and any(c.isalnum() for c in text)
    if not readable:
        reasons.append("unreadable")
    reasons += phi_hits(text, phi)
    if readable and inside_field_of_view and not reasons and not is_clinical_annotation(text):
        reasons.append("not a clinical annotation")
    return (True, tuple(reasons)) if reasons else (False, (KEPT_REASON,))


def redact_pixels(
    image: np.ndarray,
    ocr_boxes: list[OcrBox],
    *,
    keep_region: Box | None,
    phi: PhiValues | None,
    pad: int = 2,
    blank_outside: bool = False,
    min_confidence: float = MIN_READABLE_CONFIDENCE,
) -> tuple[np.ndarray, list[RedactionBox]]:
    """Black out burned-in PHI of one frame.

    Args:
        image: ``(H, W, 3) uint8 RGB`` frame (not modified; a copy is returned).
        ocr_boxes: OCR of this frame (pixel coordinates of ``image``).
        keep_region: field of view ``(x0, y0, x1, y1)`` (exclusive maxima), or None when the
            whole frame is image (then every box is judged as inside it).
        phi: header PHI values of the instance (None for videos without a header).
        pad: pixels added around each masked box (anti-aliased glyph edges).
        blank_outside: also zero every pixel outside ``keep_region``.
        min_confidence: OCR confidence below which text is unreadable, hence masked. Engines
            that drop low-confidence boxes themselves (rapidocr's ``text_score``) leave such
            text unseen: :class:`medvid.ocr.detect.DetectionOcrEngine` reports every box.

    Returns:
        ``(redacted, decisions)``: the redacted ``(H, W, 3) uint8`` copy and one
        :class:`RedactionBox` per OCR box (masked ones carry their reasons).
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    out = image.copy()
    decisions = []
    for box in ocr_boxes:
        masked, reasons = text_decision(
            box.text,
            box.confidence,
            inside_field_of_view=keep_region is None or _inside(box, keep_region),
            phi=phi,
            min_confidence=min_confidence,
        )
        if masked:
            rect = (
                max(box.x - pad, 0),
                max(box.y - pad, 0),
                min(box.x1 + pad, width),
                min(box.y1 + pad, height),
            )
            out[rect[1] : rect[3], rect[0] : rect[2]] = 0
            decisions.append(RedactionBox(box, True, reasons, rect))
        else:
            decisions.append(RedactionBox(box, False, reasons, None))
    if blank_outside and keep_region is not None:
        x0, y0, x1, y1 = keep_region
        keep = out[y0:y1, x0:x1].copy()
        out[:] = 0
        out[y0:y1, x0:x1] = keep
    return out, decisions


def detect_field_of_view(
    image: np.ndarray, *, threshold: int = 20, min_fraction: float = 0.05
) -> Box | None:
    """Bounding box of the endoscopic/ultrasound image on a black screen.

    The frame is thresholded (any channel > ``threshold`` of 255 counts as lit), a morphological
    opening with an elliptical kernel of about 1/40 of the short side removes text strokes and
    icons (thin, a few pixels wide), and the largest connected component is taken as the scope
    image. Returns ``(x0, y0, x1, y1)`` (exclusive maxima) or None when no component covers at
    least ``min_fraction`` of the frame (e.g. a black frame).

    Args:
        image: ``(H, W, 3) uint8 RGB``.
    """
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    lit = (image.max(axis=2) > threshold).astype(np.uint8)
    size = max(3, (min(height, width) // 40) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    lit = cv2.morphologyEx(lit, cv2.MORPH_OPEN, kernel)
    count, _, stats, _ = cv2.connectedComponentsWithStats(lit, connectivity=8)
    if count <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = int(np.argmax(areas)) + 1
    if areas[best - 1] < min_fraction * height * width:
        return None
    x, y, w, h = (int(v) for v in stats[best, :4])
    return x, y, x + w, y + h


def residual_phi(redacted_image: np.ndarray, engine: OcrEngine, phi: PhiValues | None) -> list[str]:
    """OCR the redacted frame again and list what still looks like PHI.

    Each finding names the reason and the box position, never the text itself (findings end up
    in check metadata). An empty list means the frame passes.
    """
    findings = []
    for box in engine.read(redacted_image):
        reasons = phi_hits(box.text, phi)
        if reasons:
            findings.append(f"{', '.join(reasons)} at x={box.x} y={box.y} w={box.w} h={box.h}")
    return findings


def replace_pixels(ds: Dataset, frame: np.ndarray) -> Dataset:
    """Store one ``(H, W, 3) uint8 RGB`` frame as the dataset's uncompressed pixel data
    (Explicit VR Little Endian, RGB, 8 bits), dropping palette LUTs and multi-frame
    attributes. Used to write a redacted single-frame instance."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
    for keyword in (
        "RedPaletteColorLookupTableDescriptor",
        "GreenPaletteColorLookupTableDescriptor",
        "BluePaletteColorLookupTableDescriptor",
        "RedPaletteColorLookupTableData",
        "GreenPaletteColorLookupTableData",
        "BluePaletteColorLookupTableData",
        "SegmentedRedPaletteColorLookupTableData",
        "SegmentedGreenPaletteColorLookupTableData",
        "SegmentedBluePaletteColorLookupTableData",
        "PaletteColorLookupTableUID",
        "NumberOfFrames",
        "FrameIncrementPointer",
        "FrameTime",
        "WindowCenter",
        "WindowWidth",
        "VOILUTSequence",
    ):
        if keyword in ds:
            delattr(ds, keyword)
    if not ds.original_encoding[1] or ds.original_encoding[0]:
        # Re-encoding (big endian or implicit VR -> explicit little endian): convert every
        # raw element to a value first so nothing is written in the old byte order.
        ds.walk(lambda _ds, _elem: None)
        ds.set_original_encoding(False, True, ds.original_character_set)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns = int(frame.shape[0]), int(frame.shape[1])
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(frame).tobytes()
    ds["PixelData"].VR = "OB"
    return ds
