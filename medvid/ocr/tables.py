"""OCR results as table rows (``video_ocr_text``, ``dicom_ocr_text``: protected) and the
clinical fields parsed from kept text."""

from __future__ import annotations

import json

from medvid.catalog.keys import protected_table_key
from medvid.ocr.engines import OcrBox
from medvid.ocr.parse import parse_annotation_text
from medvid.store import Store, read_table


def ocr_rows(
    source_id: str, frame_number: int, timestamp: float, boxes: list[OcrBox], engine: str
) -> list[dict]:
    """Rows of :data:`medvid.catalog.schemas.OCR_SCHEMA` for the boxes read on one frame."""
    return [
        {
            "source_id": source_id,
            "frame_number": frame_number,
            "frame_timestamp": timestamp,
            "box_index": index,
            **box.as_dict(),
            "engine": engine,
        }
        for index, box in enumerate(boxes)
    ]


def boxes_of(rows: list[dict]) -> list[OcrBox]:
    """OCR table rows back to :class:`~medvid.ocr.OcrBox` (in box order)."""
    ordered = sorted(rows, key=lambda r: r["box_index"])
    return [OcrBox(r["x"], r["y"], r["w"], r["h"], r["text"], r["confidence"]) for r in ordered]


def read_ocr_rows(store: Store, table: str, partition_key: str) -> list[dict]:
    """The protected OCR rows of one partition."""
    return read_table(store, protected_table_key(table, partition_key)).to_pylist()


def parsed_fields(text: str) -> dict:
    """:func:`medvid.ocr.parse_annotation_text` with measurements as a JSON string."""
    fields = parse_annotation_text(text)
    fields["measurements"] = json.dumps(fields["measurements"])
    return fields
