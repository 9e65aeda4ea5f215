"""Intake: the landing sensor looks, intake runs work, outcomes are recorded after the work."""

import json
import os

import dagster as dg

from medvid.batches import nonempty_batches
from medvid.ids import content_id, sha256_file
from medvid.intake.ledger import intake_records, read_ledger_entry
from medvid.quarantine import quarantine_records
from medvid_assets.orchestration.sensors import daily_intake, landing_sensor
from tests.stages.conftest import AVI, MP4, drop


def tick(home, cursor=None) -> dg.SensorResult:
    # closed after use: it owns the resources it built
    with dg.build_sensor_context(
        instance=home.instance,
        cursor=cursor,
        resources=home.resources("landing_zone", "media_store", "settings"),
    ) as context:
        return landing_sensor(context)


def test_a_settled_file_gets_one_intake_run_for_its_landing_day(medvid_home, videos_dir):
    clip = drop(videos_dir, medvid_home.landing, AVI)
    first = tick(medvid_home)
    assert first.run_requests == []  # seen once: maybe still being written
    second = tick(medvid_home, first.cursor)
    [request] = second.run_requests
    assert request.job_name == "intake_job"
    day = dg.DailyPartitionsDefinition(start_date="2020-01-01").get_partition_key_for_timestamp(
        clip.stat().st_mtime
    )
    assert request.partition_key == day
    fingerprints = request.run_config["ops"]["landing_intake"]["config"]["fingerprints"]
    assert len(fingerprints) == 1
    assert request.tags["medvid/unit"] == f"intake:{day}"


def test_a_tick_writes_nothing_so_a_preview_changes_nothing(medvid_home, videos_dir):
    drop(videos_dir, medvid_home.landing, MP4)
    cursor = tick(medvid_home).cursor
    before = sorted(p.relative_to(medvid_home.path) for p in medvid_home.path.rglob("*"))
    preview = tick(medvid_home, cursor)  # "Preview tick result": evaluated, not applied
    assert len(preview.run_requests) == 1
    assert sorted(p.relative_to(medvid_home.path) for p in medvid_home.path.rglob("*")) == before
    assert nonempty_batches(medvid_home.store) == []
    # the real tick, from the same cursor, requests the same run
    real = tick(medvid_home, cursor)
    assert [r.run_key for r in real.run_requests] == [r.run_key for r in preview.run_requests]


def test_a_file_still_being_written_is_not_taken(medvid_home, videos_dir):
    partial = medvid_home.landing / MP4
    data = (videos_dir / MP4).read_bytes()
    partial.write_bytes(data[: len(data) // 2])
    first = tick(medvid_home)
    partial.write_bytes(data)  # the upload goes on: size changed since the last tick
    assert tick(medvid_home, first.cursor).run_requests == []


def test_temporary_upload_files_are_ignored(medvid_home, videos_dir):
    drop(videos_dir, medvid_home.landing, MP4, as_name=MP4 + ".part")
    drop(videos_dir, medvid_home.landing, MP4, as_name=MP4 + ".crdownload")
    first = tick(medvid_home)
    assert tick(medvid_home, first.cursor).run_requests == []


def test_intake_copies_into_the_protected_zone_and_records_the_outcome_last(
    medvid_home, videos_dir
):
    clip = drop(videos_dir, medvid_home.landing, AVI)
    before = (sha256_file(clip), os.stat(clip).st_mtime_ns)
    launched = medvid_home.run("intake")
    assert launched.units("intake")
    video_id = content_id(sha256_file(clip))
    raw = medvid_home.path / "protected" / "media" / "raw" / f"{video_id}.avi"
    assert sha256_file(raw) == before[0]
    assert not (medvid_home.path / "media" / "raw").exists()
    [record] = intake_records(medvid_home.store)
    batch = medvid_home.batch_of(video_id)
    assert batch.startswith(record.day + "|")
    assert (record.outcome, record.content_id, record.partitions) == (
        "processed",
        video_id,
        [batch],
    )
    assert nonempty_batches(medvid_home.store) == [batch]
    assert medvid_home.videos() == [video_id]
    assert (sha256_file(clip), os.stat(clip).st_mtime_ns) == before  # never modified


def test_a_renamed_reupload_is_an_alias_not_processed_again(medvid_home, videos_dir):
    drop(videos_dir, medvid_home.landing, MP4)
    medvid_home.run("intake")
    drop(videos_dir, medvid_home.landing, MP4, as_name="same_video_renamed.mp4")
    launched = medvid_home.run("intake")
    assert len(launched.units("intake")) == 1
    assert medvid_home.videos() == [content_id(sha256_file(videos_dir / MP4))]
    entry = read_ledger_entry(medvid_home.store, content_id(sha256_file(videos_dir / MP4)))
    assert (entry.original_name, entry.aliases) == (MP4, ["same_video_renamed.mp4"])
    outcomes = sorted(r.outcome for r in intake_records(medvid_home.store))
    assert outcomes == ["duplicate", "processed"]


def test_empty_unsupported_and_escaping_files_are_quarantined_with_reasons(
    medvid_home, videos_dir, tmp_path
):
    landing = medvid_home.landing
    (landing / "empty.mp4").write_bytes(b"")
    (landing / "notes.txt").write_text("not a video")
    outside = tmp_path / "outside.mp4"
    outside.write_bytes((videos_dir / MP4).read_bytes())
    (landing / "link.mp4").symlink_to(outside)
    drop(videos_dir, landing, AVI)
    launched = medvid_home.run("intake")
    assert not launched.failed
    reasons = {r.file: r.reason for r in quarantine_records(medvid_home.store)}
    assert reasons == {
        "empty.mp4": "empty file (0 bytes)",
        "notes.txt": "unsupported file type '.txt'",
        "link.mp4": "the file is a link to a place outside the landing folder; copy the file"
        " itself",
    }
    # the good file went through in the same batch
    assert len(medvid_home.videos()) == 1
    # and nothing is offered again
    assert medvid_home.run("intake").runs == []


def test_daily_intake_takes_files_still_for_a_minute(medvid_home, videos_dir):
    import datetime as dt

    clip = drop(videos_dir, medvid_home.landing, AVI)
    old = clip.stat().st_mtime - 3600
    os.utime(clip, (old, old))
    fresh = drop(videos_dir, medvid_home.landing, MP4)  # seconds old: left for later
    with dg.build_schedule_context(
        instance=medvid_home.instance,
        resources=medvid_home.resources("landing_zone", "media_store", "settings"),
        scheduled_execution_time=dt.datetime.fromtimestamp(fresh.stat().st_mtime + 5, dt.UTC),
    ) as context:
        [request] = daily_intake(context)
    assert len(request.run_config["ops"]["landing_intake"]["config"]["fingerprints"]) == 1


def test_arrivals_are_listed_by_display_names_masking_what_a_sheet_that_came_along_knows(
    medvid_home, videos_dir
):
    name = "SMITH_JOHN_5551234_20240215.mp4"
    drop(videos_dir, medvid_home.landing, MP4, as_name=name)
    (medvid_home.landing / "patients.csv").write_text(
        f'video,patient_id,patient_name\n{name},5551234,"Smith, John"\n'
    )
    medvid_home.run("intake")
    [day_table] = (medvid_home.path / "tables" / "landing_arrivals").glob("*.parquet")
    import pyarrow.parquet as pq

    rows = pq.read_table(day_table).to_pylist()
    assert sorted(r["display_name"] for r in rows) == [
        "[name]_[name]_[id]_[date].mp4",
        "patients.csv",
    ]
    for token in ("5551234", "SMITH", "Smith", "JOHN", "20240215"):
        assert token not in json.dumps(rows)
