"""Labelbox export v2 (NDJSON, ``project.export()``): rows to frame labels, objects and masks."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from medvid.errors import MedvidInputError
from medvid.labels.labelbox.common import (
    LabelboxExportError,
    LabelboxParseResult,
    MaskFetcher,
    _label_meta_v2,
    _LabelMeta,
)
from medvid.labels.labelbox.masks import _ParseState
from medvid.labels.labelbox.matching import _DataRow, _FrameRef, _Manifest
from medvid.labels.schema import (
    LabelSchema,
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
