"""Reviews sheets: a person vouches for the labels of a video, and those labels become truth.

A *reviews sheet* (CSV, read like every medvid sheet, see :mod:`medvid.labels.sheets`) has one
row per reviewed video:

==============  ==================================================================================
column          meaning
==============  ==================================================================================
``video``       the video's id (16 hex digits) or a name it arrived under
``reviewer``    who reviewed it (a name or initials); required
``source``      optional: which labels were reviewed: ``segment``, ``labelbox``, ``sheet``,
                ``manual``, ``model:<model_id>``, or ``model`` for every model's predictions;
                empty means every label of the video
==============  ==================================================================================

It is how predicted labels become ground truth (AIGVA's "review the predicted labels, then
train on them", seed 003): after looking at a video's predictions (and correcting what was
wrong with a labels or segments sheet, whose human rows win over model rows), the person lists
the video here. :func:`apply_reviews` then marks the matching rows reviewed with
:func:`medvid.labels.labelsets.mark_reviewed` when label sets are read; the stored label tables
are never rewritten, so a new model's predictions are not reviewed by an old review unless the
row names no model (``source`` empty or ``model``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from medvid.errors import SheetError
from medvid.labels.labelsets import mark_reviewed
from medvid.labels.schema import HUMAN_SOURCES, MODEL_SOURCE_PREFIX, is_valid_source
from medvid.labels.sheets import _read_rows  # one CSV reader for every sheet

__all__ = ["REVIEW_COLUMNS", "ANY_MODEL", "apply_reviews", "read_reviews_sheet"]

#: Columns of the DataFrame returned by :func:`read_reviews_sheet`.
REVIEW_COLUMNS: tuple[str, ...] = ("video", "reviewer", "source")
#: ``source`` value that matches the rows of every model (``model:<any id>``).
ANY_MODEL = "model"


def _valid_review_source(source: str) -> bool:
    return source == "" or source == ANY_MODEL or is_valid_source(source)


def read_reviews_sheet(path: str | Path) -> pd.DataFrame:
    """Read and validate a reviews sheet (``video,reviewer[,source]``).

    Returns a DataFrame with :data:`REVIEW_COLUMNS` as trimmed text (``source`` ``""`` when
    empty or absent), one row per sheet row, repeated rows kept once.

    Raises:
        SheetError: the file cannot be read, ``video`` or ``reviewer`` is missing or empty,
            or a ``source`` is not one of the kinds above (rows named).
    """
    path = Path(path)
    header, rows = _read_rows(path)
    missing = [name for name in ("video", "reviewer") if name not in header]
    if missing:
        raise SheetError(f"{path.name}: missing column(s) {', '.join(missing)}")
    index = {name: header.index(name) for name in header}
    records, problems = [], []
    for row_number, cells in rows:
        video = cells[index["video"]]
        reviewer = cells[index["reviewer"]]
        source = cells[index["source"]] if "source" in index else ""
        if not video or not reviewer:
            problems.append(f"row {row_number}: video and reviewer must not be empty")
        elif not _valid_review_source(source):
            problems.append(
                f"row {row_number}: source {source!r} is not one of "
                f"{', '.join(HUMAN_SOURCES)}, model, model:<model_id>"
            )
        else:
            records.append((video, reviewer, source))
    if problems:
        raise SheetError(f"{path.name}: " + "; ".join(problems[:10]))
    frame = pd.DataFrame(records, columns=list(REVIEW_COLUMNS), dtype=str)
    return frame.drop_duplicates().reset_index(drop=True)


def _matches(sources: pa.ChunkedArray, source: str) -> pa.ChunkedArray:
    if source == "":
        return pc.is_valid(sources)
    if source == ANY_MODEL:
        return pc.starts_with(sources, MODEL_SOURCE_PREFIX)
    return pc.equal(sources, source)


def apply_reviews(table: pa.Table, reviews: pd.DataFrame) -> pa.Table:
    """Mark the rows of ``table`` that the reviews cover as reviewed.

    Args:
        table: a frame-label table (:data:`~medvid.labels.schema.FRAME_LABELS_SCHEMA`).
        reviews: rows with ``video_id`` (already resolved from the sheet's ``video``),
            ``reviewer``, ``source`` (see the module docstring) and ``reviewed_at`` (timezone-aware
            datetime, written to ``date_modified``).

    Returns:
        The table with the same rows in the same order; covered rows that were not yet reviewed
        get ``reviewed`` true, ``reviewer`` and ``date_modified`` from the review (later reviews
        of the same rows win). Rows already reviewed keep their reviewer.
    """
    if table.num_rows == 0 or reviews.empty:
        return table
    out = table
    ordered = reviews.sort_values("reviewed_at", kind="stable")
    for review in ordered.itertuples(index=False):
        covered = pc.and_(
            pc.equal(out["video_id"], str(review.video_id)),
            _matches(out["source"], str(review.source or "")),
        )
        todo = pc.and_(covered, pc.invert(out["reviewed"]))
        if not pc.any(todo).as_py():
            continue
        positions = pc.indices_nonzero(todo)
        marked = mark_reviewed(out.take(positions), str(review.reviewer), review.reviewed_at)
        keep = out.filter(pc.invert(todo))
        order_key = "__row"
        out = (
            pa.concat_tables(
                [
                    keep.append_column(order_key, pc.indices_nonzero(pc.invert(todo))),
                    marked.append_column(order_key, positions),
                ]
            )
            .sort_by(order_key)
            .drop_columns([order_key])
        )
    return out
