"""The DICOM assets on every file of ../shared/data/dicom, the cine-loop handover to the video
path, bad inputs, and the residual-PHI gate."""

import shutil
import time
import zipfile

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest

from medvid.deid import study_key
from medvid.ocr import OcrBox
from medvid_assets import deid, dicom, frames, ocr, videos
from medvid_assets.deid import study_deidentified, video_deidentified
from medvid_assets.dicom import read_study_index, registered_studies
from medvid_assets.landing import ledger_entries, read_ledger_entry
from medvid_assets.quarantine import quarantine_records
from medvid_assets.sensors import (
    cine_loop_sensor,
    drive_landing_sensor,
    new_cine_loops,
    scan_and_register,
)
from medvid_assets.storage import read_json, table_key
from medvid_resources.ocr import OcrEngineResource
from tests.core.dicom_fixtures import (
    FAKE_PATIENT,
    fake_patient_cine,
    fake_patient_image,
)

SALT = "test-salt-not-a-secret"  # the one in tests/assets/conftest.py
DICOM_ASSETS = [
    dicom.dicom_instances,
    dicom.dicom_pixels,
    ocr.dicom_ocr_text,
    deid.dicom_images,
]
VIDEO_ASSETS = [
    videos.raw_videos,
    videos.video_metadata,
    videos.normalized_videos,
    ocr.video_ocr_text,
    deid.video_redaction_plan,
    frames.video_frames,
]


def register(instance, resources) -> list[str]:
    _, registration = scan_and_register(
        resources["landing_zone"],
        resources["media_store"],
        resources["deid"],
        None,
        now=time.time(),
        require_stable=False,
    )
    studies = sorted(registration.studies)
    instance.add_dynamic_partitions("studies", studies)
    return studies


def materialize_study(instance, resources, study, assets=DICOM_ASSETS, **kwargs):
    return dg.materialize(
        assets, partition_key=study, instance=instance, resources=resources, **kwargs
    )


def uid_of(path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def test_sensor_keys_studies_pseudonymously_and_unzips_archives(
    instance, resources, landing, shared_data
):
    source = shared_data / "dicom"
    with zipfile.ZipFile(landing / "study.zip", "w") as archive:
        archive.write(source / "OBXXXX1A.dcm", "PATIENT/IMG0001")  # no extension: by content
        archive.write(source / "OBXXXX1A_rle.dcm", "PATIENT/IMG0002")
        archive.writestr("PATIENT/readme.txt", "not an image")
    shutil.copyfile(source / "US1_J2KR.dcm", landing / "us1.dcm")

    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        first = drive_landing_sensor(context)
    assert first.run_requests == []  # sizes are checked again at the next tick
    with dg.build_sensor_context(
        instance=instance, resources=resources, cursor=first.cursor
    ) as context:
        second = drive_landing_sensor(context)

    expected = sorted(
        {study_key(uid_of(source / n), SALT) for n in ("OBXXXX1A.dcm", "US1_J2KR.dcm")}
    )
    [partitions] = second.dynamic_partitions_requests
    assert partitions.partitions_def_name == "studies"
    assert sorted(partitions.partition_keys) == expected
    assert {r.partition_key for r in second.run_requests} == set(expected)
    assert {r.job_name for r in second.run_requests} == {"dicom_pipeline"}
    for key in expected:  # "s" + 15 hex digits: neither a UID nor a patient id
        assert key.startswith("s") and len(key) == 16 and "." not in key
    ob = study_key(uid_of(source / "OBXXXX1A.dcm"), SALT)
    names = sorted(i["name"] for i in read_study_index(resources["media_store"], ob).values())
    assert names == ["study.zip!IMG0001", "study.zip!IMG0002"]


@pytest.fixture(scope="module")
def every_file(tmp_path_factory, shared_data):
    """Every shared DICOM file dropped as it is, then the DICOM pipeline for every study."""
    from medvid_resources import DeidentificationResource, DriveFolderLandingZone, LocalMediaStore

    root = tmp_path_factory.mktemp("every_file")
    landing, home = root / "landing", root / "home"
    landing.mkdir()
    for path in sorted((shared_data / "dicom").glob("*.dcm")):
        shutil.copyfile(path, landing / path.name)
    resources = {
        "landing_zone": DriveFolderLandingZone(path=str(landing)),
        "media_store": LocalMediaStore(root=str(home)),
        "deid": DeidentificationResource(salt=SALT),
        "ocr_engine": OcrEngineResource(),
    }
    with dg.instance_for_test() as instance:
        studies = register(instance, resources)
        results = {s: materialize_study(instance, resources, s) for s in studies}
        yield {"instance": instance, "resources": resources, "home": home, "results": results}


def _instances(every_file):
    home = every_file["home"]
    tables = [pq.read_table(home / table_key("dicom_instances", s)) for s in every_file["results"]]
    import pyarrow as pa

    return pa.concat_tables(tables).to_pandas()


def test_every_shared_file_gets_one_deidentified_row(every_file, shared_data):
    rows = _instances(every_file)
    assert len(rows) == 8
    assert all(r.success for r in every_file["results"].values())
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
    store = every_file["resources"]["media_store"]
    for study, result in every_file["results"].items():
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert checks == {"header_deidentified": True, "no_residual_phi": True}, study
    images = [s for s in every_file["results"] if store.exists(table_key("dicom_images", s))]
    with_images = [
        s for s in images if pq.read_metadata(store.fetch(table_key("dicom_images", s))).num_rows
    ]
    assert all(study_deidentified(store, s) for s in with_images)


def test_single_frames_are_redacted_pngs_with_region_and_parsed_fields(every_file):
    home = every_file["home"]
    images = []
    for study in every_file["results"]:
        images += pq.read_table(home / table_key("dicom_images", study)).to_pylist()
    assert len(images) == 6  # 8 files, 2 of them cine loops
    for image in images:
        assert (home / "media" / "dicom_images" / image["image_relative_path"]).is_file()
    ob = [i for i in images if (i["width"], i["height"]) == (800, 600)]
    assert len(ob) == 2  # native and RLE copies of the same image
    assert (ob[0]["region_x0"], ob[0]["region_y0"], ob[0]["region_source"]) == (120, 60, "dicom")
    assert ob[0]["measurements"] == '[["Cist Mag", 1.06, "cm"]]'
    echo = next(i for i in images if (i["width"], i["height"]) == (1024, 768))
    assert echo["measurements"] == '[["Asc Ao Diam", 3.3, "cm"]]'
    sonoque = next(i for i in images if i["width"] == 2083)
    assert sonoque["region_source"] == "detected"  # its header region is the whole screen


def test_cine_loops_are_h264_videos_registered_with_their_origin(every_file):
    instance, store = every_file["instance"], every_file["resources"]["media_store"]
    video_ids, cursor = new_cine_loops(instance, None)
    assert len(video_ids) == 2 and cursor > 0
    for video_id in video_ids:
        entry = read_ledger_entry(store, video_id)
        assert entry.kind == "video" and entry.origin["kind"] == "dicom_cine"
        assert entry.original_name.startswith(f"study_{entry.origin['study_key']}/cine_")
    again, _ = new_cine_loops(instance, cursor)
    assert again == []


def test_rerunning_a_study_is_cached_and_gives_the_same_tables(every_file):
    instance, resources, home = (every_file[k] for k in ("instance", "resources", "home"))
    study = sorted(every_file["results"])[0]
    before = pq.read_table(home / table_key("dicom_instances", study))
    result = materialize_study(instance, resources, study, assets=[dicom.dicom_instances])
    assert result.success
    assert pq.read_table(home / table_key("dicom_instances", study)).equals(before)


def test_cine_loop_goes_down_the_video_path_with_its_text_redacted(
    instance, resources, landing, home, shared_data
):
    fake_patient_cine(shared_data, landing / "cine.dcm")
    [study] = register(instance, resources)
    assert materialize_study(instance, resources, study).success
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = cine_loop_sensor(context)
    [video_id] = result.dynamic_partitions_requests[0].partition_keys
    [request] = result.run_requests
    assert (request.partition_key, request.job_name) == (video_id, "video_pipeline")

    instance.add_dynamic_partitions("videos", [video_id])
    run = dg.materialize(
        VIDEO_ASSETS,
        partition_key=video_id,
        instance=instance,
        resources=resources,
        run_config={"ops": {"video_frames": {"config": {"strategy": "all"}}}},
    )
    assert run.success
    manifest = pq.read_table(home / table_key("video_frames", video_id)).to_pandas()
    assert len(manifest) == 30
    engine = resources["ocr_engine"].engine()
    from medvid.images import read_rgb

    text = " ".join(
        b.text
        for path in manifest["frame_relative_path"].iloc[::10]
        for b in engine.read(read_rgb(home / "media" / "frames" / path))
    ).upper()
    assert "JANE" not in text and "1970" not in text
    assert video_deidentified(resources["media_store"], video_id)


def test_bad_dicom_inputs_are_quarantined_and_the_batch_goes_on(
    instance, resources, landing, shared_data, tmp_path
):
    source = shared_data / "dicom"
    (landing / "notes.dcm").write_text("this is a text file, not DICOM\n")
    (landing / "cut.dcm").write_bytes((source / "OBXXXX1A.dcm").read_bytes()[:200_000])
    ds = pydicom.dcmread(source / "OBXXXX1A.dcm")
    del ds.PixelData, ds.Rows, ds.Columns
    ds.save_as(landing / "report.dcm")
    with zipfile.ZipFile(landing / "evil.zip", "w") as archive:
        archive.writestr("../../escape.dcm", (source / "US1_J2KR.dcm").read_bytes())
    (landing / "empty.dcm").write_bytes(b"")
    shutil.copyfile(source / "US1_J2KR.dcm", landing / "good.dcm")

    [study] = register(instance, resources)
    assert materialize_study(instance, resources, study).success
    reasons = {r.file: r.reason for r in quarantine_records(resources["media_store"])}
    assert "not a DICOM file" in reasons["notes.dcm"]
    assert "truncated" in reasons["cut.dcm"]
    assert "no pixel data" in reasons["report.dcm"]
    assert "escapes the archive folder" in reasons["evil.zip"]
    assert reasons["empty.dcm"] == "empty file (0 bytes)"
    assert not (tmp_path / "escape.dcm").exists()
    assert registered_studies(resources["media_store"]) == [study]


class ShowsThePatientEverywhere:
    """A fake OCR engine that reads the patient's name in every image, redacted or not."""

    name = "fake"

    def read(self, image: np.ndarray) -> list[OcrBox]:
        return [OcrBox(5, 5, 40, 10, "DOE JANE", 0.99)]


class FakeOcrResource(OcrEngineResource):
    def engine(self):
        return ShowsThePatientEverywhere()


def test_residual_phi_fails_the_blocking_check_and_keeps_the_study_out(
    instance, resources, landing, shared_data
):
    fake_patient_image(shared_data, landing / "patient.dcm")
    [study] = register(instance, resources)
    result = materialize_study(
        instance, {**resources, "ocr_engine": FakeOcrResource()}, study, raise_on_error=False
    )
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["header_deidentified"].passed
    assert not checks["no_residual_phi"].passed
    findings = checks["no_residual_phi"].metadata["findings"].value
    assert findings and all("patient name" in f and "JANE" not in f for f in findings)
    assert not study_deidentified(resources["media_store"], study)


def test_header_phi_values_stay_in_the_protected_zone(
    instance, resources, landing, home, shared_data
):
    fake_patient_image(shared_data, landing / "patient.dcm")
    [study] = register(instance, resources)
    assert materialize_study(instance, resources, study).success
    for path in home.rglob("*"):
        if not path.is_file() or path.relative_to(home).parts[0] == "protected":
            continue
        if path.relative_to(home).parts[0] in ("history", "storage", "schedules"):
            continue  # Dagster's own event logs
        data = path.read_bytes().upper()
        for value in FAKE_PATIENT.values():
            assert value.upper().encode() not in data, path


def test_dicomdir_folder_is_registered_file_by_file(instance, resources, landing, shared_data):
    from pydicom.fileset import FileSet

    fileset = FileSet()
    for name in ("OBXXXX1A.dcm", "US1_J2KR.dcm"):
        fileset.add(pydicom.dcmread(shared_data / "dicom" / name))
    fileset.write(landing / "CD")  # DICOMDIR + PT000000/ST000000/SE000000/IM000000 ...
    studies = register(instance, resources)
    assert len(studies) == 2
    assert quarantine_records(resources["media_store"]) == []  # the DICOMDIR is not an image
    names = {
        item["name"]
        for study in studies
        for item in read_study_index(resources["media_store"], study).values()
    }
    assert names == {"IM000000"}


def test_endoscopy_patient_panel_never_reaches_the_frames(
    instance, resources, landing, home, shared_data
):
    """A real gastroscopy frame with the patient's name and birth date beside the scope image,
    as a short video: the written frames show the scope image and nothing of the panel."""
    import av

    from medvid.images import read_rgb

    frame = read_rgb(shared_data / "images" / "lxanon_endoscopy_frame1.jpg")
    with av.open(str(landing / "gastroscopy.mp4"), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
        for _ in range(10):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    scan_and_register(
        resources["landing_zone"],
        resources["media_store"],
        resources["deid"],
        None,
        now=time.time(),
        require_stable=False,
    )
    [video_id] = [e.content_id for e in ledger_entries(resources["media_store"], "video")]
    instance.add_dynamic_partitions("videos", [video_id])
    result = dg.materialize(
        VIDEO_ASSETS,
        partition_key=video_id,
        instance=instance,
        resources=resources,
        run_config={"ops": {"video_frames": {"config": {"strategy": "every_n", "every_n": 5}}}},
    )
    assert result.success
    plan = read_json(resources["media_store"], f"tables/redaction_plans/{video_id}.json")
    assert plan["keep_region_source"] == "detected" and plan["mask_boxes"]
    manifest = pq.read_table(home / table_key("video_frames", video_id)).to_pandas()
    engine = resources["ocr_engine"].engine()
    written = read_rgb(home / "media" / "frames" / manifest["frame_relative_path"].iloc[0])
    text = " ".join(b.text for b in engine.read(written)).upper()
    for token in ("LUX", "THOMAS", "1994", "21/03", "15/02/2024"):
        assert token not in text
    assert written[540, 1200].max() > 0  # the scope image itself is kept
    assert video_deidentified(resources["media_store"], video_id)
