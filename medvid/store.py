"""Reading and writing medvid's tables and records in a media store, whichever it is.

A *store* is anything with the interface of :class:`medvid_resources.MediaStore` (a folder, or a
bucket with a local cache): keys are posix paths relative to the store root (named in
:mod:`medvid.catalog.keys`); writers write a local file and publish it; readers fetch. The core
reads and writes through this protocol only, so it never knows which store it got.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from medvid.io import write_json_atomic, write_parquet_atomic


class Store(Protocol):
    """The media store interface (see :class:`medvid_resources.MediaStore`)."""

    def local_path(self, key: str) -> Path: ...

    def fetch(self, key: str) -> Path: ...

    def fetch_prefix(self, prefix: str) -> Path: ...

    def publish(self, key: str) -> None: ...

    def publish_prefix(self, prefix: str) -> None: ...

    def exists(self, key: str) -> bool: ...

    def list_keys(self, prefix: str) -> list[str]: ...

    def uri(self, key: str) -> str: ...


def write_table(store: Store, key: str, table: pa.Table) -> str:
    """Write ``table`` as Parquet at ``key`` (atomic) and publish it; returns the key."""
    write_parquet_atomic(table, store.local_path(key))
    store.publish(key)
    return key


def read_table(store: Store, key: str) -> pa.Table:
    """Read a Parquet table. Raises ``FileNotFoundError`` when it was never written."""
    return pq.read_table(store.fetch(key))


def read_table_or_empty(store: Store, key: str, schema: pa.Schema) -> pa.Table:
    """The table at ``key``, or an empty table of ``schema`` when it was never written."""
    return read_table(store, key) if store.exists(key) else schema.empty_table()


def write_json(store: Store, key: str, obj: Any) -> str:
    """Write ``obj`` as sorted, indented JSON at ``key`` (atomic) and publish it."""
    write_json_atomic(store.local_path(key), obj)
    store.publish(key)
    return key


def read_json(store: Store, key: str) -> Any:
    """Read a JSON record. Raises ``FileNotFoundError`` when it was never written."""
    return json.loads(store.fetch(key).read_text())


def read_json_or(store: Store, key: str, default: Any) -> Any:
    """The JSON record at ``key``, or ``default`` when it was never written."""
    return read_json(store, key) if store.exists(key) else default


def stems(store: Store, prefix: str, suffix: str = ".json") -> list[str]:
    """Sorted file stems of the keys directly under ``prefix`` ending in ``suffix`` (e.g. the
    content ids of the ledger)."""
    base = prefix.rstrip("/") + "/"
    return sorted(
        key[len(base) : -len(suffix)]
        for key in store.list_keys(prefix)
        if key.endswith(suffix) and "/" not in key[len(base) :]
    )
