"""Display names: a video's file name with its PHI-like parts replaced, for everywhere outside
``protected/``.

Clinical video often arrives named after the patient (``SMITH_JOHN_5551234_20240215.mp4``).
The original name is PHI (HIPAA Safe Harbor, 45 CFR 164.514(b)(2): names, record numbers and
every date element but the year) and lives only in ``protected/``; ledgers, tables, run tags,
metadata, logs and the CLI show :func:`display_name` instead, beside the video id (two videos
can share a display name).

What is replaced, on the name without its suffix (placeholders in brackets):

- ``[date]``: calendar dates in common forms: ``20240215`` and ``15022024``/``02152024``
  (8 digits forming a valid date), ``2024-02-15``, ``15.02.2024``, ``15/02/2024``,
  ``02_15_2024`` (separators ``- . _ /`` or space, days and months with or without a leading
  zero), ``15.02.24`` (two digits each, a valid day and month), ``15FEB2024``, ``15-Feb-24``,
  ``Feb 15, 2024``;
- ``[time]``: clock times with seconds and a two-digit hour, ``14-30-22``, ``14.30.22``,
  ``14:30:22`` (``v1.10.12`` is a version, not a time);
- ``[id]``: runs of 6 or more digits (record and accession numbers; a bare year or a 4-digit
  series number such as ``northumbria_1009`` stays), and known identifiers with a digit;
- ``[name]``: known identifiers without a digit (name parts, institution words).

Known identifiers come from :func:`known_identifiers` (patients sheets, DICOM headers); they are
matched with :class:`medvid.deid.phi.IdentifierMatcher` in its ``glued`` mode, since file names
glue parts together (``Smith1234567``), and case-insensitively. Where matches overlap, the
longest wins (a date over the 6+ digit run inside it). A name unknown to medvid and without
digits cannot be told from a harmless word (``Mueller_scan.mp4`` keeps ``Mueller`` unless a
sheet or header knows it), which is why the original name never leaves ``protected/`` and the
display name is shown only beside the video id.

Note that ``covid19us_Reg_pat1Image_132943.mpeg`` becomes ``covid19us_Reg_pat1Image_[id].mpeg``:
6-digit runs are record numbers by this rule, whatever they were meant to be.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

import pandas as pd

from medvid.deid.phi import IdentifierMatcher, PhiValues
from medvid.deid.sheets import sheet_identifiers

#: Placeholders, by what they replace.
PLACEHOLDER: Final = {"date": "[date]", "time": "[time]", "id": "[id]", "name": "[name]"}
#: Which placeholder wins when two matches have the same length.
_PRIORITY: Final = {"date": 0, "time": 1, "id": 2, "name": 3}

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|mrz|mai|okt|dez)[a-z]*"
_D = r"(?:0?[1-9]|[12]\d|3[01])"
_M = r"(?:0?[1-9]|1[0-2])"
_DD = r"(?:0[1-9]|[12]\d|3[01])"
_MM = r"(?:0[1-9]|1[0-2])"
_YYYY = r"(?:19|20)\d{2}"
_SEP = r"[-._ /]"
_DATE_PATTERNS: Final = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        rf"(?<!\d)(?:{_YYYY}{_MM}{_DD}|{_DD}{_MM}{_YYYY}|{_MM}{_DD}{_YYYY})(?!\d)",
        rf"(?<!\d){_YYYY}{_SEP}{_M}{_SEP}{_D}(?!\d)",
        rf"(?<!\d)(?:{_D}{_SEP}{_M}|{_M}{_SEP}{_D}){_SEP}{_YYYY}(?!\d)",
        rf"(?<![\d.])(?:{_DD}[-./]{_MM}|{_MM}[-./]{_DD})[-./]\d{{2}}(?![\d.])",
        rf"(?<!\d){_D}{_SEP}?{_MONTH}{_SEP}?(?:{_YYYY}|\d{{2}})(?!\d)",
        rf"(?<![^\W\d_]){_MONTH}{_SEP}?{_D}[-._ /,]+{_YYYY}(?!\d)",
    )
)
_TIME_PATTERN: Final = re.compile(r"(?<![\d.])(?:[01]\d|2[0-3])([-:.])[0-5]\d\1[0-5]\d(?![\d.])")
_DIGIT_RUN: Final = re.compile(r"(?<!\d)\d{6,}(?!\d)")
#: A suffix kept as is: a dot and 1-5 letters/digits with at least one letter (``.mp4``).
_SUFFIX: Final = re.compile(r"\.(?=[0-9]*[A-Za-z])[A-Za-z0-9]{1,5}$")
_CONTENT_ID: Final = re.compile(r"^[0-9a-f]{16}$")
#: Hex digits of the content id added by ``display_name(..., content_id=...)``.
CONTENT_ID_SUFFIX_DIGITS: Final = 8


def _spans(stem: str, known: IdentifierMatcher) -> list[tuple[int, int, str]]:
    spans = [(m.start(), m.end(), "date") for p in _DATE_PATTERNS for m in p.finditer(stem)]
    spans += [(m.start(), m.end(), "time") for m in _TIME_PATTERN.finditer(stem)]
    spans += [(m.start(), m.end(), "id") for m in _DIGIT_RUN.finditer(stem)]
    spans += known.spans(stem)
    return spans


def _merge(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Overlapping spans become one, labelled by the longest (ties: date, time, id, name)."""
    merged: list[tuple[int, int, str]] = []
    best: tuple[int, int] = (0, 0)
    for start, end, kind in sorted(spans):
        rank = (end - start, -_PRIORITY[kind])
        if merged and start < merged[-1][1]:
            last_start, last_end, last_kind = merged[-1]
            if rank > best:
                last_kind, best = kind, rank
            merged[-1] = (last_start, max(last_end, end), last_kind)
        else:
            merged.append((start, end, kind))
            best = rank
    return merged


def display_name(
    original_name: str,
    known_identifiers: Iterable[str] | IdentifierMatcher = (),
    *,
    content_id: str | None = None,
) -> str:
    """The file name with PHI-like parts replaced (rules in the module docstring).

    Args:
        original_name: the name the file arrived under (PHI; from the protected ledger).
        known_identifiers: names and ids to mask wherever they occur
            (:func:`known_identifiers`), or a prebuilt ``IdentifierMatcher(..., glued=True)``
            when naming many files. Identifiers of 2+ letters/digits count.
        content_id: the video's content id (16 lower-case hex digits); when given,
            ``~`` and its first :data:`CONTENT_ID_SUFFIX_DIGITS` digits are added before the
            suffix, so two videos with the same display name stay apart. Never derived from the
            name.

    Returns the display name, e.g. ``"[name]_[name]_[id]_[date].mp4"`` for
    ``"SMITH_JOHN_5551234_20240215.mp4"`` when SMITH and JOHN are known. The suffix (``.mp4``,
    ``.mpeg``, ``.dcm``: a dot and up to 5 letters/digits, one a letter) is kept as is. The
    same name, identifiers and content id always give the same display name.

    Raises:
        ValueError: ``content_id`` is not 16 lower-case hex digits.
    """
    if content_id is not None and not _CONTENT_ID.match(content_id):
        raise ValueError("content_id must be 16 lower-case hex digits (medvid.ids.content_id)")
    matcher = (
        known_identifiers
        if isinstance(known_identifiers, IdentifierMatcher)
        else IdentifierMatcher(known_identifiers, min_chars=2, glued=True)
    )
    suffix_match = _SUFFIX.search(original_name)
    cut = suffix_match.start() if suffix_match else len(original_name)
    stem, suffix = original_name[:cut], original_name[cut:]
    pieces: list[str] = []
    position = 0
    for start, end, kind in _merge(_spans(stem, matcher)):
        pieces += [stem[position:start], PLACEHOLDER[kind]]
        position = end
    pieces.append(stem[position:])
    if content_id is not None:
        pieces.append(f"~{content_id[:CONTENT_ID_SUFFIX_DIGITS]}")
    return "".join(pieces) + suffix


def known_identifiers(
    *,
    patients: pd.DataFrame | None = None,
    phi_values: Iterable[PhiValues] = (),
    file_names: Iterable[str] = (),
) -> list[str]:
    """The identifiers to pass to :func:`display_name` and
    :func:`medvid.export.phi_scan.scan_export`, from what medvid knows of its patients.

    Args:
        patients: a patients sheet as read (:func:`medvid.labels.sheets.read_patients_sheet`,
            before pseudonymisation): its ``patient_id`` values and the values of the columns
            that look like names, dates or ids (:func:`medvid.deid.sheets.sheet_identifiers`).
        phi_values: the PHI of DICOM headers (:meth:`PhiValues.identifiers`).
        file_names: original file names: each name whole and its stem (name without the
            suffix) are identifiers, for the export scan; do not pass them to
            :func:`display_name`.

    Returns the identifiers, de-duplicated, in a fixed order (sorted). They are PHI: use them
    inside the protected zone and never write them out.
    """
    values: set[str] = set()
    if patients is not None:
        values.update(sheet_identifiers(patients))
    for phi in phi_values:
        values.update(phi.identifiers())
    for name in file_names:
        name = str(name).strip()
        suffix = _SUFFIX.search(name)
        values.update(v for v in (name, name[: suffix.start()] if suffix else name) if v)
    return sorted(values)
