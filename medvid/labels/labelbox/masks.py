"""Labelbox objects (boxes, polygons, lines, points) and masks, and the parse state that
gathers every row of an export."""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image, UnidentifiedImageError

from medvid.io import write_bytes_atomic
from medvid.labels.labelbox.classifications import _classification_labels, _Counter, _nested_summary
from medvid.labels.labelbox.common import (
    _SAFE_KEY_RE,
    OBJECTS_SCHEMA,
    LabelboxExportError,
    LabelboxParseResult,
    MaskFetcher,
    _LabelMeta,
)
from medvid.labels.labelbox.matching import _DataRow, _FrameRef, _Manifest
from medvid.labels.labelsets import merge_label_sets
from medvid.labels.schema import (
    SOURCE_LABELBOX,
    LabelSchema,
    empty_frame_labels,
    frame_labels_from_pandas,
)

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
