"""The frame-annotation table of a training export: columns, cell formats, CSV and JSON text.

One row per frame-label annotation, with exactly the columns of the endoscopy exporter that our
users' dataloaders read (seed 004), in this order: :data:`ANNOTATION_COLUMNS`.

- ``annotation_id`` int: 0-based row index after sorting by ``(video_id, frame_number,
  label_id, information_source_name, annotator)``. It is reproducible for the same input (a
  re-run writes the same ids) but not meant to be joined across different exports; the stable
  key of an annotation across exports is ``(frame_id, label_id, information_source_name)``.
- ``video_hash`` the sha256 of the source video; ``frame_relative_path`` relative to the
  export's ``frames/`` folder (``video_<video_id>/frame_<frame_id>.jpg``).
- ``information_source_name`` the frame-label ``source`` (``sheet``, ``labelbox``,
  ``segment``, ``manual``, ``model:<model_id>``); ``information_source_id`` a small int from
  :func:`information_source_ids` (fixed for human sources, numbered in name order for models);
  ``model_meta_id`` the model id of a model source, else null.
- ``crop_x0, crop_y0, crop_x1, crop_y1`` the box of the original frame the exported image was
  cropped to (its field of view, :mod:`medvid.cleaning.fov`; x1/y1 exclusive, pixels; the
  CASBUSI seed's CropData), empty when the frame is exported whole.
- ``date_created``/``date_modified`` ISO-8601 UTC, the year only:
  ``2024-01-01T00:00:00.000000+00:00`` (:data:`medvid.export.dataset.EXPORT_DATE_FORMAT`;
  label times disclose when a patient was seen).

CSV cells: booleans ``true``/``false``, nulls empty, floats in Python's shortest round-trip
form (``repr``), and text a spreadsheet would run as a formula prefixed with ``'``
(:func:`medvid.csv_injection.neutralize_formula`, OWASP CSV Injection). JSON: a list of objects
with the same keys in the same order, native booleans/numbers/``null``, dates as the same
strings, text as it is. :func:`format_cell` turns a JSON value into its CSV text, so the two
files can be compared cell by cell; :func:`cell_text` is the same text without the formula
guard, for JSON documents that carry values as text.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from medvid.csv_injection import neutralize_formula
from medvid.labels.schema import (
    SOURCE_LABELBOX,
    SOURCE_MANUAL,
    SOURCE_SEGMENT,
    SOURCE_SHEET,
    model_id_of_source,
)

ANNOTATION_COLUMNS: Final[tuple[str, ...]] = (
    "annotation_id",
    "video_id",
    "video_hash",
    "frame_id",
    "frame_number",
    "frame_relative_path",
    "frame_timestamp",
    "label_id",
    "label_name",
    "value",
    "float_value",
    "annotator",
    "information_source_id",
    "information_source_name",
    "model_meta_id",
    "date_created",
    "date_modified",
    "crop_x0",
    "crop_y0",
    "crop_x1",
    "crop_y1",
)

#: Fixed ids of the human label sources; model sources get ``MODEL_SOURCE_FIRST_ID + rank``.
HUMAN_SOURCE_IDS: Final[Mapping[str, int]] = {
    SOURCE_MANUAL: 1,
    SOURCE_SHEET: 2,
    SOURCE_SEGMENT: 3,
    SOURCE_LABELBOX: 4,
}
MODEL_SOURCE_FIRST_ID: Final = 100

#: strftime pattern of a full UTC time with microseconds (exports write the year only:
#: :data:`medvid.export.dataset.EXPORT_DATE_FORMAT`).
ISO_UTC_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%f+00:00"


def information_source_ids(source_names: Iterable[str]) -> dict[str, int]:
    """``{source_name: information_source_id}`` for the sources present in an export.

    Human sources keep the fixed ids of :data:`HUMAN_SOURCE_IDS`; ``model:<id>`` sources are
    numbered ``100, 101, ...`` in sorted name order, so the same set of sources always gets the
    same ids. Raises ``ValueError`` for a source that is neither.
    """
    names = sorted(set(source_names))
    ids: dict[str, int] = {}
    models = []
    for name in names:
        if name in HUMAN_SOURCE_IDS:
            ids[name] = HUMAN_SOURCE_IDS[name]
        elif model_id_of_source(name):
            models.append(name)
        else:
            raise ValueError(f"unknown label source {name!r}")
    for rank, name in enumerate(models):
        ids[name] = MODEL_SOURCE_FIRST_ID + rank
    return dict(sorted(ids.items(), key=lambda item: item[1]))


def is_null(value: Any) -> bool:
    """True for ``None``, NaN, ``pd.NA`` and ``NaT``."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    try:
        return bool(value != value)  # NaN-like scalars (pd.NA raises TypeError on bool())
    except (TypeError, ValueError):
        return True


def json_value(value: Any) -> Any:
    """A Python/numpy/pandas scalar as a JSON-native value (nulls become ``None``)."""
    if is_null(value):
        return None
    if isinstance(value, bool | str):
        return value
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def cell_text(value: Any) -> str:
    """A cell value as text: ``""`` for null, ``true``/``false``, ``repr`` of a float, ``str``
    of anything else (no formula guard: for JSON, not for CSV)."""
    value = json_value(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def format_cell(value: Any) -> str:
    """The CSV text of a JSON-native cell value: :func:`cell_text` with a formula neutralised
    (see the module docstring). Every CSV of an export writes its cells with it."""
    return neutralize_formula(cell_text(value))


def records_to_csv(records: Sequence[Mapping[str, Any]]) -> bytes:
    """UTF-8 CSV (``\\n`` line ends) with header :data:`ANNOTATION_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ANNOTATION_COLUMNS)
    for record in records:
        writer.writerow([format_cell(record[name]) for name in ANNOTATION_COLUMNS])
    return buffer.getvalue().encode("utf-8")


def records_to_json(records: Sequence[Mapping[str, Any]]) -> bytes:
    """UTF-8 JSON list of objects, one object per line, keys in :data:`ANNOTATION_COLUMNS`
    order."""
    lines = [
        json.dumps(
            {name: json_value(record[name]) for name in ANNOTATION_COLUMNS},
            ensure_ascii=False,
            allow_nan=False,
        )
        for record in records
    ]
    body = ",\n".join(lines)
    return f"[\n{body}\n]\n".encode() if lines else b"[]\n"
