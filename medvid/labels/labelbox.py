"""Labelbox exports parsed into medvid tables (pure parsing: no SDK, no network).

Two export formats are read:

- **Export v2 / ``project.export()``** rows (one JSON object per data row, as streamed by the SDK
  or archived as NDJSON): ``data_row`` (``id``, ``global_key``, ``external_id``,
  ``row_data``), ``media_attributes`` (``width``, ``height``, ``frame_count``...), and
  ``projects.<project_id>`` with ``project_details`` (``workflow_status``) and ``labels[]``,
  each with ``label_details`` (``created_by``, ``created_at``, ``updated_at``, ``reviews``) and
  ``annotations``. For images ``annotations`` holds ``objects`` (bounding boxes, polygons,
  points, lines, masks) and ``classifications``; for videos it holds ``frames``
  (``{"<n>": {"objects": {feature_id: ...}, "classifications": [...]}}``), ``segments``
  (``{feature_id: [[start, end], ...]}``), ``key_frame_feature_map`` and video-wide
  ``classifications``. Reference: Labelbox "Export v2" documentation and the SDK's own export
  tests (``expected_export_v2_video``).
- **Legacy v1 exports** (``parse_export_v1``): a JSON list of labels with ``DataRow ID``,
  ``External ID``, ``Label`` (``{"objects", "classifications"}`` for images, a list of
  ``{"frameNumber", "objects", "classifications"}`` for videos), ``Created By``,
  ``Created At``/``Updated At`` and ``Reviews``.

How rows find our frames
    Frames we upload carry ``global_key = frame_id`` (:func:`data_rows_for_frames`), so an image
    data row is matched to the frame manifest by its global key (then external id, then
    ``video_aliases``). A video data row is matched to a ``video_id`` by global key, external id
    or ``video_aliases`` (name -> video_id). Labelbox numbers video frames from **1**; medvid's
    ``frame_number`` is 0-based, so Labelbox frame ``n`` is ``frame_number = n - 1``; only frames
    present in the manifest get rows. Data rows that match nothing are listed in
    :attr:`LabelboxParseResult.unmatched`; an unmatched image row still gives its objects
    (``frame_id`` null) but no frame labels, an unmatched video row gives nothing. Without a
    manifest (``frames=None``) an image row whose global key has the shape of a frame id still
    gets that ``frame_id`` on its objects.

Classifications become frame labels (:data:`~medvid.labels.schema.FRAME_LABELS_SCHEMA`, source
``labelbox``, confidence 1.0):

- a radio (single-choice) answer ``A`` of question ``Q``: label ``A`` = true, except when the
  answer is a yes/no word (``true``/``false``/``yes``/``no``), then label ``Q`` = that value;
  the options not chosen are not written as false (the export does not list them);
- each checked answer ``A`` of a checklist: label ``A`` = true;
- a free-text answer that reads as a number ``x``: label ``Q`` = true, ``float_value`` = ``x``;
  other text is skipped and counted in ``skipped``;
- answers nested under an answer are read the same way; a label name is looked up in the schema
  by its display name, then by its ``value`` slug; names outside the schema are counted in
  ``unknown_labels`` and skipped.

Video classifications apply on the frames of their ``segments`` (inclusive ranges), taking the
answer of the nearest key frame at or before each frame; a classification on a frame outside
any segment applies to that frame; video-wide ``classifications`` apply to every extracted frame
of the video. Video objects are read frame by frame from ``frames`` (ask the export for
``interpolated_frames`` to get every frame, not only key frames).

Reviewed (documented rule): a label is reviewed when its ``label_details.reviews`` (v1:
``Reviews``) hold an approval (``review_action`` "Approve" / v1 ``score`` > 0) — the reviewer is
the latest approver — or when the data row's ``project_details.workflow_status`` is ``DONE``
(reviewer unknown, null). Otherwise it is unreviewed. A project whose workflow has no review
step sends labels straight to Done, so configure a review step if "reviewed" should mean a
second person looked.

Masks are written as single-channel PNG (``(H, W) uint8``, 0 = background, 255 = object) at
``masks_dir / "masks" / <frame_id> / <feature_id>.png``; ``mask_relative_path`` is that path
relative to ``masks_dir`` (``masks/<frame_id>/<feature_id>.png``; a data row without a frame id
uses its data row id). Export v2 gives mask URLs (``mask.url``, or ``composite_mask.url`` with
the feature's ``color_rgb``), fetched with the injected ``mask_fetcher``; inline PNG bytes
(``mask.png`` base64) are used directly.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image, UnidentifiedImageError

from medvid.errors import MedvidInputError
from medvid.io import write_bytes_atomic
from medvid.labels.labelsets import merge_label_sets
from medvid.labels.schema import (
    SOURCE_LABELBOX,
    LabelSchema,
    empty_frame_labels,
    frame_labels_from_pandas,
)

__all__ = [
    "OBJECT_KINDS",
    "OBJECTS_SCHEMA",
    "LabelboxExportError",
    "LabelboxParseResult",
    "MaskFetcher",
    "data_rows_for_frames",
    "parse_export_v1",
    "parse_export_v2_rows",
    "read_export_ndjson",
]

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


# --------------------------------------------------------------------------------------------
# Frame manifest lookups


@dataclass(frozen=True)
class _FrameRef:
    frame_id: str
    video_id: str
    frame_number: int
    frame_timestamp: float | None  # None when there is no manifest


class _Manifest:
    """Frame-manifest lookups: frame id -> frame, (video, frame number) -> frame."""

    def __init__(self, frames: pd.DataFrame | None) -> None:
        self.present = frames is not None
        self.by_frame_id: dict[str, _FrameRef] = {}
        self.by_video: dict[str, dict[int, _FrameRef]] = {}
        if frames is None:
            return
        missing = [name for name in _FRAME_COLUMNS if name not in frames.columns]
        if missing:
            raise ValueError(f"frame manifest lacks column(s): {', '.join(missing)}")
        for frame_id, video_id, frame_number, stamp in frames.loc[
            :, list(_FRAME_COLUMNS)
        ].itertuples(index=False):
            ref = _FrameRef(str(frame_id), str(video_id), int(frame_number), float(stamp))
            self.by_frame_id[ref.frame_id] = ref
            self.by_video.setdefault(ref.video_id, {})[ref.frame_number] = ref

    def image_frame(self, keys: Iterable[str | None]) -> _FrameRef | None:
        for key in keys:
            if not key:
                continue
            if key in self.by_frame_id:
                return self.by_frame_id[key]
            if not self.present:
                match = _FRAME_ID_RE.match(key)
                if match:
                    return _FrameRef(key, match["video_id"], int(match["frame_number"]), None)
        return None

    def video(self, keys: Iterable[str | None]) -> str | None:
        for key in keys:
            if key and key in self.by_video:
                return key
        return None


@dataclass(frozen=True)
class _DataRow:
    data_row_id: str
    global_key: str | None
    external_id: str | None

    def keys(self, aliases: Mapping[str, str]) -> list[str | None]:
        names = [self.global_key, self.external_id]
        return [
            *names,
            *(aliases.get(name) for name in names if name),
            aliases.get(self.data_row_id),
        ]

    def mask_folder(self, frame: _FrameRef | None) -> str:
        if frame is not None:
            return frame.frame_id
        return self.data_row_id


# --------------------------------------------------------------------------------------------
# Classifications -> (label name, value, float value)


def _answer_name(answer: Any) -> tuple[str | None, str | None]:
    """(display name, value slug) of an answer object of either export format."""
    if not isinstance(answer, Mapping):
        return None, None
    name = answer.get("name", answer.get("title"))
    return (str(name) if name is not None else None), (
        str(answer["value"]) if answer.get("value") is not None else None
    )


def _classification_answers(
    cls: Mapping[str, Any],
) -> tuple[str, str | None, list[Mapping[str, Any]], str | None, list[Any]]:
    """Normalise a classification of either format.

    Returns (question name, question slug, chosen answers (radio: one, checklist: many),
    text answer or None, nested classifications found under the answers).
    """
    question = str(cls.get("name", cls.get("title", "")))
    slug = str(cls["value"]) if cls.get("value") is not None else None
    answers: list[Mapping[str, Any]] = []
    text: str | None = None
    if "radio_answer" in cls:
        answers = [cls["radio_answer"]]
    elif "checklist_answers" in cls:
        answers = list(cls["checklist_answers"] or [])
    elif "text_answer" in cls:
        text = str((cls["text_answer"] or {}).get("content", ""))
    elif "answers" in cls:  # v1 checklist
        answers = list(cls["answers"] or [])
    elif "answer" in cls:  # v1 radio or text
        if isinstance(cls["answer"], Mapping):
            answers = [cls["answer"]]
        else:
            text = str(cls["answer"])
    nested: list[Any] = []
    for answer in answers:
        if isinstance(answer, Mapping):
            nested.extend(answer.get("classifications") or [])
    return question, slug, answers, text, nested


@dataclass
class _Counter:
    unknown_labels: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        if n <= 0:
            return
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def unknown(self, name: str) -> None:
        self.unknown_labels[name] = self.unknown_labels.get(name, 0) + 1


def _resolve_name(
    name: str | None, slug: str | None, schema: LabelSchema | None, counter: _Counter
) -> str | None:
    if schema is None:
        return name or slug
    for candidate in (name, slug):
        if candidate and candidate in schema:
            return candidate
    counter.unknown(name or slug or "")
    return None


def _classification_labels(
    cls: Mapping[str, Any], schema: LabelSchema | None, counter: _Counter
) -> list[tuple[str, bool, float | None]]:
    """Frame labels of one classification (rules in the module docstring)."""
    question, slug, answers, text, nested = _classification_answers(cls)
    out: list[tuple[str, bool, float | None]] = []
    is_radio = "radio_answer" in cls or isinstance(cls.get("answer"), Mapping)
    for answer in answers:
        name, value_slug = _answer_name(answer)
        word = (name or value_slug or "").strip().lower()
        if is_radio and word in _TRUE_ANSWERS | _FALSE_ANSWERS:
            resolved = _resolve_name(question, slug, schema, counter)
            if resolved:
                out.append((resolved, word in _TRUE_ANSWERS, None))
            continue
        resolved = _resolve_name(name, value_slug, schema, counter)
        if resolved:
            out.append((resolved, True, None))
    if text is not None:
        number = _number(text.strip(), math.nan)
        if math.isfinite(number):
            resolved = _resolve_name(question, slug, schema, counter)
            if resolved:
                out.append((resolved, True, number))
        else:
            counter.skip("text answer")
    for child in nested:
        if isinstance(child, Mapping):
            out.extend(_classification_labels(child, schema, counter))
    return out


def _nested_summary(classifications: Iterable[Any]) -> str:
    """JSON ``[{"question", "answer"}]`` of classifications nested on an object."""
    summary: list[dict[str, Any]] = []
    for cls in classifications or []:
        if not isinstance(cls, Mapping):
            continue
        question, _, answers, text, nested = _classification_answers(cls)
        if text is not None:
            summary.append({"question": question, "answer": text})
        for answer in answers:
            summary.append({"question": question, "answer": _answer_name(answer)[0]})
        if nested:
            summary.extend(json.loads(_nested_summary(nested)))
    return json.dumps(summary, sort_keys=True)


# --------------------------------------------------------------------------------------------
# Objects


def _xy(point: Mapping[str, Any]) -> list[float]:
    return [float(point["x"]), float(point["y"])]


def _extent(points: list[list[float]]) -> tuple[float, float, float, float]:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)


def _decode_mask(data: bytes, color_rgb: Iterable[int] | None) -> np.ndarray:
    """Binary mask ``(H, W) uint8`` 0/255 from PNG bytes.

    With ``color_rgb`` (a composite mask) the foreground is the pixels of exactly that colour;
    otherwise any non-zero pixel (any channel, alpha ignored).
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if color_rgb is not None:
                rgb = np.asarray(image.convert("RGB"))
                fg = np.all(rgb == np.asarray(list(color_rgb), dtype=np.uint8), axis=-1)
            else:
                # Palette and alpha images are compared by colour, not by palette index.
                if image.mode not in ("1", "L", "I", "I;16", "F", "RGB"):
                    image = image.convert("RGB")
                array = np.asarray(image)
                fg = array > 0 if array.ndim == 2 else np.any(array > 0, axis=-1)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise LabelboxExportError(f"mask is not a readable image: {exc}") from exc
    return np.where(fg, 255, 0).astype(np.uint8)


def _encode_png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")  # 2-D uint8 -> mode "L"
    return buffer.getvalue()


@dataclass
class _ParseState:
    schema: LabelSchema | None
    manifest: _Manifest
    masks_dir: Path
    mask_fetcher: MaskFetcher | None
    counter: _Counter = field(default_factory=_Counter)
    label_rows: list[dict[str, Any]] = field(default_factory=list)
    object_rows: list[dict[str, Any]] = field(default_factory=list)
    masks_written: list[str] = field(default_factory=list)
    unmatched: list[dict[str, str | None]] = field(default_factory=list)
    _fetched: dict[str, bytes] = field(default_factory=dict)

    # -- labels

    def add_labels(self, frame: _FrameRef, cls: Mapping[str, Any], meta: _LabelMeta) -> None:
        for name, value, float_value in _classification_labels(cls, self.schema, self.counter):
            self.label_rows.append(
                {
                    "frame_id": frame.frame_id,
                    "video_id": frame.video_id,
                    "frame_number": frame.frame_number,
                    "frame_timestamp": frame.frame_timestamp,
                    "label_name": name,
                    "value": value,
                    "float_value": float_value,
                    "source": SOURCE_LABELBOX,
                    "confidence": 1.0,
                    "annotator": meta.annotator,
                    "reviewed": meta.reviewed,
                    "reviewer": meta.reviewer,
                    "date_created": meta.created,
                    "date_modified": meta.modified,
                }
            )

    # -- objects

    def _mask_bytes(self, obj: Mapping[str, Any]) -> tuple[bytes | None, list[int] | None]:
        mask = obj.get("mask")
        composite = obj.get("composite_mask")
        if isinstance(mask, Mapping) and mask.get("png"):
            try:
                return base64.b64decode(mask["png"], validate=True), None
            except (binascii.Error, ValueError) as exc:
                raise LabelboxExportError(f"inline mask is not base64: {exc}") from exc
        url: str | None = None
        color: list[int] | None = None
        if isinstance(mask, Mapping):
            url = mask.get("url") or mask.get("instanceURI")
        if url is None and isinstance(composite, Mapping):
            url = composite.get("url")
            color = list(composite.get("color_rgb") or []) or None
        if url is None:
            url = obj.get("instanceURI")
        if url is None or self.mask_fetcher is None:
            return None, None
        if url not in self._fetched:  # a composite mask is shared by every feature on a frame
            self._fetched[url] = self.mask_fetcher(url)
        return self._fetched[url], color

    def add_object(
        self,
        obj: Mapping[str, Any],
        row: _DataRow,
        frame: _FrameRef | None,
        meta: _LabelMeta,
    ) -> None:
        box = obj.get("bounding_box", obj.get("bbox"))
        kind: str
        points: list[list[float]] | None = None
        bbox: tuple[float, float, float, float] | None = None
        mask_relative_path: str | None = None
        if isinstance(box, Mapping):
            kind = "bbox"
            bbox = (
                float(box["left"]),
                float(box["top"]),
                float(box["width"]),
                float(box["height"]),
            )
        elif isinstance(obj.get("polygon"), list):
            kind, points = "polygon", [_xy(p) for p in obj["polygon"]]
        elif isinstance(obj.get("line"), list):
            kind, points = "line", [_xy(p) for p in obj["line"]]
        elif isinstance(obj.get("point"), Mapping):
            kind, points = "point", [_xy(obj["point"])]
        elif "mask" in obj or "composite_mask" in obj or "instanceURI" in obj:
            kind = "mask"
        else:
            self.counter.skip(
                f"unsupported object {obj.get('annotation_kind', 'without geometry')}"
            )
            return
        if points:
            bbox = _extent(points)
        feature_id = str(obj.get("feature_id", obj.get("featureId", "")))
        if kind == "mask":
            data, color = self._mask_bytes(obj)
            if data is None:
                self.counter.skip("mask without data or fetcher")
            else:
                mask = _decode_mask(data, color)
                folder = row.mask_folder(frame)
                if not (_SAFE_KEY_RE.match(folder) and _SAFE_KEY_RE.match(feature_id)):
                    raise LabelboxExportError(
                        f"unsafe mask key {folder!r}/{feature_id!r} in data row {row.data_row_id}"
                    )
                mask_relative_path = f"masks/{folder}/{feature_id}.png"
                write_bytes_atomic(self.masks_dir / mask_relative_path, _encode_png(mask))
                self.masks_written.append(mask_relative_path)
                ys, xs = np.nonzero(mask)
                if xs.size:
                    bbox = (
                        float(xs.min()),
                        float(ys.min()),
                        float(xs.max() - xs.min() + 1),
                        float(ys.max() - ys.min() + 1),
                    )
        name = obj.get("name", obj.get("title", obj.get("value", "")))
        self.object_rows.append(
            {
                "frame_id": frame.frame_id if frame else None,
                "video_id": frame.video_id if frame else None,
                "frame_number": frame.frame_number if frame else None,
                "global_key": row.global_key,
                "external_id": row.external_id,
                "data_row_id": row.data_row_id,
                "labelbox_label_id": meta.labelbox_label_id,
                "feature_id": feature_id,
                "feature_schema_id": obj.get("feature_schema_id", obj.get("schemaId")),
                "label_name": str(name),
                "kind": kind,
                "bbox_x": bbox[0] if bbox else None,
                "bbox_y": bbox[1] if bbox else None,
                "bbox_w": bbox[2] if bbox else None,
                "bbox_h": bbox[3] if bbox else None,
                "points": json.dumps(points) if points is not None else None,
                "mask_relative_path": mask_relative_path,
                "classifications": _nested_summary(obj.get("classifications") or []),
                "annotator": meta.annotator,
                "reviewed": meta.reviewed,
                "reviewer": meta.reviewer,
                "date_created": meta.created,
            }
        )

    def add_unmatched(self, row: _DataRow, reason: str) -> None:
        self.unmatched.append(
            {
                "data_row_id": row.data_row_id,
                "global_key": row.global_key,
                "external_id": row.external_id,
                "reason": reason,
            }
        )

    # -- result

    def result(self) -> LabelboxParseResult:
        if self.label_rows:
            df = pd.DataFrame(self.label_rows)
            if self.schema is None:
                schema = LabelSchema.from_names(df["label_name"])
            else:
                schema = self.schema
            df["label_id"] = [schema.id_of(name) for name in df["label_name"]]
            df["float_value"] = df["float_value"].astype("float64")
            if df["frame_timestamp"].isna().any():
                # Frames known only from their id (no manifest) cannot carry a timestamp.
                self.counter.skip(
                    "label on a frame without manifest", int(df["frame_timestamp"].isna().sum())
                )
                df = df.loc[df["frame_timestamp"].notna()]
            labels = (
                merge_label_sets([frame_labels_from_pandas(df)])
                if len(df)
                else empty_frame_labels()
            )
        else:
            labels = empty_frame_labels()
        objects = pa.Table.from_pylist(self.object_rows, schema=OBJECTS_SCHEMA)
        return LabelboxParseResult(
            frame_labels=labels,
            objects=objects,
            masks_written=tuple(self.masks_written),
            unmatched=tuple(self.unmatched),
            unknown_labels=dict(self.counter.unknown_labels),
            skipped=dict(self.counter.skipped),
        )


# --------------------------------------------------------------------------------------------
# Export v2


def read_export_ndjson(path: str | Path) -> Iterator[dict[str, Any]]:
    """Stream the rows of an export archived as NDJSON (one JSON object per line; blank lines
    skipped). Raises :class:`LabelboxExportError` naming the line of the first bad row."""
    path = Path(path)
    with path.open("r", encoding="utf-8") as stream:
        for line_number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LabelboxExportError(
                    f"{path.name} line {line_number}: bad JSON: {exc}"
                ) from None
            if not isinstance(row, dict):
                raise LabelboxExportError(f"{path.name} line {line_number}: not a JSON object")
            yield row


def _data_row(row: Mapping[str, Any], where: str) -> _DataRow:
    data_row = row.get("data_row")
    if not isinstance(data_row, Mapping) or not data_row.get("id"):
        raise LabelboxExportError(f"{where}: not a Labelbox export row (no data_row.id)")
    return _DataRow(
        data_row_id=str(data_row["id"]),
        global_key=data_row.get("global_key"),
        external_id=data_row.get("external_id"),
    )


def _is_video(row: Mapping[str, Any], labels: list[Mapping[str, Any]]) -> bool:
    mime = str((row.get("media_attributes") or {}).get("mime_type", ""))
    if mime.startswith("video/"):
        return True
    return any(
        str(label.get("label_kind", "")).lower() == "video"
        or "frames" in (label.get("annotations") or {})
        for label in labels
    )


def _video_frames(frames_map: Mapping[str, Any]) -> dict[int, Mapping[str, Any]]:
    out: dict[int, Mapping[str, Any]] = {}
    for key, value in (frames_map or {}).items():
        try:
            out[int(key)] = value
        except (TypeError, ValueError):
            raise LabelboxExportError(f"video frame key {key!r} is not a frame number") from None
    return out


def _parse_video_label(
    state: _ParseState,
    row: _DataRow,
    video_id: str,
    annotations: Mapping[str, Any],
    meta: _LabelMeta,
) -> None:
    extracted = state.manifest.by_video[video_id]
    frames = _video_frames(annotations.get("frames") or {})

    def ref(labelbox_frame: int) -> _FrameRef | None:
        return extracted.get(labelbox_frame - 1)  # Labelbox counts frames from 1

    # Objects, frame by frame.
    for number in sorted(frames):
        objects = frames[number].get("objects") or {}
        items = objects.values() if isinstance(objects, Mapping) else objects
        frame = ref(number)
        for obj in items:
            if frame is None:
                state.counter.skip("object on a frame not extracted")
                continue
            state.add_object(obj, row, frame, meta)

    # Frame classifications: keyed by feature id, spread over their segments.
    keyed: dict[str, dict[int, Mapping[str, Any]]] = {}
    for number, content in frames.items():
        for cls in content.get("classifications") or []:
            feature_id = str(cls.get("feature_id", ""))
            keyed.setdefault(feature_id, {})[number] = cls
    segments = annotations.get("segments") or {}
    for feature_id, by_frame in keyed.items():
        ranges = segments.get(feature_id) or []
        covered: set[int] = set()
        for start, end in ranges:
            for number in range(int(start), int(end) + 1):
                covered.add(number)
                earlier = [k for k in by_frame if int(start) <= k <= number]
                key_frame = max(earlier) if earlier else min(by_frame)
                frame = ref(number)
                if frame is not None:
                    state.add_labels(frame, by_frame[key_frame], meta)
        for number, cls in by_frame.items():
            if number not in covered and (frame := ref(number)) is not None:
                state.add_labels(frame, cls, meta)

    # Video-wide classifications apply to every extracted frame.
    for cls in annotations.get("classifications") or []:
        for frame_number in sorted(extracted):
            state.add_labels(extracted[frame_number], cls, meta)


def _parse_v2_row(
    state: _ParseState,
    row: Mapping[str, Any],
    project_id: str,
    aliases: Mapping[str, str],
    fallback: pd.Timestamp,
    where: str,
) -> None:
    data_row = _data_row(row, where)
    projects = row.get("projects") or {}
    project = projects.get(project_id)
    if project is None:
        state.counter.skip("row without this project")
        return
    labels = list(project.get("labels") or [])
    keys = data_row.keys(aliases)
    if _is_video(row, labels):
        video_id = state.manifest.video(keys)
        if video_id is None:
            reason = "no frame manifest" if not state.manifest.present else "video not in manifest"
            state.add_unmatched(data_row, reason)
            return
        for label in labels:
            meta = _label_meta_v2(label, project, fallback)
            _parse_video_label(state, data_row, video_id, label.get("annotations") or {}, meta)
        return
    frame = state.manifest.image_frame(keys)
    if frame is None:
        reason = "no frame manifest" if not state.manifest.present else "frame not in manifest"
        state.add_unmatched(data_row, reason)
    for label in labels:
        meta = _label_meta_v2(label, project, fallback)
        annotations = label.get("annotations") or {}
        for obj in annotations.get("objects") or []:
            state.add_object(obj, data_row, frame, meta)
        classifications = annotations.get("classifications") or []
        if frame is None:
            state.counter.skip("classification on an unmatched data row", len(classifications))
            continue
        for cls in classifications:
            state.add_labels(frame, cls, meta)


@contextmanager
def _malformed_guard(where: str) -> Iterator[None]:
    """Turn the lookup and type errors of a malformed row into :class:`LabelboxExportError`."""
    try:
        yield
    except MedvidInputError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise LabelboxExportError(
            f"{where}: malformed annotation ({type(exc).__name__}: {exc})"
        ) from exc


def _fallback_time(retrieved_at: datetime | None) -> pd.Timestamp:
    at = retrieved_at or datetime.now(UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return pd.Timestamp(at).tz_convert("UTC")


def parse_export_v2_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    project_id: str,
    frames: pd.DataFrame | None,
    masks_dir: Path,
    mask_fetcher: MaskFetcher | None,
    schema: LabelSchema | None = None,
    video_aliases: Mapping[str, str] | None = None,
    retrieved_at: datetime | None = None,
) -> LabelboxParseResult:
    """Parse ``project.export()`` rows into frame labels, objects and mask PNGs.

    Args:
        rows: export rows (dicts), e.g. ``json.loads`` of each line of an archived NDJSON file.
        project_id: the Labelbox project whose labels to read (rows hold one entry per project).
        frames: the frame manifest (``frame_id``, ``video_id``, ``frame_number``,
            ``frame_timestamp``); ``None`` reads objects only: data rows whose global key is a
            medvid frame id still get their ``frame_id``, and video rows are unmatched.
        masks_dir: folder under which ``masks/<frame_id>/<feature_id>.png`` are written.
        mask_fetcher: returns PNG bytes for a mask URL; ``None`` skips masks that are not inline.
        schema: the project's label schema; classification names outside it are skipped and
            counted. ``None`` numbers the names found in sorted order (ids then only mean
            something inside the returned table).
        video_aliases: data-row global key / external id / data row id -> ``video_id`` (or frame
            id) for data rows that were not uploaded by medvid.
        retrieved_at: date used when a label carries no ``label_details`` dates (default now).

    Returns:
        A :class:`LabelboxParseResult` (rules for matching, classifications, reviews and masks in
        the module docstring).

    Raises:
        LabelboxExportError: a row is not an export row, a mask is unreadable, or a video frame
            key is not a number.
        ValueError: the frame manifest lacks a column.
    """
    state = _ParseState(schema, _Manifest(frames), Path(masks_dir), mask_fetcher)
    aliases = dict(video_aliases or {})
    fallback = _fallback_time(retrieved_at)
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise LabelboxExportError(f"export row {index + 1} is not a JSON object")
        where = f"export row {index + 1}"
        with _malformed_guard(where):
            _parse_v2_row(state, row, project_id, aliases, fallback, where)
    return state.result()


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


# --------------------------------------------------------------------------------------------
# Upload payloads


def data_rows_for_frames(
    frames: pd.DataFrame, url_for: Callable[[str], str]
) -> list[dict[str, Any]]:
    """Labelbox data-row payloads for ``dataset.create_data_rows`` (one per frame).

    Args:
        frames: frame manifest with ``frame_id`` and ``frame_relative_path``
            (``video_<video_id>/frame_<frame_id>.jpg``, relative to the frames root).
        url_for: maps a ``frame_relative_path`` to a URL Labelbox can read (a signed S3 URL,
            or a public/IAM-delegated bucket URL).

    Returns:
        ``[{"row_data": url, "global_key": frame_id, "external_id": frame_relative_path,
        "media_type": "IMAGE"}, ...]`` in manifest order. The global key makes re-uploads
        detectable and lets exports find the frame again.

    Raises:
        ValueError: a column is missing or a frame id appears twice.
    """
    missing = [name for name in ("frame_id", "frame_relative_path") if name not in frames.columns]
    if missing:
        raise ValueError(f"frame manifest lacks column(s): {', '.join(missing)}")
    duplicated = frames["frame_id"][frames["frame_id"].duplicated()]
    if not duplicated.empty:
        raise ValueError(f"frame ids appear more than once: {', '.join(map(str, duplicated[:5]))}")
    return [
        {
            "row_data": url_for(str(relative_path)),
            "global_key": str(frame_id),
            "external_id": str(relative_path),
            "media_type": "IMAGE",
        }
        for frame_id, relative_path in frames.loc[
            :, ["frame_id", "frame_relative_path"]
        ].itertuples(index=False)
    ]
