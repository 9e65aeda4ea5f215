"""On-image marks of the de-identified stills in the media store: found, masked, inpainted.

For every de-identified still (the items :func:`medvid.cleaning.store.still_images_of` lists)
the mark finder (:func:`medvid.cleaning.mark_onnx.load_mark_finder`: onnxruntime, or torch where
it must) is run once per mark-finder
``model_id``; its mask is written as a PNG, and where marks were found the still with its marks
filled (:func:`medvid.cleaning.inpaint.inpaint`, Telea at full resolution, the mask grown by
1 pixel) is written as a PNG too. Caliper twins (:func:`medvid.cleaning.twins.find_twins`) are
looked for among the stills of one study and name the clean twin of a marked still.

Keys: ``media/mark_masks/<relative>`` and ``media/inpainted_images/<relative>`` where
``<relative>`` is the still's ``study_<study_key>/image_<instance_id>.png``
(:data:`medvid.catalog.keys.MARK_MASKS`, :data:`~medvid.catalog.keys.INPAINTED_IMAGES`); table
``tables/image_marks.parquet`` (:data:`IMAGE_MARKS_SCHEMA`). Only de-identified pixels are read
(``media/dicom_images/``), so nothing here holds PHI.

The finder's ``has_calipers`` is positive on 2 of 2 real clean stills of other vendors
(benchmarks/README.md, "Cleaning"): this module records, it never drops anything.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa

from medvid.catalog import keys
from medvid.catalog.keys import Tables, table_key
from medvid.cleaning.inpaint import inpaint
from medvid.cleaning.twins import find_twins
from medvid.errors import CorruptMediaError
from medvid.images import read_rgb
from medvid.io import write_bytes_atomic
from medvid.quarantine import is_input_error, quarantine_error
from medvid.store import Store, read_table, write_table

IMAGE_MARKS_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("study_key", pa.string(), nullable=False),
        pa.field("image_relative_path", pa.string(), nullable=False),
        pa.field("has_calipers", pa.bool_(), nullable=False),
        pa.field("mark_pixels", pa.int64(), nullable=False),
        pa.field("caliper_pixels", pa.int64(), nullable=False),
        pa.field("clean_twin", pa.string()),
        pa.field("mask_key", pa.string(), nullable=False),
        pa.field("inpainted_key", pa.string()),
        pa.field("model_id", pa.string(), nullable=False),
    ]
)
"""``image_marks``, sorted by ``image_id``: ``has_calipers`` and ``caliper_pixels`` (caliper
cross pixels) and ``mark_pixels`` (pixels of any mark) from the mark finder ``model_id``;
``clean_twin``: the ``image_id`` of the same frame stored before the marks were drawn (its
caliper twin in the study; the smallest id when several), null when none; ``mask_key``: the
mask PNG (``(H, W) uint8``, 255 = mark); ``inpainted_key``: the still with its marks filled,
null when no mark pixel was found."""

#: Pixels the mask is grown by before filling (anti-aliased mark edges).
INPAINT_DILATE_PX = 1
INPAINT_METHOD = "telea"


@dataclass(frozen=True)
class MarksUpdate:
    """What :func:`image_marks_table` did: the ``table``, the stills the finder read
    (``found``: new, or found with another model), and the studies whose twins were looked for
    again (``studies``)."""

    table: pa.Table
    found: list[str]
    studies: list[str]


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads (None: unchanged), then restore; nothing
    when torch is not loaded (the ONNX finder's threads are its session's)."""
    if not count or "torch" not in sys.modules:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB ``(H, W, 3)`` or grey ``(H, W)`` uint8 array (the same
    array gives the same bytes)."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise ValueError(f"cannot encode a {image.shape} image as PNG")
    return data.tobytes()


def _write_png(store: Store, key: str, image: np.ndarray) -> None:
    write_bytes_atomic(store.local_path(key), _png(image))
    store.publish(key)


def read_image_marks(store: Store) -> pd.DataFrame:
    """``image_marks`` (:data:`IMAGE_MARKS_SCHEMA`); empty before the first run."""
    key = table_key(Tables.IMAGE_MARKS)
    table = read_table(store, key) if store.exists(key) else IMAGE_MARKS_SCHEMA.empty_table()
    return table.to_pandas()


def write_image_marks(store: Store, table: pa.Table) -> None:
    write_table(store, table_key(Tables.IMAGE_MARKS), table)


def _find(store, still, pixels, finder, device) -> dict:
    """Find the marks of one still, write its mask and (marks found) its inpainted PNG."""
    finding = finder.find(pixels, device=device)
    relative = str(still["image_relative_path"])
    mask_key = f"{keys.MARK_MASKS}/{relative}"
    _write_png(store, mask_key, finding.mask.astype(np.uint8) * 255)
    inpainted_key = None
    if finding.mask.any():
        inpainted_key = f"{keys.INPAINTED_IMAGES}/{relative}"
        filled = inpaint(pixels, finding.mask, method=INPAINT_METHOD, dilate_px=INPAINT_DILATE_PX)
        _write_png(store, inpainted_key, filled)
    return {
        "has_calipers": bool(finding.has_calipers),
        "mark_pixels": int(finding.mask.sum()),
        "caliper_pixels": int(finding.caliper_pixels),
        "mask_key": mask_key,
        "inpainted_key": inpainted_key,
    }


def image_marks_table(
    store: Store,
    stills: pd.DataFrame,
    previous: pd.DataFrame,
    finder,
    *,
    device: str = "cpu",
    num_threads: int | None = None,
    stage: str = "image_marks",
) -> MarksUpdate:
    """The ``image_marks`` table (:data:`IMAGE_MARKS_SCHEMA`) of ``stills``, incrementally.

    Args:
        store: the media store (reads ``media/dicom_images/``, writes masks, inpainted PNGs).
        stills: ``image_id``, ``study_key``, ``image_relative_path`` (under
            ``media/dicom_images/``), as :func:`medvid.cleaning.store.still_images_of` lists.
        previous: the last ``image_marks`` (:func:`read_image_marks`).
        finder: a :class:`~medvid.cleaning.mark_onnx.MarkFinder`: an
            :class:`~medvid.cleaning.mark_onnx.OnnxMarkFinder` or a
            :class:`~medvid.cleaning.mark_net.LoadedMarkNet`; ``model_id`` is the weights'.
        device: torch device of a torch finder (an ONNX finder's session decides its own).
        num_threads: torch CPU threads while finding (None: torch's setting).
        stage: the quarantine stage of a still that cannot be read.

    A row of ``previous`` with the same ``image_id`` and ``model_id`` is kept; a still the
    finder has not read with this model is read. A study with any such still, or that lost a
    still, has its stills decoded again for :func:`~medvid.cleaning.twins.find_twins`; the
    other studies' rows are kept whole. A still whose PNG is missing or undecodable is
    quarantined under its study and left out; the others go on. The same stills and finder
    give the same table and PNG bytes.
    """
    model_id = finder.model_id
    known = previous[previous["model_id"] == model_id].set_index("image_id", drop=False)
    by_study_before = {
        study: set(rows["image_id"]) for study, rows in known.groupby("study_key", sort=True)
    }
    rows, found, redone = [], [], []
    with torch_threads(num_threads):
        for study, group in stills.groupby("study_key", sort=True):
            group = group.sort_values("image_id", kind="stable")
            ids = set(group["image_id"].astype(str))
            if ids <= set(known.index) and by_study_before.get(study) == ids:
                rows.extend(known.loc[sorted(ids)].to_dict("records"))
                continue
            redone.append(str(study))
            study_rows, pixels_of = [], {}
            for still in group.to_dict("records"):
                image_id = str(still["image_id"])
                relative = f"{keys.DICOM_IMAGES}/{still['image_relative_path']}"
                try:
                    if not store.exists(relative):
                        raise CorruptMediaError(f"still missing: {relative}")
                    pixels = read_rgb(store.fetch(relative))
                    if min(pixels.shape[:2]) < 8:
                        raise CorruptMediaError(f"still too small to look for marks: {relative}")
                except Exception as error:
                    if not is_input_error(error):
                        raise
                    quarantine_error(
                        store, error, content_id=str(study), file=relative, stage=stage
                    )
                    continue
                pixels_of[image_id] = pixels
                if image_id in known.index:
                    row = known.loc[image_id].to_dict()
                else:
                    row = _find(store, still, pixels, finder, device)
                    found.append(image_id)
                study_rows.append(
                    {
                        **row,
                        "image_id": image_id,
                        "study_key": str(study),
                        "image_relative_path": str(still["image_relative_path"]),
                        "model_id": model_id,
                    }
                )
            clean_of: dict[str, str] = {}
            for twin in find_twins(pixels_of):
                clean_of.setdefault(twin.marked_id, twin.clean_id)  # sorted: smallest clean id
            for row in study_rows:
                row["clean_twin"] = clean_of.get(row["image_id"])
            rows.extend(study_rows)
    frame = pd.DataFrame(rows, columns=IMAGE_MARKS_SCHEMA.names)
    frame = frame.sort_values("image_id", kind="stable", ignore_index=True)
    table = pa.Table.from_pydict(
        {
            "image_id": frame["image_id"].astype(str).tolist(),
            "study_key": frame["study_key"].astype(str).tolist(),
            "image_relative_path": frame["image_relative_path"].astype(str).tolist(),
            "has_calipers": frame["has_calipers"].astype(bool).tolist(),
            "mark_pixels": frame["mark_pixels"].astype(np.int64).tolist(),
            "caliper_pixels": frame["caliper_pixels"].astype(np.int64).tolist(),
            "clean_twin": [_optional(v) for v in frame["clean_twin"]],
            "mask_key": frame["mask_key"].astype(str).tolist(),
            "inpainted_key": [_optional(v) for v in frame["inpainted_key"]],
            "model_id": frame["model_id"].astype(str).tolist(),
        },
        schema=IMAGE_MARKS_SCHEMA,
    )
    return MarksUpdate(table, sorted(found), redone)


def _optional(value) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def marks_preview(store: Store, marks: pd.DataFrame, limit: int = 3, height: int = 160) -> bytes:
    """PNG of up to ``limit`` stills with marks (first by ``image_id``), one row each: the
    still, its mask, the inpainted still, each scaled to ``height`` pixels. Empty bytes when no
    still has marks."""
    marked = marks[marks["inpainted_key"].notna()].sort_values("image_id").head(limit)
    strips = []
    for row in marked.to_dict("records"):
        before = read_rgb(store.fetch(f"{keys.DICOM_IMAGES}/{row['image_relative_path']}"))
        mask = read_rgb(store.fetch(row["mask_key"]))
        after = read_rgb(store.fetch(row["inpainted_key"]))
        width = max(1, round(before.shape[1] * height / before.shape[0]))
        parts = [
            cv2.resize(p, (width, height), interpolation=cv2.INTER_AREA)
            for p in (before, mask, after)
        ]
        strips.append(np.concatenate(parts, axis=1))
    if not strips:
        return b""
    width = max(s.shape[1] for s in strips)
    padded = [np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0))) for s in strips]
    return _png(np.concatenate(padded, axis=0))
