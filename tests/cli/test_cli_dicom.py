"""`medvid run` on DICOM studies whose headers and pixels carry a (fake) patient's identity:
nothing of it reaches the export."""

import csv
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medvid.deid import instance_key
from medvid.images import read_rgb
from medvid.ocr import RapidOcrEngine
from tests.core.dicom_fixtures import (
    FAKE_PATIENT,
    fake_patient_cine,
    fake_patient_image,
)

SALT = "cli-test-salt-not-a-secret"
AVI = "covid19us_Reg_northumbria_1009_vid1.avi"


def medvid(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(home), "MEDVID_DEID_SALT": SALT}
    return subprocess.run(
        [sys.executable, "-m", "medvid_assets.cli", *args, "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("phi")
    landing, home = root / "landing", root / "home"
    landing.mkdir()
    fake_patient_image(shared_data, landing / "doe_jane_breast.dcm")
    fake_patient_cine(shared_data, landing / "doe_jane_echo.dcm")
    shutil.copyfile(shared_data / "videos" / AVI, landing / AVI)
    cine_sha = hashlib.sha256((landing / "doe_jane_echo.dcm").read_bytes()).hexdigest()
    cine_name = f"cine_{instance_key(cine_sha, SALT)}"  # its pseudonymous name, as listed
    (landing / "labels.csv").write_text(
        f"video,start_s,end_s,label\n{AVI},0,60,lung\n{cine_name},0,60,heart\n"
    )
    result = medvid("run", str(landing), "--home", str(home), home=home)
    return {
        "result": result,
        "home": home,
        "export": home / "exports" / "default",
        "cine_name": cine_name,
    }


def test_run_succeeds_and_lists_the_studies(run):
    result = run["result"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "studies:      2 (2 new this run)" in result.stdout, result.stdout
    assert result.stdout.count("de-identified: yes") == 2
    assert f"cine loops: {run['cine_name']}" in result.stdout
    assert "Doe" not in result.stdout and "MRN12345" not in result.stdout


def test_export_holds_the_still_image_and_the_cine_frames(run):
    export = run["export"]
    with open(export / "images.csv", newline="") as stream:
        [image] = list(csv.DictReader(stream))
    assert (export / "images" / image["image_relative_path"]).is_file()
    assert image["patient_id"].startswith("P") and len(image["patient_id"]) == 12
    with open(export / "annotations.csv", newline="") as stream:
        labels = {row["label_name"] for row in csv.DictReader(stream)}
    assert labels == {"lung", "heart"}
    with open(export / "splits.csv", newline="") as stream:
        splits = {row["patient_id"]: row["split"] for row in csv.DictReader(stream)}
    # the cine loop and the still image belong to the same (pseudonymous) patient
    assert splits[image["patient_id"]] == image["split"]


def test_no_byte_of_the_export_names_the_patient(run):
    needles = [v.upper().encode() for v in FAKE_PATIENT.values()] + [b"DOE^JANE", b"19700101"]
    text_needles = [b"DOE", b"JANE", b"SPRINGFIELD", b"MRN12345", b"1970"]
    files = [p for p in run["export"].rglob("*") if p.is_file()]
    assert len(files) > 10
    for path in files:
        data = path.read_bytes().upper()
        for needle in needles:
            assert needle not in data, f"{needle!r} in {path}"
        if path.suffix in (".csv", ".json"):
            for needle in text_needles:
                assert needle not in data, f"{needle!r} in {path}"


def test_burned_in_name_cannot_be_read_in_any_exported_image(run):
    engine = RapidOcrEngine()
    export = run["export"]
    images = (
        sorted((export / "images").rglob("*.png")) + sorted((export / "frames").rglob("*.jpg"))[::7]
    )
    assert images
    for path in images:
        text = " ".join(box.text for box in engine.read(read_rgb(path))).upper()
        assert "JANE" not in text and "DOE" not in text and "1970" not in text, path


def test_raw_and_protected_media_never_reach_the_export(run):
    export = run["export"]
    assert not any(export.rglob("*.dcm")) and not any(export.rglob("*.mp4"))
    assert not any(export.rglob("*.avi"))
