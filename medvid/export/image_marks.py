"""Which pixels of a still the export writes: as stored, with its marks inpainted, or none.

The still-image table given to :func:`medvid.export.write_training_dataset` may carry the
columns of the cleaning stage's ``image_marks`` (:mod:`medvid.cleaning.marks_store`):
``has_calipers`` (bool), ``clean_twin`` (image id or null) and ``inpainted_relative_path`` (the
inpainted PNG relative to the export's ``inpainted_root``, null when no mark was found).
:func:`apply_marks` decides per still, by ``cleaning.marks`` (:data:`MARKS_MODES`):

- ``keep`` (the default): every still as stored. The mark finder's ``has_calipers`` is
  positive on 2 of 2 real clean stills of other vendors (its threshold was never fitted on
  real frames), so by default nothing is dropped or altered on its word.
- ``inpaint``: a still with an inpainted PNG is exported inpainted.
- ``clean_twin_or_inpaint``: a marked still whose clean twin (the same frame before the
  calipers) is exported too is left out; the others as ``inpaint``.
- ``drop``: stills with ``has_calipers`` are left out.

``images.csv`` says what was written: ``has_calipers`` (empty when the still was not looked at)
and ``inpainted`` (``True`` when the exported PNG is the inpainted one).
"""

from __future__ import annotations

from typing import Final

import pandas as pd

MARKS_MODES: Final = ("keep", "inpaint", "clean_twin_or_inpaint", "drop")
#: ``manifest.json`` ``excluded`` keys of :func:`apply_marks`.
MARKS_EXCLUDED: Final = ("calipered_images", "marked_images_with_clean_twin")


def _present(column: pd.Series) -> pd.Series:
    return column.notna() & (column.astype(str) != "")


def apply_marks(images: pd.DataFrame, mode: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """The stills to export under ``mode`` with ``has_calipers`` and ``inpainted`` columns, and
    how many each rule left out (:data:`MARKS_EXCLUDED`).

    Raises:
        ValueError: an unknown ``mode``.
    """
    if mode not in MARKS_MODES:
        raise ValueError(f"marks must be one of {MARKS_MODES}, got {mode!r}")
    counts = dict.fromkeys(MARKS_EXCLUDED, 0)
    out = images.copy()
    for column in ("has_calipers", "clean_twin", "inpainted_relative_path"):
        if column not in out.columns:
            out[column] = None
    calipered = out["has_calipers"].map(lambda v: v is True or v == 1 or str(v) == "True")
    if mode == "drop":
        counts["calipered_images"] = int(calipered.sum())
        out = out[~calipered]
    elif mode == "clean_twin_or_inpaint":
        ids = set(out["image_id"].astype(str))
        twinned = _present(out["clean_twin"]) & out["clean_twin"].astype(str).isin(ids)
        counts["marked_images_with_clean_twin"] = int(twinned.sum())
        out = out[~twinned]
    inpainted = (
        _present(out["inpainted_relative_path"])
        if mode in ("inpaint", "clean_twin_or_inpaint")
        else pd.Series(False, index=out.index)
    )
    out = out.assign(inpainted=inpainted.astype(bool))
    return out.reset_index(drop=True), counts
