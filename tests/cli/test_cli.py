"""`medvid run` end to end on real clips, through the installed console script."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medvid.export.annotations import ANNOTATION_COLUMNS
from medvid.ids import content_id, sha256_file
from tests.stages.label_pipeline import LIGHT_EXPORT, LIGHT_TEXT

CLIPS = {
    "covid19us_Reg_northumbria_1009_vid1.avi": "healthy",
    "covid19us_Vir_whitelung_h1n1.mp4": "viral",
}
EXTRA = "itkpocus_sonosite-anon-eye1-video.mp4"


def medvid(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "medvid_assets.cli", *args, "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.fixture
def landing(tmp_path: Path, videos_dir: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    for name in CLIPS:
        shutil.copyfile(videos_dir / name, folder / name)
    (folder / "broken.mp4").write_bytes((videos_dir / EXTRA).read_bytes()[:3000])
    rows = ["video,start_s,end_s,label"] + [f"{n},0,60,{label}" for n, label in CLIPS.items()]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    (folder / "patients.csv").write_text(
        "video,patient_id\n" + "".join(f"{n},P{i}\n" for i, n in enumerate([*CLIPS, EXTRA]))
    )
    return folder


#: Not PHI tests (tests/cli/test_cli_dicom.py is): the light text scan (LIGHT_TEXT) and PHI-scan
#: sample (LIGHT_EXPORT).
LIGHT_TEXT_YAML = f"text: {json.dumps(LIGHT_TEXT)}\n"
LIGHT_EXPORT_YAML = f"export: {json.dumps(LIGHT_EXPORT)}\n"


def test_run_exports_a_dataset_then_processes_only_a_new_file(tmp_path, landing, videos_dir):
    home = tmp_path / "home"
    config = tmp_path / "config.yaml"
    config.write_text(
        "frames:\n  strategy: every_n\n  every_n: 4\n"
        + f"export: {json.dumps({**LIGHT_EXPORT, 'dataset_name': 'lung'})}\n"
        + LIGHT_TEXT_YAML
    )

    first = medvid("run", str(landing), "--home", str(home), "--config", str(config), home=home)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "videos:       3 (3 new this run, 1 quarantined)" in first.stdout  # broken.mp4
    assert "broken.mp4 [video_metadata]" in first.stdout  # quarantined, not a failure
    export = home / "exports" / "lung"
    assert f"export:       {export}" in first.stdout

    with open(export / "annotations.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == list(ANNOTATION_COLUMNS)
    assert {r["label_name"] for r in rows} == {"healthy", "viral"}
    video_ids = {content_id(sha256_file(landing / n)) for n in CLIPS}
    assert {r["video_id"] for r in rows} == video_ids
    for row in rows:
        assert (export / "frames" / row["frame_relative_path"]).is_file()
        assert row["frame_relative_path"] == (
            f"video_{row['video_id']}/frame_{row['frame_id']}.jpg"
        )
        assert int(row["frame_number"]) % 4 == 0
    assert (
        json.loads((export / "annotations.json").read_text())[0]["frame_id"] == rows[0]["frame_id"]
    )
    with open(export / "splits.csv", newline="") as stream:
        splits = list(csv.DictReader(stream))
    assert {s["split"] for s in splits} == {"train", "val"}
    assert not any(export.rglob("*.avi")) and not any(export.rglob("*.mp4"))  # never raw media

    shutil.copyfile(videos_dir / EXTRA, landing / EXTRA)
    second = medvid("run", str(landing), "--home", str(home), "--config", str(config), home=home)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "videos:       4 (1 new this run, 1 quarantined)" in second.stdout


def test_predict_section_trains_a_blitz_model_and_labels_the_unlabelled_video(
    tmp_path, landing, videos_dir
):
    shutil.copyfile(videos_dir / EXTRA, landing / EXTRA)  # no labels for this one
    home = tmp_path / "home"
    config = tmp_path / "config.yaml"
    config.write_text(
        "frames: {strategy: every_n, every_n: 6}\n"
        "predict:\n"
        "  model: {strategy: blitz, epochs: 1, input_size: 64, min_images_per_epoch: 32}\n"
        "  predicted_labels: {smoothing_window: 3}\n" + LIGHT_TEXT_YAML + LIGHT_EXPORT_YAML
    )
    result = medvid("run", str(landing), "--home", str(home), "--config", str(config), home=home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "predicted:" in result.stdout
    extra_id = content_id(sha256_file(landing / EXTRA))
    predicted = home / "tables" / "predicted_labels" / f"{extra_id}.parquet"
    assert predicted.is_file()
    import pyarrow.parquet as pq

    rows = pq.read_table(predicted).to_pandas()
    assert rows["source"].str.startswith("model:").all()
    assert set(rows["label_name"]) == {"healthy", "viral"}
    assert rows.groupby("frame_id")["value"].sum().eq(1).all()  # one class per frame
    with open(home / "exports" / "default" / "annotations.csv", newline="") as stream:
        sources = {r["information_source_name"] for r in csv.DictReader(stream)}
    assert not any(s.startswith("model:") for s in sources)  # unreviewed: not exported
