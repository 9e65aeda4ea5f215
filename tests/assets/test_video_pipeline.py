"""The per-video assets materialized in-process on real clips and broken copies of them."""

import json

import dagster as dg
import pyarrow.parquet as pq
import pytest

from medvid.ids import content_id, sha256_file
from medvid.video.probe import probe_video
from medvid_assets import deid, export, frames, labels, ocr, quarantine, videos
from medvid_assets.quarantine import quarantine_records
from medvid_assets.storage import table_key
from tests.assets.conftest import AVI, MP4, drop, register

PIPELINE = [
    videos.raw_videos,
    videos.video_metadata,
    videos.normalized_videos,
    ocr.video_ocr_text,
    deid.video_redaction_plan,
    frames.video_frames,
    labels.label_sheets,
    labels.frame_labels,
]


def materialize_video(instance, resources, video_id, frames_config=None):
    config = {"ops": {"video_frames": {"config": frames_config or {"strategy": "every_n"}}}}
    return dg.materialize(
        PIPELINE,
        selection=[a.key for a in PIPELINE if a.key != labels.label_sheets.key],
        partition_key=video_id,
        instance=instance,
        resources=resources,
        run_config=config,
    )


def test_avi_is_copied_verified_normalized_and_sampled(
    instance, resources, landing, home, videos_dir
):
    clip = drop(videos_dir, landing, AVI)
    [video_id] = register(instance, resources)
    result = materialize_video(instance, resources, video_id)
    assert result.success

    raw = home / "media" / "raw" / f"{video_id}.avi"
    assert sha256_file(raw) == sha256_file(clip)
    meta = pq.read_table(home / table_key("video_metadata", video_id)).to_pylist()[0]
    assert (meta["codec"], meta["width"], meta["height"], meta["frame_count"]) == (
        "mpeg4",
        478,
        478,
        92,
    )
    assert meta["original_name"] == AVI

    clip_info = probe_video(home / "media" / "normalized" / video_id / "clip_000.mp4")
    assert (clip_info.codec, clip_info.pix_fmt) == ("h264", "yuv420p")
    assert clip_info.frame_count == 92
    assert clip_info.avg_frame_rate == probe_video(clip).avg_frame_rate

    manifest = pq.read_table(home / table_key("video_frames", video_id)).to_pandas()
    assert manifest["frame_number"].tolist() == list(range(0, 92, 10))
    fps = float(clip_info.avg_frame_rate)
    assert (manifest["frame_timestamp"] - manifest["frame_number"] / fps).abs().max() < 0.5 / fps
    for path in manifest["frame_relative_path"]:
        assert (home / "media" / "frames" / path).is_file()
    checks = result.get_asset_check_evaluations()
    assert [(c.check_name, c.passed) for c in checks] == [
        ("frame_count_matches_sampling", True),
        ("no_residual_phi", True),
    ]


def test_rerunning_a_partition_gives_the_same_result(
    instance, resources, landing, home, videos_dir
):
    drop(videos_dir, landing, MP4)
    [video_id] = register(instance, resources)
    materialize_video(instance, resources, video_id)
    manifest_path = home / table_key("video_frames", video_id)
    first = pq.read_table(manifest_path)
    first_image = (home / "media" / "frames" / first["frame_relative_path"][3].as_py()).read_bytes()
    result = materialize_video(instance, resources, video_id)
    assert result.success
    raw = result.asset_materializations_for_node("raw_videos")[0]
    assert raw.metadata["status"].value == "cached"
    second = pq.read_table(manifest_path)
    assert second.equals(first)
    assert (home / "media" / "frames" / second["frame_relative_path"][3].as_py()).read_bytes() == (
        first_image
    )


@pytest.mark.parametrize(
    ("name", "make", "reason_part"),
    [
        ("truncated.mp4", lambda data: data[: len(data) * 2 // 5], ""),
        ("notes.mp4", lambda data: b"these are my notes, not a video\n" * 40, ""),
    ],
)
def test_broken_video_is_quarantined_and_run_succeeds(
    instance, resources, landing, videos_dir, name, make, reason_part
):
    (landing / name).write_bytes(make((videos_dir / MP4).read_bytes()))
    [video_id] = register(instance, resources)
    result = materialize_video(instance, resources, video_id)
    assert result.success
    [record] = quarantine_records(resources["media_store"])
    assert (record.file, record.content_id) == (name, video_id)
    assert record.stage in {"video_metadata", "normalized_videos"}
    assert record.reason
    statuses = {
        node: result.asset_materializations_for_node(node)[0].metadata["status"].value
        for node in ("video_frames", "frame_labels")
    }
    assert statuses == {"video_frames": "skipped", "frame_labels": "skipped"}


def test_labels_sheet_marks_frames_in_ranges_and_export_passes_checks(
    instance, resources, landing, home, videos_dir
):
    drop(videos_dir, landing, MP4)
    drop(videos_dir, landing, AVI)
    (landing / "labels.csv").write_text(
        f"video,start_s,end_s,label\n{MP4},1.0,2.0,b_lines\n{AVI},0,10,a_lines\n"
    )
    (landing / "patients.csv").write_text(f"video,patient_id,score\n{MP4},P1,3\n{AVI},P2,0\n")
    ids = register(instance, resources)
    assert dg.materialize([labels.label_sheets], instance=instance, resources=resources).success
    for video_id in ids:
        assert materialize_video(instance, resources, video_id).success
    mp4_id = content_id(sha256_file(landing / MP4))
    frame_labels = pq.read_table(home / table_key("frame_labels", mp4_id)).to_pandas()
    positives = frame_labels[frame_labels["value"]]
    assert positives["frame_number"].tolist() == [30, 40, 50]  # 25 fps: 1.2 s, 1.6 s, 2.0 s
    assert set(frame_labels["source"]) == {"sheet"}

    result = dg.materialize(
        [*PIPELINE, export.training_dataset, quarantine.quarantine],
        selection=[export.training_dataset.key],
        instance=instance,
        resources=resources,
        run_config={
            "ops": {"training_dataset": {"config": {"dataset_name": "t", "val_ratio": 0.5}}}
        },
    )
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == dict.fromkeys(export.EXPORT_CHECKS, True)
    manifest = json.loads((home / "exports" / "t" / "manifest.json").read_text())
    assert sorted(manifest["source_video_sha256"]) == sorted(
        sha256_file(landing / n) for n in (MP4, AVI)
    )
