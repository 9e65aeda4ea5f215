"""Media stores: where medvid keeps everything it makes (raw copies, clips, frames, tables,
quarantine records, exports).

Keys are posix paths relative to the store root (see DEVELOPERS.md for the layout). Core code
works on local paths, so the interface is "give me a local path for this key" plus "publish what I
wrote". :class:`LocalMediaStore` is a folder (publishing is a no-op); :class:`S3MediaStore` keeps
a local cache folder and uploads on publish, downloads on fetch.
"""

import os
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from medvid.io import atomic_path


def _clean_key(key: str) -> str:
    parts = [p for p in key.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ValueError(f"media store keys may not contain '..': {key!r}")
    return "/".join(parts)


class MediaStore(dg.ConfigurableResource, ABC):
    """Content store for everything medvid writes."""

    @abstractmethod
    def local_path(self, key: str) -> Path:
        """Local path for ``key`` (to write to, or to read after :meth:`fetch`). Parent folders
        exist. The file may not exist yet."""

    @abstractmethod
    def fetch(self, key: str) -> Path:
        """Local path of an existing object. Raises ``FileNotFoundError`` when absent."""

    @abstractmethod
    def fetch_prefix(self, prefix: str) -> Path:
        """Make every object under ``prefix`` available locally; returns the local folder."""

    @abstractmethod
    def publish(self, key: str) -> None:
        """Make a file written at :meth:`local_path` durable in the store."""

    @abstractmethod
    def publish_prefix(self, prefix: str) -> None:
        """Publish every file written under ``prefix``."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` exists in the store."""

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """Sorted keys under ``prefix``."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """URI for humans, logs and Labelbox row data."""


class LocalMediaStore(MediaStore):
    """A folder (default: the medvid home, so raw copies land in ``<home>/media/raw``)."""

    root: str = Field(description="Root folder of the store.")

    def _root(self) -> Path:
        return Path(self.root).expanduser().resolve()

    def local_path(self, key: str) -> Path:
        path = self._root() / _clean_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def fetch(self, key: str) -> Path:
        path = self._root() / _clean_key(key)
        if not path.exists():
            raise FileNotFoundError(self.uri(key))
        return path

    def fetch_prefix(self, prefix: str) -> Path:
        return self._root() / _clean_key(prefix)

    def publish(self, key: str) -> None:
        self.fetch(key)

    def publish_prefix(self, prefix: str) -> None:
        return None

    def exists(self, key: str) -> bool:
        return (self._root() / _clean_key(key)).exists()

    def list_keys(self, prefix: str) -> list[str]:
        base = self._root() / _clean_key(prefix)
        if base.is_file():
            return [_clean_key(prefix)]
        if not base.is_dir():
            return []
        keys = []
        for dirpath, _, filenames in os.walk(base):
            for filename in filenames:
                if filename.startswith(".tmp-"):
                    continue
                keys.append((Path(dirpath) / filename).relative_to(self._root()).as_posix())
        return sorted(keys)

    def uri(self, key: str) -> str:
        return (self._root() / _clean_key(key)).as_uri()


class S3MediaStore(MediaStore):
    """A bucket prefix with a local cache folder. Writers write into the cache through
    :meth:`local_path` and call :meth:`publish`; readers call :meth:`fetch`."""

    bucket: str
    prefix: str = "medvid"
    cache_dir: str = Field(
        default="/tmp/medvid-s3-cache", description="Local cache for objects in flight."
    )
    s3: S3Resource

    _s3_client: Any = PrivateAttr(default=None)

    def _client(self):
        # one client per resource instance: building one (botocore reads its service model)
        # takes 0.1-0.7 s of CPU, and a run makes hundreds of calls
        if self._s3_client is None:
            self._s3_client = self.s3.get_client()
        return self._s3_client

    def _s3_key(self, key: str) -> str:
        key = _clean_key(key)
        return f"{self.prefix.strip('/')}/{key}" if self.prefix.strip("/") else key

    def local_path(self, key: str) -> Path:
        path = Path(self.cache_dir) / self.bucket / self._s3_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def fetch(self, key: str) -> Path:
        path = self.local_path(key)
        if not self.exists(key):
            raise FileNotFoundError(self.uri(key))
        with atomic_path(path) as tmp:
            self._client().download_file(self.bucket, self._s3_key(key), str(tmp))
        return path

    def fetch_prefix(self, prefix: str) -> Path:
        for key in self.list_keys(prefix):
            self.fetch(key)
        return self.local_path(prefix)

    def publish(self, key: str) -> None:
        self._client().upload_file(str(self.local_path(key)), self.bucket, self._s3_key(key))

    def publish_prefix(self, prefix: str) -> None:
        base = self.local_path(prefix)
        cache_root = Path(self.cache_dir) / self.bucket
        store_root = cache_root / self.prefix.strip("/") if self.prefix.strip("/") else cache_root
        if base.is_file():
            self.publish(prefix)
            return
        for dirpath, _, filenames in os.walk(base):
            for filename in sorted(filenames):
                if filename.startswith(".tmp-"):
                    continue
                self.publish((Path(dirpath) / filename).relative_to(store_root).as_posix())

    def exists(self, key: str) -> bool:
        client = self._client()
        try:
            client.head_object(Bucket=self.bucket, Key=self._s3_key(key))
        except client.exceptions.ClientError:
            return False
        return True

    def list_keys(self, prefix: str) -> list[str]:
        base = self._s3_key(prefix)
        strip = len(self.prefix.strip("/")) + 1 if self.prefix.strip("/") else 0
        keys = []
        for page in (
            self._client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=base)
        ):
            keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._s3_key(key)}"

    def clear_cache(self) -> None:
        """Delete the local cache (objects stay in the bucket)."""
        shutil.rmtree(Path(self.cache_dir) / self.bucket, ignore_errors=True)
