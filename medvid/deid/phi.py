"""What counts as PHI in burned-in text: the header's own values and generic patterns.

:class:`PhiValues` holds the identifying values read from a DICOM header *before*
de-identification (patient name parts, ids, birth date, institution, physician names). They are
PHI themselves and stay in the protected zone; they exist so that pixel redaction and the
residual check can look for exactly these values in the image.

Generic patterns catch what the header does not know: calendar dates (dd/mm/yyyy, yyyy-mm-dd,
'15 FEB 2024'), times with seconds or AM/PM, a "Name:" or "ID:" field followed by a value, and
id-like tokens with 6 or more digits. Bare clock positions ("2:00") and measurements ("3.3 cm")
do not match, so breast and echo annotations survive. Sources: HIPAA Safe Harbor identifiers
(45 CFR 164.514(b)(2): names, all date elements but the year, record numbers) and the DICOM
PS3.15 Annex E note that burned-in text must be cleaned separately from the header.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

#: Words that do not identify an institution on their own ("Springfield General" is flagged
#: through "SPRINGFIELD", not through "GENERAL").
GENERIC_INSTITUTION_WORDS = frozenset(
    [
        "HOSPITAL",
        "GENERAL",
        "MEDICAL",
        "CENTER",
        "CENTRE",
        "CLINIC",
        "CLINICS",
        "HEALTH",
        "HEALTHCARE",
        "UNIVERSITY",
        "SYSTEMS",
        "SYSTEM",
        "INSTITUTE",
        "REGIONAL",
        "COUNTY",
        "SAINT",
        "MEMORIAL",
        "CTR",
        "MED",
        "HOSP",
        "UNIV",
        "DEPT",
        "DEPARTMENT",
        "RADIOLOGY",
        "IMAGING",
        "CARE",
        "COMMUNITY",
        "CHILDREN",
        "CHILDRENS",
        "NATIONAL",
        "STATE",
        "CITY",
        "THE",
        "AND",
        "OF",
        "FOR",
    ]
)

#: Header values that mean "no value" and must not become search tokens.
PLACEHOLDERS = frozenset({"", "--", "-", "NONE", "UNKNOWN", "ANONYMOUS", "ANONYMIZED", "NA", "N/A"})

_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|SEPT|OCT|NOV|DEC|MRZ|MAI|OKT|DEZ"
_DATE_PATTERNS = (
    re.compile(r"(?<!\d)\d{1,2}\s?[/.\-]\s?\d{1,2}\s?[/.\-]\s?(?:19|20)\d{2}"),
    re.compile(r"(?<![\d.])\d{1,2}[/\-]\d{1,2}[/\-]\d{2}(?![\d.])"),
    re.compile(r"(?<!\d)(?:19|20)\d{2}\s?[/.\-]\s?\d{1,2}\s?[/.\-]\s?\d{1,2}(?!\d)"),
    re.compile(rf"\b\d{{1,2}}[\s.\-]?(?:{_MONTHS})[A-Z]*[\s.,\-]*(?:19|20)?\d{{2}}\b"),
    re.compile(rf"\b(?:{_MONTHS})[A-Z]*[\s.\-]+\d{{1,2}}[\s,]+(?:19|20)\d{{2}}\b"),
)
_TIME_PATTERNS = (
    re.compile(r"(?<!\d)\d{1,2}:\d{2}:\d{2}(?!\d)"),
    re.compile(r"(?<!\d)\d{1,2}:\d{2}\s?(?:AM|PM)\b"),
)
_NAME_FIELD = re.compile(
    r"\b(?:PATIENT\s*NAME|PAT\.?\s*NAME|PATIENT|NAME|NAAM|NOM|VORNAME|NACHNAME)\s*[:=]\s*"
    r"(?P<value>[A-Z][A-Z'\-]*(?:[ ,^]+[A-Z][A-Z'\-]*)*)"
)
_ID_FIELD = re.compile(
    r"\b(?:MRN|PATIENT\s*ID|PAT\.?\s*ID|PID|ID|ACC(?:ESSION)?\s*(?:NO|#)?)\s*[:#=]\s*"
    r"(?P<value>[A-Z0-9][A-Z0-9\-/]*)"
)
_ID_TOKEN = re.compile(r"(?<![\w.])[A-Z0-9]+(?:-[A-Z0-9]+)*(?![\w.])")


def _compact(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def _name_parts(value: Any) -> list[str]:
    if value is None:
        return []
    parts = re.split(r"[\^=\s,]+", str(value).upper())
    return [p for p in parts if len(p) >= 2 and p not in PLACEHOLDERS and not p.isdigit()]


def _clean_value(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if text.upper() in PLACEHOLDERS else text


@dataclass(frozen=True)
class PhiValues:
    """Identifying header values captured before de-identification (protected zone only).

    ``patient_birth_date`` is the DICOM DA string (YYYYMMDD); ``name_parts`` are upper-case
    components of PatientName, OtherPatientNames and PatientBirthName; ``physician_name_parts``
    come from ReferringPhysicianName, PerformingPhysicianName, OperatorsName.
    """

    name_parts: tuple[str, ...] = ()
    patient_id: str | None = None
    other_ids: tuple[str, ...] = ()
    patient_birth_date: str | None = None
    institution_name: str | None = None
    institution_address: str | None = None
    physician_name_parts: tuple[str, ...] = ()
    accession_number: str | None = None

    @classmethod
    def from_dataset(cls, ds: Dataset) -> PhiValues:
        """Capture the identifying values of ``ds`` (call before de-identifying it)."""
        names: list[str] = []
        for keyword in ("PatientName", "OtherPatientNames", "PatientBirthName"):
            names += _name_parts(ds.get(keyword))
        physicians: list[str] = []
        for keyword in ("ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName"):
            value = ds.get(keyword)
            values = value if isinstance(value, list | tuple) else [value]
            for item in values or []:
                physicians += _name_parts(item)
        other_ids = [
            v
            for item in ds.get("OtherPatientIDsSequence", None) or []
            if (v := _clean_value(item.get("PatientID")))
        ]
        raw_other = ds.get("OtherPatientIDs")
        if raw_other:
            for v in raw_other if isinstance(raw_other, list | tuple) else [raw_other]:
                if cleaned := _clean_value(v):
                    other_ids.append(cleaned)
        birth = _clean_value(ds.get("PatientBirthDate"))
        birth_digits = re.sub(r"\D", "", birth) if birth else ""
        return cls(
            name_parts=tuple(dict.fromkeys(names)),
            patient_id=_clean_value(ds.get("PatientID")),
            other_ids=tuple(dict.fromkeys(other_ids)),
            patient_birth_date=birth_digits if len(birth_digits) == 8 else None,
            institution_name=_clean_value(ds.get("InstitutionName")),
            institution_address=_clean_value(ds.get("InstitutionAddress")),
            physician_name_parts=tuple(dict.fromkeys(physicians)),
            accession_number=_clean_value(ds.get("AccessionNumber")),
        )

    def identifiers(self) -> list[str]:
        """Every value of this header to look for elsewhere (file names, exports), as
        :class:`IdentifierMatcher` takes them: name parts (patient, other and birth names,
        physicians) one by one, ids, accession number and birth date whole, the institution
        name whole and its distinctive words (:meth:`institution_words`). PHI: protected zone
        only."""
        values = [
            *self.name_parts,
            *self.physician_name_parts,
            self.patient_id,
            *self.other_ids,
            self.accession_number,
            self.patient_birth_date,
            self.institution_name,
            *self.institution_words(),
        ]
        return list(dict.fromkeys(v for v in values if v))

    def ids(self) -> list[str]:
        """Compact (alphanumeric, upper-case) ids of 3+ characters."""
        values = [self.patient_id, self.accession_number, *self.other_ids]
        return [c for v in values if v and len(c := _compact(v)) >= 3]

    def institution_words(self) -> list[str]:
        words: list[str] = []
        for value in (self.institution_name, self.institution_address):
            for word in re.split(r"[^A-Z0-9]+", (value or "").upper()):
                if len(word) >= 4 and word not in GENERIC_INSTITUTION_WORDS:
                    words.append(word)
        return words

    def birth_date_regex(self) -> re.Pattern[str] | None:
        """Regex matching the birth date as dd/mm/yyyy, mm/dd/yyyy, yyyy-mm-dd, yyyymmdd,
        ddmmyyyy, with or without zero padding, separators / . - or space, 2- or 4-digit
        years."""
        if not self.patient_birth_date:
            return None
        y, m, d = (
            self.patient_birth_date[:4],
            self.patient_birth_date[4:6],
            self.patient_birth_date[6:],
        )

        def num(v: str) -> str:
            return rf"0?{int(v)}"

        sep = r"\s?[/.\-\s]?\s?"
        year = rf"(?:{y}|{y[2:]})"
        options = [
            rf"{num(d)}{sep}{num(m)}{sep}{year}",
            rf"{num(m)}{sep}{num(d)}{sep}{year}",
            rf"{y}{sep}{num(m)}{sep}{num(d)}",
            rf"{d}{m}{y}|{m}{d}{y}|{y}{m}{d}",
        ]
        return re.compile(r"(?<!\d)(?:" + "|".join(options) + r")(?!\d)")


def header_phi_hits(text: str, phi: PhiValues, *, min_name_part: int = 2) -> list[str]:
    """Reasons ``text`` contains a value of the header's PHI (empty list: none found).

    ``min_name_part``: shortest name component (letters) that counts as a hit; 2 catches
    surnames like "Li" in burned-in text, where masking a stray "OB" costs little; checks of
    coded header values use 3 (a PatientName of "OB" must not flag ProcessingFunction
    "OB_GENERAL").
    """
    upper = text.upper()
    tokens = set(re.findall(r"[A-Z0-9]+", upper))
    compact = _compact(upper)
    reasons: list[str] = []
    if any(part in tokens for part in phi.name_parts if len(part) >= min_name_part):
        reasons.append("patient name")
    if any(part in tokens for part in phi.physician_name_parts if len(part) >= min_name_part):
        reasons.append("physician or operator name")
    if any(value in compact for value in phi.ids()):
        reasons.append("patient or accession id")
    regex = phi.birth_date_regex()
    if regex is not None and (regex.search(upper) or regex.search(compact)):
        reasons.append("birth date")
    institution = _compact(phi.institution_name or "")
    if (len(institution) >= 4 and institution in compact) or any(
        w in tokens for w in phi.institution_words()
    ):
        reasons.append("institution")
    return reasons


def pattern_phi_hits(text: str) -> list[str]:
    """Reasons ``text`` looks like PHI whatever the header says (dates, times, name/id
    fields, id-like numbers)."""
    upper = text.upper()
    reasons: list[str] = []
    if any(p.search(upper) for p in _DATE_PATTERNS):
        reasons.append("date")
    if any(p.search(upper) for p in _TIME_PATTERNS):
        reasons.append("time")
    if (m := _NAME_FIELD.search(upper)) and m.group("value").strip("-' ") not in PLACEHOLDERS:
        reasons.append("name field")
    if (m := _ID_FIELD.search(upper)) and m.group("value").strip("-/ ") not in PLACEHOLDERS:
        reasons.append("id field")
    if any(sum(c.isdigit() for c in tok) >= 6 for tok in _ID_TOKEN.findall(upper)):
        reasons.append("id-like number")
    return reasons


def phi_hits(text: str, phi: PhiValues | None) -> list[str]:
    """Header-value and pattern reasons together (``phi`` None: patterns only)."""
    reasons = header_phi_hits(text, phi) if phi is not None else []
    return reasons + pattern_phi_hits(text)


def unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


#: Letter runs (any script) and digit runs: the atoms identifiers are compared by.
_ATOM = re.compile(r"[^\W\d_]+|\d+")
#: Most characters between two atoms of one identifier ("MRN-12345", "Doe, Jane").
MAX_IDENTIFIER_GAP = 3


def _atoms(text: str) -> list[re.Match[str]]:
    return list(_ATOM.finditer(text))


class IdentifierMatcher:
    """Finds known identifiers (names, ids, dates as written) in text, case-insensitively.

    An identifier is split into atoms (runs of letters, runs of digits): ``"MRN-12345"`` is
    ``MRN`` ``12345``, ``"O'Brien"`` is ``O`` ``BRIEN``. It matches a text where the same atoms
    follow each other with at most :data:`MAX_IDENTIFIER_GAP` non-alphanumeric characters
    between them, so ``"MRN12345"``, ``"mrn 12345"`` and ``"MRN_12345"`` all match
    ``"MRN-12345"``. Pass name parts one by one (``"DOE"``, ``"JANE"``): a whole name only
    matches in its own order. Identifiers with fewer than ``min_chars`` letters and digits, and
    placeholders (:data:`PLACEHOLDERS`), are ignored: a 2-character id would match everywhere.

    Boundaries, the rule that keeps short ids out of longer tokens:

    - ``glued=False`` (token rule, for exported text): the match must not touch another letter
      or digit on either side, nor continue a decimal number (``"0.1009"`` holds no ``1009``).
      A 4-digit id therefore never matches inside a 16-hex content id (``"3fa1009c..."``), a
      longer number or a frame number.
    - ``glued=True`` (class rule, for file names, where parts are often glued:
      ``"Smith1234567"``, ``"pat1009"``): the match must not continue a run of its own kind
      (letters before a name, digits before an id) but may touch the other kind.
    """

    def __init__(self, identifiers: Iterable[str], *, min_chars: int = 3, glued: bool = False):
        self.glued = glued
        self._by_first: dict[str, list[tuple[str, ...]]] = {}
        count = 0
        for identifier in identifiers:
            text = str(identifier).strip()
            if not text or text.upper() in PLACEHOLDERS:
                continue
            atoms = tuple(m.group().casefold() for m in _atoms(text))
            if not atoms or sum(len(a) for a in atoms) < min_chars:
                continue
            bucket = self._by_first.setdefault(atoms[0], [])
            if atoms not in bucket:
                bucket.append(atoms)
                count += 1
        for bucket in self._by_first.values():
            bucket.sort(key=len, reverse=True)  # longest identifier first
        self._count = count

    def __len__(self) -> int:
        return self._count

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """``(start, end, kind)`` of every match, in text order; ``kind`` is ``"id"`` when the
        identifier has a digit, else ``"name"``. Overlapping matches are all returned."""
        if not self._count:
            return []
        atoms = _atoms(text)
        folded = [m.group().casefold() for m in atoms]
        found: list[tuple[int, int, str]] = []
        for i, first in enumerate(folded):
            for candidate in self._by_first.get(first, ()):
                last = i + len(candidate) - 1
                if last >= len(atoms) or tuple(folded[i : last + 1]) != candidate:
                    continue
                if any(
                    atoms[k + 1].start() - atoms[k].end() > MAX_IDENTIFIER_GAP
                    for k in range(i, last)
                ):
                    continue
                start, end = atoms[i].start(), atoms[last].end()
                if not self._bounded(text, start, end):
                    continue
                kind = "id" if any(a[0].isdigit() for a in candidate) else "name"
                found.append((start, end, kind))
        return found

    def search(self, text: str) -> bool:
        """True when any identifier occurs in ``text``."""
        return bool(self.spans(text))

    def _bounded(self, text: str, start: int, end: int) -> bool:
        before = text[start - 1] if start > 0 else ""
        after = text[end] if end < len(text) else ""
        if self.glued:
            # maximal atoms already end where their kind changes
            return True
        if before.isalnum() or after.isalnum():
            return False
        if text[start].isdigit() and re.search(r"\d[.,]$", text[max(0, start - 2) : start]):
            return False
        return not (text[end - 1].isdigit() and re.match(r"[.,]\d", text[end : end + 2]))
