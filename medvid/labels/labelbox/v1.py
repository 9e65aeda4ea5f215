"""Legacy Labelbox v1 exports (a JSON list per label)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from medvid.labels.labelbox.common import (
    LabelboxExportError,
    LabelboxParseResult,
    MaskFetcher,
    _label_meta_v1,
)
from medvid.labels.labelbox.masks import _ParseState
from medvid.labels.labelbox.matching import _DataRow, _Manifest
from medvid.labels.labelbox.v2 import _fallback_time, _malformed_guard, _parse_video_label
from medvid.labels.schema import (
    LabelSchema,
)

# --------------------------------------------------------------------------------------------
# Legacy v1


def _parse_v1_record(
    state: _ParseState,
    record: Mapping[str, Any],
    aliases: Mapping[str, str],
    fallback: pd.Timestamp,
) -> None:
    if record.get("Skipped"):
        state.counter.skip("skipped label")
        return
    row = _DataRow(str(record["DataRow ID"]), None, record.get("External ID"))
    meta = _label_meta_v1(record, fallback)
    label = record.get("Label") or {}
    keys = row.keys(aliases)
    if isinstance(label, list):
        video_id = state.manifest.video(keys)
        if video_id is None:
            reason = "no frame manifest" if not state.manifest.present else "video not in manifest"
            state.add_unmatched(row, reason)
            return
        frames_map = {
            str(entry["frameNumber"]): {
                "objects": entry.get("objects") or [],
                "classifications": [
                    {**cls, "feature_id": cls.get("featureId", cls.get("schemaId", ""))}
                    for cls in entry.get("classifications") or []
                ],
            }
            for entry in label
        }
        _parse_video_label(state, row, video_id, {"frames": frames_map}, meta)
        return
    frame = state.manifest.image_frame(keys)
    if frame is None:
        reason = "no frame manifest" if not state.manifest.present else "frame not in manifest"
        state.add_unmatched(row, reason)
    for obj in label.get("objects") or []:
        state.add_object(obj, row, frame, meta)
    classifications = label.get("classifications") or []
    if frame is None:
        state.counter.skip("classification on an unmatched data row", len(classifications))
        return
    for cls in classifications:
        state.add_labels(frame, cls, meta)


def parse_export_v1(
    export: Iterable[Mapping[str, Any]] | Mapping[str, Any],
    *,
    frames: pd.DataFrame | None,
    masks_dir: Path,
    mask_fetcher: MaskFetcher | None,
    schema: LabelSchema | None = None,
    video_aliases: Mapping[str, str] | None = None,
    retrieved_at: datetime | None = None,
) -> LabelboxParseResult:
    """Parse a legacy v1 export (the JSON list written by the old ``project.export_labels()``).

    ``export`` is the parsed JSON: a list of label records (a single record is accepted too).
    v1 has no global keys: data rows are matched by ``External ID`` (then ``DataRow ID``),
    directly or through ``video_aliases``. Video records (``Label`` a list of
    ``{"frameNumber", "objects", "classifications"}``, frames counted from 1) map to the
    manifest's frames of the matched video. Other arguments, the result and the errors are as
    in :func:`parse_export_v2_rows`; skipped records (``"Skipped": true``) add nothing.
    """
    records = [export] if isinstance(export, Mapping) else list(export)
    state = _ParseState(schema, _Manifest(frames), Path(masks_dir), mask_fetcher)
    aliases = dict(video_aliases or {})
    fallback = _fallback_time(retrieved_at)
    for index, record in enumerate(records):
        if not isinstance(record, Mapping) or not record.get("DataRow ID"):
            raise LabelboxExportError(f"v1 export record {index + 1} has no 'DataRow ID'")
        with _malformed_guard(f"v1 export record {index + 1}"):
            _parse_v1_record(state, record, aliases, fallback)
    return state.result()
