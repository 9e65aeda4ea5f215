"""Checks of a written training dataset, run before it is handed to training.

The checks are the "practical checks" of seed 004 (non-zero annotation rows, every
``frame_relative_path`` resolves under ``frames/``) plus medvid's own guarantees: the CSV and
JSON hold the same table, no patient is in two splits, every ImageFolder file listed exists.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from medvid.export.annotations import ANNOTATION_COLUMNS, format_cell
from medvid.export.dataset import (
    ANNOTATIONS_CSV,
    ANNOTATIONS_JSON,
    FRAMES_DIR,
    IMAGEFOLDER_CSV,
    IMAGEFOLDER_DIR,
    MANIFEST_JSON,
    SPLITS_CSV,
)
from medvid.export.dataset_file import DATASET_JSON, dataset_problems
from medvid.export.images import image_problems
from medvid.export.multilabel import MULTILABEL_JSON, multilabel_problems

_SHOWN = 5


def _examples(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as stream:
        records = list(csv.reader(stream))
    if not records:
        return [], []
    return records[0], records[1:]


def _inside(root: Path, relative: str) -> bool:
    try:
        resolved = (root / relative).resolve()
        resolved.relative_to(root.resolve())
    except (ValueError, OSError):
        return False
    return resolved.is_file()


def verify_export(out_dir: str | Path) -> list[str]:
    """Problems found in the dataset folder written by
    :func:`~medvid.export.dataset.write_training_dataset`; ``[]`` when it is sound.

    Reports: a missing or unreadable file (``manifest.json``, ``annotations.csv``/``.json``,
    ``splits.csv``, ``imagefolder.csv``), an annotations header other than
    ``ANNOTATION_COLUMNS``, zero annotation rows, a ``frame_relative_path`` that does not
    resolve to a file inside ``frames/``, CSV and JSON rows that differ, a video without a
    split, a patient in two splits, a listed ImageFolder file that is missing, and an
    annotation count that differs from the manifest's, a ``multilabel.json`` whose vectors or
    masks are malformed or whose frames are not those of the annotations, and a
    ``dataset.json`` whose ``frame_annotations`` differ from ``annotations.csv``. Never raises
    for a bad folder.
    """
    root = Path(out_dir)
    if not root.is_dir():
        return [f"{root} is not a directory"]
    problems: list[str] = []

    manifest = None
    try:
        manifest = json.loads((root / MANIFEST_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{MANIFEST_JSON} cannot be read: {exc}")

    try:
        header, rows = _read_csv(root / ANNOTATIONS_CSV)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return [*problems, f"{ANNOTATIONS_CSV} cannot be read: {exc}"]
    if tuple(header) != ANNOTATION_COLUMNS:
        problems.append(
            f"{ANNOTATIONS_CSV} header is {','.join(header)}; expected "
            f"{','.join(ANNOTATION_COLUMNS)}"
        )
        return problems
    if not rows and not (isinstance(manifest, dict) and manifest.get("n_images")):
        problems.append(f"{ANNOTATIONS_CSV} has zero annotation rows (and no still images)")
    if isinstance(manifest, dict) and manifest.get("n_annotations") != len(rows):
        problems.append(
            f"{MANIFEST_JSON} says {manifest.get('n_annotations')} annotations, "
            f"{ANNOTATIONS_CSV} has {len(rows)}"
        )
    column = {name: i for i, name in enumerate(header)}

    frames_dir = root / FRAMES_DIR
    paths = sorted({row[column["frame_relative_path"]] for row in rows})
    unresolved = [p for p in paths if not _inside(frames_dir, p)]
    if unresolved:
        problems.append(
            f"{len(unresolved)} frame_relative_path(s) do not resolve under {FRAMES_DIR}/: "
            f"{_examples(unresolved)}"
        )

    try:
        multilabel = json.loads((root / MULTILABEL_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{MULTILABEL_JSON} cannot be read: {exc}")
    else:
        problems.extend(multilabel_problems(multilabel, set(paths)))

    try:
        document = json.loads((root / DATASET_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{DATASET_JSON} cannot be read: {exc}")
    else:
        problems.extend(dataset_problems(document, rows))

    try:
        objects = json.loads((root / ANNOTATIONS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{ANNOTATIONS_JSON} cannot be read: {exc}")
    else:
        if not isinstance(objects, list) or len(objects) != len(rows):
            n = len(objects) if isinstance(objects, list) else "no list of"
            problems.append(f"{ANNOTATIONS_JSON} has {n} rows, {ANNOTATIONS_CSV} has {len(rows)}")
        else:
            for index, (obj, row) in enumerate(zip(objects, rows, strict=True)):
                if not isinstance(obj, dict) or tuple(obj) != ANNOTATION_COLUMNS:
                    problems.append(f"{ANNOTATIONS_JSON} row {index} has other keys")
                    break
                if [format_cell(obj[name]) for name in ANNOTATION_COLUMNS] != row:
                    problems.append(
                        f"{ANNOTATIONS_JSON} and {ANNOTATIONS_CSV} differ at row {index} "
                        f"(annotation_id {row[column['annotation_id']]})"
                    )
                    break

    try:
        split_header, split_rows = _read_csv(root / SPLITS_CSV)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append(f"{SPLITS_CSV} cannot be read: {exc}")
    else:
        if split_header[:3] != ["video_id", "patient_id", "split"]:
            problems.append(f"{SPLITS_CSV} header does not start with video_id,patient_id,split")
        else:
            split_of_video = {r[0]: r[2] for r in split_rows}
            splits_of_patient: dict[str, set[str]] = {}
            for _video_id, patient_id, split, *_ in split_rows:
                if patient_id:
                    splits_of_patient.setdefault(patient_id, set()).add(split)
            mixed = sorted(p for p, s in splits_of_patient.items() if len(s) > 1)
            if mixed:
                problems.append(f"patient(s) in more than one split: {_examples(mixed)}")
            problems.extend(image_problems(root, splits_of_patient))
            no_split = sorted({row[column["video_id"]] for row in rows} - set(split_of_video))
            if no_split:
                problems.append(f"video(s) without a split in {SPLITS_CSV}: {_examples(no_split)}")

    try:
        image_header, image_rows = _read_csv(root / IMAGEFOLDER_CSV)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append(f"{IMAGEFOLDER_CSV} cannot be read: {exc}")
    else:
        if not image_header or image_header[0] != "path":
            problems.append(f"{IMAGEFOLDER_CSV} header does not start with path")
        else:
            folder = root / IMAGEFOLDER_DIR
            missing = [r[0] for r in image_rows if not _inside(folder, r[0])]
            if missing:
                problems.append(
                    f"{len(missing)} {IMAGEFOLDER_DIR}/ file(s) missing: {_examples(missing)}"
                )
    return problems
