"""Display names (file names with PHI-like parts replaced) and the known-identifier matcher."""

from __future__ import annotations

import pandas as pd
import pydicom
import pytest

from medvid.deid import PhiValues
from medvid.deid.names import display_name, known_identifiers
from medvid.deid.phi import IdentifierMatcher


def test_display_name_of_the_issue_example() -> None:
    name = "SMITH_JOHN_5551234_20240215.mp4"
    assert display_name(name, ["smith", "John"]) == "[name]_[name]_[id]_[date].mp4"


def test_display_name_without_known_names_keeps_the_words() -> None:
    assert display_name("SMITH_JOHN_5551234_20240215.mp4") == "SMITH_JOHN_[id]_[date].mp4"


def test_six_digit_runs_are_ids_short_numbers_stay() -> None:
    assert (
        display_name("covid19us_Reg_pat1Image_132943.mpeg") == "covid19us_Reg_pat1Image_[id].mpeg"
    )
    assert display_name("covid19us_Reg_northumbria_1009_vid1.avi") == (
        "covid19us_Reg_northumbria_1009_vid1.avi"
    )


@pytest.mark.parametrize(
    "written",
    [
        "20240215",
        "2024-02-15",
        "2024_2_15",
        "15.02.2024",
        "15-2-2024",
        "02_15_2024",
        "15022024",
        "15.02.24",
        "15FEB2024",
        "15-Feb-24",
        "Feb 15, 2024",
    ],
)
def test_dates_in_common_forms_become_date(written: str) -> None:
    assert display_name(f"scan {written} us.mp4") == "scan [date] us.mp4"


def test_clock_times_become_time_and_versions_stay() -> None:
    assert display_name("clip_14-30-22_v1.10.12.avi") == "clip_[time]_v1.10.12.avi"


def test_known_identifiers_match_glued_and_case_insensitively() -> None:
    assert display_name("Smith1234_doe.MOV", ["SMITH", "DOE", "1234"]) == "[name][id]_[name].MOV"
    assert display_name("Smithson.mp4", ["Smith"]) == "Smithson.mp4"  # not inside a longer word


def test_a_known_id_with_separators_matches_written_either_way() -> None:
    assert display_name("MRN12345_us.mp4", ["MRN-12345"]) == "[id]_us.mp4"
    assert display_name("mrn 12345 us.mp4", ["MRN12345"]) == "[id] us.mp4"


def test_a_known_birth_date_is_a_date_not_an_id() -> None:
    assert display_name("x_19700101.mp4", ["19700101"]) == "x_[date].mp4"


def test_placeholders_are_never_identifiers() -> None:
    assert display_name("NA_unknown.mp4", ["NA", "UNKNOWN"]) == "NA_unknown.mp4"


def test_suffix_is_kept_and_a_numeric_tail_is_no_suffix() -> None:
    assert display_name("15.02.2024") == "[date]"
    assert display_name("a.mpeg") == "a.mpeg"


def test_content_id_variant_adds_eight_hex_digits_before_the_suffix() -> None:
    assert display_name("SMITH_20240215.mp4", ["smith"], content_id="0123456789abcdef") == (
        "[name]_[date]~01234567.mp4"
    )


def test_content_id_variant_refuses_anything_but_a_content_id() -> None:
    with pytest.raises(ValueError, match="16 lower-case hex"):
        display_name("a.mp4", content_id="SMITH_JOHN")


def test_display_name_is_deterministic() -> None:
    name, known = "DOE_JANE_0012345678_2024-02-15.mp4", ["jane", "doe"]
    assert display_name(name, known) == display_name(name, list(reversed(known)))
    assert display_name(name, known) == "[name]_[name]_[id]_[date].mp4"


def test_prebuilt_matcher_gives_the_same_name() -> None:
    matcher = IdentifierMatcher(["smith"], min_chars=2, glued=True)
    assert display_name("SMITH_1.mp4", matcher) == display_name("SMITH_1.mp4", ["smith"])


# --- the matcher's token rule (used on exported text) ------------------------------------------


def test_token_rule_keeps_a_short_id_out_of_hex_numbers_and_decimals() -> None:
    matcher = IdentifierMatcher(["1009"])
    assert matcher.search("video 1009 left")
    assert not matcher.search("3fa1009c0d5e6f70")  # inside a content id
    assert not matcher.search("frame 0010090")  # inside a longer number
    assert not matcher.search("0.1009")  # a decimal
    assert not matcher.search("1009.5")


def test_token_rule_ignores_identifiers_under_three_characters() -> None:
    assert len(IdentifierMatcher(["Li", "7", "NA", "Ann"])) == 1


def test_matcher_reports_kind_and_position() -> None:
    assert IdentifierMatcher(["doe", "MRN-12345"]).spans("Doe; mrn 12345") == [
        (0, 3, "name"),
        (5, 14, "id"),
    ]


# --- known identifiers -----------------------------------------------------------------------


def test_known_identifiers_from_a_sheet_headers_and_file_names() -> None:
    sheet = pd.DataFrame(
        {
            "video": ["a.mp4"],
            "patient_id": ["5551234"],
            "patient_name": ["Smith, John"],
            "dob": ["1970-01-01"],
            "diagnosis": ["covid"],
        }
    )
    ds = pydicom.Dataset()
    ds.PatientName, ds.PatientID = "Doe^Jane", "MRN777"
    assert known_identifiers(
        patients=sheet,
        phi_values=[PhiValues.from_dataset(ds)],
        file_names=["SMITH_1.mp4"],
    ) == [
        "1970-01-01",
        "5551234",
        "DOE",
        "JANE",
        "John",
        "MRN777",
        "SMITH_1",
        "SMITH_1.mp4",
        "Smith",
    ]
