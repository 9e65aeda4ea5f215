"""The quarantine table: inputs medvid could not process, with the reason.

A quarantined input is not a failure of the run: the rest of the batch goes on, and the record
tells a person what to fix (re-export the video, send the study again...). Records are never
deleted by medvid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pyarrow as pa

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

    ``content_id`` is the input's content id (sha256 prefix) or, when the file could not even be
    hashed, a stable id derived from its landing key; ``file`` is the original file name or key;
    ``stage`` names the asset or sensor that rejected it; ``reason`` is the human explanation;
    ``quarantined_at`` is an ISO-8601 UTC time.
    """

    content_id: str
    file: str
    stage: str
    reason: str
    error_type: str
    quarantined_at: str

    @property
    def record_key(self) -> str:
        return f"{self.content_id}__{self.stage}"


def quarantine_table(records: list[QuarantineRecord]) -> pa.Table:
    """Records as an Arrow table (QUARANTINE_SCHEMA), sorted by time then content id."""
    rows = sorted(
        (asdict(r) for r in records), key=lambda r: (r["quarantined_at"], r["content_id"])
    )
    return pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)
