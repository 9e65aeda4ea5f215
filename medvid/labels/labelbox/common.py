"""Labelbox exports: the tables they become, the result of a parse, and label-level facts."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from medvid.errors import MedvidInputError

#: Fetches the bytes of a mask PNG given its URL (the resource adds the API key header).
MaskFetcher = Callable[[str], bytes]

#: Kinds of objects in :data:`OBJECTS_SCHEMA`.
OBJECT_KINDS: tuple[str, ...] = ("bbox", "polygon", "point", "line", "mask")

#: Arrow schema of the objects table (one row per object per frame).
#:
#: - ``frame_id`` nullable (null when the data row matches no frame of the manifest),
#:   ``video_id``/``frame_number`` nullable likewise; ``global_key``/``external_id`` nullable,
#:   ``data_row_id`` the Labelbox data row id
#: - ``labelbox_label_id`` the Labelbox label that holds the object; ``feature_id`` the object's
#:   id (stable across the frames of a video object), ``feature_schema_id`` its ontology tool
#: - ``label_name`` the tool's name; ``kind`` one of :data:`OBJECT_KINDS`
#: - ``bbox_x``, ``bbox_y``, ``bbox_w``, ``bbox_h`` float64 pixels (left, top, width, height);
#:   for polygons, lines and points the extent of the points (a point has zero size), for masks
#:   the extent of the mask's foreground; null when unknown (a mask that could not be fetched)
#: - ``points`` JSON ``[[x, y], ...]`` in pixels for polygon, line and point, else null
#: - ``mask_relative_path`` ``masks/<frame_id>/<feature_id>.png`` for masks, else null
#: - ``classifications`` JSON list of ``{"question", "answer"}`` nested on the object
#: - ``annotator``, ``reviewed``, ``reviewer`` as in the frame-label table; ``date_created``
OBJECTS_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("frame_id", pa.string()),
        pa.field("video_id", pa.string()),
        pa.field("frame_number", pa.int64()),
        pa.field("global_key", pa.string()),
        pa.field("external_id", pa.string()),
        pa.field("data_row_id", pa.string(), nullable=False),
        pa.field("labelbox_label_id", pa.string()),
        pa.field("feature_id", pa.string(), nullable=False),
        pa.field("feature_schema_id", pa.string()),
        pa.field("label_name", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("bbox_x", pa.float64()),
        pa.field("bbox_y", pa.float64()),
        pa.field("bbox_w", pa.float64()),
        pa.field("bbox_h", pa.float64()),
        pa.field("points", pa.string()),
        pa.field("mask_relative_path", pa.string()),
        pa.field("classifications", pa.string(), nullable=False),
        pa.field("annotator", pa.string(), nullable=False),
        pa.field("reviewed", pa.bool_(), nullable=False),
        pa.field("reviewer", pa.string()),
        pa.field("date_created", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

_TRUE_ANSWERS = frozenset({"true", "yes", "y"})
_FALSE_ANSWERS = frozenset({"false", "no", "n"})
_FRAME_ID_RE = re.compile(r"^(?P<video_id>[0-9a-f]{16})-(?P<frame_number>\d{7,})$")
_SAFE_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_FRAME_COLUMNS = ("frame_id", "video_id", "frame_number", "frame_timestamp")


class LabelboxExportError(MedvidInputError):
    """An export row or file is not a Labelbox export (missing ``data_row``, bad JSON...)."""


@dataclass(frozen=True)
class LabelboxParseResult:
    """What a Labelbox export became.

    Attributes:
        frame_labels: :data:`~medvid.labels.schema.FRAME_LABELS_SCHEMA` table, one row per
            (frame, label) (when several Labelbox labels of a data row give the same label, the
            reviewed, then most recently modified, wins: :func:`merge_label_sets`).
        objects: :data:`OBJECTS_SCHEMA` table.
        masks_written: paths of the mask PNGs written, relative to ``masks_dir``.
        unmatched: ``{"data_row_id", "global_key", "external_id", "reason"}`` per data row that
            matches no frame (or video) of the manifest.
        unknown_labels: classification label names not in the schema -> count of skipped rows.
        skipped: reason -> count, for annotations that were read but produce no row (text
            answers, unsupported tools, frames that were not extracted, masks without data).
    """

    frame_labels: pa.Table
    objects: pa.Table
    masks_written: tuple[str, ...] = ()
    unmatched: tuple[dict[str, str | None], ...] = ()
    unknown_labels: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts for asset metadata (JSON-serialisable)."""
        return {
            "frame_labels": self.frame_labels.num_rows,
            "objects": self.objects.num_rows,
            "masks": len(self.masks_written),
            "unmatched_data_rows": len(self.unmatched),
            "unknown_labels": dict(sorted(self.unknown_labels.items())),
            "skipped": dict(sorted(self.skipped.items())),
        }


# --------------------------------------------------------------------------------------------
# Label-level facts: who, when, reviewed


@dataclass(frozen=True)
class _LabelMeta:
    labelbox_label_id: str | None
    annotator: str
    reviewed: bool
    reviewer: str | None
    created: pd.Timestamp
    modified: pd.Timestamp


def _timestamp(value: Any, fallback: pd.Timestamp) -> pd.Timestamp:
    if value in (None, ""):
        return fallback
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return fallback
    if pd.isna(stamp):
        return fallback
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _label_meta_v2(
    label: Mapping[str, Any], project: Mapping[str, Any], fallback: pd.Timestamp
) -> _LabelMeta:
    details = label.get("label_details") or {}
    created = _timestamp(details.get("created_at"), fallback)
    modified = _timestamp(details.get("updated_at"), created)
    approvals = [
        review
        for review in details.get("reviews") or []
        if str(review.get("review_action", "")).lower() in ("approve", "approved")
    ]
    approvals.sort(key=lambda review: _timestamp(review.get("reviewed_at"), created))
    workflow = str((project.get("project_details") or {}).get("workflow_status", "")).upper()
    reviewer = approvals[-1].get("reviewed_by") if approvals else None
    return _LabelMeta(
        labelbox_label_id=label.get("id"),
        annotator=str(details.get("created_by") or "labelbox"),
        reviewed=bool(approvals) or workflow == "DONE",
        reviewer=str(reviewer) if reviewer else None,
        created=created,
        modified=modified,
    )


def _label_meta_v1(record: Mapping[str, Any], fallback: pd.Timestamp) -> _LabelMeta:
    created = _timestamp(record.get("Created At"), fallback)
    modified = _timestamp(record.get("Updated At"), created)
    approvals = [r for r in record.get("Reviews") or [] if _number(r.get("score"), 0.0) > 0]
    approvals.sort(key=lambda review: _timestamp(review.get("createdAt"), created))
    reviewer = approvals[-1].get("createdBy") if approvals else None
    return _LabelMeta(
        labelbox_label_id=record.get("ID"),
        annotator=str(record.get("Created By") or "labelbox"),
        reviewed=bool(approvals),
        reviewer=str(reviewer) if reviewer else None,
        created=created,
        modified=modified,
    )


def _number(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default
