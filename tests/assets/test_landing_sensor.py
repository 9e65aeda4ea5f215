"""The landing sensor and the daily schedule, evaluated against a real folder."""

import datetime as dt
import json
import os
import shutil

import dagster as dg

from medvid.ids import content_id, sha256_file
from medvid_assets.definitions import build_definitions
from medvid_assets.landing import read_ledger_entry
from medvid_assets.quarantine import quarantine_records
from medvid_assets.schedules import daily_drive_sync
from medvid_assets.sensors import drive_landing_sensor
from tests.assets.conftest import AVI, MP4, drop


def tick(instance, resources, cursor=None) -> dg.SensorResult:
    # closed after use: it owns the resources it built (an open one is closed later, whenever
    # the garbage collector gets to it, and then disturbs whichever test is running)
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return drive_landing_sensor(context)


def test_new_video_is_taken_once_its_size_is_unchanged_across_two_ticks(
    instance, resources, landing, videos_dir
):
    clip = drop(videos_dir, landing, AVI)
    first = tick(instance, resources)
    assert first.run_requests == []
    assert first.dynamic_partitions_requests == []

    second = tick(instance, resources, first.cursor)
    video_id = content_id(sha256_file(clip))
    assert [r.partition_key for r in second.run_requests] == [video_id]
    assert second.run_requests[0].job_name == "video_pipeline"
    assert second.dynamic_partitions_requests[0].partition_keys == [video_id]

    third = tick(instance, resources, second.cursor)
    assert third.run_requests == [] and third.dynamic_partitions_requests == []


def test_file_still_being_written_is_not_taken(instance, resources, landing, videos_dir):
    partial = landing / MP4
    data = (videos_dir / MP4).read_bytes()
    partial.write_bytes(data[: len(data) // 2])
    first = tick(instance, resources)
    partial.write_bytes(data)  # the upload goes on: size changed since the last tick
    second = tick(instance, resources, first.cursor)
    assert second.run_requests == []
    third = tick(instance, resources, second.cursor)
    assert [r.partition_key for r in third.run_requests] == [content_id(sha256_file(partial))]


def test_temporary_upload_files_are_ignored(instance, resources, landing, videos_dir):
    drop(videos_dir, landing, MP4, as_name=MP4 + ".part")
    drop(videos_dir, landing, MP4, as_name=MP4 + ".crdownload")
    first = tick(instance, resources)
    second = tick(instance, resources, first.cursor)
    assert second.run_requests == []
    assert json.loads(second.cursor)["handled"] == {}


def test_renamed_reupload_is_recorded_as_alias_not_processed_again(
    instance, resources, landing, videos_dir
):
    drop(videos_dir, landing, MP4)
    cursor = tick(instance, resources).cursor
    cursor = tick(instance, resources, cursor).cursor
    drop(videos_dir, landing, MP4, as_name="same_video_renamed.mp4")
    cursor = tick(instance, resources, cursor).cursor
    result = tick(instance, resources, cursor)
    assert result.run_requests == []
    entry = read_ledger_entry(resources["media_store"], content_id(sha256_file(landing / MP4)))
    assert entry.original_name == MP4
    assert entry.aliases == ["same_video_renamed.mp4"]


def test_empty_and_unsupported_files_are_quarantined_with_reasons(instance, resources, landing):
    (landing / "empty.mp4").write_bytes(b"")
    (landing / "notes.txt").write_text("not a video")
    cursor = tick(instance, resources).cursor
    result = tick(instance, resources, cursor)
    assert result.run_requests == []
    reasons = {r.file: r.reason for r in quarantine_records(resources["media_store"])}
    assert reasons == {
        "empty.mp4": "empty file (0 bytes)",
        "notes.txt": "unsupported file type '.txt'",
    }


def test_sheet_arrival_requests_a_labels_run(instance, resources, landing):
    (landing / "labels.csv").write_text("video,start_s,end_s,label\na.mp4,0,1,x\n")
    cursor = tick(instance, resources).cursor
    result = tick(instance, resources, cursor)
    assert [r.job_name for r in result.run_requests] == ["labels_job"]


def test_landing_file_is_never_modified(instance, resources, landing, videos_dir):
    clip = drop(videos_dir, landing, AVI)
    before = (sha256_file(clip), os.stat(clip).st_mtime_ns)
    cursor = tick(instance, resources).cursor
    tick(instance, resources, cursor)
    assert (sha256_file(clip), os.stat(clip).st_mtime_ns) == before


def test_daily_schedule_registers_settled_files_and_requests_runs(
    instance, resources, landing, videos_dir
):
    clip = drop(videos_dir, landing, AVI)
    old = clip.stat().st_mtime - 3600
    os.utime(clip, (old, old))
    fresh = drop(videos_dir, landing, MP4)  # arrived seconds ago: still settling, left for later
    with dg.build_schedule_context(
        instance=instance,
        resources=resources,
        scheduled_execution_time=dt.datetime.fromtimestamp(fresh.stat().st_mtime + 5, dt.UTC),
    ) as context:
        requests = daily_drive_sync(context)
    video_id = content_id(sha256_file(clip))
    assert [r.partition_key for r in requests] == [video_id]
    assert instance.get_dynamic_partitions("videos") == [video_id]


def test_definitions_load_with_every_stage(home):
    defs = build_definitions(home)
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {
        "landing_arrivals",
        "raw_videos",
        "video_metadata",
        "normalized_videos",
        "video_frames",
        "label_sheets",
        "frame_labels",
        "training_dataset",
        "quarantine",
    } <= keys
    assert shutil.which  # the module imports cleanly without a Dagster home set
