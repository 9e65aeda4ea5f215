"""Grouping OCR boxes into text lines (reading order), for parsing and display.

Engines split a screen line differently ("+ Cist Mag" and "1.06 cm" may be two boxes). Boxes
whose vertical extents overlap by at least half the smaller height, and whose horizontal gap is
at most ``max_gap_heights`` times the line height, form one line, ordered left to right.
"""

from __future__ import annotations

from medvid.ocr.engines import OcrBox


def _same_row(a: OcrBox, b: OcrBox) -> bool:
    overlap = min(a.y1, b.y1) - max(a.y, b.y)
    return overlap >= 0.5 * min(a.h, b.h)


def group_lines(boxes: list[OcrBox], *, max_gap_heights: float = 3.0) -> list[list[OcrBox]]:
    """Boxes grouped into lines, lines ordered top to bottom, boxes left to right."""
    lines: list[list[OcrBox]] = []
    for box in sorted(boxes, key=lambda b: (b.y, b.x)):
        for line in lines:
            last = line[-1]
            gap = box.x - last.x1
            if _same_row(last, box) and -last.h <= gap <= max_gap_heights * max(last.h, box.h):
                line.append(box)
                break
        else:
            lines.append([box])
    for line in lines:
        line.sort(key=lambda b: b.x)
    return sorted(lines, key=lambda line: min(b.y for b in line))


def lines_text(boxes: list[OcrBox], *, max_gap_heights: float = 3.0) -> str:
    """All text, one line per grouped line (``\\n``-separated), for
    :func:`medvid.ocr.parse.parse_annotation_text`."""
    return "\n".join(
        " ".join(b.text for b in line)
        for line in group_lines(boxes, max_gap_heights=max_gap_heights)
    )
