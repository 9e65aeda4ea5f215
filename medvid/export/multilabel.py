"""Multilabel training data: per frame, one vector position per label and a mask of known labels.

``multilabel.json`` in an export folder is the "image path, label vector, label mask" structure
that multilabel image classifiers train on (seed 004: group the annotation rows by frame, one
vector position per label, the value from ``value``, the mask set for labels with a known
annotation)::

    {
      "format": "medvid.multilabel/1",
      "labels": [{"label_id": 0, "label_name": "a_lines"}, {"label_id": 1, ...}],
      "frames": [
        {"frame_id": "...", "video_id": "...", "frame_number": 30,
         "frame_relative_path": "video_<id>/frame_<frame_id>.jpg", "split": "train",
         "label_vector": [0, 1], "label_mask": [1, 1]},
        ...
      ]
    }

- ``labels`` fixes the vector order: by ``label_id`` (the project's label schema when the export
  was given one, so positions agree between exports of one project; else the labels present).
- ``label_vector[i]`` is 1 when label ``i`` applies to the frame, 0 when it does not or is
  unknown; ``label_mask[i]`` is 1 when the export holds an answer for label ``i`` on that frame
  (a labels sheet answers only the labels it uses, a custom model only the label it predicts),
  0 when unknown. Train with a masked loss, e.g. ``(bce(logits, vector) * mask).sum() /
  mask.sum()``; :class:`medvid.export.torch_dataset.MultilabelFrameDataset` reads the file.
- ``frame_relative_path`` is relative to the export's ``frames/`` folder; frames are ordered by
  ``(video_id, frame_number)``.

When several sources answer one (frame, label), the resolved answer of the export is used (the
same one as the ImageFolder).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import pandas as pd

MULTILABEL_JSON: Final = "multilabel.json"
MULTILABEL_FORMAT: Final = "medvid.multilabel/1"


def multilabel_document(resolved: pd.DataFrame, label_schema: Mapping[str, int]) -> dict[str, Any]:
    """The ``multilabel.json`` document for resolved annotations (one row per frame and label).

    Args:
        resolved: columns ``frame_id``, ``video_id``, ``frame_number``, ``frame_relative_path``,
            ``label_name``, ``value`` (bool) and ``_split`` (``train``/``val``).
        label_schema: ``{label_name: label_id}`` giving the vector positions (by id); every
            label of ``resolved`` must be in it.

    Raises ``ValueError`` for a label outside ``label_schema``.
    """
    order = sorted(label_schema.items(), key=lambda item: item[1])
    position = {name: index for index, (name, _) in enumerate(order)}
    unknown = sorted(set(resolved["label_name"]) - set(position))
    if unknown:
        raise ValueError(f"label(s) {unknown} are not in the label schema of the export")
    n_labels = len(order)
    frames: list[dict[str, Any]] = []
    ordered = resolved.sort_values(["video_id", "frame_number", "frame_id"], kind="stable")
    for (frame_id, video_id, frame_number, path, split), rows in ordered.groupby(
        ["frame_id", "video_id", "frame_number", "frame_relative_path", "_split"], sort=False
    ):
        vector, mask = [0] * n_labels, [0] * n_labels
        for name, value in zip(rows["label_name"], rows["value"], strict=True):
            mask[position[name]] = 1
            vector[position[name]] = int(bool(value))
        frames.append(
            {
                "frame_id": str(frame_id),
                "video_id": str(video_id),
                "frame_number": int(frame_number),
                "frame_relative_path": str(path),
                "split": str(split),
                "label_vector": vector,
                "label_mask": mask,
            }
        )
    return {
        "format": MULTILABEL_FORMAT,
        "labels": [{"label_id": int(i), "label_name": str(n)} for n, i in order],
        "frames": frames,
    }


def read_multilabel(export_dir: str | Path) -> dict[str, Any]:
    """Read ``multilabel.json`` of an export folder (``OSError``/``ValueError`` when absent or
    not JSON)."""
    return json.loads((Path(export_dir) / MULTILABEL_JSON).read_text(encoding="utf-8"))


def multilabel_problems(document: Any, annotation_paths: set[str]) -> list[str]:
    """Problems of a ``multilabel.json`` document; ``[]`` when sound.

    Checks the format tag, that every vector and mask has one 0/1 entry per label, that a
    position is 1 in the vector only where the mask is 1, that every frame has a known label,
    and that the frames are exactly those of the annotations (``annotation_paths``: their
    ``frame_relative_path`` values).
    """
    if not isinstance(document, dict) or document.get("format") != MULTILABEL_FORMAT:
        return [f"{MULTILABEL_JSON} is not a {MULTILABEL_FORMAT} document"]
    n_labels = len(document.get("labels") or [])
    problems: list[str] = []
    bad: list[str] = []
    paths: set[str] = set()
    for frame in document.get("frames") or []:
        vector, mask = frame.get("label_vector"), frame.get("label_mask")
        paths.add(str(frame.get("frame_relative_path")))
        well_formed = (
            isinstance(vector, list)
            and isinstance(mask, list)
            and len(vector) == n_labels
            and len(mask) == n_labels
            and all(v in (0, 1) for v in vector + mask)
            and all(m or not v for v, m in zip(vector, mask, strict=True))
            and any(mask)
        )
        if not well_formed:
            bad.append(str(frame.get("frame_id")))
    if bad:
        problems.append(
            f"{MULTILABEL_JSON}: {len(bad)} frame(s) with a malformed vector or mask "
            f"(e.g. {', '.join(bad[:3])})"
        )
    if paths != annotation_paths:
        problems.append(
            f"{MULTILABEL_JSON} lists {len(paths)} frame(s), the annotations "
            f"{len(annotation_paths)}; they differ"
        )
    return problems
