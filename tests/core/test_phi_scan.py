"""The export's PHI scan: every text, table and name, and OCR of a sample of the images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from medvid.deid import PseudonymMap, known_identifiers, pseudonymize_patients
from medvid.export import ExportConfig, write_training_dataset
from medvid.export.images import IMAGE_COLUMNS
from medvid.export.phi_scan import scan_export
from medvid.ids import frame_id
from medvid.images import write_png
from medvid.ocr import OcrBox
from tests.core.test_export import (  # the helpers of the export tests
    VA,
    VB,
    VC,
    VD,
    VE,
    _export,
    _frame_table,
    _label_table,
    _video_table,
)
from tests.core.test_export import frames_root as export_frames_root

frames_root = export_frames_root  # the export tests' frames, as this module's fixture

#: What medvid knows of the export tests' patients (the videos table holds pseudonyms only).
IDENTIFIERS = ["Smith", "John", "MRN5551234", "19700101", "SMITH_JOHN_5551234_20240215.mp4"]


@pytest.fixture
def export(tmp_path: Path, frames_root: Path) -> Path:
    _export(tmp_path / "ds", frames_root, positive_only_imagefolder=False)
    return tmp_path / "ds"


def _export_with(tmp_path: Path, frames_root: Path, **videos: list[object]) -> Path:
    frames = _frame_table()
    write_training_dataset(
        tmp_path / "ds",
        frames=frames,
        labels=_label_table(frames),
        videos=_video_table().assign(**videos),
        frames_root=frames_root,
        config=ExportConfig(dataset_name="lung"),
        medvid_version="0.1.0",
        allow_unpseudonymized_patient_ids=True,
    )
    return tmp_path / "ds"


class RecordingOcr:
    """Reads the same text in every image and records the shape of each image it was given."""

    name = "recording"

    def __init__(self, text: str) -> None:
        self.text = text
        self.shapes: list[tuple[int, ...]] = []

    def read(self, image: np.ndarray) -> list[OcrBox]:
        self.shapes.append(image.shape)
        return [OcrBox(1, 2, 3, 4, self.text, 0.9)]


# --- medvid's own writing ------------------------------------------------------------------------


def test_a_clean_export_has_no_findings(export: Path) -> None:
    assert scan_export(export, identifiers=IDENTIFIERS) == []


def test_patients_named_like_medvid_words_or_labels_cause_no_alarm(export: Path) -> None:
    names = ["Train", "Frame", "Video", "Lines", "Effusion", "Sheet", "Negative", "Images"]
    assert scan_export(export, identifiers=names) == []


def test_short_ids_do_not_match_inside_content_ids_frame_ids_or_numbers(export: Path) -> None:
    ids = ["aaaa", "0000010", "0000025", "bbbbbbbb", "1000", "0.2"]
    assert scan_export(export, identifiers=ids) == []


def test_shifted_study_date_and_geometry_of_images_csv_are_medvid_s(tmp_path: Path) -> None:
    row = dict.fromkeys(IMAGE_COLUMNS, "")
    row.update(StudyDate="20230415", width="640", text_device_model="20230415")
    with (tmp_path / "images.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=IMAGE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerow(row)
    assert scan_export(tmp_path, identifiers=[]) == [
        "images.csv column 'text_device_model': id-like number at row 2"
    ]


# --- what it finds -------------------------------------------------------------------------------


def test_a_raw_patient_id_is_found_in_csv_and_json_without_showing_it(
    tmp_path: Path, frames_root: Path
) -> None:
    patients = ["MRN5551234", "MRN5551234", None, "P2ABCDEF0123", None]
    out = _export_with(tmp_path, frames_root, patient_id=patients)
    findings = scan_export(out, identifiers=IDENTIFIERS)
    assert findings == [
        "dataset.json $.videos[*].patient_id: known identifier at $.videos[0].patient_id, "
        "$.videos[1].patient_id",
        "dataset.json $.videos[*].patient_id: id-like number at $.videos[0].patient_id, "
        "$.videos[1].patient_id",
        "splits.csv column 'patient_id': known identifier at row 2, row 3",
        "splits.csv column 'patient_id': id-like number at row 2, row 3",
    ]
    assert not any("5551234" in f for f in findings)


def test_dates_and_names_in_attributes_are_found(tmp_path: Path, frames_root: Path) -> None:
    diagnosis = ["covid, seen by Smith", "covid", None, "h1n1 since 15/02/2024", "healthy"]
    out = _export_with(tmp_path, frames_root, diagnosis=diagnosis)
    assert scan_export(out, identifiers=IDENTIFIERS) == [
        "dataset.json $.videos[*].attributes.diagnosis: known identifier at "
        "$.videos[0].attributes.diagnosis",
        "dataset.json $.videos[*].attributes.diagnosis: date at $.videos[3].attributes.diagnosis",
        "splits.csv column 'diagnosis': known identifier at row 2",
        "splits.csv column 'diagnosis': date at row 5",
    ]


def test_other_text_files_are_read_line_by_line(export: Path) -> None:
    (export / "README.md").write_text("# lung\nPatient: Smith, MRN 5551234\n")
    assert scan_export(export, identifiers=IDENTIFIERS) == [
        "README.md: known identifier at line 2",
        "README.md: name field at line 2",
        "README.md: id-like number at line 2",
    ]


def test_a_json_key_that_is_a_date_is_found_and_masked(export: Path) -> None:
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["sampling_config"] = {"2024-02-15": {"every_nth_frame": 5}}
    (export / "manifest.json").write_text(json.dumps(manifest))
    assert scan_export(export, identifiers=IDENTIFIERS) == [
        "manifest.json $.sampling_config.<key>: date at a key",
        "manifest.json $.sampling_config.<key>: id-like number at a key",
    ]


def test_file_and_folder_names_are_scanned_without_showing_them(export: Path) -> None:
    folder = export / "imagefolder" / "train" / "Smith"
    folder.mkdir()
    (folder / "20240215.txt").write_text("ok\n")
    assert scan_export(export, identifiers=IDENTIFIERS) == [
        "imagefolder/train/<name>: known identifier at a file or folder name",
        "imagefolder/train/<name>/<name>: id-like number at a file or folder name",
    ]


def test_a_file_that_is_neither_text_nor_image_is_a_finding(export: Path) -> None:
    (export / "extra.bin").write_bytes(b"\xff\xfe\x00\x81")
    assert scan_export(export, identifiers=[]) == [
        "extra.bin: neither text nor an image, cannot be scanned at the whole file"
    ]


# --- OCR -----------------------------------------------------------------------------------------


def test_ocr_reads_a_seeded_sample_of_distinct_images(export: Path) -> None:
    engine = RecordingOcr("nothing to see")
    assert scan_export(export, identifiers=IDENTIFIERS, ocr_engine=engine, ocr_sample=5) == []
    assert len(engine.shapes) == 5
    again = RecordingOcr("DOE 15/02/2024")
    findings = scan_export(export, identifiers=["doe"], ocr_engine=again, ocr_sample=5, seed=0)
    assert len(findings) == 10  # 5 images x (identifier, date)
    assert all(f.startswith("frames/video_") for f in findings)  # imagefolder/ is the same files
    assert findings[:2] == [
        f"{findings[0].split(' (OCR)')[0]} (OCR): known identifier at x=1 y=2 w=3 h=4",
        f"{findings[0].split(' (OCR)')[0]} (OCR): date at x=1 y=2 w=3 h=4",
    ]
    assert findings == scan_export(export, identifiers=["doe"], ocr_engine=again, ocr_sample=5)


def test_without_an_engine_no_image_is_read(export: Path) -> None:
    assert scan_export(export, identifiers=IDENTIFIERS, ocr_engine=None) == []


def test_real_ocr_finds_a_name_and_date_burned_into_an_exported_frame(tmp_path: Path) -> None:
    from medvid.ocr import RapidOcrEngine

    image = np.zeros((120, 480, 3), np.uint8)
    cv2.putText(image, "SMITH 15/02/2024", (10, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255,) * 3, 2)
    relative = f"frames/video_{VA}/frame_{frame_id(VA, 0)}.png"
    write_png(image, tmp_path / relative)
    findings = scan_export(tmp_path, identifiers=IDENTIFIERS, ocr_engine=RapidOcrEngine())
    assert [f.split(" at ")[0] for f in findings] == [
        f"{relative} (OCR): known identifier",
        f"{relative} (OCR): date",
    ]


def test_scan_of_a_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        scan_export(tmp_path / "nope", identifiers=[])


# --- the case, end to end ----------------------------------------------------------------


def test_a_patients_sheet_with_mrns_names_and_birth_dates_leaves_nothing_in_the_export(
    tmp_path: Path, frames_root: Path
) -> None:
    names = {VA: "SMITH_JOHN_5551234_20240215.mp4", VB: "SMITH_JOHN_5551234_20240301.mp4"}
    names |= {VC: "=HYPERLINK(x).mp4", VD: "DOE_JANE_7770001.mp4", VE: "ROE_RICK.mp4"}
    sheet = pd.DataFrame(
        {
            "video": list(names.values()),
            "patient_id": ["5551234", "5551234", "N/A", "7770001", '=HYPERLINK("x")'],
            "patient_name": ["Smith, John", "Smith, John", "", "Doe, Jane", "Roe, Rick"],
            "dob": ["1970-01-01", "1970-01-01", "", "1980-02-02", "1990-03-03"],
            "diagnosis": ["covid", "covid", "", "seen 15/02/2024 by Dr Doe", "healthy"],
        },
        dtype=str,
    )
    patients, report = pseudonymize_patients(sheet, PseudonymMap(tmp_path / "map.json", "s"))
    video_of = {name: video_id for video_id, name in names.items()}
    videos = patients.assign(video_id=patients["video"].map(video_of)).drop(columns="video")
    frames = _frame_table()
    write_training_dataset(
        tmp_path / "ds",
        frames=frames,
        labels=_label_table(frames),
        videos=videos.assign(video_hash=videos["video_id"].str.repeat(4)),
        frames_root=frames_root,
        config=ExportConfig(dataset_name="lung"),
        medvid_version="0.1.0",
    )
    identifiers = known_identifiers(patients=sheet, file_names=names.values())
    assert scan_export(tmp_path / "ds", identifiers=identifiers) == []
    assert report.dropped_columns == {
        "patient_name": "looks like a name",
        "dob": "looks like a date",
    }
    assert report.dropped_values == {"diagnosis": {"date": 1, "known identifier": 1}}
