"""Landing zones: where hospitals drop raw videos, DICOM studies and label sheets.

Two twins behind one interface: :class:`DriveFolderLandingZone` (a local or mounted shared-drive
folder) and :class:`S3LandingZone` (a bucket prefix). Sensors and schedules take a
:class:`LandingZone` and never know which one they got. A landing zone is read-only for medvid:
files are listed, hashed and copied out, never modified or deleted.
"""

import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from medvid.errors import UnsafeInputError
from medvid.ids import sha256_stream
from medvid.io import atomic_path

# Suffixes and prefixes of files that are still being written by an uploader or a sync client.
TEMPORARY_SUFFIXES = (
    ".part",
    ".partial",
    ".tmp",
    ".temp",
    ".crdownload",
    ".download",
    ".filepart",
)
TEMPORARY_PREFIXES = (".", "~$", "~")


@dataclass(frozen=True)
class LandingFile:
    """One file in a landing zone.

    ``key`` is the posix path relative to the zone's root (a folder or a bucket prefix); ``size``
    is in bytes; ``mtime`` is the last modification time in seconds since the epoch (UTC).
    """

    key: str
    size: int
    mtime: float

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.key).suffix.lower()

    @property
    def is_temporary(self) -> bool:
        """True for files an uploader is still writing (``.part``, ``.crdownload``, ``~$x``...)
        and hidden files (``.DS_Store``); these are never ingested."""
        name = self.name.lower()
        if any(part.startswith(".") for part in PurePosixPath(self.key).parts[:-1]):
            return True
        return name.endswith(TEMPORARY_SUFFIXES) or name.startswith(TEMPORARY_PREFIXES)


class LandingZone(dg.ConfigurableResource, ABC):
    """Where raw inputs arrive. Read-only: nothing here ever modifies or deletes a file."""

    @abstractmethod
    def list_files(self) -> list[LandingFile]:
        """Every file in the zone (recursively), sorted by key."""

    @abstractmethod
    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        """Open a file for binary reading. Raises ``FileNotFoundError`` when it is gone."""

    @abstractmethod
    def download(self, key: str, dest: Path) -> Path:
        """Copy a file to a local path, atomically; returns ``dest``."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """A URI for humans and logs (``file:///...`` or ``s3://bucket/key``)."""

    def sha256(self, key: str) -> str:
        """Hex sha256 of a file's bytes, streamed."""
        with self.open(key) as stream:
            return sha256_stream(stream)


class DriveFolderLandingZone(LandingZone):
    """A folder on a local disk or a mounted shared drive (the default: ``<home>/landing``)."""

    path: str = Field(description="Folder that uploaders drop files into (read-only for medvid).")

    def _root(self) -> Path:
        return Path(self.path).expanduser().resolve()

    def list_files(self) -> list[LandingFile]:
        root = self._root()
        if not root.is_dir():
            return []
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for filename in sorted(filenames):
                full = Path(dirpath) / filename
                try:
                    stat = full.stat()
                except FileNotFoundError:  # removed between listing and stat
                    continue
                if not full.is_file():
                    continue
                files.append(
                    LandingFile(full.relative_to(root).as_posix(), stat.st_size, stat.st_mtime)
                )
        return sorted(files, key=lambda f: f.key)

    def _full(self, key: str) -> Path:
        full = (self._root() / key).resolve()
        if self._root() not in full.parents:
            raise UnsafeInputError(
                "the file is a link to a place outside the landing folder; copy the file itself"
            )
        return full

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        with open(self._full(key), "rb") as stream:
            yield stream

    def download(self, key: str, dest: Path) -> Path:
        with atomic_path(dest) as tmp:
            shutil.copyfile(self._full(key), tmp)
        return dest

    def uri(self, key: str) -> str:
        return (self._root() / key).as_uri()


class S3LandingZone(LandingZone):
    """A bucket prefix that a hospital's uploader writes to. Credentials come from the nested
    :class:`dagster_aws.s3.S3Resource` (environment, instance profile or ``EnvVar``)."""

    bucket: str
    prefix: str = ""
    s3: S3Resource

    _s3_client: Any = PrivateAttr(default=None)

    def _client(self):
        # one client per resource instance: building one (botocore reads its service model)
        # takes 0.1-0.7 s of CPU, and a run makes hundreds of calls
        if self._s3_client is None:
            self._s3_client = self.s3.get_client()
        return self._s3_client

    def _full_key(self, key: str) -> str:
        return f"{self.prefix.rstrip('/')}/{key}" if self.prefix else key

    def list_files(self) -> list[LandingFile]:
        paginator = self._client().get_paginator("list_objects_v2")
        base = f"{self.prefix.rstrip('/')}/" if self.prefix else ""
        files = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith("/"):
                    continue
                rel = obj["Key"][len(base) :]
                files.append(LandingFile(rel, int(obj["Size"]), obj["LastModified"].timestamp()))
        return sorted(files, key=lambda f: f.key)

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        client = self._client()
        try:
            body = client.get_object(Bucket=self.bucket, Key=self._full_key(key))["Body"]
        except client.exceptions.NoSuchKey as exc:
            raise FileNotFoundError(self.uri(key)) from exc
        try:
            yield body
        finally:
            body.close()

    def download(self, key: str, dest: Path) -> Path:
        with atomic_path(dest) as tmp:
            self._client().download_file(self.bucket, self._full_key(key), str(tmp))
        return dest

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full_key(key)}"
