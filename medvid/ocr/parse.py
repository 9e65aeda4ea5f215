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


#: The probe orientations text can name, in the order of the ACR BI-RADS US lexicon.
ORIENTATIONS = ("TRANS", "LONG", "SAG", "RAD", "ARAD", "OBL")


def normalize_orientation(value: str | None) -> str | None:
    """The code (one of :data:`ORIENTATIONS`) of an orientation word or code, e.g.
    ``"transverse"`` -> ``"TRANS"``, ``"Anti-Radial"`` -> ``"ARAD"``; ``None`` for ``None``,
    blanks and words that name no orientation."""
    if value is None:
        return None
    return _ORIENTATION.get(str(value).strip().upper().replace("-", ""))


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


# -- the allow-list: text that is nothing but clinical annotation ------------------------------
#
# Burned-in text inside the imaging field of view is kept only when *every* character of it is
# accounted for by one of the constructs below; anything left over (a name, an id, a date, a
# word the vocabulary does not know, a bare number) makes the whole box masked. The vocabulary
# is closed on purpose: a word is listed because it is a body site, a probe orientation, an
# exam preset, an imaging mode or setting, or a measurement label printed by ultrasound and
# endoscopy systems (ACR BI-RADS US lexicon; AIUM practice parameter for documenting an
# ultrasound examination: body part, laterality, orientation, measurements; Philips, GE,
# SonoSite, Clarius, Olympus screens in ../shared/data). Numbers are allowed only bound to a
# unit or to a listed label, and only short (at most 3 integer and 2 decimal digits), so no id,
# date or phone number can pass as a measurement.


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Body sites and lesion words printed as annotations ("RT KIDNEY LONG", "LYMPH NODE").
ANATOMY_WORDS = _words(
    """BREAST AXILLA AXILLARY NIPPLE AREOLA THYROID LOBE ISTHMUS NECK PAROTID SUBMANDIBULAR
    LIVER KIDNEY RENAL SPLEEN GB GALLBLADDER CBD PANCREAS AORTA IVC BLADDER UTERUS OVARY
    OVARIES ADNEXA ENDOMETRIUM CERVIX TESTIS TESTICLE SCROTUM PROSTATE LUNG PLEURA PLEURAL
    HEART APEX BASE LV RV LA RA MV AV TV PV LVOT RVOT CAROTID CCA ICA ECA VERTEBRAL JUGULAR IJV
    FEMORAL POPLITEAL SAPHENOUS CFV SFV GSV LYMPH NODE ABDOMEN PELVIS EYE OCULAR ORBIT GLOBE
    RETINA LENS FETUS FETAL PLACENTA CORD HEAD ABD SHOULDER KNEE HIP ELBOW WRIST ANKLE TENDON
    MUSCLE NERVE VEIN ARTERY PROX MID DIST PROXIMAL DISTAL UPPER LOWER ANT POST ANTERIOR
    POSTERIOR LAT MED LATERAL MEDIAL SUP INF SUPERIOR INFERIOR CYST MASS LESION NODULE FLUID
    EFFUSION SLIDING POLE UPPERPOLE LOWERPOLE MORISON RUQ LUQ RLQ LLQ SUBCOSTAL PLAX PSAX
    A4C A2C A3C A5C SSN STOMACH ANTRUM DUODENUM ESOPHAGUS COLON RECTUM CECUM ILEUM"""
)

#: Exam presets, imaging modes and on-screen state words ("Gen OB", "Adult Echo", "FREEZE").
PRESET_AND_MODE_WORDS = _words(
    """GEN OB GYN OBGYN ADULT ECHO CARD CARDIAC PEDS PED NEO VASC VASCULAR VEN ART MSK SMP
    SMALL PARTS THY FAST EFAST OPHTH OPH RES PEN HRES HPEN HGEN THI HAR HARM HARMONIC GENERAL
    PENETRATION RESOLUTION DEPTH GAIN FREEZE FRZ LIVE CINE COLOR COLOUR DOPPLER POWER CF CFM
    PW CW PD PDI CPA MMODE BMODE TDI SONOCT XRES COMPOUND ZOOM STORE FOCUS FOKUS NBI TXI RDI
    WLI LCI BLI FICE STANDBILD FREEZE AE ENH AUTO NORM NORMAL HIGH LOW MED OPT OPTIMIZE
    ELASTO ELASTOGRAPHY STRAIN SHEAR WAVE NEEDLE BIOPSY GUIDE GUIDANCE LINE LINES PLANE"""
)

#: Device makers and systems (not identifying: the same on every patient's screen).
MANUFACTURER_WORDS = _words(
    """PHILIPS HEALTHCARE GE SIEMENS ACUSON SONOSITE FUJIFILM CLARIUS BUTTERFLY MINDRAY
    SAMSUNG MEDISON ESAOTE CANON TOSHIBA HITACHI ALOKA OLYMPUS PENTAX FUJINON KARL STORZ
    INTERSON SONOQUE EPIQ AFFINITI LOGIQ VIVID VOLUSON VENUE EDGE SII LUMIFY"""
)

#: Measurement labels: caliper names, fetal biometry, echo and Doppler indices, safety indices
#: and machine settings that print a number ("MI 1.1", "Gain 50", "DR 60", "FR 28").
MEASUREMENT_LABELS = _words(
    """D DIST DIAM DIAMETER AREA CIRC CIRCUMFERENCE VOL VOLUME LEN LENGTH WIDTH HEIGHT THICK
    THICKNESS L W H AP TR TRV SAG ASC DESC AO ROOT ARCH INDEX MAG CIST CISTERNA MAGNA CEREB
    BPD HC AC FL HL CRL NT GS YS EFW AFI MVP FHR HR EF IVS IVSD LVIDD LVIDS LVPW LVPWD LA RA
    LAD TAPSE E A EA DT VMAX VMEAN VTI PG MAXPG MEANPG PS ED RI PI SD TAMAX TAMEAN SV ANGLE
    MI TIS TIB TIC TI GAIN GN G C DR DYN FR FPS PWR P FREQ F PRF WF Z CA ACQ DEPTH GA MEAN MAX
    MIN PEAK VEL ENH"""
)

_NUM = r"\d{1,3}(?:[.,]\d{1,2})?"
_ALLOWED_UNIT = r"(?:cm/s|m/s|mmHg|mm|cm2|cm3|cm²|cm³|cm|ml|bpm|ms|MHz|kHz|Hz|dB|fps|deg|°|%|s)"
_LABEL_WORD = (
    rf"(?:[DL]\d|{'|'.join(sorted(MEASUREMENT_LABELS | ANATOMY_WORDS, key=len, reverse=True))})"
)
_ALLOW_CONSTRUCTS = (
    # gestational age "GA 12w3d"
    re.compile(r"(?<![\w.])\d{1,2}\s?w\s?\d\s?d\b", re.IGNORECASE),
    # clock face "2:00", "10.30", "9 O'CLOCK"
    re.compile(
        r"(?<![\w.:/])(?:1[0-2]|0?[1-9])\s?[:.]\s?(?:00|15|30|45)(?![\w:./])"
        r"|(?<![\w.:/])(?:1[0-2]|0?[1-9])\s?O'?\s?CLOCK\b",
        re.IGNORECASE,
    ),
    # distance from the nipple "5CM FN"
    re.compile(r"(?<![\w.,])\d{1,2}(?:[.,]\d)?\s*CM\s*F\.?\s?N\b", re.IGNORECASE),
    # probes and systems "C5-1", "L12-5", "S5-1", "L25xp", "GIF-EZ1500", "EPIQ 7"
    _DEVICE_RE,
    re.compile(r"\b[A-Z]{1,3}\d{1,2}(?:-\d{1,2})?[A-Z]{0,2}\b", re.IGNORECASE),
    # labelled measurement or setting "Asc Ao Diam 3.3 cm", "D1: 3 mm", "MI 1.1", "1.2 x 3.4 cm"
    re.compile(
        rf"(?<![A-Za-z]){_LABEL_WORD}(?:\s+{_LABEL_WORD}){{0,3}}\s*[:=<>]?\s*"
        rf"(?<![\d.,/:]){_NUM}(?:\s*[x×*]\s*{_NUM})*\s*{_ALLOWED_UNIT}?(?![\d/.,:])",
        re.IGNORECASE,
    ),
    # a value with its unit "4 cm", "16cm", "49Hz", "65bpm", "1.2 x 0.8 cm"
    re.compile(
        rf"(?<![\d.,/:]){_NUM}(?:\s*[x×*]\s*{_NUM})*\s*{_ALLOWED_UNIT}(?![\w/.,:])",
        re.IGNORECASE,
    ),
    # laterality, orientation, vocabulary words, single-letter marks (L/R/A/P sides, B/M
    # modes, G/C/D/F/H/S/T/V setting letters)
    re.compile(
        r"\b(?:LEFT|RIGHT|LT|RT|[LRAPBMGCDFHSTV]|2D|3D|4D|"
        + "|".join(sorted(_ORIENTATION, key=len, reverse=True))
        + "|"
        + "|".join(
            sorted(
                ANATOMY_WORDS | PRESET_AND_MODE_WORDS | MANUFACTURER_WORDS | MEASUREMENT_LABELS,
                key=len,
                reverse=True,
            )
        )
        + r")\b",
        re.IGNORECASE,
    ),
)


def non_clinical_remainder(text: str) -> str:
    """What is left of ``text`` once every allow-listed clinical construct is removed.

    Constructs: gestational age, clock position, distance from the nipple, a listed measurement
    label or setting with a short number and optional unit, a short number with a unit, a probe or
    device model, and the listed laterality, orientation, anatomy, preset, mode and manufacturer
    words (see the vocabularies above). Punctuation is dropped. An empty result means the text
    is entirely clinical annotation.
    """
    remainder = []
    for raw_line in text.splitlines() or [text]:
        line = raw_line.replace("’", "'")
        for pattern in _ALLOW_CONSTRUCTS:
            line = pattern.sub(" ", line)
        remainder.append(re.sub(r"[^A-Za-z0-9]+", " ", line).strip())
    return " ".join(r for r in remainder if r)


def is_clinical_annotation(text: str) -> bool:
    """True when ``text`` has at least one letter or digit and all of it is allow-listed
    clinical annotation (:func:`non_clinical_remainder` is empty): e.g. "LT BREAST 2:00 5CM FN
    TRANS", "D1 3 mm", "4 cm", "Adult Echo S5-1 49Hz 16cm". Names, ids, dates, unknown words
    and bare numbers are not."""
    return bool(re.search(r"[A-Za-z0-9]", text)) and not non_clinical_remainder(text)
