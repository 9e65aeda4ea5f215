"""Keys and small read/write helpers over the :class:`~medvid_resources.MediaStore`.

Every path medvid writes is named here, once. See DEVELOPERS.md for the layout.
"""

from __future__ import annotations

import datetime as dt
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
PROTECTED_PREFIX = "protected"
"""PHI lives only under here (raw DICOM, pseudonym map, header PHI values, OCR text): never
exported, never uploaded."""
DEID_STATUS_PREFIX = "deid_status"


def table_key(asset_name: str, partition_key: str | None = None) -> str:
    """``tables/<asset>/<partition>.parquet`` or ``tables/<asset>.parquet``."""
    if partition_key is None:
        return f"tables/{asset_name}.parquet"
    return f"tables/{asset_name}/{partition_key}.parquet"


def protected_table_key(asset_name: str, partition_key: str) -> str:
    """``protected/tables/<asset>/<partition>.parquet``: a table that may hold PHI."""
    return f"{PROTECTED_PREFIX}/tables/{asset_name}/{partition_key}.parquet"


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


def write_deid_status(
    store: MediaStore, scope: str, key: str, *, passed: bool, checked: int, findings: list[str]
) -> None:
    """Record the outcome of a de-identification check (``deid_status/<scope>/<key>.json``).

    ``findings`` name what was found and where, never the PHI itself. The export and every
    upload read these records (:func:`deid_passed`): no record, no export.
    """
    write_json(
        store,
        f"{DEID_STATUS_PREFIX}/{scope}/{key}.json",
        {
            "passed": passed,
            "checked": checked,
            "findings": findings,
            "checked_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )


def deid_passed(store: MediaStore, scope: str, key: str) -> bool:
    """Whether the last de-identification check of ``key`` in ``scope`` passed."""
    status_key = f"{DEID_STATUS_PREFIX}/{scope}/{key}.json"
    return store.exists(status_key) and bool(read_json(store, status_key)["passed"])
