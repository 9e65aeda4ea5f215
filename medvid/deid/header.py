"""Header de-identification: DICOM PS3.15 Annex E Basic Application Level Confidentiality
Profile, with consistent pseudonyms across batches and per-patient date shifting.

Why dicognito (and not pydicom's ``deid`` package): dicognito is a small, typed, actively
released library that works directly on pydicom datasets in memory, replaces *every* PN, UI,
DA/DT/TM element it meets (including those nested in sequences and in the file meta), and is
deterministic given a seed, which is exactly what consistent pseudonyms across batches and days
need. ``deid`` is recipe-driven (text recipe files, filters written for its own file loop), pulls
in extra dependencies and is built around files on disk rather than datasets; its strength,
the recipe language, is not needed here. dicognito does not implement every row of Annex E
Table E.1-1 on its own, so this module adds the rest on top: private tags removed, free-text
(LT/ST/UT/UC) elements, descriptions, comments, overlays, icon images and the other
"X"/"Z" attributes listed in :data:`ANNEX_E_REMOVE` deleted, PatientIdentityRemoved = YES,
DeidentificationMethod and DeidentificationMethodCodeSequence (CID 7050) recorded.

Consistency (same input -> same output on any day, in any batch, on any worker):

- UIDs: dicognito's UID replacement seeded with an HMAC of the caller's salt, so a
  StudyInstanceUID maps to the same new UID everywhere.
- Patient pseudonym: ``"P"`` + 11 hex digits of HMAC-SHA256(salt, patient key), used as both
  PatientName and PatientID. Deterministic, so concurrent partitions never race for a number.
- Dates: shifted back by a per-patient whole number of days in [62, 730] derived from the same
  HMAC (the interval dicognito uses for its own offsets), so intervals between one patient's
  studies are preserved (Annex E "Retain Longitudinal Temporal Information with Modified Dates").

:class:`PseudonymMap` persists what was assigned (keyed by the HMAC of the patient key, so the
map file holds no PHI itself) as JSON at a path the caller chooses; it is a protected asset and
never exported. The salt is never written anywhere: the map only stores a short HMAC
fingerprint of it to refuse being reopened with a different salt.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicognito.anonymizer import Anonymizer
from dicognito.datetimeanonymizer import DateTimeAnonymizer
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from medvid.deid.phi import PLACEHOLDERS, PhiValues, header_phi_hits
from medvid.errors import CorruptMediaError
from medvid.io import write_json_atomic

#: Days a patient's dates move back: [MIN, MAX] (dicognito's default interval, 62..730 days).
DATE_SHIFT_MIN_DAYS = 62
DATE_SHIFT_MAX_DAYS = 730

#: DeidentificationMethod values (LO, 64 characters each, VM 1-n).
DEIDENTIFICATION_METHOD = (
    "DICOGNITO",
    "medvid PS3.15 Annex E Basic Profile",
    "private tags removed",
    "per-patient date shift",
    "salted pseudonyms",
)

#: Attributes deleted on top of dicognito's replacements: Annex E Table E.1-1 rows with action
#: X, Z, or X/Z/D that dicognito leaves in place (free text, descriptions, device and location
#: identifiers, patient characteristics unless retained).
ANNEX_E_REMOVE = [
    "AccessionNumber",
    "AcquisitionComments",
    "AcquisitionContextSequence",
    "AdditionalPatientHistory",
    "AdmissionID",
    "AdmittingDiagnosesCodeSequence",
    "AdmittingDiagnosesDescription",
    "Allergies",
    "AuthorObserverSequence",
    "BranchOfService",
    "CommentsOnThePerformedProcedureStep",
    "ConsultingPhysicianName",
    "ContentSequence",
    "ContributionDescription",
    "CountryOfResidence",
    "CurrentPatientLocation",
    "CustodialOrganizationSequence",
    "DerivationDescription",
    "DeviceSerialNumber",
    "DischargeDiagnosisDescription",
    "FrameComments",
    "GantryID",
    "IconImageSequence",
    "IdentifyingComments",
    "ImageComments",
    "ImagePresentationComments",
    "ImagingServiceRequestComments",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "InstitutionalDepartmentTypeCodeSequence",
    "InstitutionCodeSequence",
    "InstitutionName",
    "InterpretationApproverSequence",
    "InterpretationAuthor",
    "InterpretationRecorder",
    "InterpretationText",
    "InterpretationTranscriber",
    "IssuerOfAdmissionIDSequence",
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "MedicalAlerts",
    "MedicalRecordLocator",
    "MilitaryRank",
    "ModifiedAttributesSequence",
    "NameOfPhysiciansReadingStudy",
    "Occupation",
    "OperatorIdentificationSequence",
    "OperatorsName",
    "OrderCallbackPhoneNumber",
    "OrderEnteredBy",
    "OrderEntererLocation",
    "OriginalAttributesSequence",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "ParticipantSequence",
    "PatientAddress",
    "PatientBirthName",
    "PatientBirthTime",
    "PatientComments",
    "PatientInsurancePlanCodeSequence",
    "PatientMotherBirthName",
    "PatientPrimaryLanguageCodeSequence",
    "PatientReligiousPreference",
    "PatientState",
    "PatientTelecomInformation",
    "PatientTelephoneNumbers",
    "PerformedLocation",
    "PerformedProcedureStepDescription",
    "PerformedProcedureStepID",
    "PerformedStationAETitle",
    "PerformedStationName",
    "PerformingPhysicianIdentificationSequence",
    "PerformingPhysicianName",
    "PersonAddress",
    "PersonIdentificationCodeSequence",
    "PersonName",
    "PersonTelephoneNumbers",
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence",
    "PlateID",
    "ProtocolName",
    "ReasonForStudy",
    "ReasonForTheRequestedProcedure",
    "ReferencedPatientAliasSequence",
    "ReferencedPatientPhotoSequence",
    "ReferencedPatientSequence",
    "ReferringPhysicianAddress",
    "ReferringPhysicianIdentificationSequence",
    "ReferringPhysicianTelephoneNumbers",
    "RegionOfResidence",
    "RequestAttributesSequence",
    "RequestedContrastAgent",
    "RequestedProcedureComments",
    "RequestedProcedureDescription",
    "RequestedProcedureID",
    "RequestedProcedureLocation",
    "RequestingPhysician",
    "RequestingService",
    "ResponsibleOrganization",
    "ResponsiblePerson",
    "ResultsComments",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledStationAETitle",
    "ScheduledStationName",
    "SeriesDescription",
    "ServiceEpisodeDescription",
    "ServiceEpisodeID",
    "SpecialNeeds",
    "StationName",
    "StudyComments",
    "StudyDescription",
    "StudyID",
    "TextComments",
    "TextString",
    "TopicAuthor",
    "TopicKeywords",
    "TopicSubject",
    "TopicTitle",
    "VerifyingObserverName",
    "VerifyingObserverSequence",
    "VisitComments",
]

#: Patient characteristics: removed by the Basic Profile, kept with the Retain Patient
#: Characteristics Option (113108).
PATIENT_CHARACTERISTICS = [
    "PatientAge",
    "PatientSex",
    "PatientSize",
    "PatientWeight",
    "EthnicGroup",
    "SmokingStatus",
    "PregnancyStatus",
    "PatientSexNeutered",
]

#: Kept under the Retain Device Identity Option (113109): what made the image, not who is in it.
DEVICE_IDENTITY = ("Manufacturer", "ManufacturerModelName", "SoftwareVersions")

#: Type 2 attributes that must stay present but empty (Annex E action Z).
_EMPTY_KEEP = ("PatientBirthDate", "ReferringPhysicianName", "StudyID", "AccessionNumber")

_FREE_TEXT_VRS = {"LT", "ST", "UT", "UC"}

#: CID 7050 codes (DICOM PS3.16) recorded in DeidentificationMethodCodeSequence.
_CODE_BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
_CODE_MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
_CODE_PATIENT_CHARACTERISTICS = ("113108", "Retain Patient Characteristics Option")
_CODE_DEVICE_IDENTITY = ("113109", "Retain Device Identity Option")
_CODE_CLEAN_PIXELS = ("113101", "Clean Pixel Data Option")


def _hmac_hex(salt: str | bytes, message: str) -> str:
    key = salt.encode() if isinstance(salt, str) else salt
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def study_key(study_instance_uid: str, salt: str | bytes) -> str:
    """Pseudonymous study id for partition keys: ``"s"`` + 15 hex digits of
    HMAC-SHA256(salt, StudyInstanceUID). Raw UIDs and patient ids never become keys."""
    if not salt:
        raise ValueError("salt must not be empty")
    return "s" + _hmac_hex(salt, "study:" + str(study_instance_uid).strip())[:15]


def instance_key(sha256: str, salt: str | bytes) -> str:
    """Pseudonymous id of one DICOM file: ``"i"`` + 15 hex digits of HMAC-SHA256(salt, file
    sha256). Unlike the plain sha256 it cannot be matched against a copy of the original file
    by someone without the salt."""
    if not salt:
        raise ValueError("salt must not be empty")
    return "i" + _hmac_hex(salt, "instance:" + sha256)[:15]


def cine_video_id(sha256: str, salt: str | bytes) -> str:
    """Video id (16 hex digits, like every video partition key) of the cine loop of the DICOM
    file with this sha256: salted, and stable however the MP4 bytes come out of the encoder."""
    if not salt:
        raise ValueError("salt must not be empty")
    return _hmac_hex(salt, "cine:" + sha256)[:16]


def patient_key_for_id(patient_id: str, issuer: str = "") -> str:
    """The patient key of a patient id: ``"id:<issuer>|<patient_id>"``, both trimmed.

    One scheme for every source, so a patients sheet's ``patient_id`` and a DICOM header's
    PatientID (0010,0020) with the same IssuerOfPatientID (0010,0021) get the same key, hence
    the same pseudonym from :meth:`PseudonymMap.patient`. Ids are compared exactly (case and
    leading zeros count): ``"007"`` and ``"7"`` are different patients.
    """
    return f"id:{str(issuer or '').strip()}|{str(patient_id).strip()}"


def patient_key(ds: Dataset) -> str:
    """What identifies the patient in a header: IssuerOfPatientID|PatientID
    (:func:`patient_key_for_id`), else PatientName|PatientBirthDate, else the study (each study
    its own patient)."""
    patient_id = str(ds.get("PatientID", "") or "").strip()
    if patient_id.upper() not in PLACEHOLDERS:
        return patient_key_for_id(patient_id, str(ds.get("IssuerOfPatientID", "") or ""))
    name = str(ds.get("PatientName", "") or "").strip()
    if name.upper() not in PLACEHOLDERS:
        return f"name:{name.upper()}|{str(ds.get('PatientBirthDate', '') or '').strip()}"
    return f"study:{str(ds.get('StudyInstanceUID', '') or '').strip()}"


@dataclass(frozen=True)
class PatientPseudonym:
    """The replacement identity of one patient: ``pseudonym`` (PatientName and PatientID) and
    ``date_offset_days`` (negative: dates move back)."""

    key_hmac: str
    pseudonym: str
    date_offset_days: int


class PseudonymMap:
    """Salted, persistent patient pseudonyms and date offsets (a protected asset).

    Args:
        path: JSON file (created on :meth:`save`; loaded if it exists).
        salt: secret from the caller (e.g. a Dagster ``EnvVar``); never stored or exported.

    Raises:
        ValueError: empty salt, or an existing map file created with a different salt.
    """

    VERSION = 1

    def __init__(self, path: str | Path, salt: str | bytes) -> None:
        if not salt:
            raise ValueError("salt must not be empty")
        self.path = Path(path)
        self._salt = salt
        self._fingerprint = _hmac_hex(salt, "medvid-pseudonym-map")[:16]
        self._patients: dict[str, dict[str, Any]] = {}
        self._dirty = False
        if self.path.exists():
            self._patients = self._load()

    def __repr__(self) -> str:  # never show the salt
        return f"PseudonymMap({str(self.path)!r}, patients={len(self._patients)})"

    def _load(self) -> dict[str, dict[str, Any]]:
        data = json.loads(self.path.read_text())
        if data.get("salt_fingerprint") != self._fingerprint:
            raise ValueError(
                f"{self.path} was created with a different salt; refusing to mix pseudonyms"
            )
        return dict(data.get("patients", {}))

    @property
    def dicognito_seed(self) -> str:
        """Seed for dicognito's UID/name replacement (an HMAC of the salt, not the salt)."""
        return _hmac_hex(self._salt, "dicognito-seed")

    def patient(self, key: str) -> PatientPseudonym:
        """Pseudonym and date offset for a patient key (see :func:`patient_key`)."""
        digest = _hmac_hex(self._salt, "patient:" + key)
        entry = self._patients.get(digest)
        if entry is None:
            span = DATE_SHIFT_MAX_DAYS - DATE_SHIFT_MIN_DAYS + 1
            offset = -(DATE_SHIFT_MIN_DAYS + int(digest[16:32], 16) % span)
            entry = {"pseudonym": "P" + digest[:11].upper(), "date_offset_days": offset}
            self._patients[digest] = entry
            self._dirty = True
        return PatientPseudonym(digest, entry["pseudonym"], int(entry["date_offset_days"]))

    def __len__(self) -> int:
        return len(self._patients)

    def save(self) -> Path:
        """Write the map atomically, merged with entries another process saved meanwhile
        (entries are deterministic, so merging never conflicts)."""
        merged = dict(self._load()) if self.path.exists() else {}
        merged.update(self._patients)
        self._patients = merged
        write_json_atomic(
            self.path,
            {
                "version": self.VERSION,
                "salt_fingerprint": self._fingerprint,
                "patients": merged,
            },
        )
        self._dirty = False
        return self.path


def _code_item(code: tuple[str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodeMeaning = code
    item.CodingSchemeDesignator = "DCM"
    return item


def _remove_free_text(ds: Dataset) -> None:
    for element in list(ds):
        if element.VR == "SQ":
            for item in element.value or []:
                _remove_free_text(item)
        elif element.VR in _FREE_TEXT_VRS:
            del ds[element.tag]


def _remove_overlays_and_curves(ds: Dataset) -> None:
    for element in list(ds):
        group = element.tag.group
        if 0x6000 <= group <= 0x60FF or 0x5000 <= group <= 0x50FF:
            del ds[element.tag]


_VALID_TEMPORAL = {
    "DA": re.compile(r"^\d{8}$"),
    "TM": re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$"),
    "DT": re.compile(r"^\d{4}(\d{2}){0,5}(\.\d{1,6})?([+-]\d{4})?$"),
}


def _clear_malformed_dates(ds: Dataset, notes: list[str]) -> None:
    """Empty DA/TM/DT values that are not dates ('--' in Sonoque exports): they cannot be
    shifted, and an unparsable date is no use to anyone downstream."""
    for element in list(ds):
        if element.VR == "SQ":
            for item in element.value or []:
                _clear_malformed_dates(item, notes)
            continue
        pattern = _VALID_TEMPORAL.get(element.VR)
        if pattern is None or element.value in (None, ""):
            continue
        values = element.value if isinstance(element.value, list | MultiValue) else [element.value]
        cleaned = [
            str(v).replace(".", "") if element.VR == "DA" else str(v).replace(":", "")
            for v in values
        ]
        if not all(pattern.match(v) for v in cleaned):
            notes.append(f"{element.keyword or element.tag}: malformed {element.VR} emptied")
            element.value = ""


def deidentify_dataset(
    ds: Dataset,
    mapping: PseudonymMap,
    *,
    retain_patient_characteristics: bool = False,
    retain_device_identity: bool = True,
) -> tuple[Dataset, PhiValues]:
    """De-identify ``ds`` in place; return it with the PHI it held.

    Args:
        ds: a header (with or without pixel data). Pixel data is not touched: burned-in text is
            handled by :func:`medvid.deid.pixels.redact_pixels`.
        mapping: pseudonyms, date offsets and the UID seed.
        retain_patient_characteristics: keep PatientAge/Sex/Size/Weight (Annex E option 113108);
            off by default as in the Basic Profile.
        retain_device_identity: keep Manufacturer, ManufacturerModelName and software versions
            (they are never patient-identifying and the OCR parser needs the model); the
            DeviceSerialNumber and StationName are removed regardless.

    Raises:
        CorruptMediaError: a value dicognito cannot process (the input is quarantined).

    Returns:
        ``(ds, phi)``; ``phi`` holds the original identifying values for pixel redaction and the
        residual check. It is PHI: keep it in the protected zone.
    """
    phi = PhiValues.from_dataset(ds)
    person = mapping.patient(patient_key(ds))

    ds.remove_private_tags()
    _clear_malformed_dates(ds, [])
    anonymizer = Anonymizer(seed=mapping.dicognito_seed)
    # Dates: our per-patient whole-day offset runs before dicognito's global one.
    anonymizer.add_element_handler(DateTimeAnonymizer(offset_hours=person.date_offset_days * 24))
    try:
        anonymizer.anonymize(ds)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CorruptMediaError(f"header cannot be de-identified: {exc}") from exc

    removals = list(ANNEX_E_REMOVE)
    if not retain_patient_characteristics:
        removals += PATIENT_CHARACTERISTICS
    for keyword in removals:
        if keyword in ds and keyword not in _EMPTY_KEEP:
            delattr(ds, keyword)
    _remove_free_text(ds)
    _remove_overlays_and_curves(ds)
    for keyword in _EMPTY_KEEP:
        if keyword in ds:
            setattr(ds, keyword, "")

    ds.PatientName = person.pseudonym
    ds.PatientID = person.pseudonym
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = list(DEIDENTIFICATION_METHOD)
    codes = [_CODE_BASIC_PROFILE, _CODE_MODIFIED_DATES]
    if retain_patient_characteristics:
        codes.append(_CODE_PATIENT_CHARACTERISTICS)
    if retain_device_identity:
        codes.append(_CODE_DEVICE_IDENTITY)
    else:
        for keyword in DEVICE_IDENTITY:
            if keyword in ds:
                delattr(ds, keyword)
    ds.DeidentificationMethodCodeSequence = Sequence([_code_item(c) for c in codes])
    return ds, phi


def mark_pixels_cleaned(ds: Dataset) -> None:
    """Record that burned-in text was redacted and the residual check passed:
    BurnedInAnnotation = NO and code 113101 (Clean Pixel Data Option) added."""
    ds.BurnedInAnnotation = "NO"
    codes = ds.get("DeidentificationMethodCodeSequence", None) or Sequence()
    if not any(item.get("CodeValue") == _CODE_CLEAN_PIXELS[0] for item in codes):
        codes.append(_code_item(_CODE_CLEAN_PIXELS))
    ds.DeidentificationMethodCodeSequence = codes


_PSEUDONYM = re.compile(r"^P[0-9A-F]{11}$")

#: Every CID 7050 code medvid writes into DeidentificationMethodCodeSequence.
_MEDVID_CODES = frozenset(
    {
        _CODE_BASIC_PROFILE,
        _CODE_MODIFIED_DATES,
        _CODE_PATIENT_CHARACTERISTICS,
        _CODE_DEVICE_IDENTITY,
        _CODE_CLEAN_PIXELS,
    }
)


def _is_medvid_code(item: Dataset) -> bool:
    """True when a code item is exactly one medvid writes (value, meaning, DCM, nothing else)."""
    code = (str(item.get("CodeValue", "")), str(item.get("CodeMeaning", "")))
    return (
        code in _MEDVID_CODES
        and item.get("CodingSchemeDesignator") == "DCM"
        and {e.keyword for e in item} == {"CodeValue", "CodeMeaning", "CodingSchemeDesignator"}
    )


#: Value representations a person's identity can be written in. UIDs (replaced wholesale, so
#: their digits are random and would match a short numeric id by chance), numbers and binary
#: data are not searched.
_SEARCHED_VRS = frozenset(
    {"PN", "LO", "SH", "ST", "LT", "UT", "UC", "CS", "AE", "AS", "DA", "DT", "TM", "UR"}
)


def residual_header_phi(ds: Dataset, phi: PhiValues) -> list[str]:
    """What of a de-identified header still identifies the patient (empty list: it passes).

    Checks that PatientIdentityRemoved is YES, that no private tag is left, and that no text,
    name or date element (:data:`_SEARCHED_VRS`) anywhere in the dataset (sequences included,
    file meta too) holds a value of the original header's PHI
    (:func:`medvid.deid.phi.header_phi_hits`: name parts of 3+ letters, ids, birth date,
    institution, physicians). The device identity elements kept under Annex E
    option 113109 (:data:`DEVICE_IDENTITY`) are not searched: a vendor that also fills
    InstitutionName with its own name ("Philips Healthcare") is not a patient's hospital.
    Nor is what medvid itself writes: the values of DeidentificationMethod (0012,0063) that are
    :data:`DEIDENTIFICATION_METHOD` and the items of DeidentificationMethodCodeSequence
    (0012,0064) that are exactly one of medvid's CID 7050 codes (PS3.16), so a patient called
    "Basic" or "Shift" does not fail the study on medvid's own words; any other value of these
    two elements (left by an earlier tool, or tampered with) is searched like everything else.
    Findings name the element keyword and the reason, never the value, so they can go into
    check metadata.
    """
    findings: list[str] = []
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        findings.append("PatientIdentityRemoved is not YES")

    def visit(dataset: Dataset, where: str) -> None:
        for element in dataset:
            name = element.keyword or str(element.tag)
            if element.tag.is_private:
                findings.append(f"{where}{name}: private tag left")
                continue
            if element.VR == "SQ":
                for index, item in enumerate(element.value or []):
                    if name == "DeidentificationMethodCodeSequence" and _is_medvid_code(item):
                        continue
                    visit(item, f"{where}{name}[{index}].")
                continue
            if element.VR not in _SEARCHED_VRS or element.value is None:
                continue
            values = (
                element.value if isinstance(element.value, list | MultiValue) else [element.value]
            )
            if name == "DeidentificationMethod":
                values = [v for v in values if str(v) not in DEIDENTIFICATION_METHOD]
            text = " ".join(str(v) for v in values)
            if element.keyword in ("PatientName", "PatientID") and _PSEUDONYM.match(text):
                continue  # the pseudonym itself (random hex may contain a short id by chance)
            if element.keyword in DEVICE_IDENTITY:
                continue
            reasons = header_phi_hits(text, phi, min_name_part=3)
            if reasons:
                findings.append(f"{where}{name}: {', '.join(reasons)}")

    visit(ds, "")
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        visit(meta, "file_meta.")
    return findings


def shift_date(value: str, offset_days: int) -> str:
    """Shift a DICOM DA string (YYYYMMDD) by ``offset_days``; '' stays ''."""
    if not value:
        return value
    day = datetime.datetime.strptime(value[:8], "%Y%m%d").date()
    return (day + datetime.timedelta(days=offset_days)).strftime("%Y%m%d")
