"""LabelboxResource against a hand-written fake of the SDK client: idempotent uploads in batches,
streamed project exports, archives that are never overwritten, and an API key that never leaks."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from medvid.ids import frame_id
from medvid.labels.labelbox import parse_export_v2_rows, read_export_ndjson
from medvid_resources.labelbox import LabelboxResource, LabelboxResourceError
from tests.fakes.labelbox_fake import FakeLabelboxClient

PROJECT = "8ikpemouf4oszagoc7vlj67wq"  # the project of the export v2 fixture
API_KEY = "eyJhbGciOiJIUzI1NiJ9.fake-secret-key-1234567890"
VIDEO = "0123456789abcdef"


def _resource(fake: FakeLabelboxClient, **config: Any) -> LabelboxResource:
    """The production resource with only its SDK client swapped for the fake."""

    class FakeClientLabelbox(LabelboxResource):
        def _client(self) -> Any:
            return fake

    return FakeClientLabelbox(api_key=API_KEY, project_id=PROJECT, **config)


def _frames(frame_numbers: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "frame_id": [frame_id(VIDEO, n) for n in frame_numbers],
            "video_id": VIDEO,
            "frame_number": frame_numbers,
            "frame_timestamp": [n / 25 for n in frame_numbers],
            "frame_relative_path": [
                f"video_{VIDEO}/frame_{frame_id(VIDEO, n)}.jpg" for n in frame_numbers
            ],
        }
    )


def _url(relative_path: str) -> str:
    return f"https://bucket.example/frames/{relative_path}"


@pytest.fixture(scope="module")
def export_rows(shared_data: Path) -> list[dict[str, Any]]:
    return list(
        read_export_ndjson(shared_data / "labels" / "labelformat_labelbox_export_v2.ndjson")
    )


# ---------------------------------------------------------------- upload


def test_upload_creates_one_data_row_per_frame_keyed_by_frame_id() -> None:
    fake = FakeLabelboxClient(project_id=PROJECT)
    report = _resource(fake).upload_frames(_frames([0, 10, 20]), _url, "video-a")
    assert [row["global_key"] for row in fake.created_rows] == [
        frame_id(VIDEO, 0),
        frame_id(VIDEO, 10),
        frame_id(VIDEO, 20),
    ]
    assert fake.data_rows[frame_id(VIDEO, 10)]["row_data"] == _url(
        f"video_{VIDEO}/frame_{frame_id(VIDEO, 10)}.jpg"
    )
    assert fake.data_rows[frame_id(VIDEO, 10)]["media_type"] == "IMAGE"
    assert fake.calls_named("get_datasets") == [{"name": "medvid-frames"}]
    assert fake.calls_named("create_dataset") == [{"name": "medvid-frames"}]
    assert [(b.name, b.global_keys) for b in fake.batches] == [
        ("video-a-0000", [frame_id(VIDEO, n) for n in (0, 10, 20)])
    ]
    assert (report.requested, report.already_present, report.created) == (3, 0, 3)
    assert report.batches_created == ("video-a-0000",)


def test_re_running_an_upload_creates_nothing_new() -> None:
    fake = FakeLabelboxClient(project_id=PROJECT)
    resource = _resource(fake)
    resource.upload_frames(_frames([0, 10, 20]), _url, "video-a")
    calls_before = len(fake.calls_named("create_data_rows"))
    report = resource.upload_frames(_frames([0, 10, 20]), _url, "video-a")
    assert len(fake.calls_named("create_data_rows")) == calls_before
    assert len(fake.calls_named("create_batch")) == 1
    assert len(fake.created_rows) == 3
    assert (report.already_present, report.created) == (3, 0)
    assert report.batches_created == () and report.batches_skipped == ("video-a-0000",)


def test_upload_skips_frames_that_already_have_data_rows() -> None:
    fake = FakeLabelboxClient(project_id=PROJECT)
    resource = _resource(fake)
    resource.upload_frames(_frames([0, 10]), _url, "first")
    report = resource.upload_frames(_frames([0, 10, 20, 30]), _url, "second")
    assert [row["global_key"] for row in fake.created_rows[2:]] == [
        frame_id(VIDEO, 20),
        frame_id(VIDEO, 30),
    ]
    assert (report.already_present, report.created) == (2, 2)


def test_upload_works_in_batches_of_batch_size() -> None:
    fake = FakeLabelboxClient(project_id=PROJECT, datasets=["medvid-frames"])
    report = _resource(fake, batch_size=2).upload_frames(_frames([0, 1, 2, 3, 4]), _url, "b")
    assert [c["count"] for c in fake.calls_named("create_data_rows")] == [2, 2, 1]
    assert [c["count"] for c in fake.calls_named("get_data_row_ids_for_global_keys")] == [2, 2, 1]
    assert [(b.name, b.size) for b in fake.batches] == [("b-0000", 2), ("b-0001", 2), ("b-0002", 1)]
    assert report.created == 5
    assert fake.calls_named("create_dataset") == []  # the existing dataset is reused


# ---------------------------------------------------------------- export and archive


def test_export_rows_stream_the_project_export(export_rows) -> None:
    fake = FakeLabelboxClient(project_id=PROJECT, export_rows=export_rows)
    rows = list(_resource(fake).export_rows())
    assert rows == export_rows
    (call,) = fake.calls_named("export")
    assert call["params"]["label_details"] is True
    assert call["params"]["project_details"] is True
    assert call["params"]["interpolated_frames"] is True


def test_export_errors_raise(export_rows) -> None:
    fake = FakeLabelboxClient(project_id=PROJECT, export_rows=export_rows)
    fake.project.export_errors = [{"error": "data row failed", "data_row_id": "x"}]
    with pytest.raises(LabelboxResourceError, match="reported 1 error"):
        list(_resource(fake).export_rows())


def test_each_archive_is_a_new_file(export_rows, tmp_path: Path) -> None:
    resource = _resource(FakeLabelboxClient(project_id=PROJECT, export_rows=export_rows))
    first = resource.archive_export(resource.export_rows(), tmp_path)
    second = resource.archive_export(resource.export_rows(), tmp_path)
    assert first != second
    assert first.name.startswith(f"labelbox_{PROJECT}_") and first.suffix == ".ndjson"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name])
    assert [json.loads(line) for line in first.read_text().splitlines()] == export_rows


def test_archived_export_parses_into_objects(export_rows, tmp_path: Path) -> None:
    resource = _resource(FakeLabelboxClient(project_id=PROJECT, export_rows=export_rows))
    archive = resource.archive_export(resource.export_rows(), tmp_path / "archive")
    result = parse_export_v2_rows(
        read_export_ndjson(archive),
        project_id=PROJECT,
        frames=None,
        masks_dir=tmp_path / "labelbox",
        mask_fetcher=resource.fetch_mask,
    )
    assert result.objects.num_rows == 16


# ---------------------------------------------------------------- the API key stays secret


def test_api_key_is_not_in_repr_or_str() -> None:
    resource = _resource(FakeLabelboxClient(project_id=PROJECT))
    assert API_KEY not in repr(resource)
    assert API_KEY not in str(resource)
    assert PROJECT in repr(resource)


def test_api_key_is_redacted_from_sdk_errors() -> None:
    fake = FakeLabelboxClient(project_id=PROJECT, leak_key_in_errors=API_KEY)
    with pytest.raises(LabelboxResourceError) as caught:
        _resource(fake).upload_frames(_frames([0]), _url, "b")
    assert API_KEY not in str(caught.value)
    assert "***" in str(caught.value) and "AuthenticationError" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_api_key_is_not_logged(export_rows, tmp_path: Path, caplog) -> None:
    fake = FakeLabelboxClient(project_id=PROJECT, export_rows=export_rows)
    resource = _resource(fake)
    with caplog.at_level(logging.DEBUG):
        resource.upload_frames(_frames([0, 10]), _url, "b")
        resource.archive_export(resource.export_rows(), tmp_path)
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "2 frames, 0 already present, 2 created" in text
    assert API_KEY not in text


def test_api_key_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("LABELBOX_API_KEY", API_KEY)
    configured = LabelboxResource(api_key=dg.EnvVar("LABELBOX_API_KEY"), project_id=PROJECT)
    with dg.build_resources({"labelbox": configured}) as resources:
        assert resources.labelbox.api_key == API_KEY
        assert API_KEY not in repr(resources.labelbox)


def test_a_dataset_with_a_similar_name_is_not_reused() -> None:
    fake = FakeLabelboxClient(project_id=PROJECT, datasets=["medvid-frames-old"])
    _resource(fake).upload_frames(_frames([0]), _url, "b")
    assert fake.calls_named("create_dataset") == [{"name": "medvid-frames"}]
