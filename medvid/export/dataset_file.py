"""The single JSON dataset file of an export: one typed document with everything a downstream
tool needs, for consumers that prefer one contract to a folder of CSV files (seed 004's
"standardized AI dataset JSON").

``dataset.json``::

    {
      "schema_version": 1,
      "dataset_id": "<16 hex>",          # content id of name + annotations + videos
      "dataset_name": "...",
      "dataset_type": "image",
      "model_type": "image_multilabel_classification",
      "created": "<YYYY-01-01T00:00:00.000000+00:00>",  # the year only
      "medvid_version": "...",
      "labels": [{"label_id": 0, "label_name": "..."}, ...],   # multilabel vector order
      "summary": {"n_videos", "n_frames", "n_annotations", "splits": {...},
                  "labels": {name: {"frames", "annotations", "positives"}},
                  "information_sources": {name: id}},
      "frame_annotations": [ ...the rows of annotations.json... ],
      "videos": [{"video_id", "video_hash", "patient_id", "split", "frames",
                  "positive_frames": {label: n}, "attributes": {...}}, ...]
    }

``dataset_id`` depends only on the dataset name, the annotation rows and the videos, so the
same labels exported twice get the same id and any change of a label gives a new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from medvid.export.annotations import ANNOTATION_COLUMNS, format_cell, json_value
from medvid.ids import content_id

DATASET_JSON: Final = "dataset.json"
DATASET_SCHEMA_VERSION: Final = 1
DATASET_TYPE: Final = "image"
MODEL_TYPE: Final = "image_multilabel_classification"
DOCUMENT_KEYS: Final = (
    "schema_version",
    "dataset_id",
    "dataset_name",
    "dataset_type",
    "model_type",
    "created",
    "medvid_version",
    "labels",
    "summary",
    "frame_annotations",
    "videos",
)


def dataset_document(
    *,
    dataset_name: str,
    records: Sequence[Mapping[str, Any]],
    videos: Sequence[Mapping[str, Any]],
    labels: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    created: str | None,
    medvid_version: str,
) -> dict[str, Any]:
    """The ``dataset.json`` document (keys in :data:`DOCUMENT_KEYS` order).

    Args:
        dataset_name: the export's name.
        records: annotation rows with :data:`~medvid.export.annotations.ANNOTATION_COLUMNS`.
        videos: one JSON-able mapping per exported video (see the module docstring).
        labels: ``[{"label_id", "label_name"}]`` in multilabel vector order.
        summary: counts (JSON-able).
        created: the creation date as the export writes dates (the year only) or None.
        medvid_version: the medvid version that wrote the export.
    """
    annotations = [{name: json_value(r[name]) for name in ANNOTATION_COLUMNS} for r in records]
    identity = json.dumps(
        {"dataset_name": dataset_name, "frame_annotations": annotations, "videos": videos},
        sort_keys=True,
        default=str,
    )
    return {
        "schema_version": DATASET_SCHEMA_VERSION,
        "dataset_id": content_id(hashlib.sha256(identity.encode("utf-8")).hexdigest()),
        "dataset_name": dataset_name,
        "dataset_type": DATASET_TYPE,
        "model_type": MODEL_TYPE,
        "created": created,
        "medvid_version": medvid_version,
        "labels": [dict(label) for label in labels],
        "summary": dict(summary),
        "frame_annotations": annotations,
        "videos": list(videos),
    }


def dataset_problems(document: Any, csv_rows: Sequence[Sequence[str]]) -> list[str]:
    """Problems of a ``dataset.json`` document against the rows of ``annotations.csv`` (cells
    as text, header excluded); ``[]`` when its keys and schema version are right and its
    ``frame_annotations`` are the annotation rows, cell for cell."""
    if not isinstance(document, dict) or tuple(document) != DOCUMENT_KEYS:
        return [f"{DATASET_JSON} does not have the keys {', '.join(DOCUMENT_KEYS)}"]
    problems = []
    if document["schema_version"] != DATASET_SCHEMA_VERSION:
        problems.append(f"{DATASET_JSON} schema_version is {document['schema_version']!r}")
    annotations = document["frame_annotations"]
    same = isinstance(annotations, list) and len(annotations) == len(csv_rows)
    if same:
        for obj, row in zip(annotations, csv_rows, strict=True):
            if not isinstance(obj, dict) or tuple(obj) != ANNOTATION_COLUMNS:
                same = False
                break
            if [format_cell(obj[name]) for name in ANNOTATION_COLUMNS] != list(row):
                same = False
                break
    if not same:
        problems.append(f"{DATASET_JSON} frame_annotations differ from annotations.csv")
    n_videos = (document.get("summary") or {}).get("n_videos")
    if n_videos != len(document["videos"]):
        problems.append(
            f"{DATASET_JSON} summary says {n_videos} videos, lists {len(document['videos'])}"
        )
    return problems
