"""Still images in a training dataset: de-identified single-frame DICOM images.

A study's single-frame images are not frames of a video, so they travel beside the frame
annotations: ``images/study_<study_key>/image_<image_id>.png`` and ``images.csv``, one row per
image with its split, its de-identified header fields and the clinical fields read from its
visible annotation text (prefixed ``text_``). Images are split by patient together with the
videos (:func:`medvid.export.splits.split_by_patient` over both), so a patient whose cine loop
is in ``train`` has its still images in ``train`` too.

Only de-identified values are exported: the pseudonymous ``image_id``, ``study_key`` and
``patient_id``, shifted ``StudyDate``, device and geometry fields. Nothing here reads PHI.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Final

import pandas as pd

from medvid.csv_injection import neutralize_formula

IMAGES_DIR: Final = "images"
IMAGES_CSV: Final = "images.csv"

#: Columns of ``images.csv`` in order. ``image_relative_path`` is relative to ``images/``;
#: ``region_*`` the imaging region in pixels (x1/y1 exclusive) from SequenceOfUltrasoundRegions
#: or detected (``region_source``); ``crop_*`` the box the exported PNG was cropped to (empty:
#: exported whole; ``width``/``height`` stay those of the source image); ``has_calipers`` the
#: mark finder's answer (empty: not looked at) and ``inpainted`` whether the exported PNG is
#: the still with its marks inpainted (:mod:`medvid.export.image_marks`); ``orientation`` the
#: probe orientation, ``orientation_source`` ``text`` (read on the image: ``text_orientation``)
#: or ``model:<model_id>`` (predicted, :mod:`medvid.cleaning.orientation`) with its
#: ``orientation_confidence`` (empty for text; :func:`with_orientation`); ``PhysicalDelta*`` in
#: the units of ``PhysicalUnits*Direction`` (3 = cm per pixel); ``text_*`` parsed from burned-in
#: text that stays visible (``text_measurements`` JSON ``[[name, value, unit], ...]``). Text a
#: spreadsheet would run as a formula is prefixed with ``'``
#: (:func:`medvid.csv_injection.neutralize_formula`).
IMAGE_COLUMNS: Final[tuple[str, ...]] = (
    "image_id",
    "study_key",
    "patient_id",
    "split",
    "image_relative_path",
    "width",
    "height",
    "region_x0",
    "region_y0",
    "region_x1",
    "region_y1",
    "region_source",
    "crop_x0",
    "crop_y0",
    "crop_x1",
    "crop_y1",
    "has_calipers",
    "inpainted",
    "orientation",
    "orientation_source",
    "orientation_confidence",
    "StudyDate",
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "BodyPartExamined",
    "Laterality",
    "PhotometricInterpretation",
    "PhysicalDeltaX",
    "PhysicalDeltaY",
    "PhysicalUnitsXDirection",
    "PhysicalUnitsYDirection",
    "text_laterality",
    "text_clock_position",
    "text_distance_from_nipple_cm",
    "text_orientation",
    "text_measurements",
    "text_depth_cm",
    "text_device_model",
)

#: Columns a caller's still-image table must have (the rest may be absent: exported empty).
REQUIRED_COLUMNS: Final = ("image_id", "patient_id", "image_relative_path")


#: Columns :func:`with_orientation` adds.
ORIENTATION_COLUMNS: Final = ("orientation", "orientation_source", "orientation_confidence")


def with_orientation(
    table: pd.DataFrame,
    predictions: pd.DataFrame | None,
    *,
    id_column: str = "image_id",
    text_column: str = "text_orientation",
    include_untrusted: bool = False,
) -> pd.DataFrame:
    """``table`` with :data:`ORIENTATION_COLUMNS`: the orientation its text named (source
    ``text``, no confidence) or else the model's prediction (source its ``label_set``,
    ``model:<model_id>``, and its confidence), else empty.

    ``predictions``: rows of ``orientation_predictions``
    (:data:`medvid.catalog.schemas.ORIENTATION_PREDICTIONS_SCHEMA`) or ``None``; a prediction
    is used only when its model beat the majority class on held-out studies
    (``beats_majority``) unless ``include_untrusted``. Text that was read always wins, even
    over a prediction row for the same item.
    """
    read = table[text_column] if text_column in table.columns else [None] * len(table)
    text = pd.Series(
        [t if isinstance(t, str) and t else None for t in read], index=table.index, dtype=object
    )
    out = table.copy()
    out["orientation"] = text
    out["orientation_source"] = pd.Series(
        ["text" if t is not None else None for t in text], index=table.index, dtype=object
    )
    out["orientation_confidence"] = pd.Series(float("nan"), index=table.index)
    if predictions is None or not len(predictions) or not len(table):
        return out
    usable = predictions if include_untrusted else predictions[predictions["beats_majority"]]
    usable = usable.drop_duplicates("item_id").set_index("item_id")
    ids = table[id_column].astype(str)
    fill = text.isna().to_numpy() & ids.isin(usable.index).to_numpy()
    chosen = usable.reindex(ids[fill])
    out.loc[fill, "orientation"] = chosen["orientation"].to_numpy()
    out.loc[fill, "orientation_source"] = chosen["label_set"].to_numpy()
    out.loc[fill, "orientation_confidence"] = chosen["confidence"].astype(float).round(4).to_numpy()
    return out


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return neutralize_formula(str(value))


def image_groups(still_images: pd.DataFrame) -> pd.DataFrame:
    """``video_id``/``patient_id`` rows for :func:`~medvid.export.splits.split_by_patient`,
    one per image (an image is a group member like a video)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in still_images.columns]
    if missing:
        raise ValueError(f"still images lack column(s): {', '.join(missing)}")
    return pd.DataFrame(
        {
            "video_id": still_images["image_id"].astype(str),
            "patient_id": still_images["patient_id"],
        }
    )


def images_csv(still_images: pd.DataFrame, splits: Mapping[str, str]) -> bytes:
    """``images.csv`` for the images, sorted by ``image_relative_path``, with their splits."""
    table = still_images.assign(split=still_images["image_id"].astype(str).map(splits))
    table = table.sort_values("image_relative_path", kind="stable")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(IMAGE_COLUMNS)
    for row in table.to_dict("records"):
        writer.writerow([_cell(row.get(name)) for name in IMAGE_COLUMNS])
    return buffer.getvalue().encode("utf-8")


def image_problems(root: Path, split_of_patient: Mapping[str, set[str]]) -> list[str]:
    """Problems of ``images.csv`` in a dataset folder: a path that does not resolve under
    ``images/``, an image without a split, a patient in two splits (counting the videos'
    patients in ``split_of_patient``). ``[]`` when the file is absent or sound."""
    path = root / IMAGES_CSV
    if not path.exists():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return [f"{IMAGES_CSV} cannot be read: {exc}"]
    problems = []
    base = (root / IMAGES_DIR).resolve()
    unresolved = [
        r["image_relative_path"]
        for r in rows
        if not (candidate := (base / r["image_relative_path"]).resolve()).is_file()
        or base not in candidate.parents
    ]
    if unresolved:
        problems.append(f"{len(unresolved)} image path(s) do not resolve under {IMAGES_DIR}/")
    if any(r["split"] not in ("train", "val") for r in rows):
        problems.append(f"image(s) without a split in {IMAGES_CSV}")
    seen = {patient: set(splits) for patient, splits in split_of_patient.items()}
    for row in rows:
        if row["patient_id"]:
            seen.setdefault(row["patient_id"], set()).add(row["split"])
    mixed = sorted(p for p, s in seen.items() if len(s) > 1)
    if mixed:
        problems.append(f"patient(s) in more than one split across videos and images: {mixed[:5]}")
    return problems


def safe_image_paths(relative_paths: Sequence[str]) -> list[PurePosixPath]:
    """The paths as relative posix paths; ``ValueError`` for an absolute path or ``..``."""
    out = []
    for text in relative_paths:
        path = PurePosixPath(str(text))
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise ValueError(f"unsafe image path {text!r}")
        out.append(path)
    return out
