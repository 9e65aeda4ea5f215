"""The quarantine: inputs medvid could not process, with the stage and the reason.

A quarantined input is not a failure of the run: the rest of the batch goes on, and the record
tells a person what to fix (re-export the video, send the study again...). One JSON record per
input and stage, ``quarantine/<content_id>/<stage>.json``; records are never deleted by medvid.
An input is retried only when it changes (new bytes are a new content id).

:func:`is_input_error` is the one rule for what counts as a bad input rather than a bug or an
environment problem: :class:`~medvid.errors.MedvidInputError` and the decoders' own errors.
"""

from __future__ import annotations

import datetime as dt
import struct
import zipfile
from dataclasses import asdict, dataclass

import pyarrow as pa

from medvid.catalog import keys
from medvid.errors import MedvidInputError
from medvid.store import Store, read_json, write_json

QUARANTINE_SCHEMA = pa.schema(
    [
        ("content_id", pa.string()),
        ("file", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("error_type", pa.string()),
        ("quarantined_at", pa.string()),
    ]
)


@dataclass(frozen=True)
class QuarantineRecord:
    """One quarantined input.

    ``content_id`` is the input's content id (sha256 prefix), a partition key, or, when the file
    could not even be read, ``f`` + its landing fingerprint; ``file`` is its *display name*
    (PHI-like tokens replaced; the original name stays in the protected ledger); ``stage`` names
    the asset that rejected it; ``reason`` is the human explanation; ``quarantined_at`` is an
    ISO-8601 UTC time (the first time it was quarantined for this reason).
    """

    content_id: str
    file: str
    stage: str
    reason: str
    error_type: str
    quarantined_at: str

    @property
    def record_key(self) -> str:
        return f"{self.content_id}/{self.stage}"


def quarantine_table(records: list[QuarantineRecord]) -> pa.Table:
    """Records as an Arrow table (QUARANTINE_SCHEMA), sorted by time then content id."""
    rows = sorted(
        (asdict(r) for r in records), key=lambda r: (r["quarantined_at"], r["content_id"])
    )
    return pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)


def _decoder_errors() -> tuple[type[BaseException], ...]:
    import av
    import cv2
    from pydicom.errors import InvalidDicomError

    return (av.error.FFmpegError, cv2.error, InvalidDicomError)


def is_input_error(error: BaseException) -> bool:
    """Whether ``error`` means "this input is bad" (quarantine it, go on) rather than a bug or
    an environment problem (fail the run loudly, retry later): medvid's own
    :class:`MedvidInputError` family, the decoders' errors (FFmpeg via PyAV, OpenCV, pydicom),
    damaged zips and truncated binary structures."""
    if isinstance(error, MedvidInputError | zipfile.BadZipFile | struct.error | EOFError):
        return True
    if isinstance(error, UnicodeDecodeError):
        return True
    return isinstance(error, _decoder_errors())


def reason_of(error: BaseException) -> str:
    """The human reason of a bad-input error (its ``reason``, else its message)."""
    if isinstance(error, MedvidInputError):
        return error.reason
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: {text}"[:500]


def quarantine_input(
    store: Store, *, content_id: str, file: str, stage: str, reason: str, error_type: str
) -> QuarantineRecord:
    """Write the quarantine record of an input at a stage (idempotent: a record with the same
    reason is kept as first written, so re-runs give the same bytes)."""
    record = QuarantineRecord(
        content_id=content_id,
        file=file,
        stage=stage,
        reason=reason,
        error_type=error_type,
        quarantined_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    key = keys.quarantine_key(record.record_key)
    if store.exists(key):
        previous = QuarantineRecord(**read_json(store, key))
        if (previous.reason, previous.file) == (record.reason, record.file):
            return previous
    write_json(store, key, asdict(record))
    return record


def quarantine_error(
    store: Store, error: BaseException, *, content_id: str, file: str, stage: str
) -> QuarantineRecord:
    """:func:`quarantine_input` for a bad-input error: its reason and its type."""
    return quarantine_input(
        store,
        content_id=content_id,
        file=file,
        stage=stage,
        reason=reason_of(error),
        error_type=type(error).__name__,
    )


def quarantine_records(store: Store) -> list[QuarantineRecord]:
    """Every quarantine record."""
    return [
        QuarantineRecord(**read_json(store, key))
        for key in store.list_keys(keys.QUARANTINE)
        if key.endswith(".json")
    ]


def quarantined_record(store: Store, content_id: str) -> QuarantineRecord | None:
    """The first quarantine record (by stage name) of a content id or partition, or None."""
    prefix = f"{keys.QUARANTINE}/{content_id}/"
    found = [k for k in store.list_keys(prefix) if k.endswith(".json")]
    return QuarantineRecord(**read_json(store, found[0])) if found else None


def quarantined_ids(store: Store) -> set[str]:
    """Content ids and partitions with a quarantine record at any stage (one listing)."""
    base = keys.QUARANTINE + "/"
    return {k[len(base) :].split("/", 1)[0] for k in store.list_keys(keys.QUARANTINE)}
