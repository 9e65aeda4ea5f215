"""OCR of burned-in screen text and parsing it into fields.

- engines: :class:`OcrBox`, :class:`OcrEngine` (protocol), :class:`RapidOcrEngine` (default),
  :class:`TesseractEngine`, :class:`EasyOcrEngine`, :func:`make_engine`
- parse: :func:`parse_annotation_text`
- layout: :func:`group_lines`, :func:`lines_text`
- metrics: :func:`character_error_rate`
- detect: rapidocr's models through onnxruntime, batched, CPU or CUDA: :class:`TextDetector`,
  :class:`TextRecognizer`, :class:`DetectionOcrEngine`, :func:`execution_providers`
- parse (allow-list): :func:`is_clinical_annotation`, :func:`non_clinical_remainder`

OCR text can contain PHI (names, dates): it belongs to the protected zone like the raw media.
"""

from medvid.ocr.detect import (
    DetectedText,
    DetectionOcrEngine,
    TextDetector,
    TextRecognizer,
    execution_providers,
)
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
from medvid.ocr.parse import is_clinical_annotation, non_clinical_remainder, parse_annotation_text

__all__ = [
    "DetectedText",
    "DetectionOcrEngine",
    "EasyOcrEngine",
    "OcrBox",
    "OcrEngine",
    "OcrEngineUnavailableError",
    "RapidOcrEngine",
    "TesseractEngine",
    "TextDetector",
    "TextRecognizer",
    "character_error_rate",
    "execution_providers",
    "group_lines",
    "is_clinical_annotation",
    "lines_text",
    "make_engine",
    "non_clinical_remainder",
    "parse_annotation_text",
    "substring_edit_distance",
]
