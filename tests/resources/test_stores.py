"""Landing zones and media stores: the local and S3 twins behave the same.

S3 runs against moto's in-process fake of the S3 API (no network)."""

import hashlib
from pathlib import Path

import boto3
import pytest
from dagster_aws.s3 import S3Resource
from moto import mock_aws

from medvid_resources import (
    DriveFolderLandingZone,
    LandingFile,
    LocalMediaStore,
    S3LandingZone,
    S3MediaStore,
)

FILES = {"a.mp4": b"video bytes", "sub/b.csv": b"video,start_s\n", "c.mp4.part": b"half"}


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="hospital-drop")
        boto3.client("s3").create_bucket(Bucket="medvid-store")
        yield


@pytest.fixture(params=["drive", "s3"])
def zone(request, tmp_path: Path):
    if request.param == "drive":
        for key, data in FILES.items():
            (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / key).write_bytes(data)
        return DriveFolderLandingZone(path=str(tmp_path))
    request.getfixturevalue("aws")
    for key, data in FILES.items():
        boto3.client("s3").put_object(Bucket="hospital-drop", Key=f"incoming/{key}", Body=data)
    return S3LandingZone(bucket="hospital-drop", prefix="incoming", s3=S3Resource())


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path: Path):
    if request.param == "local":
        return LocalMediaStore(root=str(tmp_path / "store"))
    request.getfixturevalue("aws")
    return S3MediaStore(bucket="medvid-store", cache_dir=str(tmp_path / "cache"), s3=S3Resource())


def test_landing_zone_lists_every_file_with_size(zone):
    files = zone.list_files()
    assert [(f.key, f.size) for f in files] == [
        ("a.mp4", 11),
        ("c.mp4.part", 4),
        ("sub/b.csv", 14),
    ]
    assert [f.is_temporary for f in files] == [False, True, False]


def test_landing_zone_hashes_and_downloads_without_changing_the_source(zone, tmp_path_factory):
    dest = zone.download("sub/b.csv", tmp_path_factory.mktemp("out") / "b.csv")
    assert dest.read_bytes() == FILES["sub/b.csv"]
    assert zone.sha256("a.mp4") == hashlib.sha256(FILES["a.mp4"]).hexdigest()
    assert [f.key for f in zone.list_files()] == sorted(FILES)


def test_landing_zone_missing_key_raises_file_not_found(zone):
    with pytest.raises(FileNotFoundError), zone.open("nope.mp4") as stream:
        stream.read()


def test_media_store_round_trip(store):
    path = store.local_path("media/raw/x.mp4")
    path.write_bytes(b"payload")
    store.publish("media/raw/x.mp4")
    frames = store.local_path("media/frames/video_x/frame_1.jpg")
    frames.write_bytes(b"jpeg")
    store.publish_prefix("media/frames/video_x")
    assert store.exists("media/raw/x.mp4")
    assert not store.exists("media/raw/y.mp4")
    assert store.list_keys("media") == ["media/frames/video_x/frame_1.jpg", "media/raw/x.mp4"]
    assert store.fetch("media/raw/x.mp4").read_bytes() == b"payload"
    with pytest.raises(FileNotFoundError):
        store.fetch("media/raw/missing.mp4")


def test_s3_store_serves_objects_to_a_fresh_cache(aws, tmp_path):
    writer = S3MediaStore(bucket="medvid-store", cache_dir=str(tmp_path / "a"), s3=S3Resource())
    writer.local_path("tables/t.parquet").write_bytes(b"table")
    writer.publish("tables/t.parquet")
    reader = S3MediaStore(bucket="medvid-store", cache_dir=str(tmp_path / "b"), s3=S3Resource())
    assert reader.fetch("tables/t.parquet").read_bytes() == b"table"
    assert reader.uri("tables/t.parquet") == "s3://medvid-store/medvid/tables/t.parquet"


def test_store_rejects_keys_that_escape_the_root(tmp_path):
    with pytest.raises(ValueError, match=r"'\.\.'"):
        LocalMediaStore(root=str(tmp_path)).local_path("../outside.txt")


def test_landing_file_temporary_names():
    assert LandingFile("x/.hidden/v.mp4", 1, 0).is_temporary
    assert LandingFile("~$sheet.csv", 1, 0).is_temporary
    assert not LandingFile("study/IM0001", 1, 0).is_temporary


def test_salt_from_an_envvar_resolves_outside_a_run_too(monkeypatch, tmp_path):
    """The command line uses resources outside Dagster runs: an EnvVar salt must be its
    value there, never the variable's name."""
    import dagster as dg

    from medvid_resources import DeidentificationResource

    monkeypatch.setenv("MEDVID_TEST_SALT", "s3cret-value")
    resource = DeidentificationResource(salt=dg.EnvVar("MEDVID_TEST_SALT"))
    assert resource.get_salt() == "s3cret-value"
    with (
        dg.instance_for_test() as instance,
        dg.build_resources({"deid": resource}, instance=instance) as built,
    ):
        assert built.deid.get_salt() == "s3cret-value"
    assert "s3cret" not in repr(resource)


def test_salt_file_is_created_once_and_private(tmp_path):
    from medvid_resources import DeidentificationResource

    path = tmp_path / "protected" / "deid_salt"
    first = DeidentificationResource(salt_file=str(path)).get_salt()
    assert DeidentificationResource(salt_file=str(path)).get_salt() == first
    assert len(first) == 64 and path.stat().st_mode & 0o777 == 0o600
