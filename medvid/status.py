"""Per-member status: what an asset did for one video or study of a batch.

``status/<asset>/<member>.json`` holds the outcome (``ok`` or ``quarantined``), the *version*
of the work (a digest of the asset's code version, its settings and the versions of the same
member's upstream work), small metadata for the batch's summary, and the member's check results.
A batch re-run skips members whose status has the version it would compute; changed settings,
code or upstream work make it recompute them. The statuses are the per-video and per-study table
the UI shows (``tables/member_status.parquet``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from medvid.catalog import keys
from medvid.store import Store, read_json, write_json


@dataclass
class MemberStatus:
    """One member's outcome at one asset (see the module docstring). ``checks`` maps a check
    name to ``{"passed": bool, "findings": [...]}`` (findings never hold PHI)."""

    asset: str
    member: str
    outcome: str
    version: str
    metadata: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, dict] = field(default_factory=dict)
    reason: str | None = None


def work_version(*parts: Any) -> str:
    """12 hex digits naming a piece of work from its inputs (JSON-able parts)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def read_status(store: Store, asset: str, member: str) -> MemberStatus | None:
    key = keys.status_key(asset, member)
    return MemberStatus(**read_json(store, key)) if store.exists(key) else None


def write_status(store: Store, status: MemberStatus) -> None:
    write_json(store, keys.status_key(status.asset, status.member), asdict(status))
