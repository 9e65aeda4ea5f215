"""The DICOM stage on every file of ../shared/data/dicom, the cine-loop handover to the video
path, bad inputs, and the residual-PHI gate."""

import json
import os
import shutil
import zipfile

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
import pytest

from medvid.catalog.keys import Tables, table_key
from medvid.deid import study_key
from medvid.deid.store import study_deidentified, video_deidentified
from medvid.dicom.registration import read_study_index, registered_studies
from medvid.images import read_rgb
from medvid.intake.ledger import read_ledger_entry
from medvid.ocr import OcrBox
from medvid.quarantine import quarantine_records
from medvid.store import read_json
from medvid_resources.ocr import OcrEngineResource
from tests.core.dicom_fixtures import FAKE_PATIENT, fake_patient_cine, fake_patient_image
from tests.stages.conftest import Home
from tests.stages.label_pipeline import LIGHT_TEXT

SALT = "test-salt-not-a-secret"  # the one the medvid_home fixture sets


def uid_of(path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def test_intake_keys_studies_pseudonymously_and_unzips_archives(medvid_home, shared_data):
    source, landing = shared_data / "dicom", medvid_home.landing
    with zipfile.ZipFile(landing / "study.zip", "w") as archive:
        archive.write(source / "OBXXXX1A.dcm", "PATIENT/IMG0001")  # no extension: by content
        archive.write(source / "OBXXXX1A_rle.dcm", "PATIENT/IMG0002")
        archive.writestr("PATIENT/readme.txt", "not an image")
    shutil.copyfile(source / "US1_J2KR.dcm", landing / "us1.dcm")
    medvid_home.run("intake")
    expected = sorted(
        {study_key(uid_of(source / n), SALT) for n in ("OBXXXX1A.dcm", "US1_J2KR.dcm")}
    )
    assert medvid_home.studies() == expected
    for key in expected:  # "s" + 15 hex digits: neither a UID nor a patient id
        assert key.startswith("s") and len(key) == 16 and "." not in key
    ob = study_key(uid_of(source / "OBXXXX1A.dcm"), SALT)
    names = sorted(i["name"] for i in read_study_index(medvid_home.store, ob).values())
    assert names == ["study.zip!IMG0001", "study.zip!IMG0002"]


def test_a_zip_inside_a_zip_is_unpacked_and_too_deep_ones_are_quarantined(medvid_home, shared_data):
    source, landing = shared_data / "dicom", medvid_home.landing
    inner = medvid_home.path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as archive:
        archive.write(source / "US1_J2KR.dcm", "IMG0001")
    deepest = inner
    for level in range(3):  # nested 4 more levels: 5 in all, beyond the limit of 3
        wrapped = medvid_home.path / f"deep{level}.zip"
        with zipfile.ZipFile(wrapped, "w") as archive:
            archive.write(deepest, deepest.name)
        deepest = wrapped
    with zipfile.ZipFile(landing / "delivery.zip", "w") as archive:
        archive.write(inner, "studies/inner.zip")
        archive.write(deepest, "old/deep.zip")
    medvid_home.run("intake")
    us1 = study_key(uid_of(source / "US1_J2KR.dcm"), SALT)
    assert medvid_home.studies() == [us1]
    [record] = quarantine_records(medvid_home.store)
    assert record.reason == "zip nested more than 3 levels deep"
    assert record.file.startswith("delivery.zip!")


@pytest.fixture(scope="module")
def every_file(tmp_path_factory, shared_data):
    """Every shared DICOM file dropped as it is, then the DICOM pipeline for every study."""
    root = tmp_path_factory.mktemp("every_file")
    (root / "home").mkdir()
    (root / "landing").mkdir()
    for path in sorted((shared_data / "dicom").glob("*.dcm")):
        shutil.copyfile(path, root / "landing" / path.name)
    previous = os.environ.get("MEDVID_DEID_SALT")
    os.environ["MEDVID_DEID_SALT"] = SALT
    try:
        with dg.instance_for_test() as instance:
            home = Home(root / "home", root / "landing", instance)
            # headers and stills are what this fixture tests; its two cine loops' text scan is
            # test_cine_loop_goes_down_the_video_path_with_its_text_redacted's (default scan)
            home.configure(f"text: {json.dumps(LIGHT_TEXT)}\n")
            launched = home.run("intake", "batch")
            yield home, launched
    finally:
        if previous is None:
            os.environ.pop("MEDVID_DEID_SALT", None)
        else:
            os.environ["MEDVID_DEID_SALT"] = previous


def _instances(home) -> pa.Table:
    studies = home.studies()
    return pa.concat_tables(
        pq.read_table(home.path / table_key(Tables.DICOM_INSTANCES, s)) for s in studies
    ).to_pandas()


def test_every_shared_file_gets_one_deidentified_row(every_file, shared_data):
    home, launched = every_file
    assert not launched.failed
    rows = _instances(home)
    assert len(rows) == 8
    originals = {uid_of(p) for p in (shared_data / "dicom").glob("*.dcm")}
    assert not originals & set(rows["StudyInstanceUID"])  # UIDs replaced
    assert rows["patient_pseudonym"].str.fullmatch(r"P[0-9A-F]{11}").all()
    assert sorted(rows["PhotometricInterpretation"]) == sorted(
        ["RGB", "MONOCHROME2", "PALETTE COLOR", "PALETTE COLOR", "YBR_RCT"]
        + ["YBR_FULL_422", "YBR_FULL_422", "RGB"]
    )
    cine = rows[rows["NumberOfFrames"] > 1]
    assert sorted(cine["NumberOfFrames"]) == [30, 120]
    assert set(cine["fps"]) == {30.0}
    sonoque = rows[rows["Rows"] == 1455].iloc[0]
    assert "invalid SpecificCharacterSet" in sonoque["warnings"]


def test_every_study_passes_header_and_pixel_checks(every_file):
    home, _ = every_file
    studies = home.studies()
    assert studies and all(study_deidentified(home.store, s) for s in studies)


def test_single_frames_are_redacted_pngs_with_region_and_parsed_fields(every_file):
    home, _ = every_file
    images = []
    for study in home.studies():
        images += pq.read_table(home.path / table_key(Tables.DICOM_IMAGES, study)).to_pylist()
    assert len(images) == 6  # 8 files, 2 of them cine loops
    for image in images:
        assert (home.path / "media" / "dicom_images" / image["image_relative_path"]).is_file()
    ob = [i for i in images if (i["width"], i["height"]) == (800, 600)]
    assert len(ob) == 2  # native and RLE copies of the same image
    assert (ob[0]["region_x0"], ob[0]["region_y0"], ob[0]["region_source"]) == (120, 60, "dicom")
    assert ob[0]["measurements"] == '[["Cist Mag", 1.06, "cm"]]'
    echo = next(i for i in images if (i["width"], i["height"]) == (1024, 768))
    assert echo["measurements"] == '[["Asc Ao Diam", 3.3, "cm"]]'
    sonoque = next(i for i in images if i["width"] == 2083)
    assert sonoque["region_source"] == "detected"  # its header region is the whole screen


def test_cine_loops_become_video_partitions_with_their_origin(every_file):
    home, _ = every_file
    video_ids = home.videos()
    assert len(video_ids) == 2
    for video_id in video_ids:
        entry = read_ledger_entry(home.store, video_id)
        assert entry.kind == "video" and entry.origin["kind"] == "dicom_cine"
        assert entry.display_name.startswith(f"study_{entry.origin['study_key']}/cine_")


def test_a_processed_study_is_not_planned_again_until_an_instance_arrives(every_file, shared_data):
    home, _ = every_file
    assert home.run("intake", "batch").runs == []


def test_cine_loop_goes_down_the_video_path_with_its_text_redacted(medvid_home, shared_data):
    fake_patient_cine(shared_data, medvid_home.landing / "cine.dcm")
    medvid_home.configure("frames: {strategy: all}\n")
    launched = medvid_home.run("intake", "batch")
    assert not launched.failed
    [video_id] = medvid_home.videos()
    assert launched.units("batch") == [f"batch:{medvid_home.batch_of(video_id)}"]
    manifest = pq.read_table(
        medvid_home.path / table_key(Tables.VIDEO_FRAMES, video_id)
    ).to_pandas()
    assert len(manifest) == 30
    engine = OcrEngineResource().engine()
    text = " ".join(
        b.text
        for path in manifest["frame_relative_path"].iloc[::10]
        for b in engine.read(read_rgb(medvid_home.path / "media" / "frames" / path))
    ).upper()
    assert "JANE" not in text and "1970" not in text
    assert video_deidentified(medvid_home.store, video_id)


def test_a_multiframe_instance_without_timing_goes_at_the_default_rate(medvid_home, shared_data):
    ds = pydicom.dcmread(shared_data / "dicom" / "examples_ybr_color.dcm")
    for keyword in ("FrameTime", "CineRate", "RecommendedDisplayFrameRate", "FrameTimeVector"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.save_as(medvid_home.landing / "untimed.dcm")
    launched = medvid_home.run("intake", "batch")
    assert not launched.failed
    [study] = medvid_home.studies()
    [row] = pq.read_table(medvid_home.path / table_key(Tables.DICOM_PIXELS, study)).to_pylist()
    assert (row["kind"], row["fps"], row["fps_source"]) == ("cine", "1", "default")
    assert quarantine_records(medvid_home.store) == []


def test_bad_dicom_inputs_are_quarantined_and_the_batch_goes_on(medvid_home, shared_data):
    source, landing = shared_data / "dicom", medvid_home.landing
    (landing / "notes.dcm").write_text("this is a text file, not DICOM\n")
    (landing / "cut.dcm").write_bytes((source / "OBXXXX1A.dcm").read_bytes()[:200_000])
    ds = pydicom.dcmread(source / "OBXXXX1A.dcm")
    del ds.PixelData, ds.Rows, ds.Columns
    ds.save_as(landing / "report.dcm")
    with zipfile.ZipFile(landing / "evil.zip", "w") as archive:
        archive.writestr("../../escape.dcm", (source / "US1_J2KR.dcm").read_bytes())
    (landing / "empty.dcm").write_bytes(b"")
    bad_syntax = pydicom.dcmread(source / "US1_J2KR.dcm")
    bad_syntax.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7"  # not a transfer syntax
    bad_syntax.save_as(landing / "unknown_syntax.dcm")
    shutil.copyfile(source / "US1_J2KR.dcm", landing / "good.dcm")

    launched = medvid_home.run("intake", "batch")
    assert not launched.failed
    reasons = {r.file: r.reason for r in quarantine_records(medvid_home.store)}
    assert "not a DICOM file" in reasons["notes.dcm"]
    assert "truncated" in reasons["cut.dcm"]
    assert "no pixel data" in reasons["report.dcm"]
    assert "escapes the archive folder" in reasons["evil.zip"]
    assert reasons["empty.dcm"] == "empty file (0 bytes)"
    assert "transfer syntax" in reasons["unknown_syntax.dcm"]
    assert not (medvid_home.path.parent / "escape.dcm").exists()
    [study] = registered_studies(medvid_home.store)
    assert study == study_key(uid_of(source / "US1_J2KR.dcm"), SALT)
    assert study_deidentified(medvid_home.store, study)


class ShowsThePatientEverywhere:
    """A fake OCR engine that reads the patient's name in every image, redacted or not."""

    name = "fake"

    def read(self, image: np.ndarray) -> list[OcrBox]:
        return [OcrBox(5, 5, 40, 10, "DOE JANE", 0.99)]


class FakeOcrResource(OcrEngineResource):
    """Every engine medvid asks for reads the patient's name everywhere."""

    def engine(self):
        return ShowsThePatientEverywhere()

    def still_engine(self):
        return ShowsThePatientEverywhere()

    def residual_engines(self):
        return [ShowsThePatientEverywhere()]


def test_residual_phi_fails_the_blocking_check_and_keeps_the_study_out(medvid_home, shared_data):
    fake_patient_image(shared_data, medvid_home.landing / "patient.dcm")
    medvid_home.run("intake")
    [study] = medvid_home.studies()
    assets = [
        medvid_home.defs.get_assets_def(dg.AssetKey(n))
        for n in ("dicom_instances", "dicom_pixels", "dicom_ocr_text", "dicom_images")
    ]
    result = dg.materialize(
        assets,
        partition_key=medvid_home.batch_of(study),
        instance=medvid_home.instance,
        resources={
            **medvid_home.resources("media_store", "deid", "settings"),
            "ocr_engine": FakeOcrResource(),
        },
        raise_on_error=False,
    )
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["header_deidentified"].passed
    assert not checks["no_residual_phi"].passed
    findings = checks["no_residual_phi"].metadata["findings"].value
    assert findings and all("patient name" in f and "JANE" not in f for f in findings)
    assert not study_deidentified(medvid_home.store, study)


def test_header_phi_values_stay_in_the_protected_zone(medvid_home, shared_data):
    fake_patient_image(shared_data, medvid_home.landing / "patient.dcm")
    assert not medvid_home.run("intake", "batch").failed
    home = medvid_home.path
    for path in home.rglob("*"):
        if not path.is_file() or path.relative_to(home).parts[0] == "protected":
            continue
        data = path.read_bytes().upper()
        for value in FAKE_PATIENT.values():
            assert value.upper().encode() not in data, path


def test_dicomdir_folder_is_registered_file_by_file(medvid_home, shared_data):
    from pydicom.fileset import FileSet

    fileset = FileSet()
    for name in ("OBXXXX1A.dcm", "US1_J2KR.dcm"):
        fileset.add(pydicom.dcmread(shared_data / "dicom" / name))
    fileset.write(medvid_home.landing / "CD")  # DICOMDIR + PT000000/ST000000/SE000000/IM...
    medvid_home.run("intake")
    studies = medvid_home.studies()
    assert len(studies) == 2
    assert quarantine_records(medvid_home.store) == []  # the DICOMDIR is not an image
    names = {
        item["name"]
        for study in studies
        for item in read_study_index(medvid_home.store, study).values()
    }
    assert names == {"IM[id]"}  # display names: 6+ digit runs may be ids


def test_endoscopy_patient_panel_never_reaches_the_frames(medvid_home, shared_data):
    """A real gastroscopy frame with the patient's name and birth date beside the scope image,
    as a short video: the written frames show the scope image and nothing of the panel."""
    import av

    frame = read_rgb(shared_data / "images" / "lxanon_endoscopy_frame1.jpg")
    with av.open(str(medvid_home.landing / "gastroscopy.mp4"), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
        for _ in range(10):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    medvid_home.configure("frames: {strategy: every_n, every_n: 5}\n")
    assert not medvid_home.run("intake", "batch").failed
    [video_id] = medvid_home.videos()
    plan = read_json(medvid_home.store, f"tables/redaction_plans/{video_id}.json")
    assert plan["keep_region_source"] == "detected" and plan["mask_boxes"]
    manifest = pq.read_table(
        medvid_home.path / table_key(Tables.VIDEO_FRAMES, video_id)
    ).to_pandas()
    engine = OcrEngineResource().engine()
    written = read_rgb(medvid_home.path / "media" / "frames" / manifest["frame_relative_path"][0])
    text = " ".join(b.text for b in engine.read(written)).upper()
    for token in ("LUX", "THOMAS", "1994", "21/03", "15/02/2024"):
        assert token not in text
    assert written[540, 1200].max() > 0  # the scope image itself is kept
    assert video_deidentified(medvid_home.store, video_id)
