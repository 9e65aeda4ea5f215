"""The landing stage: what arrived, once.

`scan_landing` is the one routine the sensor, the daily schedule and the command line share. It
lists the landing zone, waits for files still being written, hashes each settled file, and
records it in the arrivals ledger (one JSON record per content id in the media store). A file
renamed or uploaded twice has the same content id and is recorded as an alias, not processed
again. Empty and unsupported files go to the quarantine with their reason.
"""

import datetime as dt
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath

import dagster as dg
import pyarrow as pa
from dagster import AssetExecutionContext

from medvid.ids import content_id
from medvid.quarantine import QuarantineRecord
from medvid_assets.metadata import table_preview
from medvid_assets.partitions import arrival_days
from medvid_assets.quarantine import quarantine_input
from medvid_assets.storage import LEDGER_PREFIX, read_json, table_key, write_json, write_table
from medvid_resources import LandingFile, LandingZone, MediaStore

VIDEO_SUFFIXES = frozenset(
    {".avi", ".mpeg", ".mpg", ".mov", ".mp4", ".m4v", ".gif", ".mkv", ".wmv"}
)
SHEET_SUFFIXES = frozenset({".csv"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".zip"})


def classify(
    file: LandingFile, head: bytes = b"", *, in_dicomdir_folder: bool = False
) -> str | None:
    """Kind of a landing file: ``"video"``, ``"sheet"``, ``"dicom"`` or None (unsupported).

    Classification is by suffix, plus the DICOM preamble (``DICM`` at byte 128, PS3.10 §7.1) for
    files without a suffix and for ``DICOMDIR``. Files without a suffix below a folder that holds
    a DICOMDIR (``IMAGES/IM0001``) are DICOM too: media written for a DICOMDIR may lack the
    preamble, and the DICOM reader decides. A text file named ``.mp4`` is classified as a video
    here and rejected with its reason when it fails to decode.
    """
    if file.suffix in VIDEO_SUFFIXES:
        return "video"
    if file.suffix in SHEET_SUFFIXES:
        return "sheet"
    if file.suffix in DICOM_SUFFIXES or file.name.upper() == "DICOMDIR":
        return "dicom"
    if head[128:132] == b"DICM":
        return "dicom"
    if in_dicomdir_folder and not file.suffix:
        return "dicom"
    return None


def dicomdir_folders(files: list[LandingFile]) -> set[PurePosixPath]:
    """Folders (landing keys) that hold a DICOMDIR file."""
    return {PurePosixPath(f.key).parent for f in files if f.name.upper() == "DICOMDIR"}


def _below(key: str, folders: set[PurePosixPath]) -> bool:
    return any(folder in PurePosixPath(key).parents for folder in folders)


@dataclass
class LedgerEntry:
    """What the ledger knows about one content id: its sha256, kind, the name it first arrived
    under and every other name it arrived under since (``aliases``), and when it arrived."""

    content_id: str
    sha256: str
    kind: str
    original_name: str
    landing_key: str
    landing_uri: str
    size: int
    arrived_at: str
    aliases: list[str] = field(default_factory=list)
    origin: dict | None = None
    """Where a video that did not arrive in the landing zone came from, e.g. a DICOM cine loop:
    ``{"kind": "dicom_cine", "study_key", "instance_id", "keep_region", "phi_key"}``; its
    ``landing_key`` is then a media store key. None for landing-zone arrivals."""

    @property
    def names(self) -> list[str]:
        return [self.original_name, *self.aliases]

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.original_name).suffix.lower()


def ledger_key(cid: str) -> str:
    return f"{LEDGER_PREFIX}/{cid}.json"


def write_ledger_entry(store: MediaStore, entry: LedgerEntry) -> None:
    write_json(store, ledger_key(entry.content_id), asdict(entry))


def read_ledger_entry(store: MediaStore, cid: str) -> LedgerEntry:
    """The ledger record of a content id; raises ``FileNotFoundError`` if it never arrived."""
    return LedgerEntry(**read_json(store, ledger_key(cid)))


def ledger_entries(store: MediaStore, kind: str | None = None) -> list[LedgerEntry]:
    """Every ledger record (optionally of one kind), oldest arrival first."""
    entries = [
        LedgerEntry(**read_json(store, key))
        for key in store.list_keys(LEDGER_PREFIX)
        if key.endswith(".json")
    ]
    entries = [e for e in entries if kind is None or e.kind == kind]
    return sorted(entries, key=lambda e: (e.arrived_at, e.content_id))


@dataclass
class ScanOutcome:
    """What one scan of the landing zone found."""

    new_entries: list[LedgerEntry] = field(default_factory=list)
    new_aliases: list[LedgerEntry] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    cursor: dict = field(default_factory=dict)

    def new_of_kind(self, kind: str) -> list[LedgerEntry]:
        return [e for e in self.new_entries if e.kind == kind]


def _utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def scan_landing(
    zone: LandingZone,
    store: MediaStore,
    cursor: dict | None,
    *,
    now: float,
    require_stable: bool = True,
    min_age_s: float = 0.0,
) -> ScanOutcome:
    """List the zone and record every settled new file in the arrivals ledger.

    A file is *settled* when its size and mtime are unchanged since the previous scan
    (``require_stable``, for the sensor: two ticks) and it is at least ``min_age_s`` seconds old
    (for the schedule); temporary upload files (``.part``, ``.crdownload``, hidden files) are never
    taken. ``cursor`` (JSON-able dict) remembers files already handled so unchanged files are not
    hashed again; pass the returned ``ScanOutcome.cursor`` to the next scan.
    """
    cursor = cursor or {}
    handled: dict[str, list] = dict(cursor.get("handled", {}))
    previous_pending: dict[str, list] = cursor.get("pending", {})
    pending: dict[str, list] = {}
    outcome = ScanOutcome()
    files = zone.list_files()
    dicomdirs = dicomdir_folders(files)
    for file in files:
        if file.is_temporary:
            continue
        state = [file.size, file.mtime]
        if handled.get(file.key) == state:
            continue
        if require_stable and previous_pending.get(file.key) != state:
            pending[file.key] = state
            outcome.pending.append(file.key)
            continue
        if now - file.mtime < min_age_s:
            outcome.pending.append(file.key)
            continue
        handled[file.key] = state
        _register(zone, store, file, now, outcome, in_dicomdir_folder=_below(file.key, dicomdirs))
    outcome.cursor = {"handled": handled, "pending": pending}
    return outcome


def _register(
    zone: LandingZone,
    store: MediaStore,
    file: LandingFile,
    now: float,
    outcome: ScanOutcome,
    *,
    in_dicomdir_folder: bool = False,
) -> None:
    if file.size == 0:
        outcome.quarantined.append(
            quarantine_input(
                store,
                # every empty file has the same sha256, so key the record by where it landed
                content_id=content_id(hashlib.sha256(f"landing:{file.key}".encode()).hexdigest()),
                file=file.key,
                stage="landing",
                reason="empty file (0 bytes)",
                error_type="EmptyFileError",
            )
        )
        return
    with zone.open(file.key) as stream:
        head = stream.read(132)
    kind = classify(file, head, in_dicomdir_folder=in_dicomdir_folder)
    sha = zone.sha256(file.key)
    cid = content_id(sha)
    if kind is None:
        outcome.quarantined.append(
            quarantine_input(
                store,
                content_id=cid,
                file=file.key,
                stage="landing",
                reason=f"unsupported file type {file.suffix or '(no suffix)'!r}",
                error_type="UnsupportedMediaError",
            )
        )
        return
    if store.exists(ledger_key(cid)):
        entry = read_ledger_entry(store, cid)
        if file.name not in entry.names:
            entry.aliases.append(file.name)
            write_ledger_entry(store, entry)
            outcome.new_aliases.append(entry)
        return
    entry = LedgerEntry(
        content_id=cid,
        sha256=sha,
        kind=kind,
        original_name=file.name,
        landing_key=file.key,
        landing_uri=zone.uri(file.key),
        size=file.size,
        arrived_at=_utc(now),
    )
    write_ledger_entry(store, entry)
    outcome.new_entries.append(entry)


ARRIVALS_SCHEMA = pa.schema(
    [
        ("content_id", pa.string()),
        ("kind", pa.string()),
        ("original_name", pa.string()),
        ("aliases", pa.list_(pa.string())),
        ("size", pa.int64()),
        ("sha256", pa.string()),
        ("arrived_at", pa.string()),
    ]
)


@dg.asset(
    partitions_def=arrival_days,
    group_name="landing",
    kinds={"parquet"},
    automation_condition=dg.AutomationCondition.on_cron("0 5 * * *"),
    description="Inventory of the files that arrived in the landing zone on one day (UTC): content"
    " id, kind, original name and aliases, size, sha256. Refreshed daily at 05:00.",
)
def landing_arrivals(
    context: AssetExecutionContext, media_store: MediaStore
) -> dg.MaterializeResult:
    day = context.partition_key
    rows = [
        {k: v for k, v in asdict(e).items() if k in ARRIVALS_SCHEMA.names}
        for e in ledger_entries(media_store)
        if e.arrived_at[:10] == day
    ]
    table = pa.Table.from_pylist(rows, schema=ARRIVALS_SCHEMA)
    write_table(media_store, table_key("landing_arrivals", day), table)
    return dg.MaterializeResult(
        metadata={
            "arrivals": len(rows),
            **{f"{k}s": sum(r["kind"] == k for r in rows) for k in ("video", "sheet", "dicom")},
            "preview": table_preview(
                table, ["content_id", "kind", "original_name", "size"], empty="(nothing arrived)"
            ),
        }
    )
