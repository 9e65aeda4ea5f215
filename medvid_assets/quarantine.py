"""Quarantine: bad inputs are recorded with their reason and the batch goes on.

Any stage that meets a :class:`medvid.errors.MedvidInputError` calls :func:`quarantine_input`
(one JSON record per content id and stage in the media store) and returns a materialization
whose metadata says ``status: quarantined``. Downstream stages of that partition call
:func:`skip_if_quarantined` and report ``skipped`` instead of failing, so a quarantined input is
never a failed run. The ``quarantine`` asset gathers every record into one table.
"""

import datetime as dt
from dataclasses import asdict

import dagster as dg
from dagster import AssetExecutionContext

from medvid.errors import MedvidInputError
from medvid.quarantine import QuarantineRecord, quarantine_table
from medvid_assets.metadata import table_preview
from medvid_assets.storage import QUARANTINE_PREFIX, read_json, table_key, write_json, write_table
from medvid_resources import MediaStore


def quarantine_input(
    store: MediaStore, *, content_id: str, file: str, stage: str, reason: str, error_type: str
) -> QuarantineRecord:
    """Write (or overwrite, idempotently) the quarantine record of an input at a stage."""
    record = QuarantineRecord(
        content_id=content_id,
        file=file,
        stage=stage,
        reason=reason,
        error_type=error_type,
        quarantined_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    key = f"{QUARANTINE_PREFIX}/{record.record_key}.json"
    if store.exists(key):  # keep the first time it was quarantined: re-runs give the same record
        previous = QuarantineRecord(**read_json(store, key))
        if (previous.reason, previous.file) == (record.reason, record.file):
            return previous
    write_json(store, key, asdict(record))
    return record


def quarantine_error(
    store: MediaStore, error: MedvidInputError, *, content_id: str, file: str, stage: str
) -> QuarantineRecord:
    """:func:`quarantine_input` for a bad-input error: its reason and its type."""
    return quarantine_input(
        store,
        content_id=content_id,
        file=file,
        stage=stage,
        reason=error.reason,
        error_type=type(error).__name__,
    )


def quarantine_records(store: MediaStore) -> list[QuarantineRecord]:
    return [
        QuarantineRecord(**read_json(store, key))
        for key in store.list_keys(QUARANTINE_PREFIX)
        if key.endswith(".json")
    ]


def quarantined_record(store: MediaStore, content_id: str) -> QuarantineRecord | None:
    """The first quarantine record of a content id at any stage, or None."""
    keys = [
        k for k in store.list_keys(QUARANTINE_PREFIX) if k.split("/")[-1].startswith(content_id)
    ]
    return QuarantineRecord(**read_json(store, keys[0])) if keys else None


def quarantine_result(
    context: AssetExecutionContext,
    store: MediaStore,
    error: MedvidInputError,
    *,
    file: str,
    stage: str,
) -> dg.MaterializeResult:
    """Quarantine the current partition's input for ``error`` and describe it as metadata."""
    record = quarantine_error(
        store,
        error,
        content_id=context.partition_key,
        file=file,
        stage=stage,
    )
    context.log.warning(f"quarantined {file} at {stage}: {error.reason}")
    return dg.MaterializeResult(
        metadata={"status": "quarantined", "reason": record.reason, "stage": stage}
    )


def skip_if_quarantined(
    context: AssetExecutionContext, store: MediaStore
) -> dg.MaterializeResult | None:
    """A 'skipped' materialization when this partition's input is quarantined, else None."""
    record = quarantined_record(store, context.partition_key)
    if record is None:
        return None
    context.log.info(f"skipping: input quarantined at {record.stage}: {record.reason}")
    return dg.MaterializeResult(
        metadata={"status": "skipped", "reason": f"quarantined at {record.stage}: {record.reason}"}
    )


@dg.asset(
    group_name="quality",
    kinds={"parquet"},
    automation_condition=dg.AutomationCondition.eager(),
    deps=["video_metadata", "normalized_videos", "video_frames"],
    description="Every input medvid could not process, with the stage and the reason. Nothing in "
    "it is deleted; fix the file and drop it in the landing zone again.",
)
def quarantine(media_store: MediaStore) -> dg.MaterializeResult:
    table = quarantine_table(quarantine_records(media_store))
    write_table(media_store, table_key("quarantine"), table)
    rows = table.to_pylist()
    return dg.MaterializeResult(
        metadata={
            "quarantined": len(rows),
            "by_stage": dg.MetadataValue.json(
                {s: sum(r["stage"] == s for r in rows) for s in sorted({r["stage"] for r in rows})}
            ),
            "table": table_preview(table, ["file", "stage", "reason"]),
        }
    )
