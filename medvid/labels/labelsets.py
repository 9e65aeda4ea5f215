"""Label sets: combining frame-label tables from several sources into one answer per label.

A *label set* is a frame-label table (:data:`medvid.labels.schema.FRAME_LABELS_SCHEMA`) from one
source: a labels sheet, a segments sheet, a Labelbox retrieval, a model's predictions, manual
corrections. Training and evaluation need one value per (frame, label), so
:func:`merge_label_sets` picks a winner wherever sources overlap; :func:`ground_truth` keeps
only the rows a person has reviewed, the label set that training and evaluation treat as truth.

The precedence rule of :func:`merge_label_sets` (first difference decides):

1. reviewed before unreviewed (when ``prefer_reviewed``; a model row that a person reviewed
   counts as reviewed: the person vouched for it);
2. human sources (``sheet``, ``labelbox``, ``segment``, ``manual``) before ``model:<id>``;
3. higher ``confidence`` (humans carry 1.0, so this orders models among themselves);
4. later ``date_modified`` (the most recent correction wins);
5. ``source`` then ``annotator`` in ascending order, only so that ties are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from medvid.labels.schema import (
    FRAME_LABELS_SCHEMA,
    MODEL_SOURCE_PREFIX,
    empty_frame_labels,
    frame_labels_from_pandas,
)

__all__ = ["ground_truth", "mark_reviewed", "merge_label_sets"]


def _conform(table: pa.Table) -> pa.Table:
    """``table`` with exactly the columns of FRAME_LABELS_SCHEMA, in order, cast to its types.

    Raises ``ValueError`` when a column is missing or cannot be cast.
    """
    missing = [name for name in FRAME_LABELS_SCHEMA.names if name not in table.column_names]
    if missing:
        raise ValueError(f"frame-label table lacks column(s): {', '.join(missing)}")
    try:
        return table.select(FRAME_LABELS_SCHEMA.names).cast(FRAME_LABELS_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"frame-label table does not fit FRAME_LABELS_SCHEMA: {exc}") from exc


def merge_label_sets(tables: Iterable[pa.Table], *, prefer_reviewed: bool = True) -> pa.Table:
    """One row per ``(frame_id, label_name)`` chosen from several frame-label tables.

    Args:
        tables: frame-label tables (any number, any sources); extra columns are dropped.
        prefer_reviewed: rank reviewed rows above unreviewed ones (rule 1 of the module
            docstring). With ``False`` the reviewed flag is ignored and a human row beats any
            model row whether or not either was reviewed.

    Returns:
        A table with :data:`FRAME_LABELS_SCHEMA`, sorted by ``frame_id`` then ``label_name``;
        the winning row is kept whole (its source, confidence and reviewer are not blended).

    Raises:
        ValueError: a table lacks a column of the schema or holds values that do not fit it.
    """
    conformed = [_conform(table) for table in tables]
    if not conformed:
        return empty_frame_labels()
    combined = pa.concat_tables(conformed)
    if combined.num_rows == 0:
        return empty_frame_labels()
    df = combined.to_pandas()
    df["_unreviewed"] = ~df["reviewed"].astype(bool) if prefer_reviewed else False
    df["_is_model"] = df["source"].str.startswith(MODEL_SOURCE_PREFIX)
    df = df.sort_values(
        [
            "frame_id",
            "label_name",
            "_unreviewed",
            "_is_model",
            "confidence",
            "date_modified",
            "source",
            "annotator",
        ],
        ascending=[True, True, True, True, False, False, True, True],
        kind="mergesort",
    )
    winners = df.drop_duplicates(["frame_id", "label_name"], keep="first")
    return frame_labels_from_pandas(winners.reset_index(drop=True))


def ground_truth(table: pa.Table) -> pa.Table:
    """The reviewed rows of a frame-label table (the label set used as truth for training and
    evaluation). Same schema as the input; row order kept."""
    conformed = _conform(table)
    return conformed.filter(pc.equal(conformed["reviewed"], True))


def mark_reviewed(table: pa.Table, reviewer: str, at: datetime) -> pa.Table:
    """Every row of ``table`` marked reviewed by ``reviewer`` at ``at``.

    Sets ``reviewed`` to true, ``reviewer`` to ``reviewer`` and ``date_modified`` to ``at``
    (a timezone-aware datetime; a naive one is taken as UTC). Values, sources and confidences are
    untouched: reviewing vouches for a row, correcting it is a new ``manual`` row.

    Raises:
        ValueError: ``reviewer`` is empty, or the table does not fit the schema.
    """
    if not reviewer or not reviewer.strip():
        raise ValueError("reviewer must be a non-empty string")
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    conformed = _conform(table)
    n = conformed.num_rows
    at_utc = pd.Timestamp(at).tz_convert("UTC")
    replacements = {
        "reviewed": pa.array([True] * n, type=pa.bool_()),
        "reviewer": pa.array([reviewer] * n, type=pa.string()),
        "date_modified": pa.array(
            [at_utc] * n, type=FRAME_LABELS_SCHEMA.field("date_modified").type
        ),
    }
    for name, array in replacements.items():
        index = conformed.schema.get_field_index(name)
        conformed = conformed.set_column(index, FRAME_LABELS_SCHEMA.field(name), array)
    return conformed
