"""Character error rate (CER) of OCR output against hand-written expected text.

OCR engines split and order screen text differently (one box per word, per line, or two lines
merged), so the expected text is scored line by line: each expected line is aligned to its best
matching span anywhere in the OCR output (semi-global edit distance, whitespace and case
ignored). CER = total edit operations / total expected characters; 0 is perfect, 1 means every
character is wrong or missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from medvid.ocr.engines import OcrBox


def _normalise(text: str) -> str:
    return "".join(text.split()).casefold()


def substring_edit_distance(needle: str, haystack: str) -> int:
    """Fewest insertions, deletions and substitutions turning ``needle`` into some substring of
    ``haystack`` (free start and end in the haystack)."""
    if not needle:
        return 0
    previous = [0] * (len(haystack) + 1)  # free start anywhere in the haystack
    for i, char in enumerate(needle, start=1):
        current = [i] + [0] * len(haystack)
        for j, other in enumerate(haystack, start=1):
            current[j] = min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (char != other),
            )
        previous = current
    return min(previous)  # free end


def character_error_rate(expected_lines: Sequence[str], boxes: Iterable[OcrBox]) -> float:
    """CER of OCR ``boxes`` against ``expected_lines`` (see module docstring)."""
    haystack = "\x00".join(_normalise(box.text) for box in boxes)
    total = sum(len(_normalise(line)) for line in expected_lines)
    if total == 0:
        raise ValueError("expected text is empty")
    errors = sum(substring_edit_distance(_normalise(line), haystack) for line in expected_lines)
    return errors / total
