"""Patients sheets de-identified: pseudonyms shared with DICOM, allow-listed attributes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pydicom
import pytest

from medvid.deid import PseudonymMap, deidentify_dataset, patient_key
from medvid.deid.sheets import (
    identifying_column,
    pseudonymize_patients,
    sheet_identifiers,
)

SALT = "test-salt-not-a-secret"


def _sheet(**columns: list[str]) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"video": [f"v{i}.mp4" for i in range(n)], "patient_id": [f"MRN{i}" for i in range(n)]}
    return pd.DataFrame({**base, **columns}, dtype=str)


@pytest.fixture
def pseudonyms(tmp_path: Path) -> PseudonymMap:
    return PseudonymMap(tmp_path / "map.json", SALT)


def test_sheet_patient_gets_the_pseudonym_of_the_dicom_patient_with_that_id(
    pseudonyms: PseudonymMap, shared_data: Path
) -> None:
    ds = pydicom.dcmread(shared_data / "dicom" / "OBXXXX1A.dcm", stop_before_pixels=True)
    ds.PatientID = "MRN12345"
    expected = pseudonyms.patient(patient_key(ds)).pseudonym
    deidentified, _ = deidentify_dataset(ds, pseudonyms)
    table, _ = pseudonymize_patients(
        pd.DataFrame({"video": ["a.mp4"], "patient_id": [" MRN12345 "]}), pseudonyms
    )
    assert table["patient_id"].tolist() == [expected] == [deidentified.PatientID]


def test_one_patient_one_pseudonym_across_sheets(pseudonyms: PseudonymMap) -> None:
    first, _ = pseudonymize_patients(_sheet(diagnosis=["covid", "healthy"]), pseudonyms)
    later = pd.DataFrame({"video": ["c.mp4", "d.mp4"], "patient_id": ["MRN9", "MRN1"]})
    second, report = pseudonymize_patients(later, pseudonyms)
    assert second["patient_id"][1] == first["patient_id"][1]
    assert len({*first["patient_id"], *second["patient_id"]}) == 3
    assert first["patient_id"].str.fullmatch(r"P[0-9A-F]{11}").all()
    assert report.patients == 2


def test_issuer_column_separates_equal_ids_and_is_not_exported(pseudonyms: PseudonymMap) -> None:
    sheet = pd.DataFrame(
        {"video": ["a", "b", "c"], "patient_id": ["7", "7", "7"], "Issuer": ["H1", "H2", "H1"]}
    )
    table, report = pseudonymize_patients(sheet, pseudonyms)
    a, b, c = table["patient_id"]
    assert a == c != b
    assert list(table.columns) == ["video", "patient_id"]
    assert report.dropped_columns == {"Issuer": "issuer of patient_id, used for the pseudonym"}


def test_placeholder_patient_ids_mean_no_patient(pseudonyms: PseudonymMap) -> None:
    sheet = pd.DataFrame({"video": ["a", "b"], "patient_id": ["N/A", "unknown"]})
    table, report = pseudonymize_patients(sheet, pseudonyms)
    assert table["patient_id"].tolist() == [None, None]
    assert (report.patients, report.rows_without_patient) == (0, 2)


def test_only_allow_listed_attributes_are_kept(pseudonyms: PseudonymMap) -> None:
    sheet = _sheet(
        diagnosis=["covid", "healthy"],
        cap_score=["3", "0"],
        patient_name=["Smith, John", "Doe, Jane"],
        dob=["1970-01-01", "1980-02-02"],
        notes=["seen twice", "ok"],
        ward=["4B", "ICU"],
    )
    table, report = pseudonymize_patients(sheet, pseudonyms)
    assert list(table.columns) == ["video", "patient_id", "diagnosis", "cap_score"]
    assert table["diagnosis"].tolist() == ["covid", "healthy"]
    assert report.dropped_columns == {
        "patient_name": "looks like a name",
        "dob": "looks like a date",
        "notes": "looks like free text",
        "ward": "not allow-listed",
    }


def test_an_allow_listed_word_does_not_rescue_an_identifying_column(
    pseudonyms: PseudonymMap,
) -> None:
    table, report = pseudonymize_patients(_sheet(diagnosis_date=["2024-01-01"]), pseudonyms)
    assert "diagnosis_date" not in table.columns
    assert report.dropped_columns == {"diagnosis_date": "looks like a date"}


def test_configured_attributes_replace_the_default_list(pseudonyms: PseudonymMap) -> None:
    sheet = _sheet(diagnosis=["covid"], sex=["F"])
    table, report = pseudonymize_patients(sheet, pseudonyms, attributes=["Sex"])
    assert list(table.columns) == ["video", "patient_id", "sex"]
    assert report.dropped_columns == {"diagnosis": "not allow-listed"}


def test_phi_like_values_of_kept_columns_are_dropped_and_counted(pseudonyms: PseudonymMap) -> None:
    sheet = _sheet(
        patient_name=["Smith, John", "Doe, Jane", "Roe, Rick", "Poe, Al", "Li, Bo", "Ng, Ty"],
        diagnosis=[
            "covid",
            "covid since 15/02/2024",
            "see Smith",
            "MRN: 5551234",
            "x" * 65,
            "mail a@b.org",
        ],
    )
    table, report = pseudonymize_patients(sheet, pseudonyms)
    assert table["diagnosis"].tolist() == ["covid", None, None, None, None, None]
    assert report.dropped_values == {
        "diagnosis": {
            "date": 1,
            "known identifier": 1,
            "id field": 1,
            "id-like number": 1,
            "free text over 64 characters": 1,
            "e-mail address": 1,
        }
    }


def test_identifiers_from_the_caller_drop_values_too(pseudonyms: PseudonymMap) -> None:
    table, _ = pseudonymize_patients(
        _sheet(diagnosis=["Springfield case"]), pseudonyms, known_identifiers=["SPRINGFIELD"]
    )
    assert table["diagnosis"].tolist() == [None]


def test_report_never_holds_a_value(pseudonyms: PseudonymMap) -> None:
    sheet = _sheet(patient_name=["Smith, John"], diagnosis=["see Smith 5551234"])
    _, report = pseudonymize_patients(sheet, pseudonyms)
    text = repr(report.as_dict()) + "\n".join(report.warnings())
    for value in ("Smith", "John", "MRN0", "5551234", "v0.mp4"):
        assert value not in text
    assert report.warnings() == [
        "column 'patient_name' dropped: looks like a name",
        "column 'diagnosis': values dropped (1 id-like number, 1 known identifier)",
    ]


def test_a_table_without_patient_id_is_a_programming_error(pseudonyms: PseudonymMap) -> None:
    with pytest.raises(ValueError, match="patient_id"):
        pseudonymize_patients(pd.DataFrame({"video": ["a"]}), pseudonyms)


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        ("Patient Name", "name"),
        ("patientname", "name"),
        ("referring_physician", "name"),
        ("DateOfBirth", "date"),
        ("study_date", "date"),
        ("case_no", "id"),
        ("NHS number", "id"),
        ("e-mail", "contact"),
        ("Comments", "free text"),
        ("cap_score", None),
        ("dobutamine_result", None),
        ("free_fluid", None),
        ("dr_grade", None),
    ],
)
def test_identifying_column_names(column: str, kind: str | None) -> None:
    assert identifying_column(column) == kind


def test_sheet_identifiers_split_names_and_keep_ids_whole() -> None:
    sheet = _sheet(full_name=["Jane Doe"], birth_date=["01/02/1970"], diagnosis=["covid"])
    assert sheet_identifiers(sheet) == ["01/02/1970", "Doe", "Jane", "MRN0"]
