"""Patients sheets de-identified: salted pseudonyms for ``patient_id`` and an allow-list of
attribute columns.

A patients sheet (:func:`medvid.labels.sheets.read_patients_sheet`) holds a hospital's patient
ids (MRNs) and whatever columns the clinician added: a diagnosis, a score, but also names,
birth dates and free-text notes. :func:`pseudonymize_patients` turns it into a table that may
leave the protected zone:

- ``patient_id`` becomes the pseudonym :meth:`medvid.deid.header.PseudonymMap.patient` gives
  :func:`medvid.deid.header.patient_key_for_id` of it (with the sheet's optional ``issuer``
  column), the very pseudonym a DICOM header with that PatientID (0010,0020) and
  IssuerOfPatientID (0010,0021) gets. One patient keeps one pseudonym across sheets and
  studies when the ids match exactly. Placeholders (``NA``, ``unknown``, ``-``) become null:
  no patient, so the video is split on its own.
- An attribute column is kept only when its name is allow-listed (:data:`DEFAULT_ATTRIBUTES`,
  diagnosis-like clinical fields, or the caller's list) and does not look identifying
  (:func:`identifying_column`: names, dates, ids, contact details, free text; these are
  dropped even when allow-listed, rename the column if it is none of them). Sex and age are not
  in the default list: ages over 89 are identifiers under HIPAA Safe Harbor; add them
  knowingly.
- A kept value is dropped (null) when it looks like PHI: a date, a time, a "Name:"/"ID:"
  field, 6+ digits (:func:`medvid.deid.phi.pattern_phi_hits`), an e-mail address or URL, one
  of the known identifiers (the sheet's own ids and names, and what the caller passes), or
  free text longer than :data:`MAX_ATTRIBUTE_CHARS` characters.

The report names every dropped column and why, and counts the dropped values per column and
reason; it never holds a value. Source for what counts as an identifier: HIPAA Safe Harbor,
45 CFR 164.514(b)(2)(i) (names, dates but the year, record numbers, contact details, URLs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pandas as pd

from medvid.deid.header import PseudonymMap, patient_key_for_id
from medvid.deid.phi import PLACEHOLDERS, IdentifierMatcher, pattern_phi_hits

#: Attribute columns kept by default: diagnosis-like clinical fields. A column is allow-listed
#: when its normalised name (:func:`normalize_column_name`) is an entry or holds one as whole
#: ``_``-separated words: ``cap_score`` and ``diagnosis_primary`` match, ``scores`` does not.
DEFAULT_ATTRIBUTES: Final[tuple[str, ...]] = (
    "diagnosis",
    "diagnoses",
    "dx",
    "label",
    "class",
    "category",
    "type",
    "subtype",
    "severity",
    "score",
    "grade",
    "stage",
    "finding",
    "findings",
    "indication",
    "outcome",
    "result",
    "pathology",
    "histology",
    "bmi",
    "birads",
    "tirads",
    "lirads",
    "pirads",
)

#: Columns naming who issued ``patient_id`` (DICOM IssuerOfPatientID); used, never exported.
ISSUER_COLUMNS: Final = ("issuer", "issuer_of_patient_id")
#: Longest attribute value kept: the 64 characters of a DICOM LO (Long String, PS3.5 6.2);
#: longer text is free text, which Annex E removes from headers too.
MAX_ATTRIBUTE_CHARS: Final = 64


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Words of a column name that say what the column identifies.
_NAME_WORDS = _words(
    "initials given family maiden physician doctor referrer referring operator nurse "
    "sonographer consultant surgeon staff"
)
_DATE_WORDS = _words(
    "date dates dob birth birthday born time timestamp datetime datum admission admitted "
    "discharge discharged death died deceased visit"
)
_ID_WORDS = _words(
    "id ids mrn nhs ssn sin bsn insurance accession acc number no nr num record chart "
    "pid uid uuid passport license licence account medicare medicaid"
)
_CONTACT_WORDS = _words(
    "address street city town zip postcode postal phone telephone tel mobile fax email "
    "mail contact ip url website"
)
_FREE_TEXT_WORDS = _words(
    "comment comments note notes remark remarks text description history memo narrative report"
)
#: Glued header words ("patientname", "dateofbirth") found inside a word.
_GLUED = (
    ("name", "name"),
    ("birth", "date"),
    ("mrn", "id"),
    ("patientid", "id"),
    ("caseid", "id"),
    ("studyid", "id"),
    ("subjectid", "id"),
    ("accession", "id"),
    ("phone", "contact"),
    ("email", "contact"),
    ("address", "contact"),
)
_REASON: Final = {
    "name": "looks like a name",
    "date": "looks like a date",
    "id": "looks like an id",
    "contact": "looks like contact details",
    "free text": "looks like free text",
}
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[A-Za-z]{2,}")
_URL = re.compile(r"\b(?:https?://|ftp://|www\.)", re.IGNORECASE)
_NAME_SPLIT = re.compile(r"[\s,^;/]+")


def normalize_column_name(name: str) -> str:
    """Lower case, every run of other characters than ``a-z0-9`` one ``_``, none at the ends:
    ``"Cap Score"`` -> ``"cap_score"``."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).casefold()).strip("_")


def identifying_column(name: str) -> str | None:
    """What a column name says its values identify: ``"name"``, ``"date"``, ``"id"``,
    ``"contact"``, ``"free text"``; ``None`` when it says none of these.

    Judged on the words of the normalised name (``birth_date`` -> date, ``case_no`` -> id,
    ``referring_physician`` -> name) and on glued words inside one (``patientname``,
    ``dateofbirth``, ``studydate``: a word that starts or ends with ``date``).
    """
    words = normalize_column_name(name).split("_")
    for word in words:
        if word in _NAME_WORDS:
            return "name"
        if word in _DATE_WORDS or word.startswith("date") or word.endswith("date"):
            return "date"
        if word in _ID_WORDS:
            return "id"
        if word in _CONTACT_WORDS:
            return "contact"
        if word in _FREE_TEXT_WORDS:
            return "free text"
        for part, kind in _GLUED:
            if part in word:
                return kind
    return None


def _allow_listed(name: str, allowed: Sequence[str]) -> bool:
    words = normalize_column_name(name).split("_")
    for entry in allowed:
        wanted = normalize_column_name(entry).split("_")
        if any(words[i : i + len(wanted)] == wanted for i in range(len(words) - len(wanted) + 1)):
            return True
    return False


def _is_issuer(name: str) -> bool:
    return normalize_column_name(name) in ISSUER_COLUMNS


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


def sheet_identifiers(patients: pd.DataFrame) -> list[str]:
    """The identifying values of a raw patients sheet, as :class:`IdentifierMatcher` takes
    them: every ``patient_id`` and issuer, the values of name-like columns split into parts,
    and the values of date-, id- and contact-like columns whole. Free-text columns give none.
    Sorted; PHI (protected zone only)."""
    values: set[str] = set()
    for column in patients.columns:
        kind = "id" if column == "patient_id" or _is_issuer(column) else None
        kind = kind or (identifying_column(column) if column != "video" else None)
        if kind is None or kind == "free text":
            continue
        for value in patients[column]:
            text = _text(value)
            if text is None or text.upper() in PLACEHOLDERS:
                continue
            if kind == "name":
                values.update(p for p in _NAME_SPLIT.split(text) if p)
            else:
                values.add(text)
    return sorted(values)


@dataclass(frozen=True)
class PatientsSheetReport:
    """What :func:`pseudonymize_patients` left out (column names and counts, never values).

    Attributes:
        kept_columns: attribute columns exported, in sheet order.
        dropped_columns: ``{column: reason}`` for every other column but ``video`` and
            ``patient_id``: "not allow-listed", "looks like a name" (date, id, contact
            details, free text), "issuer of patient_id, used for the pseudonym".
        dropped_values: ``{column: {reason: count}}`` of values of kept columns set to null.
        patients: distinct pseudonyms in the table.
        rows_without_patient: rows whose ``patient_id`` is a placeholder (``NA``, ``-``...).
    """

    kept_columns: tuple[str, ...]
    dropped_columns: Mapping[str, str]
    dropped_values: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    patients: int = 0
    rows_without_patient: int = 0

    def warnings(self) -> list[str]:
        """One line per dropped column and per column with dropped values, for metadata and
        logs."""
        lines = [f"column {c!r} dropped: {why}" for c, why in self.dropped_columns.items()]
        for column, reasons in self.dropped_values.items():
            counted = ", ".join(f"{n} {why}" for why, n in reasons.items())
            lines.append(f"column {column!r}: values dropped ({counted})")
        if self.rows_without_patient:
            lines.append(f"{self.rows_without_patient} row(s) with a placeholder patient_id")
        return lines

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (for Dagster metadata)."""
        return {
            "kept_columns": list(self.kept_columns),
            "dropped_columns": dict(self.dropped_columns),
            "dropped_values": {c: dict(r) for c, r in self.dropped_values.items()},
            "patients": self.patients,
            "rows_without_patient": self.rows_without_patient,
        }


def _value_reasons(text: str, known: IdentifierMatcher) -> list[str]:
    reasons = pattern_phi_hits(text)
    if _EMAIL.search(text):
        reasons.append("e-mail address")
    if _URL.search(text):
        reasons.append("URL")
    if known.search(text):
        reasons.append("known identifier")
    if len(text) > MAX_ATTRIBUTE_CHARS:
        reasons.append(f"free text over {MAX_ATTRIBUTE_CHARS} characters")
    return reasons


def pseudonymize_patients(
    patients: pd.DataFrame,
    pseudonym_map: PseudonymMap,
    *,
    attributes: Sequence[str] | None = None,
    known_identifiers: Iterable[str] = (),
) -> tuple[pd.DataFrame, PatientsSheetReport]:
    """A patients sheet fit to leave the protected zone (rules in the module docstring).

    Args:
        patients: ``video``, ``patient_id`` (text), optional ``issuer`` and attribute columns,
            as :func:`medvid.labels.sheets.read_patients_sheet` returns them (several sheets
            concatenated is fine).
        pseudonym_map: the project's map (the one the DICOM stage uses). New patients are added
            to it; call :meth:`PseudonymMap.save` afterwards.
        attributes: allow-listed attribute names (matched as in :data:`DEFAULT_ATTRIBUTES`);
            ``None`` for the default list, ``()`` for none.
        known_identifiers: more identifiers whose appearance drops a value (e.g. from
            :func:`medvid.deid.names.known_identifiers` over DICOM headers); the sheet's own
            are always used.

    Returns:
        ``(table, report)``: ``table`` has ``video`` (as given: a name the clinician used,
        often the original file name, so resolve it to a ``video_id`` before the table leaves
        ``protected/``), ``patient_id`` (``"P"`` + 11 upper-case hex digits, or None) and the
        kept attribute columns in sheet order, all text or None, rows in input order;
        ``report`` a :class:`PatientsSheetReport`. The same sheet, map salt and settings give
        the same table.

    Raises:
        ValueError: ``patients`` lacks ``video`` or ``patient_id``.
    """
    missing = [c for c in ("video", "patient_id") if c not in patients.columns]
    if missing:
        raise ValueError(f"patients table lacks column(s): {', '.join(missing)}")
    allowed = DEFAULT_ATTRIBUTES if attributes is None else tuple(attributes)
    issuer_column = next((c for c in patients.columns if _is_issuer(c)), None)

    kept: list[str] = []
    dropped: dict[str, str] = {}
    for column in patients.columns:
        if column in ("video", "patient_id"):
            continue
        kind = identifying_column(column)
        if column == issuer_column:
            dropped[column] = "issuer of patient_id, used for the pseudonym"
        elif _is_issuer(column):
            dropped[column] = "a second issuer column"
        elif kind is not None:
            dropped[column] = _REASON[kind]
        elif not _allow_listed(column, allowed):
            dropped[column] = "not allow-listed"
        else:
            kept.append(column)

    known = IdentifierMatcher([*sheet_identifiers(patients), *known_identifiers])
    pseudonyms: list[str | None] = []
    without_patient = 0
    issuers = patients[issuer_column] if issuer_column else [None] * len(patients)
    for patient_id, issuer in zip(patients["patient_id"], issuers, strict=True):
        text = _text(patient_id)
        if text is None or text.upper() in PLACEHOLDERS:
            pseudonyms.append(None)
            without_patient += 1
            continue
        key = patient_key_for_id(text, _text(issuer) or "")
        pseudonyms.append(pseudonym_map.patient(key).pseudonym)

    table = pd.DataFrame(
        {"video": [_text(v) for v in patients["video"]], "patient_id": pseudonyms},
        dtype=object,
    )
    dropped_values: dict[str, dict[str, int]] = {}
    for column in kept:
        values: list[str | None] = []
        for value in patients[column]:
            text = _text(value)
            reasons = _value_reasons(text, known) if text is not None else []
            for reason in reasons:
                counts = dropped_values.setdefault(column, {})
                counts[reason] = counts.get(reason, 0) + 1
            values.append(None if reasons else text)
        table[column] = pd.Series(values, dtype=object)
    report = PatientsSheetReport(
        kept_columns=tuple(kept),
        dropped_columns=dropped,
        dropped_values=dropped_values,
        patients=len({p for p in pseudonyms if p is not None}),
        rows_without_patient=without_patient,
    )
    return table, report
