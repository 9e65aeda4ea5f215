"""The per-video pipeline on real clips and broken copies of them."""

import json
from fractions import Fraction

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from medvid.catalog.keys import Tables, table_key
from medvid.frames.encode import Redaction
from medvid.ids import content_id, sha256_file
from medvid.images import read_rgb
from medvid.quarantine import quarantine_records
from medvid.video.probe import probe_video
from medvid_assets.export.assets import EXPORT_CHECKS
from tests.core.conftest import write_h264
from tests.stages.conftest import AVI, MP4, drop
from tests.stages.label_pipeline import LIGHT_EXPORT, LIGHT_TEXT

WHITE = (255, 255, 255)


def test_avi_is_copied_normalized_and_sampled_with_redacted_frames(medvid_home, videos_dir):
    clip = drop(videos_dir, medvid_home.landing, AVI)
    launched = medvid_home.run("intake", "batch")
    assert not launched.failed
    home, video_id = medvid_home.path, content_id(sha256_file(clip))
    meta = pq.read_table(home / table_key(Tables.VIDEO_METADATA, video_id)).to_pylist()[0]
    assert (meta["codec"], meta["width"], meta["height"], meta["frame_count"]) == (
        "mpeg4",
        478,
        478,
        92,
    )
    assert meta["display_name"] == "covid19us_Reg_northumbria_1009_vid1.avi"
    clip_info = probe_video(home / "protected" / "media" / "normalized" / video_id / "clip_000.mp4")
    assert (clip_info.codec, clip_info.pix_fmt, clip_info.frame_count) == ("h264", "yuv420p", 92)
    manifest = pq.read_table(home / table_key(Tables.VIDEO_FRAMES, video_id)).to_pandas()
    assert manifest["frame_number"].tolist() == list(range(0, 92, 10))
    for path in manifest["frame_relative_path"]:
        assert (home / "media" / "frames" / path).is_file()
    # raw and normalized pixels (burned-in text still there) live only in protected/
    assert not (home / "media" / "raw").exists() and not (home / "media" / "normalized").exists()


def test_a_video_pipeline_rerun_writes_the_same_bytes(medvid_home, videos_dir):
    drop(videos_dir, medvid_home.landing, MP4)
    medvid_home.run("intake", "batch")
    [video_id] = medvid_home.videos()
    manifest_path = medvid_home.path / table_key(Tables.VIDEO_FRAMES, video_id)
    first = pq.read_table(manifest_path)
    image = medvid_home.path / "media" / "frames" / first["frame_relative_path"][3].as_py()
    first_image = image.read_bytes()
    result = medvid_home.materialize(
        "raw_videos",
        "video_metadata",
        "normalized_videos",
        "video_redaction_plan",
        "video_frames",
        partition_key=medvid_home.batch_of(video_id),
        tags={"medvid/redo": "true"},  # every member again, not reused
    )
    assert result.success
    assert pq.read_table(manifest_path).equals(first)
    assert image.read_bytes() == first_image


@pytest.mark.parametrize(
    "make",
    [
        lambda data: data[: len(data) * 2 // 5],
        lambda data: b"these are my notes, not a video\n" * 40,
    ],
    ids=["truncated", "text"],
)
def test_a_broken_video_is_quarantined_the_run_succeeds_and_it_is_not_retried(
    medvid_home, videos_dir, make
):
    (medvid_home.landing / "broken.mp4").write_bytes(make((videos_dir / MP4).read_bytes()))
    launched = medvid_home.run("intake", "batch")
    assert not launched.failed
    [record] = quarantine_records(medvid_home.store)
    assert record.file == "broken.mp4"
    assert record.stage in {"video_metadata", "normalized_videos", "raw_videos"}
    assert record.reason
    assert medvid_home.run("intake", "batch").runs == []


def test_labels_sheet_marks_frames_in_ranges_and_export_passes_checks(medvid_home, videos_dir):
    landing = medvid_home.landing
    drop(videos_dir, landing, MP4)
    drop(videos_dir, landing, AVI)
    (landing / "labels.csv").write_text(
        f"video,start_s,end_s,label\n{MP4},1.0,2.0,b_lines\n{AVI},0,10,a_lines\n"
    )
    (landing / "patients.csv").write_text(f"video,patient_id,score\n{MP4},P1,3\n{AVI},P2,0\n")
    # a labels and export test: the light text scan and PHI-scan sample (label_pipeline)
    export = {**LIGHT_EXPORT, "dataset_name": "t", "val_ratio": 0.5}
    medvid_home.configure(f"export: {json.dumps(export)}\ntext: {json.dumps(LIGHT_TEXT)}\n")
    launched = medvid_home.run()
    assert not launched.failed
    home = medvid_home.path
    mp4_id = content_id(sha256_file(landing / MP4))
    frame_labels = pq.read_table(home / table_key(Tables.FRAME_LABELS, mp4_id)).to_pandas()
    positives = frame_labels[frame_labels["value"]]
    assert positives["frame_number"].tolist() == [30, 40, 50]  # 25 fps: 1.2 s, 1.6 s, 2.0 s
    assert set(frame_labels["source"]) == {"sheet"}
    [export_run] = [r for r, ok in launched.runs if r.unit == "export"]
    assert export_run.job_name == "export_job"
    manifest = json.loads((home / "exports" / "t" / "manifest.json").read_text())
    assert sorted(manifest["source_video_sha256"]) == sorted(
        sha256_file(landing / n) for n in (MP4, AVI)
    )
    checks = medvid_home.instance.event_log_storage.get_latest_asset_check_execution_by_key
    import dagster as dg

    keys = [dg.AssetCheckKey(dg.AssetKey("training_dataset"), c) for c in EXPORT_CHECKS]
    statuses = {k.name: r.status.value for k, r in checks(keys).items()}
    assert statuses == dict.fromkeys(EXPORT_CHECKS, "SUCCEEDED")
    # patients: pseudonyms, never the sheet's ids
    splits = (home / "exports" / "t" / "splits.csv").read_text()
    assert "P1," not in splits and ",P1" not in splits


def test_frames_rewritten_by_a_run_that_dies_are_not_vouched_for(
    medvid_home, videos_dir, monkeypatch
):
    # A first run passes the residual check; a second one writes the frames again and dies
    # before its check ends (as a kill would): the first pass must not stand for them.
    import medvid_assets.frames.assets as frames_assets
    from medvid.deid.store import video_deidentified

    drop(videos_dir, medvid_home.landing, MP4)
    medvid_home.configure(f"text: {json.dumps(LIGHT_TEXT)}\n")
    assert not medvid_home.run("intake", "batch").failed
    [video_id] = medvid_home.videos()
    assert video_deidentified(medvid_home.store, video_id)

    def dies(write, *args, **kwargs):
        write(kwargs["redaction"])
        raise RuntimeError("killed")

    monkeypatch.setattr(frames_assets, "residual_check", dies)
    medvid_home.materialize(
        "video_frames",
        partition_key=medvid_home.batch_of(video_id),
        tags={"medvid/redo": "true"},
    )
    assert not video_deidentified(medvid_home.store, video_id)
    status = json.loads(
        (medvid_home.path / "deid_status" / "video" / f"{video_id}.json").read_text()
    )
    assert status["findings"] == [frames_assets.PENDING]


def test_a_word_the_plan_left_is_masked_by_the_check_in_every_frame(medvid_home, monkeypatch):
    # As with the specular highlight tesseract reads as "lee", or an injected surname the plan
    # left (benchmarks/phi.py): the check reads a word with no PHI pattern, masks it in every
    # frame, reads again, and the video passes with the mask recorded.
    import medvid_assets.frames.assets as frames_assets
    from medvid.deid.store import video_deidentified

    def draw(index: int) -> np.ndarray:
        image = np.full((480, 640, 3), 60, np.uint8)
        cv2.circle(image, (320 + 4 * index, 200), 60, (170, 170, 170), -1)
        cv2.putText(image, "WATERMELON", (240, 400), cv2.FONT_HERSHEY_SIMPLEX, 0.7, WHITE, 2)
        return image

    write_h264(medvid_home.landing / "melon.mp4", [draw(i) for i in range(30)], Fraction(10))
    medvid_home.configure(f"text: {json.dumps(LIGHT_TEXT)}\nframes: {{strategy: all}}\n")
    monkeypatch.setattr(frames_assets, "read_redaction", lambda store, video_id: Redaction())
    assert not medvid_home.run("intake", "batch").failed
    [video_id] = medvid_home.videos()
    assert video_deidentified(medvid_home.store, video_id)
    status = json.loads(
        (medvid_home.path / "deid_status" / "video" / f"{video_id}.json").read_text()
    )
    assert status["masked_by_check"] and status["findings"] == []
    ink = draw(0).min(axis=2) >= 250
    manifest = pq.read_table(medvid_home.path / table_key(Tables.VIDEO_FRAMES, video_id))
    paths = manifest.column("frame_relative_path").to_pylist()
    assert len(paths) == 30
    for path in paths:
        written = read_rgb(medvid_home.path / "media" / "frames" / path)
        assert written[ink].max() < 40  # the word's pixels are black in every written frame
