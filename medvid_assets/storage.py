"""Keys and small read/write helpers over the :class:`~medvid_resources.MediaStore`.

Every path medvid writes is named here, once. See DEVELOPERS.md for the layout.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medvid.io import write_json_atomic, write_parquet_atomic
from medvid_resources import MediaStore

RAW_PREFIX = "media/raw"
NORMALIZED_PREFIX = "media/normalized"
FRAMES_PREFIX = "media/frames"
LEDGER_PREFIX = "ledger"
QUARANTINE_PREFIX = "quarantine"
EXPORTS_PREFIX = "exports"


def table_key(asset_name: str, partition_key: str | None = None) -> str:
    """``tables/<asset>/<partition>.parquet`` or ``tables/<asset>.parquet``."""
    if partition_key is None:
        return f"tables/{asset_name}.parquet"
    return f"tables/{asset_name}/{partition_key}.parquet"


def write_table(store: MediaStore, key: str, table: pa.Table) -> str:
    write_parquet_atomic(table, store.local_path(key))
    store.publish(key)
    return key


def read_table(store: MediaStore, key: str) -> pa.Table:
    """Read a Parquet table; raises FileNotFoundError when the asset was never materialized."""
    return pq.read_table(store.fetch(key))


def write_json(store: MediaStore, key: str, obj: Any) -> str:
    write_json_atomic(store.local_path(key), obj)
    store.publish(key)
    return key


def read_json(store: MediaStore, key: str) -> Any:
    return json.loads(store.fetch(key).read_text())
