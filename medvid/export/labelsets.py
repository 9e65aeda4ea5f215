"""Which labels go into an export: every label set of a video, merged to one answer per label.

A video's labels come from several label sets (labels sheets, segments, Labelbox, a person's
cold-label answers, model predictions). An export holds one answer per (frame, label):

1. model rows (source ``model:<model_id>``) are kept only when a person reviewed them, unless the
   export asks for predictions explicitly (all models, or a list of model ids); human rows are
   always kept;
2. what remains is merged with :func:`medvid.labels.labelsets.merge_label_sets` (reviewed before
   unreviewed, human before model, higher confidence, most recent).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from medvid.labels.labelsets import merge_label_sets
from medvid.labels.schema import MODEL_SOURCE_PREFIX, model_source


@dataclass(frozen=True)
class ExportLabels:
    """The merged labels of an export and what was left out.

    Attributes:
        labels: ``FRAME_LABELS_SCHEMA`` table, one row per (frame, label).
        unreviewed_predictions_dropped: model rows left out because nobody reviewed them.
    """

    labels: pa.Table
    unreviewed_predictions_dropped: int


def export_labels(
    label_sets: Iterable[pa.Table],
    *,
    include_predictions: bool = False,
    model_ids: Sequence[str] = (),
) -> ExportLabels:
    """Filter and merge label sets for an export (rules in the module docstring).

    Args:
        label_sets: frame-label tables (``FRAME_LABELS_SCHEMA`` columns) of any sources.
        include_predictions: keep unreviewed rows of every model.
        model_ids: keep unreviewed rows of these models only (ids, without ``model:``).

    Raises ``ValueError`` when a table does not fit the frame-label schema.
    """
    wanted = pa.array([model_source(m) for m in model_ids], pa.string())
    kept, dropped = [], 0
    for table in label_sets:
        if table.num_rows == 0:
            continue
        is_model = pc.starts_with(table["source"], MODEL_SOURCE_PREFIX)
        allowed = pc.or_(pc.invert(is_model), table["reviewed"])
        if include_predictions:
            allowed = pc.or_(allowed, is_model)
        elif len(wanted):
            allowed = pc.or_(allowed, pc.is_in(table["source"], value_set=wanted))
        dropped += table.num_rows - pc.sum(allowed.cast(pa.int64())).as_py()
        kept.append(table.filter(allowed))
    return ExportLabels(labels=merge_label_sets(kept), unreviewed_predictions_dropped=dropped)


def drop_untrusted_predictions(labels: pa.Table, flags: pa.Table) -> tuple[pa.Table, int]:
    """Leave out the unreviewed model rows of the frames their model flagged.

    ``flags`` is a prediction-flags table (``frame_id``, ``source``, ``trusted``: see
    :data:`medvid.predict.infer.PREDICTION_FLAGS_SCHEMA`); a row of ``labels`` is dropped when
    it is unreviewed, its ``source`` is a model and that model flagged its frame untrusted (low
    calibrated confidence or an out-of-distribution video). Reviewed rows stay: a person
    vouched for them. Returns ``(kept rows, rows dropped)``.
    """
    untrusted = flags.filter(pc.invert(flags["trusted"]))
    if labels.num_rows == 0 or untrusted.num_rows == 0:
        return labels, 0
    pairs = pc.binary_join_element_wise(untrusted["source"], untrusted["frame_id"], "\x00")
    keys = pc.binary_join_element_wise(labels["source"], labels["frame_id"], "\x00")
    drop = pc.and_(
        pc.and_(
            pc.starts_with(labels["source"], MODEL_SOURCE_PREFIX), pc.invert(labels["reviewed"])
        ),
        pc.is_in(keys, value_set=pairs),
    )
    drop = pc.fill_null(drop, False)
    dropped = pc.sum(drop.cast(pa.int64())).as_py() or 0
    return labels.filter(pc.invert(drop)), dropped
