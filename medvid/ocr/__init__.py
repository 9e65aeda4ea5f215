"""OCR of burned-in screen text and parsing it into fields.

- engines: :class:`OcrBox`, :class:`OcrEngine` (protocol), :class:`RapidOcrEngine` (default),
  :class:`TesseractEngine`, :class:`EasyOcrEngine`, :func:`make_engine`
- parse: :func:`parse_annotation_text`
- layout: :func:`group_lines`, :func:`lines_text`
- metrics: :func:`character_error_rate`

OCR text can contain PHI (names, dates): it belongs to the protected zone like the raw media.
"""

from medvid.ocr.engines import (
    EasyOcrEngine,
    OcrBox,
    OcrEngine,
    OcrEngineUnavailableError,
    RapidOcrEngine,
    TesseractEngine,
    make_engine,
)
from medvid.ocr.layout import group_lines, lines_text
from medvid.ocr.metrics import character_error_rate, substring_edit_distance
from medvid.ocr.parse import parse_annotation_text

__all__ = [
    "EasyOcrEngine",
    "OcrBox",
    "OcrEngine",
    "OcrEngineUnavailableError",
    "RapidOcrEngine",
    "TesseractEngine",
    "character_error_rate",
    "group_lines",
    "lines_text",
    "make_engine",
    "parse_annotation_text",
    "substring_edit_distance",
]
