"""The ledger: what arrived, and the outcome of every landing file version.

Two kinds of records, both in the protected zone (they hold original file names):

- one :class:`LedgerEntry` per *content* (``protected/ledger/<content_id>.json``): its kind,
  sha256, the name and landing path it first arrived under and every other name since, its
  display name and the partition it became;
- one :class:`IntakeRecord` per *landing file version* (``protected/intake/<fingerprint>.json``,
  the fingerprint hashing its landing URI, size and modification time): processed, a duplicate
  of known content, or quarantined with its reason.

Records are written *after* the work they describe (a copy verified, a study indexed), so a
file whose intake was killed, failed or never ran has no record and is offered again; a file
with a record is never taken again until it changes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath

from medvid.catalog import keys
from medvid.store import Store, read_json, stems, write_json


def landed_at(mtime: float) -> str:
    """A landing file's modification time as ISO 8601 UTC (seconds): when it landed, as the
    zone says, not when medvid saw it (so records and ids never depend on when a run ran)."""
    return dt.datetime.fromtimestamp(mtime, dt.UTC).isoformat(timespec="seconds")


def landing_day(mtime: float) -> str:
    """The UTC day (``YYYY-MM-DD``) a landing file version belongs to: the day it was last
    modified, or :data:`medvid.batches.FIRST_DAY` for older files, or tomorrow for a clock
    ahead of ours (the days intake and batches are partitioned by)."""
    from medvid.batches import FIRST_DAY

    day = dt.datetime.fromtimestamp(mtime, dt.UTC).date()
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    return max(min(day, tomorrow).isoformat(), FIRST_DAY)


def fingerprint(uri: str, size: int, mtime: float) -> str:
    """16 hex digits naming one version of one landing file (its URI, size and mtime in
    microseconds): a changed or re-uploaded file is a new version."""
    blob = f"{uri}|{int(size)}|{round(float(mtime) * 1e6)}".encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def sheet_id(uri: str) -> str:
    """Id of a sheet as a place: every version of the file at ``uri`` has the same id, so a new
    version replaces the rows of the earlier one."""
    return "sh" + hashlib.sha256(f"sheet|{uri}".encode()).hexdigest()[:14]


@dataclass
class LedgerEntry:
    """What the ledger knows about one content id (protected: holds original names).

    ``kind``: ``video`` | ``sheet`` | ``dicom``; ``original_name`` and ``landing_key``: where
    it first arrived; ``aliases``: other names it arrived under since; ``display_name``: the name
    shown outside ``protected/``; ``landed_at``: the first landing file's mtime; ``partition``:
    the batch (partition, :mod:`medvid.batches`) a video belongs to, None for other kinds;
    ``origin``: for videos medvid made (DICOM cine loops) where they came from
    (``{"kind": "dicom_cine", "study_key", "instance_id", "keep_region", "phi_key"}``), their
    ``landing_key`` then being a store key.
    """

    content_id: str
    sha256: str
    kind: str
    original_name: str
    landing_key: str
    landing_uri: str
    size: int
    landed_at: str
    display_name: str
    aliases: list[str] = field(default_factory=list)
    partition: str | None = None
    origin: dict | None = None

    @property
    def names(self) -> list[str]:
        return [self.original_name, *self.aliases]

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.original_name).suffix.lower()


def write_ledger_entry(store: Store, entry: LedgerEntry) -> None:
    write_json(store, keys.ledger_key(entry.content_id), asdict(entry))


def read_ledger_entry(store: Store, content_id: str) -> LedgerEntry:
    """The ledger entry of a content id. Raises ``FileNotFoundError`` if it never arrived."""
    return LedgerEntry(**read_json(store, keys.ledger_key(content_id)))


def ledger_entry_or_none(store: Store, content_id: str) -> LedgerEntry | None:
    key = keys.ledger_key(content_id)
    return LedgerEntry(**read_json(store, key)) if store.exists(key) else None


def ledger_entries(store: Store, kind: str | None = None) -> list[LedgerEntry]:
    """Every ledger entry (optionally of one kind), by landing time then content id."""
    entries = [read_ledger_entry(store, cid) for cid in stems(store, keys.LEDGER)]
    entries = [e for e in entries if kind is None or e.kind == kind]
    return sorted(entries, key=lambda e: (e.landed_at, e.content_id))


@dataclass
class IntakeRecord:
    """The outcome of one landing file version (protected).

    ``outcome``: ``processed`` (new content), ``duplicate`` (content already in the ledger:
    recorded as an alias) or ``quarantined`` (``reason`` says why). ``partitions``: the batches
    (partitions) its videos and studies belong to."""

    fingerprint: str
    landing_key: str
    landing_uri: str
    size: int
    mtime: float
    day: str
    outcome: str
    display_name: str
    content_id: str | None = None
    kind: str | None = None
    partitions: list[str] = field(default_factory=list)
    reason: str | None = None


def write_intake_record(store: Store, record: IntakeRecord) -> None:
    write_json(store, keys.intake_key(record.fingerprint), asdict(record))


def intake_records(store: Store) -> list[IntakeRecord]:
    """Every intake record, by day then landing path."""
    records = [
        IntakeRecord(**read_json(store, keys.intake_key(fp))) for fp in stems(store, keys.INTAKE)
    ]
    return sorted(records, key=lambda r: (r.day, r.landing_key, r.fingerprint))


def has_intake_record(store: Store, fingerprint_: str) -> bool:
    return store.exists(keys.intake_key(fingerprint_))
