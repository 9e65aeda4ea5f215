"""Write a training dataset folder from frames, frame labels and videos.

Layout of ``out_dir`` (written as a whole: built in a temporary folder beside it and swapped in
with :func:`medvid.io.atomic_dir`, so readers see the old dataset or the new one, never a mix):

- ``annotations.csv`` / ``annotations.json`` — one row per frame-label annotation,
  :data:`~medvid.export.annotations.ANNOTATION_COLUMNS` exactly (seed 004's frame-annotation
  schema); the JSON is the same table as a list of objects.
- ``frames/video_<video_id>/frame_<frame_id>.jpg`` — every exported frame; the
  ``frame_relative_path`` of the annotations is relative to ``frames/``.
- ``splits.csv`` — ``video_id, patient_id, split`` then the patient attribute columns of the
  videos table; the split is by patient and duplicate group
  (:func:`~medvid.export.splits.split_by_patient_and_duplicates`): videos and stills sharing a
  duplicate group, or forming a near-duplicate video pair, are on one side.
- ``imagefolder/<split>/<label>/<frame_id>.jpg`` — torchvision ``ImageFolder`` layout, the
  "folders named by their label" export of AIGVA (seed 003): a frame appears under every label
  it is positive for, thinned to every ``imagefolder_skip``-th positive frame per (video,
  label) in frame order. Every label folder exists in every split so class indices agree
  between ``train`` and ``val``; pass ``allow_empty=True`` to ``ImageFolder`` when a class has
  no image in a split. With ``positive_only_imagefolder=False`` frames negative for all their
  labels go to ``imagefolder/<split>/_negative/``. ``imagefolder.csv`` lists every file
  (``path, frame_id, video_id, label_name, split``).
- ``manifest.json`` — dataset name, medvid version, creation date, config, sampling config,
  label schema, information sources, counts per label and split, videos/patients per split,
  the source videos' sha256, and the frames excluded as dead/disturbed.
- ``multilabel.json`` — per frame: image path, label vector, label mask
  (:mod:`medvid.export.multilabel`; read by
  :class:`medvid.export.torch_dataset.MultilabelFrameDataset`).
- ``dataset.json`` — the whole dataset as one typed JSON document (``schema_version``,
  ``dataset_id``, ``dataset_type``, ``summary``, ``frame_annotations``, ``videos``;
  :mod:`medvid.export.dataset_file`).
- ``images/study_<study_key>/image_<image_id>.png`` and ``images.csv`` — de-identified still
  images (single-frame DICOM), when given, split by patient together with the videos
  (:mod:`medvid.export.images`).
- ``frame_orientations.csv`` — the probe orientation of exported frames that have one
  (``frame_id, video_id, frame_relative_path, split, orientation, orientation_source,
  orientation_confidence``: the text OCR read on the frame, else a model's prediction,
  :func:`medvid.export.images.with_orientation`), when given and any exported frame has one.

Which frames: those with at least one annotation, minus dead frames (unless
``include_dead``) and disturbed frames (when ``include_disturbed`` is off), minus copies
(``duplicates="representative"``, given ``duplicate_groups``): a frame or still that is not its
duplicate group's representative (:mod:`medvid.cleaning.store`) is left out when its
representative is exported, and counted in ``manifest.json``'s ``excluded``. Annotations whose
frame is not in the frames table are dropped and counted. Original video file names are not
written anywhere (they often hold patient names).

Patients and dates: ``patient_id`` must be medvid's pseudonym (``"P"`` + 11 upper-case hex
digits, :meth:`medvid.deid.header.PseudonymMap.patient`, which patients sheets get through
:func:`medvid.deid.sheets.pseudonymize_patients`) or null (no patient: the video is split on
its own); anything else is refused (:class:`PatientIdError`) unless the caller passes
``allow_unpseudonymized_patient_ids=True`` for data without real patients. The dates of the
labels (``date_created``/``date_modified``, the manifest's and ``dataset.json``'s ``created``)
are written as their year only, ``YYYY-01-01T00:00:00.000000+00:00``: they are the times
sheets arrived and labels were drawn, which sit days after an exam and so disclose its date
(HIPAA Safe Harbor keeps only the year of dates related to a patient, 45 CFR
164.514(b)(2)(i)(C)). The full times still decide which answer wins when sources disagree; no
run time is written, so a re-export of the same labels is byte-identical. Still images carry
their StudyDate as the DICOM stage shifted it per patient.

Positive or not: when one (frame, label) has annotations from several sources, the
ImageFolder and the ``positives`` counts use one of them: human sources before models, then
the latest ``date_modified``, then source and annotator name. ``annotations.*`` keep all rows.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

from medvid.export.annotations import (
    ANNOTATION_COLUMNS,
    cell_text,
    format_cell,
    information_source_ids,
    records_to_csv,
    records_to_json,
)
from medvid.export.dataset_file import DATASET_JSON, dataset_document
from medvid.export.image_marks import MARKS_MODES, apply_marks
from medvid.export.images import (
    IMAGES_CSV,
    IMAGES_DIR,
    ORIENTATION_COLUMNS,
    image_groups,
    images_csv,
    safe_image_paths,
)
from medvid.export.multilabel import MULTILABEL_JSON, multilabel_document
from medvid.export.splits import Split, normalize_patient_id, split_by_patient_and_duplicates
from medvid.io import atomic_dir
from medvid.labels.schema import model_id_of_source

#: strftime pattern of every date an export writes: the year only (see the module docstring).
EXPORT_DATE_FORMAT: Final = "%Y-01-01T00:00:00.000000+00:00"
#: medvid's patient pseudonym, the only ``patient_id`` an export takes by default.
PSEUDONYM_PATTERN: Final = re.compile(r"P[0-9A-F]{11}")

ANNOTATIONS_CSV: Final = "annotations.csv"
ANNOTATIONS_JSON: Final = "annotations.json"
SPLITS_CSV: Final = "splits.csv"
MANIFEST_JSON: Final = "manifest.json"
IMAGEFOLDER_DIR: Final = "imagefolder"
IMAGEFOLDER_CSV: Final = "imagefolder.csv"
FRAMES_DIR: Final = "frames"
NEGATIVE_CLASS_DIR: Final = "_negative"
MANIFEST_FORMAT_VERSION: Final = 1
FRAME_ORIENTATIONS_CSV: Final = "frame_orientations.csv"
FRAME_ORIENTATION_COLUMNS: Final = (
    "frame_id",
    "video_id",
    "frame_relative_path",
    "split",
    *ORIENTATION_COLUMNS,
)

LinkMode = Literal["hardlink", "copy"]
Progress = Callable[[int, int], None]

_FRAME_COLUMNS = ("frame_id", "video_id", "frame_number", "frame_timestamp", "frame_relative_path")
_LABEL_COLUMNS = (
    "frame_id",
    "label_id",
    "label_name",
    "value",
    "float_value",
    "source",
    "annotator",
    "date_created",
    "date_modified",
)
_VIDEO_COLUMNS = ("video_id", "video_hash")
_NOT_EXPORTED_VIDEO_COLUMNS = ("video_id", "video_hash", "original_name", "patient_id")


@dataclass(frozen=True)
class ExportConfig:
    """How to build a training dataset.

    Attributes:
        dataset_name: name written to the manifest.
        val_ratio: wanted fraction of exported frames in the validation split, in [0, 1];
            reached approximately, since whole patients move together.
        seed: seed of the patient shuffle; the same seed gives the same split.
        imagefolder_skip: keep every k-th positive frame per (video, label) in ``imagefolder/``
            (AIGVA's "skip factor"; 1 keeps all). ``annotations.*`` and ``frames/`` are not
            thinned.
        include_dead: also export frames flagged ``is_dead`` (black, frozen, blank).
        include_disturbed: also export frames flagged ``is_disturbed`` (motion, artefacts).
        link_mode: ``"hardlink"`` (no extra disk; falls back to a copy when the frames root is
            on another filesystem) or ``"copy"`` (independent files).
        positive_only_imagefolder: ``True`` puts only positive frames in ``imagefolder/``;
            ``False`` also puts frames negative for all their labels under ``_negative/``.
        duplicates: ``"representative"`` exports one item per duplicate group and patient
            (when ``duplicate_groups`` are given); ``"all"`` exports every copy. Either way a
            duplicate group is never in two splits.
        crop_to_field_of_view: crop each frame to its video's field of view (``fields_of_view``)
            and each still to its region (``region_x0..region_y1``), re-encoded in the same
            format (JPEG at quality :data:`CROP_JPEG_QUALITY`, PNG lossless); the box is
            recorded in ``crop_x0, crop_y0, crop_x1, crop_y1``.
        min_width, min_height: frames and stills narrower or lower than this (pixels, after
            the crop) are left out (0: no limit).
        max_colour_fraction: an ultrasound still (``Modality`` ``US``) with more than this
            fraction of coloured pixels inside its crop is taken as colour Doppler and left
            out (:func:`medvid.cleaning.filters.colour_fraction`); None keeps them.
        marks: which pixels of a still with on-image marks are exported
            (:mod:`medvid.export.image_marks`): ``keep`` (default: as stored), ``inpaint``,
            ``clean_twin_or_inpaint`` or ``drop``.
    """

    dataset_name: str
    val_ratio: float = 0.2
    seed: int = 0
    imagefolder_skip: int = 1
    include_dead: bool = False
    include_disturbed: bool = True
    link_mode: LinkMode = "hardlink"
    positive_only_imagefolder: bool = True
    duplicates: Literal["representative", "all"] = "representative"
    crop_to_field_of_view: bool = True
    min_width: int = 0
    min_height: int = 0
    max_colour_fraction: float | None = None
    marks: Literal["keep", "inpaint", "clean_twin_or_inpaint", "drop"] = "keep"

    def __post_init__(self) -> None:
        if not self.dataset_name or not self.dataset_name.strip():
            raise ValueError("dataset_name must be non-empty")
        if not 0.0 <= self.val_ratio <= 1.0:
            raise ValueError(f"val_ratio must be in [0, 1], got {self.val_ratio}")
        if self.imagefolder_skip < 1:
            raise ValueError(f"imagefolder_skip must be >= 1, got {self.imagefolder_skip}")
        if self.link_mode not in ("hardlink", "copy"):
            raise ValueError(f"link_mode must be 'hardlink' or 'copy', got {self.link_mode!r}")
        if self.duplicates not in ("representative", "all"):
            raise ValueError(
                f"duplicates must be 'representative' or 'all', got {self.duplicates!r}"
            )
        if self.marks not in MARKS_MODES:
            raise ValueError(f"marks must be one of {MARKS_MODES}, got {self.marks!r}")


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`write_training_dataset` wrote.

    ``counts`` is the ``counts`` object of ``manifest.json``; ``splits`` maps each exported
    ``video_id`` to ``"train"`` or ``"val"``; ``duplicates_dropped``: frames and still images
    left out as copies of an exported representative.
    """

    path: Path
    n_annotations: int
    n_frames: int
    n_videos: int
    counts: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, Split] = field(default_factory=dict)
    duplicates_dropped: int = 0


class PatientIdError(ValueError):
    """A ``patient_id`` given to the export is not a medvid pseudonym (a raw MRN would leak)."""


def _check_pseudonyms(table: pd.DataFrame, what: str) -> None:
    if "patient_id" not in table.columns:
        return
    ids = [normalize_patient_id(p) for p in table["patient_id"]]
    raw = sum(1 for p in ids if p is not None and not PSEUDONYM_PATTERN.fullmatch(p))
    if raw:
        raise PatientIdError(
            f"{raw} patient_id value(s) of the {what} table are not medvid pseudonyms (P + 11 "
            "upper-case hex digits): pseudonymise patients sheets with "
            "medvid.deid.pseudonymize_patients, or pass allow_unpseudonymized_patient_ids=True "
            "for data without real patients"
        )


def export_date(value: Any) -> str | None:
    """A date as an export writes it: its UTC year, ``YYYY-01-01T00:00:00.000000+00:00``
    (:data:`EXPORT_DATE_FORMAT`); None for a missing one. Naive datetimes are taken as UTC."""
    if value is None or pd.isna(value):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime(EXPORT_DATE_FORMAT)


def label_folder_name(label_name: str, label_id: int) -> str:
    """A folder name for a label: characters other than ``A-Za-z0-9._-`` become ``_``, leading
    dots are dropped; an empty result becomes ``label_<label_id>``."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", label_name.strip()).lstrip(".")
    return name or f"label_{label_id}"


def _require(df: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} table lacks column(s): {', '.join(missing)}")


def _flag(frames: pd.DataFrame, column: str) -> pd.Series:
    if column not in frames.columns:
        return pd.Series(False, index=frames.index)
    return frames[column].fillna(False).astype(bool)


def _safe_relative(path: str) -> PurePosixPath:
    rel = PurePosixPath(path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"frame_relative_path must be relative without '..': {path!r}")
    return rel


def _place(src: Path, dst: Path, link_mode: LinkMode) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link_mode == "hardlink":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # other filesystem, or links not permitted: copy instead
    shutil.copyfile(src, dst)


def _resolve_values(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (frame_id, label_id): human before model, newest, then by name."""
    ranked = rows.assign(_is_model=rows["information_source_name"].str.startswith("model:"))
    ranked = ranked.sort_values(
        ["frame_id", "label_id", "_is_model", "_modified", "information_source_name", "annotator"],
        ascending=[True, True, True, False, True, True],
        kind="stable",
    )
    return ranked.drop_duplicates(["frame_id", "label_id"], keep="first")


def _csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([format_cell(v) for v in row])
    return buffer.getvalue().encode("utf-8")


def _json_bytes(document: Any) -> bytes:
    return (json.dumps(document, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def write_training_dataset(
    out_dir: Path,
    *,
    frames: pd.DataFrame,
    labels: pd.DataFrame,
    videos: pd.DataFrame,
    frames_root: Path,
    config: ExportConfig,
    medvid_version: str,
    sampling_config: Mapping[str, Any] | None = None,
    created: datetime | None = None,
    progress: Progress | None = None,
    label_schema: Mapping[str, int] | None = None,
    still_images: pd.DataFrame | None = None,
    images_root: Path | None = None,
    allow_unpseudonymized_patient_ids: bool = False,
    duplicate_groups: pd.DataFrame | None = None,
    duplicate_videos: pd.DataFrame | None = None,
    fields_of_view: Mapping[str, tuple[int, int, int, int]] | None = None,
    inpainted_root: Path | None = None,
    frame_orientations: pd.DataFrame | None = None,
) -> ExportSummary:
    """Write the training dataset described in the module docstring to ``out_dir``.

    Args:
        out_dir: the dataset folder; replaced whole if it exists.
        frames: frame manifest rows (``frame_id``, ``video_id``, ``frame_number`` int,
            ``frame_timestamp`` float s, ``frame_relative_path`` relative to ``frames_root``,
            optional ``is_dead``/``is_disturbed`` bool).
        labels: frame-label rows with the columns of
            :data:`~medvid.labels.schema.FRAME_LABELS_SCHEMA` (at least ``frame_id``,
            ``label_id``, ``label_name``, ``value``, ``float_value``, ``source``,
            ``annotator``, ``date_created``, ``date_modified``); at most one row per
            (frame_id, label_id, source).
        videos: ``video_id``, ``video_hash`` (sha256 hex), optional ``original_name`` (not
            exported), ``patient_id`` (nullable) and patient attribute columns.
        frames_root: folder that ``frame_relative_path`` is relative to.
        config: :class:`ExportConfig`.
        medvid_version: written to the manifest.
        sampling_config: how the frames were sampled, written to the manifest as given.
        created: the manifest's creation date; default the newest ``date_modified`` of the
            exported annotations, so re-running on the same labels writes the same manifest.
            Written as its year only, like every date of the export.
        progress: called as ``progress(done, total)`` after each frame file is placed.
        label_schema: the project's ``{label_name: label_id}``, which fixes the positions of
            the multilabel vectors (labels without annotations keep a position, masked out);
            default: the labels of the exported annotations.
        still_images: de-identified still images (:mod:`medvid.export.images`: ``image_id``,
            ``patient_id``, ``image_relative_path`` relative to ``images_root``, and any of
            :data:`~medvid.export.images.IMAGE_COLUMNS`), written to ``images/`` and
            ``images.csv`` and split by patient together with the videos.
        images_root: folder the still images' paths are relative to.
        allow_unpseudonymized_patient_ids: take ``patient_id`` values that are not medvid
            pseudonyms (synthetic or public data without real patients). Off by default.
        duplicate_groups: one row per frame or still (``item_id`` = ``frame_id`` or
            ``image_id``) with ``source_id`` (its video or image), ``group_id``,
            ``group_size``, ``representative`` (bool) and ``representative_id``
            (:data:`medvid.cleaning.store.GROUPS_SCHEMA`); None: no duplicate handling.
        duplicate_videos: near-duplicate video pairs (``video_a``, ``video_b``), kept on one
            side of the split.
        fields_of_view: ``{video_id: (x0, y0, x1, y1)}`` the image region of a video's frames
            in pixels (x1/y1 exclusive; :mod:`medvid.cleaning.fov`), clipped to each frame's
            ``width``/``height`` when the frames table has them.
        inpainted_root: folder the stills' ``inpainted_relative_path`` are relative to
            (:mod:`medvid.export.image_marks`; read only when ``config.marks`` inpaints).
        frame_orientations: ``frame_id`` and
            :data:`~medvid.export.images.ORIENTATION_COLUMNS` per frame
            (:func:`~medvid.export.images.with_orientation`); the exported frames with an
            ``orientation`` are written to ``frame_orientations.csv``. None: no such file.

    Returns an :class:`ExportSummary`. Raises :class:`PatientIdError` (a ``ValueError``) when a
    ``patient_id`` of ``videos`` or ``still_images`` is neither a medvid pseudonym nor null
    (unless allowed); ``ValueError`` for missing columns, duplicate annotations, unknown
    sources, annotated videos missing from ``videos``, unsafe relative paths or two labels
    whose folder names collide; ``FileNotFoundError`` when a frame file is missing under
    ``frames_root`` (the previous dataset, if any, is then left untouched).
    """
    out_dir = Path(out_dir)
    frames_root = Path(frames_root)
    _require(frames, _FRAME_COLUMNS, "frames")
    _require(labels, _LABEL_COLUMNS, "labels")
    _require(videos, _VIDEO_COLUMNS, "videos")
    if not allow_unpseudonymized_patient_ids:
        _check_pseudonyms(videos, "videos")
        if still_images is not None:
            _check_pseudonyms(still_images, "still images")

    # --- which annotations and frames --------------------------------------------------------
    frame_table = frames.loc[:, list(_FRAME_COLUMNS)].copy()
    for column in ("width", "height"):
        frame_table[column] = frames[column].to_numpy() if column in frames.columns else None
    frame_table["is_dead"] = _flag(frames, "is_dead").to_numpy()
    frame_table["is_disturbed"] = _flag(frames, "is_disturbed").to_numpy()
    frame_table = frame_table.drop_duplicates("frame_id")

    label_rows = labels.loc[:, list(_LABEL_COLUMNS)].copy()
    label_rows["frame_id"] = label_rows["frame_id"].astype(str)
    label_rows["source"] = label_rows["source"].astype(str)
    duplicated = label_rows.duplicated(["frame_id", "label_id", "source"])
    if duplicated.any():
        first = label_rows[duplicated].iloc[0]
        raise ValueError(
            f"{int(duplicated.sum())} duplicate annotation(s), e.g. frame {first['frame_id']} "
            f"label {first['label_id']} source {first['source']}"
        )

    joined = label_rows.merge(frame_table, on="frame_id", how="left", validate="many_to_one")
    has_frame = joined["video_id"].notna()
    n_without_frame = int((~has_frame).sum())
    joined = joined[has_frame]

    dead = joined["is_dead"] & (not config.include_dead)
    disturbed = joined["is_disturbed"] & (not config.include_disturbed) & ~dead
    excluded_frames = joined.loc[dead | disturbed, ["frame_relative_path", "is_dead"]]
    excluded_frames = excluded_frames.drop_duplicates("frame_relative_path")
    excluded = {
        "dead_frames": int(excluded_frames["is_dead"].sum()),
        "disturbed_frames": int((~excluded_frames["is_dead"]).sum()),
        "dead_annotations": int(dead.sum()),
        "disturbed_annotations": int(disturbed.sum()),
        "annotations_without_frame": n_without_frame,
        "frames": sorted(excluded_frames["frame_relative_path"].astype(str)),
    }
    rows = joined[~(dead | disturbed)].copy()
    images = still_images if still_images is not None else pd.DataFrame(columns=["image_id"])
    images, marks = apply_marks(images, config.marks)
    excluded.update(marks)
    groups = _duplicate_table(duplicate_groups)
    rows, images, duplicates = _drop_copies(rows, images, groups, config.duplicates)
    excluded.update(duplicates)
    boxes = fields_of_view if config.crop_to_field_of_view and fields_of_view else {}
    rows = _with_crop(rows, boxes)
    images = _images_with_crop(images, config.crop_to_field_of_view)
    rows, images, small = _drop_small(rows, images, config.min_width, config.min_height)
    images, colour = _drop_colour(images, images_root, config.max_colour_fraction)
    excluded.update(small)
    excluded["colour_doppler_images"] = colour

    # --- video columns -----------------------------------------------------------------------
    video_table = videos.drop_duplicates("video_id").copy()
    video_table["video_id"] = video_table["video_id"].astype(str)
    if "patient_id" not in video_table.columns:
        video_table["patient_id"] = None
    rows["video_id"] = rows["video_id"].astype(str)
    unknown = sorted(set(rows["video_id"]) - set(video_table["video_id"]))
    if unknown:
        raise ValueError(f"annotated video(s) missing from the videos table: {', '.join(unknown)}")
    rows = rows.merge(video_table[["video_id", "video_hash"]], on="video_id", how="left")

    # --- annotation columns ------------------------------------------------------------------
    source_ids = information_source_ids(rows["source"])
    rows["information_source_name"] = rows["source"]
    rows["information_source_id"] = rows["source"].map(source_ids).astype("int64")
    rows["model_meta_id"] = [model_id_of_source(s) for s in rows["source"]]
    rows["label_id"] = rows["label_id"].astype("int64")
    rows["frame_number"] = rows["frame_number"].astype("int64")
    rows["frame_timestamp"] = rows["frame_timestamp"].astype("float64")
    rows["value"] = rows["value"].astype(bool)
    rows["float_value"] = pd.to_numeric(rows["float_value"], errors="raise").astype("float64")
    rows["annotator"] = rows["annotator"].astype(str)
    rows["_modified"] = pd.to_datetime(rows["date_modified"], utc=True)
    for column in ("date_created", "date_modified"):
        rows[column] = pd.to_datetime(rows[column], utc=True).dt.strftime(EXPORT_DATE_FORMAT)
    rows["frame_relative_path"] = [
        _safe_relative(str(p)).as_posix() for p in rows["frame_relative_path"]
    ]
    rows = rows.sort_values(
        ["video_id", "frame_number", "label_id", "information_source_name", "annotator"],
        kind="stable",
    ).reset_index(drop=True)
    rows["annotation_id"] = np.arange(len(rows), dtype=np.int64)

    label_ids = rows.drop_duplicates("label_id").sort_values("label_id")
    export_labels = {
        str(n): int(i) for n, i in zip(label_ids["label_name"], label_ids["label_id"], strict=True)
    }
    folders: dict[str, str] = {}
    for name, label_id in export_labels.items():
        folder = label_folder_name(name, label_id)
        clash = [n for n, f in folders.items() if f == folder]
        if clash or (folder == NEGATIVE_CLASS_DIR and not config.positive_only_imagefolder):
            raise ValueError(f"label {name!r} maps to folder {folder!r} that is already used")
        folders[name] = folder

    # --- split -------------------------------------------------------------------------------
    exported_frames = rows.drop_duplicates("frame_id")[
        ["frame_id", "video_id", "frame_number", "frame_relative_path"]
    ]
    frame_counts = exported_frames.groupby("video_id").size().to_dict()
    exported_videos = video_table[video_table["video_id"].isin(frame_counts)].sort_values(
        "video_id"
    )
    image_ids = set(images["image_id"].astype(str))
    members = exported_videos[["video_id", "patient_id"]]
    if image_ids:
        members = pd.concat([members, image_groups(images)], ignore_index=True)
    member_counts = {**frame_counts, **dict.fromkeys(image_ids, 1)}
    splits = split_by_patient_and_duplicates(
        members,
        member_counts,
        _split_links(groups, duplicate_videos, set(member_counts)),
        val_ratio=config.val_ratio,
        seed=config.seed,
    )
    image_splits = {key: splits.pop(key) for key in sorted(image_ids)}
    oriented = _frame_orientations(exported_frames, frame_orientations, splits)
    rows["_split"] = rows["video_id"].map(splits)
    split_names = sorted(set(splits.values()), key=["train", "val"].index)
    image_paths = safe_image_paths(list(images.get("image_relative_path", [])))

    # --- imagefolder selection ---------------------------------------------------------------
    resolved = _resolve_values(rows)
    positives = resolved[resolved["value"]].sort_values(["video_id", "label_id", "frame_number"])
    positives = positives.assign(
        _rank=positives.groupby(["video_id", "label_id"]).cumcount(),
        _folder=positives["label_name"].map(folders),
    )
    picked = positives[positives["_rank"] % config.imagefolder_skip == 0]
    if not config.positive_only_imagefolder:
        any_positive = resolved.groupby("frame_id")["value"].any()
        negative_frames = resolved.drop_duplicates("frame_id").set_index("frame_id")
        negative_frames = negative_frames[~any_positive.reindex(negative_frames.index)]
        negative_frames = negative_frames.reset_index().sort_values(["video_id", "frame_number"])
        negative_frames = negative_frames.assign(
            _rank=negative_frames.groupby("video_id").cumcount(),
            _folder=NEGATIVE_CLASS_DIR,
            label_name=None,
        )
        picked = pd.concat(
            [picked, negative_frames[negative_frames["_rank"] % config.imagefolder_skip == 0]]
        )
    picked = picked.sort_values(["_split", "_folder", "frame_id"])

    # --- counts ------------------------------------------------------------------------------
    counts = _counts(rows, resolved, picked, exported_videos, splits, split_names, folders)
    multilabel = multilabel_document(
        resolved, export_labels if label_schema is None else dict(label_schema)
    )

    created_text = export_date(created if created is not None else rows["_modified"].max())
    manifest = {
        "format_version": MANIFEST_FORMAT_VERSION,
        "dataset_name": config.dataset_name,
        "medvid_version": medvid_version,
        "created": created_text,
        "config": asdict(config),
        "sampling_config": dict(sampling_config) if sampling_config is not None else None,
        "label_schema": export_labels,
        "imagefolder_classes": {n: folders[n] for n in export_labels},
        "information_sources": source_ids,
        "n_annotations": len(rows),
        "n_frames": len(exported_frames),
        "n_videos": len(splits),
        "counts": counts,
        "source_video_sha256": sorted(str(h) for h in exported_videos["video_hash"]),
        "n_images": len(image_ids),
        "n_frames_with_orientation": len(oriented),
        "images_per_split": {
            name: sum(split == name for split in image_splits.values()) for name in ("train", "val")
        },
        "excluded": excluded,
        "files": {
            "annotations_csv": ANNOTATIONS_CSV,
            "annotations_json": ANNOTATIONS_JSON,
            "splits_csv": SPLITS_CSV,
            "frames_dir": FRAMES_DIR,
            "imagefolder_dir": IMAGEFOLDER_DIR,
            "imagefolder_csv": IMAGEFOLDER_CSV,
            "multilabel_json": MULTILABEL_JSON,
            "dataset_json": DATASET_JSON,
            **({"images_dir": IMAGES_DIR, "images_csv": IMAGES_CSV} if image_ids else {}),
            **({"frame_orientations_csv": FRAME_ORIENTATIONS_CSV} if len(oriented) else {}),
        },
    }

    records = rows.loc[:, list(ANNOTATION_COLUMNS)].to_dict("records")
    attribute_columns = [c for c in video_table.columns if c not in _NOT_EXPORTED_VIDEO_COLUMNS]
    split_rows = [
        [video_id, normalize_patient_id(patient), splits[video_id], *attributes]
        for video_id, patient, *attributes in exported_videos[
            ["video_id", "patient_id", *attribute_columns]
        ].itertuples(index=False, name=None)
    ]
    positives_per_video = (
        resolved[resolved["value"]].groupby(["video_id", "label_name"]).size()
        if len(resolved)
        else pd.Series(dtype=int)
    )
    document = dataset_document(
        dataset_name=config.dataset_name,
        records=records,
        videos=[
            {
                "video_id": video_id,
                "video_hash": str(video_hash),
                "patient_id": normalize_patient_id(patient),
                "split": splits[video_id],
                "frames": int(frame_counts[video_id]),
                "positive_frames": {
                    str(label): int(n)
                    for (vid, label), n in positives_per_video.items()
                    if vid == video_id
                },
                "attributes": {
                    name: cell_text(value)
                    for name, value in zip(attribute_columns, attributes, strict=True)
                },
            }
            for video_id, video_hash, patient, *attributes in exported_videos[
                ["video_id", "video_hash", "patient_id", *attribute_columns]
            ].itertuples(index=False, name=None)
        ],
        labels=multilabel["labels"],
        summary={
            "n_videos": len(splits),
            "n_frames": len(exported_frames),
            "n_annotations": len(rows),
            "splits": counts["splits"],
            "labels": {name: c["total"] for name, c in counts["labels"].items()},
            "information_sources": source_ids,
        },
        created=created_text,
        medvid_version=medvid_version,
    )

    crop_of = {
        frame_id: box
        for frame_id, *box in rows.drop_duplicates("frame_id")[
            ["frame_id", "crop_x0", "crop_y0", "crop_x1", "crop_y1"]
        ].itertuples(index=False, name=None)
        if box[0] is not None
    }
    with atomic_dir(out_dir) as tmp:
        frames_dir = tmp / FRAMES_DIR
        total = len(exported_frames)
        suffix_of: dict[str, str] = {}
        for done, (frame_id, rel) in enumerate(
            zip(exported_frames["frame_id"], exported_frames["frame_relative_path"], strict=True),
            start=1,
        ):
            src = frames_root / rel
            if not src.is_file():
                raise FileNotFoundError(f"frame file missing: {src}")
            if frame_id in crop_of:
                _write_cropped(src, frames_dir / rel, crop_of[frame_id])
            else:
                _place(src, frames_dir / rel, config.link_mode)
            suffix_of[frame_id] = PurePosixPath(rel).suffix
            if progress is not None:
                progress(done, total)

        image_rows = []
        folder_root = tmp / IMAGEFOLDER_DIR
        for split in split_names:
            for folder in [*folders.values()] + (
                [] if config.positive_only_imagefolder else [NEGATIVE_CLASS_DIR]
            ):
                (folder_root / split / folder).mkdir(parents=True, exist_ok=True)
        frame_path = dict(
            zip(exported_frames["frame_id"], exported_frames["frame_relative_path"], strict=True)
        )
        for frame_id, video_id, label_name, folder, split in picked[
            ["frame_id", "video_id", "label_name", "_folder", "_split"]
        ].itertuples(index=False, name=None):
            rel = PurePosixPath(split) / folder / f"{frame_id}{suffix_of[frame_id]}"
            _place(frames_dir / frame_path[frame_id], folder_root / rel, config.link_mode)
            image_rows.append([rel.as_posix(), frame_id, video_id, label_name, split])

        for path, box, source in zip(
            image_paths,
            _boxes(images),
            _image_sources(images, images_root, inpainted_root),
            strict=True,
        ):
            if source is None or not source.is_file():
                raise FileNotFoundError(f"still image missing: {path}")
            if box is not None:
                _write_cropped(source, tmp / IMAGES_DIR / path, box)
            else:
                _place(source, tmp / IMAGES_DIR / path, config.link_mode)
        if image_ids:
            (tmp / IMAGES_CSV).write_bytes(images_csv(images, image_splits))
        if len(oriented):
            (tmp / FRAME_ORIENTATIONS_CSV).write_bytes(
                _csv_bytes(list(FRAME_ORIENTATION_COLUMNS), oriented.values.tolist())
            )
        (tmp / ANNOTATIONS_CSV).write_bytes(records_to_csv(records))
        (tmp / ANNOTATIONS_JSON).write_bytes(records_to_json(records))
        (tmp / SPLITS_CSV).write_bytes(
            _csv_bytes(["video_id", "patient_id", "split", *attribute_columns], split_rows)
        )
        (tmp / IMAGEFOLDER_CSV).write_bytes(
            _csv_bytes(["path", "frame_id", "video_id", "label_name", "split"], image_rows)
        )
        (tmp / MULTILABEL_JSON).write_bytes(_json_bytes(multilabel))
        (tmp / DATASET_JSON).write_bytes(_json_bytes(document))
        (tmp / MANIFEST_JSON).write_bytes(
            (json.dumps(manifest, indent=2, default=str) + "\n").encode("utf-8")
        )

    return ExportSummary(
        path=out_dir,
        n_annotations=len(rows),
        n_frames=len(exported_frames),
        n_videos=len(splits),
        counts=counts,
        splits=splits,
        duplicates_dropped=duplicates["duplicate_frames"] + duplicates["duplicate_images"],
    )


def _frame_orientations(
    exported_frames: pd.DataFrame,
    frame_orientations: pd.DataFrame | None,
    splits: Mapping[str, str],
) -> pd.DataFrame:
    """Rows of ``frame_orientations.csv`` (:data:`FRAME_ORIENTATION_COLUMNS`): the exported
    frames with an orientation, in (video, frame number) order."""
    if frame_orientations is None or not len(frame_orientations) or not len(exported_frames):
        return pd.DataFrame(columns=list(FRAME_ORIENTATION_COLUMNS))
    given = frame_orientations.assign(frame_id=frame_orientations["frame_id"].astype(str))
    given = given[given["orientation"].notna()].drop_duplicates("frame_id")
    rows = exported_frames.merge(given[["frame_id", *ORIENTATION_COLUMNS]], on="frame_id")
    rows = rows.sort_values(["video_id", "frame_number"], kind="stable")
    rows["split"] = rows["video_id"].map(splits)
    confidence = pd.to_numeric(rows["orientation_confidence"], errors="coerce")
    rows["orientation_confidence"] = [None if pd.isna(c) else float(c) for c in confidence]
    return rows.loc[:, list(FRAME_ORIENTATION_COLUMNS)].reset_index(drop=True)


#: JPEG quality of a cropped frame (a second encode: kept high so the crop adds little loss).
CROP_JPEG_QUALITY: Final = 95
_CROP_COLUMNS = ("crop_x0", "crop_y0", "crop_x1", "crop_y1")


def _clip(box: tuple[int, int, int, int], width: Any, height: Any) -> tuple[int, ...] | None:
    x0, y0, x1, y1 = (int(v) for v in box)
    if width is not None and not pd.isna(width):
        x0, x1 = max(0, x0), min(int(width), x1)
    if height is not None and not pd.isna(height):
        y0, y1 = max(0, y0), min(int(height), y1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _with_crop(rows: pd.DataFrame, boxes: Mapping[str, tuple[int, int, int, int]]) -> pd.DataFrame:
    """Rows with ``crop_*`` columns: their video's box clipped to the frame, or None."""
    crops = [
        _clip(boxes[video_id], width, height) if video_id in boxes else None
        for video_id, width, height in zip(
            rows["video_id"].astype(str), rows["width"], rows["height"], strict=True
        )
    ]
    out = rows.copy()
    for position, column in enumerate(_CROP_COLUMNS):
        out[column] = pd.Series(
            [c[position] if c is not None else None for c in crops], index=rows.index, dtype=object
        )
    return out


def _images_with_crop(images: pd.DataFrame, crop: bool) -> pd.DataFrame:
    """Stills with ``crop_*`` columns: their region (clipped to the image) when cropping."""
    region = ["region_x0", "region_y0", "region_x1", "region_y1"]
    crops: list[tuple[int, ...] | None] = []
    for row in images.to_dict("records"):
        values = [row.get(c) for c in region]
        known = crop and all(v is not None and not pd.isna(v) for v in values)
        crops.append(_clip(values, row.get("width"), row.get("height")) if known else None)
    out = images.copy()
    for position, column in enumerate(_CROP_COLUMNS):
        out[column] = pd.Series(
            [c[position] if c is not None else None for c in crops],
            index=images.index,
            dtype=object,
        )
    return out


def _size(box: tuple | None, width: Any, height: Any) -> tuple[int, int] | None:
    if box is not None and box[0] is not None and not pd.isna(box[0]):
        return int(box[2]) - int(box[0]), int(box[3]) - int(box[1])
    if width is None or height is None or pd.isna(width) or pd.isna(height):
        return None
    return int(width), int(height)


def _drop_small(
    rows: pd.DataFrame, images: pd.DataFrame, min_width: int, min_height: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Rows and stills without those smaller than ``min_width`` x ``min_height`` after the crop
    (an unknown size passes)."""
    counts = {"too_small_frames": 0, "too_small_images": 0}
    if min_width <= 0 and min_height <= 0:
        return rows, images, counts

    def small(table: pd.DataFrame) -> np.ndarray:
        sizes = [
            _size(tuple(r[:4]), r[4], r[5])
            for r in table[[*_CROP_COLUMNS, "width", "height"]].itertuples(index=False, name=None)
        ]
        return np.array(
            [s is not None and (s[0] < min_width or s[1] < min_height) for s in sizes], dtype=bool
        )

    images = images.assign(**{c: images.get(c) for c in ("width", "height")})
    drop_rows, drop_images = small(rows), small(images)
    counts["too_small_frames"] = int(rows.loc[drop_rows, "frame_id"].nunique())
    counts["too_small_images"] = int(drop_images.sum())
    return rows[~drop_rows].copy(), images[~drop_images].reset_index(drop=True), counts


def _drop_colour(
    images: pd.DataFrame, images_root: Path | None, max_fraction: float | None
) -> tuple[pd.DataFrame, int]:
    """Stills without the ultrasound ones whose colour fraction exceeds ``max_fraction``."""
    if max_fraction is None or images.empty or "Modality" not in images.columns:
        return images, 0
    import cv2

    from medvid.cleaning.filters import colour_fraction

    drop = np.zeros(len(images), dtype=bool)
    for position, (row, box) in enumerate(
        zip(images.to_dict("records"), _boxes(images), strict=True)
    ):
        if str(row.get("Modality") or "").strip().upper() != "US" or images_root is None:
            continue
        path = images_root / str(row["image_relative_path"])
        image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"still image missing or undecodable: {path.name}")
        drop[position] = colour_fraction(image, box) > max_fraction
    return images[~drop].reset_index(drop=True), int(drop.sum())


def _image_sources(
    images: pd.DataFrame, images_root: Path | None, inpainted_root: Path | None
) -> list[Path | None]:
    """The file each still is exported from: its inpainted PNG when ``inpainted``, else the
    stored one; None when its root was not given."""
    sources = []
    for row in images.to_dict("records"):
        if row.get("inpainted"):
            root, relative = inpainted_root, row["inpainted_relative_path"]
        else:
            root, relative = images_root, row["image_relative_path"]
        sources.append(None if root is None else root / safe_image_paths([str(relative)])[0])
    return sources


def _boxes(table: pd.DataFrame) -> list[tuple[int, int, int, int] | None]:
    return [
        None if row[0] is None or pd.isna(row[0]) else tuple(int(v) for v in row)
        for row in table[list(_CROP_COLUMNS)].itertuples(index=False, name=None)
    ]


def _write_cropped(src: Path, dst: Path, box: tuple[int, int, int, int]) -> None:
    """``src`` cropped to ``box`` written to ``dst`` in the same format (PNG lossless, JPEG at
    :data:`CROP_JPEG_QUALITY`). Raises ``ValueError`` for an undecodable image or a box outside
    it."""
    import cv2

    from medvid.cleaning.fov import crop_to

    image = cv2.imdecode(np.fromfile(src, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot decode {src.name} to crop it")
    suffix = src.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, CROP_JPEG_QUALITY] if suffix in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(suffix, np.ascontiguousarray(crop_to(image, box)), params)
    if not ok:
        raise ValueError(f"cannot encode the crop of {src.name}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data.tobytes())


_GROUP_COLUMNS = ("item_id", "source_id", "group_id", "group_size", "representative")


def _duplicate_table(duplicate_groups: pd.DataFrame | None) -> pd.DataFrame:
    """The duplicate groups as text ids, ``representative_id`` defaulting to the group id."""
    if duplicate_groups is None:
        return pd.DataFrame(columns=[*_GROUP_COLUMNS, "representative_id"])
    _require(duplicate_groups, _GROUP_COLUMNS, "duplicate groups")
    table = duplicate_groups.astype(
        {"item_id": str, "source_id": str, "group_id": str, "representative": bool}
    )
    if "representative_id" not in table.columns:
        table = table.assign(representative_id=table["group_id"])
    return table.astype({"representative_id": str})


def _drop_copies(
    rows: pd.DataFrame, images: pd.DataFrame, groups: pd.DataFrame, mode: str
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Annotation rows and still images without the copies of an exported representative.

    A copy is dropped only when the item chosen for it (``representative_id``) is exported
    too, so no group loses all its images because its representative was not labelled."""
    counts = {"duplicate_frames": 0, "duplicate_images": 0, "duplicate_annotations": 0}
    if mode != "representative" or groups.empty:
        return rows, images, counts
    exported = set(rows["frame_id"].astype(str)) | set(images["image_id"].astype(str))
    copies = groups[~groups["representative"] & groups["representative_id"].isin(exported)]
    copy_ids = set(copies["item_id"])
    drop_rows = rows["frame_id"].astype(str).isin(copy_ids)
    drop_images = images["image_id"].astype(str).isin(copy_ids)
    counts["duplicate_frames"] = int(rows.loc[drop_rows, "frame_id"].nunique())
    counts["duplicate_annotations"] = int(drop_rows.sum())
    counts["duplicate_images"] = int(drop_images.sum())
    return rows[~drop_rows].copy(), images[~drop_images].reset_index(drop=True), counts


def _split_links(
    groups: pd.DataFrame, duplicate_videos: pd.DataFrame | None, members: set[str]
) -> pd.DataFrame:
    """``video_id``/``group_id`` links of exported members: each member with every group of
    two or more items it has an item in, and both videos of a near-duplicate pair."""
    shared = groups[(groups["group_size"].astype(int) > 1) & groups["source_id"].isin(members)]
    links = [shared[["source_id", "group_id"]].rename(columns={"source_id": "video_id"})]
    if duplicate_videos is not None and len(duplicate_videos):
        pairs = duplicate_videos.astype({"video_a": str, "video_b": str})
        pair_id = "videos:" + pairs["video_a"] + "|" + pairs["video_b"]
        for side in ("video_a", "video_b"):
            links.append(pd.DataFrame({"video_id": pairs[side], "group_id": pair_id}))
    table = pd.concat(links, ignore_index=True).drop_duplicates()
    return table[table["video_id"].isin(members)].sort_values(["video_id", "group_id"])


def _counts(
    rows: pd.DataFrame,
    resolved: pd.DataFrame,
    picked: pd.DataFrame,
    exported_videos: pd.DataFrame,
    splits: Mapping[str, Split],
    split_names: list[str],
    folders: Mapping[str, str],
) -> dict[str, Any]:
    """The manifest's ``counts``: per label and split, per split, and ImageFolder files."""
    per_label: dict[str, dict[str, dict[str, int]]] = {}
    for name in folders:
        per_label[name] = {}
        mine = rows[rows["label_name"] == name]
        mine_resolved = resolved[resolved["label_name"] == name]
        for split in [*split_names, "total"]:
            in_split = mine if split == "total" else mine[mine["_split"] == split]
            resolved_split = mine_resolved
            if split != "total":
                resolved_split = mine_resolved[mine_resolved["_split"] == split]
            per_label[name][split] = {
                "frames": int(in_split["frame_id"].nunique()),
                "annotations": len(in_split),
                "positives": int(resolved_split["value"].sum()),
            }
    per_split: dict[str, dict[str, int]] = {}
    patients = exported_videos.assign(_split=exported_videos["video_id"].map(splits))
    patients["_patient"] = pd.Series(
        [normalize_patient_id(p) for p in patients["patient_id"]],
        index=patients.index,
        dtype=object,
    )
    for split in split_names:
        in_split = rows[rows["_split"] == split]
        videos_in = patients[patients["_split"] == split]
        per_split[split] = {
            "videos": len(videos_in),
            "patients": int(videos_in["_patient"].dropna().nunique()),
            "videos_without_patient": int(videos_in["_patient"].isna().sum()),
            "frames": int(in_split["frame_id"].nunique()),
            "annotations": len(in_split),
        }
    imagefolder: dict[str, dict[str, int]] = {}
    for split in split_names:
        in_split = picked[picked["_split"] == split]
        imagefolder[split] = {
            str(folder): int(n) for folder, n in in_split.groupby("_folder").size().items()
        }
    return {"labels": per_label, "splits": per_split, "imagefolder": imagefolder}
