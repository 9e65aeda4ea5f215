"""Turning burned-in annotation text into fields.

Sonographers type short codes on the screen: "LT BREAST 2:00 5CM FN TRANS" means left breast,
2 o'clock, 5 cm from the nipple, transverse probe orientation; measurements appear as
"D1 3 mm", "Asc Ao Diam 3.3 cm", "+ Cist Mag 1.06 cm"; the imaging depth as "16cm" or "4 cm".
The vocabulary follows the breast ultrasound annotation used in CASBUSI-style databases
(laterality, clock face, distance from nipple, orientation) and the ACR BI-RADS US lexicon's
probe orientations (transverse, longitudinal/sagittal, radial, anti-radial, oblique).

:func:`parse_annotation_text` is pure: text in, dict out. Lines (``\\n``-separated, e.g. one OCR
box per line) are parsed separately so a number on one line never pairs with a unit on the next.
"""

from __future__ import annotations

import re
from typing import Any

_LATERALITY = {"LT": "L", "LEFT": "L", "RT": "R", "RIGHT": "R"}
_ORIENTATION = {
    "TRANS": "TRANS",
    "TRANSVERSE": "TRANS",
    "TRV": "TRANS",
    "TR": "TRANS",
    "LONG": "LONG",
    "LONGITUDINAL": "LONG",
    "SAG": "SAG",
    "SAGITTAL": "SAG",
    "RAD": "RAD",
    "RADIAL": "RAD",
    "ARAD": "ARAD",
    "ANTIRAD": "ARAD",
    "ANTI-RAD": "ARAD",
    "ANTIRADIAL": "ARAD",
    "ANTI-RADIAL": "ARAD",
    "OBL": "OBL",
    "OBLIQUE": "OBL",
}
_UNITS = {
    "mm": "mm",
    "cm": "cm",
    "m/s": "m/s",
    "cm/s": "cm/s",
    "mmhg": "mmHg",
    "ml": "ml",
    "cm2": "cm2",
    "cm²": "cm2",
    "%": "%",
    "bpm": "bpm",
    "ms": "ms",
    "s": "s",
    "deg": "deg",
    "°": "deg",
}

_WORD = r"[A-Za-z][A-Za-z0-9]*"
_NUMBER = r"\d+(?:[.,]\d+)?"
_UNIT = r"(?:cm/s|m/s|mmHg|mm|cm2|cm²|cm|ml|mL|bpm|ms|deg|°|%|s)"

_LATERALITY_RE = re.compile(r"\b(LEFT|RIGHT|LT|RT)\b", re.IGNORECASE)
_CLOCK_RE = re.compile(
    r"(?<![\d:.])(1[0-2]|0?[1-9])\s*(?::|\.)\s*(00|15|30|45)(?![\d:])"
    r"|(?<![\d:.])(1[0-2]|0?[1-9])\s*O'?\s*CLOCK\b",
    re.IGNORECASE,
)
_FN_RE = re.compile(rf"(?<![\d.])({_NUMBER})\s*CM\s*F\.?\s*N\b", re.IGNORECASE)
_ORIENT_RE = re.compile(
    r"\b(ANTI-?RADIAL|ANTI-?RAD|TRANSVERSE|LONGITUDINAL|SAGITTAL|RADIAL|OBLIQUE|"
    r"TRANS|TRV|LONG|SAG|ARAD|RAD|OBL)\b",
    re.IGNORECASE,
)
_MEASUREMENT_RE = re.compile(
    rf"(?<![A-Za-z0-9])(?P<name>{_WORD}(?:\s+{_WORD}){{0,3}})\s*[:=]?\s*(?P<value>{_NUMBER})\s*"
    rf"(?P<unit>{_UNIT})(?![A-Za-z0-9])"
)
_DEPTH_LABEL_RE = re.compile(rf"\bDEPTH\s*[:=]?\s*({_NUMBER})\s*(cm|mm)\b", re.IGNORECASE)
_BARE_CM_RE = re.compile(rf"(?<![\w.])({_NUMBER})\s*cm(?![\w/])", re.IGNORECASE)

#: Device / transducer models recognisable in screen text: Olympus endoscopes (GIF-, CF-, PCF-,
#: TJF-, BF-), Philips (EPIQ, Affiniti, iU22, CX50, transducers like S5-1, C5-1, L12-5),
#: GE (LOGIQ, Vivid, Voluson), SonoSite, Clarius, Butterfly.
_DEVICE_RE = re.compile(
    r"\b((?:GIF|CF|PCF|TJF|BF)-[A-Z0-9]+|EPIQ\s?\d+[A-Z]?|Affiniti\s?\d+|iU\d+|CX50|"
    r"LOGIQ\s?[A-Z0-9]+|Vivid\s?[A-Z0-9]+|Voluson\s?[A-Z0-9]+|SonoSite\s?[A-Za-z0-9-]*|"
    r"Clarius\s?[A-Z0-9-]*|Butterfly\s?i[Qq]\+?|[SCL]\d{1,2}-\d{1,2})\b"
)

#: Words that are not measurement names even when followed by a number with a unit.
_NOT_A_NAME = {"LT", "RT", "LEFT", "RIGHT", "BREAST", "FN", "DEPTH", "CM", "MM"} | set(_ORIENTATION)


def _number(text: str) -> float:
    return float(text.replace(",", "."))


def _clean(line: str) -> str:
    # OCR turns ':' into superscripts and similar look-alikes; keep ASCII letters, digits,
    # the unit symbols and punctuation the patterns use.
    return re.sub(r"[^A-Za-z0-9.,:/=%°+\-' ]", " ", line)


def parse_annotation_text(text: str) -> dict[str, Any]:
    """Fields found in burned-in annotation text.

    Returns a dict with keys (None / empty when absent):
        laterality: "L" or "R" (from LT/RT/LEFT/RIGHT).
        clock_position: "H:MM" clock-face position, e.g. "2:00" (minutes 00/15/30/45 only, so
            times of day such as 09:52:17 are not taken for clock positions).
        distance_from_nipple_cm: float, from "5 CM FN" / "5CM FN".
        orientation: one of TRANS, LONG, SAG, RAD, ARAD, OBL.
        measurements: list of (name, value, unit) tuples, e.g. ("D1", 3.0, "mm").
        depth_cm: float imaging depth from "DEPTH 16 cm" or a bare "16cm" / "4 cm" that is not
            a measurement or a nipple distance (mm converted to cm).
        device_model: a recognised device or transducer model, e.g. "GIF-EZ1500", "S5-1".
    """
    fields: dict[str, Any] = {
        "laterality": None,
        "clock_position": None,
        "distance_from_nipple_cm": None,
        "orientation": None,
        "measurements": [],
        "depth_cm": None,
        "device_model": None,
    }
    for raw_line in text.splitlines() or [text]:
        line = _clean(raw_line)
        if fields["laterality"] is None and (m := _LATERALITY_RE.search(line)):
            fields["laterality"] = _LATERALITY[m.group(1).upper()]
        if fields["clock_position"] is None and (m := _CLOCK_RE.search(line)):
            hour = int(m.group(1) or m.group(3))
            minutes = m.group(2) or "00"
            fields["clock_position"] = f"{hour}:{minutes}"
        consumed = line
        if m := _FN_RE.search(line):
            if fields["distance_from_nipple_cm"] is None:
                fields["distance_from_nipple_cm"] = _number(m.group(1))
            consumed = consumed.replace(m.group(0), " ")
        if fields["orientation"] is None and (m := _ORIENT_RE.search(line)):
            fields["orientation"] = _ORIENTATION[m.group(1).upper().replace("-", "")]
        if fields["device_model"] is None and (m := _DEVICE_RE.search(line)):
            fields["device_model"] = m.group(1)
        if m := _DEPTH_LABEL_RE.search(consumed):
            value = _number(m.group(1))
            fields["depth_cm"] = value / 10 if m.group(2).lower() == "mm" else value
            consumed = consumed.replace(m.group(0), " ")
        for m in _MEASUREMENT_RE.finditer(consumed):
            words = m.group("name").split()
            while words and words[0].upper() in _NOT_A_NAME:
                words.pop(0)
            if not words or words[-1].upper() in _NOT_A_NAME:
                continue
            unit = _UNITS.get(m.group("unit").lower(), m.group("unit"))
            fields["measurements"].append((" ".join(words), _number(m.group("value")), unit))
            consumed = consumed.replace(m.group(0), " ")
        if fields["depth_cm"] is None and (m := _BARE_CM_RE.search(consumed)):
            fields["depth_cm"] = _number(m.group(1))
    return fields
