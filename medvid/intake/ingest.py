"""Intake: one landing file version in, a verified protected copy and a recorded outcome out.

:func:`ingest` is the work an intake run does for each pending file: hash it (streamed),
classify it, copy it into the protected zone and verify the copy, index DICOM instances under
their studies, keep sheet versions, and write the ledger entry. Bad inputs (empty, unsupported,
unreadable, unsafe) end as quarantine records; a file that changes while it is copied is left
for a later run. The caller records the :class:`~medvid.intake.ledger.IntakeRecord` last, after
its own bookkeeping (Dagster partitions), so a kill at any moment leaves the file pending.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from medvid.batches import add_member, batch_key, study_batch
from medvid.catalog import keys
from medvid.deid.names import display_name
from medvid.dicom.registration import register_dicom_arrival
from medvid.errors import EmptyFileError, MedvidInputError, UnsupportedMediaError
from medvid.ids import content_id, sha256_file
from medvid.intake.classify import classify
from medvid.intake.ledger import (
    IntakeRecord,
    LedgerEntry,
    fingerprint,
    landed_at,
    landing_day,
    ledger_entry_or_none,
    sheet_id,
    write_ledger_entry,
)
from medvid.quarantine import QuarantineRecord, is_input_error, quarantine_error
from medvid.store import Store, read_json_or, write_json


class LandingZoneLike(Protocol):
    """The landing zone interface (see :class:`medvid_resources.LandingZone`)."""

    def open(self, key: str) -> BinaryIO: ...

    def download(self, key: str, dest): ...

    def uri(self, key: str) -> str: ...

    def sha256(self, key: str) -> str: ...


class LandingFileChanged(Exception):
    """The landing file changed while it was copied: try again later (no outcome recorded)."""


@dataclass
class IngestResult:
    """The outcome of :func:`ingest`: the record to write, the ledger entry (None when
    quarantined), the videos and studies it fed, the batches (partitions) to add, and the
    quarantine records written."""

    record: IntakeRecord
    entry: LedgerEntry | None = None
    videos: list[str] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)


def _copy_verified(zone: LandingZoneLike, store: Store, key: str, target: str, sha: str) -> None:
    if store.exists(target) and sha256_file(store.fetch(target)) == sha:
        return
    local = zone.download(key, store.local_path(target))
    if sha256_file(local) != sha:
        local.unlink()
        raise LandingFileChanged(key)
    store.publish(target)


def ingest(
    zone: LandingZoneLike,
    store: Store,
    key: str,
    size: int,
    mtime: float,
    *,
    salt: str,
    in_dicomdir_folder: bool = False,
    known_identifiers: Iterable[str] = (),
) -> IngestResult:
    """Take one landing file version (see the module docstring).

    Raises:
        LandingFileChanged: the bytes changed while being copied (record nothing, retry).
        Exception: anything that is not a bad input (an unreachable store, a full disk, a bug)
            propagates: the run fails and the file stays pending.
    """
    uri = zone.uri(key)
    shown = display_name(key.rsplit("/", 1)[-1], known_identifiers)
    record = IntakeRecord(
        fingerprint=fingerprint(uri, size, mtime),
        landing_key=key,
        landing_uri=uri,
        size=size,
        mtime=mtime,
        day=landing_day(mtime),
        outcome="processed",
        display_name=shown,
    )
    result = IngestResult(record)
    cid: str | None = None
    try:
        if size == 0:
            raise EmptyFileError("empty file (0 bytes)")
        try:
            with zone.open(key) as stream:
                head = stream.read(132)
        except FileNotFoundError as gone:  # removed since it was listed: nothing to take
            raise LandingFileChanged(key) from gone
        kind = classify(key, head, in_dicomdir_folder=in_dicomdir_folder)
        sha = zone.sha256(key)
        cid = content_id(sha)
        record.content_id, record.kind = cid, kind
        if kind is None:
            suffix = key.rsplit(".", 1)[-1] if "." in key.rsplit("/", 1)[-1] else ""
            raise UnsupportedMediaError(
                f"unsupported file type {('.' + suffix.lower()) if suffix else '(no suffix)'!r}"
            )
        entry = ledger_entry_or_none(store, cid)
        name = key.rsplit("/", 1)[-1]
        if entry is None:
            entry = LedgerEntry(
                content_id=cid,
                sha256=sha,
                kind=kind,
                original_name=name,
                landing_key=key,
                landing_uri=uri,
                size=size,
                landed_at=landed_at(mtime),
                display_name=shown,
                partition=batch_key(record.day, cid) if kind == "video" else None,
            )
        else:
            record.outcome = "duplicate"
        _take(zone, store, entry, key, result, salt)
        if name not in entry.names:
            entry.aliases.append(name)
        write_ledger_entry(store, entry)
        result.entry = entry
    except Exception as error:
        if isinstance(error, LandingFileChanged) or not is_input_error(error):
            raise
        record.outcome = "quarantined"
        record.reason = error.reason if isinstance(error, MedvidInputError) else str(error)
        result.quarantined.append(
            quarantine_error(
                store, error, content_id=cid or "f" + record.fingerprint, file=shown, stage="intake"
            )
        )
    record.partitions = sorted(set(result.batches))
    return result


def _take(
    zone: LandingZoneLike,
    store: Store,
    entry: LedgerEntry,
    key: str,
    result: IngestResult,
    salt: str,
) -> None:
    """Copy (verified) and register one arrival of ``entry`` found at landing ``key``."""
    suffix = entry.suffix
    if entry.kind == "video":
        _copy_verified(zone, store, key, keys.raw_video_key(entry.content_id, suffix), entry.sha256)
        add_member(store, entry.partition, "video", entry.content_id)
        result.videos.append(entry.content_id)
        result.batches.append(entry.partition)
    elif entry.kind == "sheet":
        _copy_verified(zone, store, key, keys.sheet_copy_key(entry.content_id), entry.sha256)
        _set_sheet_version(store, entry, result.record)
    elif entry.kind == "dicom":
        source = keys.dicom_source_key(entry.content_id, suffix or ".dcm")
        _copy_verified(zone, store, key, source, entry.sha256)
        registration = register_dicom_arrival(
            store, entry.content_id, source, result.record.display_name, salt
        )
        for study in sorted(registration.studies):
            batch = study_batch(store, study, result.record.day)
            add_member(store, batch, "study", study)
            result.studies.append(study)
            result.batches.append(batch)
        result.quarantined.extend(registration.quarantined)


def _set_sheet_version(store: Store, entry: LedgerEntry, record: IntakeRecord) -> None:
    """Make this content the current version of the sheet at the record's landing place, unless
    a newer version (later mtime) is already current."""
    key = keys.sheet_version_key(sheet_id(record.landing_uri))
    current = read_json_or(store, key, None)
    if current is not None and current["mtime"] > record.mtime:
        return
    write_json(
        store,
        key,
        {
            "sheet_id": sheet_id(record.landing_uri),
            "content_id": entry.content_id,
            "landing_key": record.landing_key,
            "display_name": record.display_name,
            "mtime": record.mtime,
            "landed_at": landed_at(record.mtime),
        },
    )
