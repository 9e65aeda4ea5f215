"""Labels: the project's label schema, the shared frame-label table, and label sources.

- :mod:`medvid.labels.schema` — :data:`FRAME_LABELS_SCHEMA` (one row per frame, label and
  source) and :class:`LabelSchema` (label names to stable ids).
- :mod:`medvid.labels.sheets` — labels and patients CSV sheets, frame labels from the time
  ranges of a labels sheet, and :func:`validate_label_name` (labels safe in CSV and as folders).
"""

from medvid.labels.schema import (
    FRAME_LABELS_COLUMNS,
    FRAME_LABELS_SCHEMA,
    LabelSchema,
    UnknownLabelError,
    empty_frame_labels,
    frame_labels_from_pandas,
    model_id_of_source,
    model_source,
)
from medvid.labels.sheets import (
    labels_from_ranges,
    read_labels_sheet,
    read_patients_sheet,
    sheet_kind,
    validate_label_name,
)

__all__ = [
    "FRAME_LABELS_COLUMNS",
    "FRAME_LABELS_SCHEMA",
    "LabelSchema",
    "UnknownLabelError",
    "empty_frame_labels",
    "frame_labels_from_pandas",
    "labels_from_ranges",
    "model_id_of_source",
    "model_source",
    "read_labels_sheet",
    "read_patients_sheet",
    "sheet_kind",
    "validate_label_name",
]
