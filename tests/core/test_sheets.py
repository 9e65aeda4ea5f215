"""Labels and patients sheets, and frame labels from the time ranges of a labels sheet."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from medvid.errors import SheetError
from medvid.ids import frame_id
from medvid.labels.schema import (
    FRAME_LABELS_SCHEMA,
    LabelSchema,
    UnknownLabelError,
    empty_frame_labels,
)
from medvid.labels.sheets import (
    labels_from_ranges,
    read_labels_sheet,
    read_patients_sheet,
    sheet_kind,
    validate_label_name,
)

VIDEO_ID = "0123456789abcdef"
CREATED = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)


def _write(tmp_path: Path, text: str, name: str = "sheet.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _frames(frame_numbers: list[int], fps: float = 25.0) -> pd.DataFrame:
    """Frames of one video as the frame stage writes them (timestamp = frame_number / fps)."""
    return pd.DataFrame(
        {
            "frame_id": [frame_id(VIDEO_ID, n) for n in frame_numbers],
            "video_id": VIDEO_ID,
            "frame_number": pd.Series(frame_numbers, dtype="int64"),
            "frame_timestamp": [n / fps for n in frame_numbers],
        }
    )


# --- sheet_kind ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("video,start_s,end_s,label", "labels"),
        (" Video , START_S,end_s,label,comment", "labels"),
        ("video,patient_id,cancer_type,cap_score", "patients"),
        ("video,start_frame,end_frame,label", "segments"),
        ("video,start_s,end_s,label,value", "segments"),
        ("video,start_frame,end_frame,label,value", "segments"),
        ("name,age", None),
        ("video,start_s,label", None),
    ],
)
def test_sheet_kind_is_read_from_the_header(tmp_path: Path, header: str, kind: str | None) -> None:
    assert sheet_kind(_write(tmp_path, header + "\n")) == kind


def test_sheet_kind_of_a_binary_file_is_none(tmp_path: Path) -> None:
    path = tmp_path / "frame.csv"
    path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01")
    assert sheet_kind(path) is None


def test_sheet_kind_of_an_empty_file_is_none(tmp_path: Path) -> None:
    assert sheet_kind(_write(tmp_path, "")) is None


# --- read_labels_sheet ---------------------------------------------------------------------------


def test_read_labels_sheet_trims_and_types_the_rows(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "\ufeffVideo, start_s ,end_s,label,comment\n"
        " scan_01.mp4 ,1.5, 3 , b_lines ,first\n"
        ",,,,\n"
        "scan_02.mp4,0,0,effusion,\n",
    )
    sheet = read_labels_sheet(path)
    assert list(sheet.columns) == ["video", "start_s", "end_s", "label"]
    assert sheet["video"].tolist() == ["scan_01.mp4", "scan_02.mp4"]
    assert sheet["start_s"].tolist() == [1.5, 0.0]
    assert sheet["end_s"].tolist() == [3.0, 0.0]
    assert sheet["label"].tolist() == ["b_lines", "effusion"]
    assert sheet["start_s"].dtype == "float64" and sheet["end_s"].dtype == "float64"


def test_read_labels_sheet_accepts_semicolons(tmp_path: Path) -> None:
    sheet = read_labels_sheet(_write(tmp_path, "video;start_s;end_s;label\nv1;1.0;2.0;x\n"))
    assert sheet.iloc[0].tolist() == ["v1", 1.0, 2.0, "x"]


def test_read_labels_sheet_missing_column_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "video,start_s,label\nv1,1,x\n")
    with pytest.raises(SheetError, match="missing column\\(s\\) end_s"):
        read_labels_sheet(path)


def test_read_labels_sheet_start_after_end_names_the_row(tmp_path: Path) -> None:
    path = _write(tmp_path, "video,start_s,end_s,label\nv1,1,2,x\nv1,5,4,x\n")
    with pytest.raises(SheetError, match="start_s greater than end_s in row 3$"):
        read_labels_sheet(path)


def test_read_labels_sheet_non_numeric_time_names_the_rows(tmp_path: Path) -> None:
    path = _write(tmp_path, "video,start_s,end_s,label\nv1,1:30,2,x\nv1,1,2,x\nv1,1,nan,x\n")
    with pytest.raises(SheetError, match="not a number of seconds .* in rows 2, 4"):
        read_labels_sheet(path)


def test_read_labels_sheet_negative_time_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "video,start_s,end_s,label\nv1,-1,2,x\n")
    with pytest.raises(SheetError, match="row 2"):
        read_labels_sheet(path)


def test_read_labels_sheet_empty_label_names_the_row(tmp_path: Path) -> None:
    path = _write(tmp_path, "video,start_s,end_s,label\nv1,1,2,x\nv1,1,2,  \n")
    with pytest.raises(SheetError, match="empty label in row 3"):
        read_labels_sheet(path)


def test_read_labels_sheet_error_is_a_medvid_input_error(tmp_path: Path) -> None:
    from medvid.errors import MedvidInputError

    path = _write(tmp_path, "video,start_s,end_s,label\nv1,x,2,a\n")
    with pytest.raises(MedvidInputError) as info:
        read_labels_sheet(path)
    assert info.value.reason.startswith("sheet.csv: ")


def test_read_labels_sheet_of_a_non_utf8_file_raises_sheet_error(tmp_path: Path) -> None:
    path = tmp_path / "sheet.csv"
    path.write_bytes("video,start_s,end_s,label\nPatient_Müller.mp4,1,2,x\n".encode("latin-1"))
    with pytest.raises(SheetError, match="not UTF-8"):
        read_labels_sheet(path)


def test_read_labels_sheet_with_only_a_header_is_empty(tmp_path: Path) -> None:
    sheet = read_labels_sheet(_write(tmp_path, "video,start_s,end_s,label\n"))
    assert sheet.empty and list(sheet.columns) == ["video", "start_s", "end_s", "label"]


# --- read_patients_sheet -------------------------------------------------------------------------


def test_read_patients_sheet_keeps_attributes_as_text(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "cancer_type,video,patient_id,cap_score\n"
        "PDAC,scan_01.mp4,007,250\n"
        "PDAC,scan_02.mp4,007,250\n"
        "PDAC,scan_02.mp4,007,250\n"
        ",scan_03.mp4,012,\n",
    )
    sheet = read_patients_sheet(path)
    assert list(sheet.columns) == ["video", "patient_id", "cancer_type", "cap_score"]
    assert sheet.values.tolist() == [
        ["scan_01.mp4", "007", "PDAC", "250"],
        ["scan_02.mp4", "007", "PDAC", "250"],
        ["scan_03.mp4", "012", "", ""],
    ]


def test_read_patients_sheet_video_with_two_patients_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "video,patient_id\nscan_01.mp4,P1\nscan_02.mp4,P2\nscan_01.mp4,P3\n")
    with pytest.raises(
        SheetError, match="'scan_01.mp4' has patient 'P1' in row 2 and 'P3' in row 4"
    ):
        read_patients_sheet(path)


def test_read_patients_sheet_missing_patient_column_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "video,patient\nscan_01.mp4,P1\n")
    with pytest.raises(SheetError, match="missing column\\(s\\) patient_id"):
        read_patients_sheet(path)


def test_read_patients_sheet_empty_patient_id_names_the_row(tmp_path: Path) -> None:
    path = _write(tmp_path, "video,patient_id\nscan_01.mp4,P1\nscan_02.mp4,\n")
    with pytest.raises(SheetError, match="empty patient_id in row 3"):
        read_patients_sheet(path)


# --- labels_from_ranges --------------------------------------------------------------------------


def test_labels_from_ranges_marks_frames_inside_the_inclusive_range() -> None:
    frames = _frames(list(range(0, 50, 5)))  # t = 0.0, 0.2, ..., 1.8 s
    ranges = pd.DataFrame({"video": "v", "start_s": [0.4], "end_s": [1.0], "label": ["b_lines"]})
    table = labels_from_ranges(
        frames, ranges, schema=LabelSchema.from_names(["b_lines"]), created_at=CREATED
    )
    df = table.to_pandas()
    positives = df.loc[df["value"], "frame_number"].tolist()
    assert positives == [10, 15, 20, 25]  # 0.4 s and 1.0 s are both inside
    assert df.loc[~df["value"], "frame_number"].tolist() == [0, 5, 30, 35, 40, 45]


def test_labels_from_ranges_tolerates_float_error_at_the_boundary() -> None:
    frames = _frames([3])  # t = 3 / 25 = 0.12 s; a start 0.1 µs later still includes it
    ranges = pd.DataFrame({"start_s": [0.1 + 0.02 + 1e-7], "end_s": [0.5], "label": ["x"]})
    schema = LabelSchema.from_names(["x"])
    table = labels_from_ranges(frames, ranges, schema=schema, created_at=CREATED)
    assert table["value"].to_pylist() == [True]
    ranges_after = ranges.assign(start_s=[0.12 + 2e-6])
    table = labels_from_ranges(frames, ranges_after, schema=schema, created_at=CREATED)
    assert table["value"].to_pylist() == [False]


def test_labels_from_ranges_gives_negatives_only_for_labels_the_sheet_uses() -> None:
    frames = _frames([0, 25, 50])
    ranges = pd.DataFrame(
        {"start_s": [0.9, 1.9], "end_s": [1.1, 2.5], "label": ["effusion", "effusion"]}
    )
    schema = LabelSchema.from_names(["b_lines", "effusion", "consolidation"])
    df = labels_from_ranges(frames, ranges, schema=schema, created_at=CREATED).to_pandas()
    assert set(df["label_name"]) == {"effusion"}
    assert df["value"].tolist() == [False, True, True]


def test_labels_from_ranges_rows_are_sorted_and_carry_provenance() -> None:
    frames = _frames([10, 0])
    ranges = pd.DataFrame(
        {"start_s": [0.0, 0.3], "end_s": [0.1, 0.5], "label": ["pleura", "a_lines"]}
    )
    schema = LabelSchema.from_names(["pleura", "a_lines"])  # a_lines=0, pleura=1
    table = labels_from_ranges(frames, ranges, schema=schema, annotator="dr_x", created_at=CREATED)
    assert table.schema == FRAME_LABELS_SCHEMA
    df = table.to_pandas()
    assert list(zip(df["frame_number"], df["label_id"], df["value"], strict=True)) == [
        (0, 0, False),
        (0, 1, True),
        (10, 0, True),
        (10, 1, False),
    ]
    assert df["frame_id"].tolist()[0] == f"{VIDEO_ID}-0000000"
    assert set(df["source"]) == {"sheet"} and set(df["annotator"]) == {"dr_x"}
    assert df["confidence"].tolist() == [1.0] * 4 and df["reviewed"].all()
    assert df["float_value"].isna().all() and df["reviewer"].isna().all()
    assert set(df["date_created"]) == {pd.Timestamp(CREATED)}
    assert set(df["date_modified"]) == {pd.Timestamp(CREATED)}


def test_labels_from_ranges_unknown_label_is_an_input_error() -> None:
    ranges = pd.DataFrame({"start_s": [0.0], "end_s": [1.0], "label": ["tumour"]})
    with pytest.raises(UnknownLabelError, match="'tumour' is not in the project's label schema"):
        labels_from_ranges(
            _frames([0]), ranges, schema=LabelSchema.from_names(["b_lines"]), created_at=CREATED
        )


def test_labels_from_ranges_without_ranges_is_empty() -> None:
    ranges = pd.DataFrame({"start_s": [], "end_s": [], "label": []})
    table = labels_from_ranges(
        _frames([0, 1]), ranges, schema=LabelSchema.from_names(["x"]), created_at=CREATED
    )
    assert table.equals(empty_frame_labels())


def test_labels_from_ranges_rejects_a_naive_created_at() -> None:
    ranges = pd.DataFrame({"start_s": [0.0], "end_s": [1.0], "label": ["x"]})
    with pytest.raises(ValueError, match="timezone-aware"):
        labels_from_ranges(
            _frames([0]),
            ranges,
            schema=LabelSchema.from_names(["x"]),
            created_at=datetime(2024, 1, 1),
        )


# --- LabelSchema ---------------------------------------------------------------------------------


def test_label_schema_from_names_sorts_and_numbers_from_zero() -> None:
    schema = LabelSchema.from_names(["pleura", "a_lines", "b_lines", "a_lines"])
    assert schema.to_dict() == {"a_lines": 0, "b_lines": 1, "pleura": 2}
    assert schema.id_of("pleura") == 2 and schema.name_of(1) == "b_lines"


def test_label_schema_extend_keeps_existing_ids() -> None:
    schema = LabelSchema.from_names(["pleura", "b_lines"]).extend(["a_lines", "pleura"])
    assert schema.to_dict() == {"b_lines": 0, "pleura": 1, "a_lines": 2}


def test_label_schema_rejects_shared_ids() -> None:
    with pytest.raises(ValueError, match="share id 0"):
        LabelSchema({"a": 0, "b": 0})


# --- label names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("=cmd|' /C calc'!A0", "starts with '=': a spreadsheet would run it as a formula"),
        ("@SUM(1)", "starts with '@'"),
        ("-ve", "starts with '-'"),
        ("+ve", "starts with '+'"),
        ("b\x00lines", "control or invisible formatting character"),
        ("b\u200blines", "control or invisible formatting character"),
        ("lines\tleft", "control or invisible formatting character"),
        ("../etc", "path separator"),
        ("a\\b", "path separator"),
        ("..", "not a usable folder name"),
        ("con", "Windows device name"),
        ("NUL.txt", "Windows device name"),
        ("x" * 256, "longer than 255 characters"),
        ("  ", "empty label name"),
    ],
)
def test_validate_label_name_refuses_unsafe_names(name: str, reason: str) -> None:
    with pytest.raises(SheetError, match=re.escape(reason)):
        validate_label_name(name)


@pytest.mark.parametrize("name", ["b_lines", "pleural effusion", "A-lines", "grade 2+", "négatif"])
def test_validate_label_name_returns_safe_names_trimmed(name: str) -> None:
    assert validate_label_name(f" {name} ") == name


def test_a_formula_label_quarantines_the_labels_sheet_naming_the_row(tmp_path: Path) -> None:
    path = _write(tmp_path, "video,start_s,end_s,label\na.mp4,0,1,b_lines\na.mp4,1,2,=1+1\n")
    with pytest.raises(SheetError) as raised:
        read_labels_sheet(path)
    assert raised.value.reason == (
        "sheet.csv: label '=1+1' starts with '=': a spreadsheet would run it as a formula in row 3"
    )
