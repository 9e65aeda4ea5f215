"""Every kind of bad input seen so far, mixed with good files in one landing folder: each good
file goes through, each bad one is quarantined with its reason, the run succeeds, and a second
run has nothing to do."""

import shutil
import zipfile

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medvid.quarantine import quarantine_records
from medvid_resources import LocalMediaStore
from tests.faults.conftest import copy_landing, run_medvid


def palette_two_frames(path) -> None:
    """A two-frame PALETTE COLOR image with no FrameTime, CineRate or
    RecommendedDisplayFrameRate (as some scanners save a pair of frames)."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = "US", "Roe^Richard", "ID77"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 64, 80, 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "PALETTE COLOR"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    lut = np.arange(256, dtype=np.uint16) * 257
    for colour in ("Red", "Green", "Blue"):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", lut.tobytes())
    ds.PixelData = np.tile(np.arange(80, dtype=np.uint8), (2, 64, 1)).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, small_landing, shared_data):
    root = tmp_path_factory.mktemp("mixed")
    landing = copy_landing(small_landing, root / "landing")
    outside = root / "outside.mp4"
    shutil.copyfile(landing / "healthy.mp4", outside)
    (landing / "link_outside.mp4").symlink_to(outside)
    (landing / "empty.mp4").write_bytes(b"")
    (landing / "notes.mp4").write_text("these are my notes, not a video\n" * 40)
    bad_syntax = pydicom.dcmread(shared_data / "dicom" / "US1_J2KR.dcm")
    bad_syntax.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7"
    bad_syntax.SOPInstanceUID = generate_uid()
    bad_syntax.save_as(landing / "unknown_syntax.dcm")
    palette_two_frames(landing / "palette_pair.dcm")
    deepest = root / "inner.zip"
    with zipfile.ZipFile(deepest, "w") as archive:
        archive.write(shared_data / "dicom" / "OBXXXX1A.dcm", "IMG0001")
    for level in range(3):
        wrapped = root / f"deep{level}.zip"
        with zipfile.ZipFile(wrapped, "w") as archive:
            archive.write(deepest, deepest.name)
        deepest = wrapped
    shutil.copyfile(deepest, landing / "too_deep.zip")
    (landing / "more_labels.csv").write_text(
        "video,start_s,end_s,label\nnot_arrived_yet.mp4,0,1,b_lines\nhealthy.mp4,0,1,a_lines\n"
    )
    home = root / "home"
    first = run_medvid(landing, home)
    second = run_medvid(landing, home)
    return home, first, second


def test_the_run_succeeds_and_a_second_run_has_nothing_to_do(mixed):
    _, (code, output), (again, second) = mixed
    assert code == 0, output
    assert again == 0, second
    assert "runs:         0" in second


def test_each_bad_input_is_quarantined_with_its_reason(mixed):
    home, _, _ = mixed
    reasons = {
        r.file: (r.stage, r.reason) for r in quarantine_records(LocalMediaStore(root=str(home)))
    }
    assert reasons["empty.mp4"] == ("intake", "empty file (0 bytes)")
    assert reasons["link_outside.mp4"][1].startswith("the file is a link to a place outside")
    assert reasons["notes.mp4"][0] in {"video_metadata", "raw_videos"}
    assert reasons["unknown_syntax.dcm"][0] == "dicom_registration"
    assert "not a transfer syntax" in reasons["unknown_syntax.dcm"][1]
    assert reasons["too_deep.zip!inner.zip"] == (  # the 4th level: zip > zip > zip > zip
        "dicom_registration",
        "zip nested more than 3 levels deep",
    )
    assert len(reasons) == 5, reasons


def test_each_good_input_reaches_the_export(mixed):
    home, (_, output), _ = mixed
    summary = output[output.rfind("\nruns:") :]
    # two clips, the palette pair and notes.mp4 (registered as a video, then found unreadable)
    assert "videos:       4 (4 new this run, 1 quarantined)" in summary, summary
    assert "studies:      2 (2 new this run)" in output  # us1 and the palette pair
    annotations = (home / "exports" / "default" / "annotations.csv").read_text()
    assert "b_lines" in annotations and "a_lines" in annotations


def test_rows_naming_unknown_videos_are_reported_not_counted(mixed):
    _, (_, output), _ = mixed
    assert "sheet rows naming videos not seen yet: 1 (kept)" in output


def test_the_summary_tells_unreadable_inputs_from_failed_deidentification(mixed):
    _, (_, output), _ = mixed
    assert "NOT EXPORTED" not in output
    assert "quarantined:  5 (unreadable or unsupported inputs)" in output
