"""The S3 twins build one boto3 client per resource instance: building one reads botocore's
service model (0.1 s of CPU on an idle core, 0.7 s on this shared machine) and a run of the
deployed stack makes hundreds of calls through them."""

from datetime import UTC, datetime

from dagster_aws.s3 import S3Resource

from medvid_resources import S3LandingZone, S3MediaStore

LANDED = datetime(2026, 11, 30, 12, tzinfo=UTC)


class RecordingClient:
    """Answers the calls the twins make (every object exists; a listing holds ``clip.mp4``),
    and records them."""

    def __init__(self):
        self.calls: list[str] = []

    def head_object(self, Bucket, Key):  # noqa: N803 - boto3's argument names
        self.calls.append(f"head_object {Bucket}/{Key}")
        return {}

    def get_paginator(self, name):
        calls = self.calls

        class Paginator:
            def paginate(self, Bucket, Prefix):  # noqa: N803
                calls.append(f"list {Bucket}/{Prefix}")
                key = f"{Prefix.rstrip('/')}/clip.mp4"
                return [{"Contents": [{"Key": key, "Size": 3, "LastModified": LANDED}]}]

        return Paginator()


class RecordingS3(S3Resource):
    """An S3Resource whose every ``get_client`` is recorded and returns one recording client."""

    def get_client(self):
        BUILT.append(self)
        return CLIENT


BUILT: list[S3Resource] = []
CLIENT = RecordingClient()


def test_a_media_store_builds_its_client_once():
    BUILT.clear()
    CLIENT.calls.clear()
    store = S3MediaStore(bucket="media", s3=RecordingS3())
    assert [store.exists(f"tables/t{i}.parquet") for i in range(2)] == [True, True]
    assert store.list_keys("tables") == ["tables/clip.mp4"]
    assert CLIENT.calls == [
        "head_object media/medvid/tables/t0.parquet",
        "head_object media/medvid/tables/t1.parquet",
        "list media/medvid/tables",
    ]
    assert len(BUILT) == 1


def test_a_landing_zone_builds_its_client_once():
    BUILT.clear()
    zone = S3LandingZone(bucket="landing", prefix="in", s3=RecordingS3())
    assert [f.key for f in zone.list_files()] == ["clip.mp4"]
    assert [(f.key, f.mtime) for f in zone.list_files()] == [("clip.mp4", LANDED.timestamp())]
    assert len(BUILT) == 1
