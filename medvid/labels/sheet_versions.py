"""The current version of every sheet, and the version of the labels made from them.

Intake keeps, per sheet *place* (its landing path), which content is current
(``protected/sheets/current/<sheet_id>.json``); a new version of the file replaces the rows of
the earlier one, and a row deleted from the sheet disappears from the labels.
"""

from __future__ import annotations

import hashlib
import json

from medvid.catalog import keys
from medvid.settings import LabelSettings, SegmentSettings, fingerprint
from medvid.store import Store, read_json, stems


def current_sheet_versions(store: Store) -> list[dict]:
    """``[{"sheet_id", "content_id", "landing_key", "display_name", "mtime", "landed_at"}]``,
    one per sheet place, sorted by sheet id (protected: landing keys are original names)."""
    prefix = f"{keys.SHEETS}/current"
    return [read_json(store, keys.sheet_version_key(s)) for s in stems(store, prefix)]


def labels_version(store: Store, labels: LabelSettings, segments: SegmentSettings) -> str:
    """12 hex digits naming the state the label tables are made from: the current sheet
    versions and the label and segment settings."""
    state = {
        "sheets": sorted((v["sheet_id"], v["content_id"]) for v in current_sheet_versions(store)),
        "labels": fingerprint(labels),
        "segments": fingerprint(segments),
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:12]
