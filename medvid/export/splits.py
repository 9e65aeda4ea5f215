"""Train/validation split by patient: no patient's frames end up on both sides.

Frames of one patient are strongly correlated (same anatomy, same scanner, often the same
session), so a split by frame or by video leaks information from training into validation.
medvid therefore splits *groups*: all videos of one patient form one group, and a video with no
known patient is a group of its own. :func:`split_by_patient_and_duplicates` also joins the
groups that share a duplicate group (:mod:`medvid.cleaning.dedup`): a copy of a video is split
with its original even when it is filed under another patient or none.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Literal

import pandas as pd

Split = Literal["train", "val"]
TRAIN: Split = "train"
VAL: Split = "val"


def normalize_patient_id(value: object) -> str | None:
    """A patient id as trimmed text; ``None`` for a missing one (None, NaN, NA, blank)."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


def split_by_patient(
    videos: pd.DataFrame,
    frame_counts: Mapping[str, int],
    *,
    val_ratio: float,
    seed: int,
) -> dict[str, Split]:
    """Assign every video to ``"train"`` or ``"val"`` so that no patient is in both.

    ``videos`` has columns ``video_id`` (str) and ``patient_id`` (str, null/empty when unknown);
    ``frame_counts`` maps ``video_id`` to the number of frames it contributes (videos missing
    from it count 0; videos only in it are groups of their own). Returns ``{video_id: split}``
    for the union of both.

    Groups are patients; a video without a patient is its own group. The group keys are sorted,
    then shuffled with ``random.Random(seed)``, then walked greedily: a group goes to validation
    when that brings the validation frame count closer to ``val_ratio * total_frames``,
    otherwise to training. When all counts are zero every video weighs 1. With at least two
    groups and ``0 < val_ratio < 1`` both splits are made non-empty (the smallest group of the
    larger side moves over). The result depends only on the inputs and ``seed``.

    Raises ``ValueError`` when ``val_ratio`` is outside ``[0, 1]``, a frame count is negative, or
    one video is listed with two different patients.
    """
    patient_of_video = _patients(videos, frame_counts, val_ratio)
    return _assign(_patient_groups(patient_of_video), frame_counts, val_ratio, seed)


def split_by_patient_and_duplicates(
    videos: pd.DataFrame,
    frame_counts: Mapping[str, int],
    duplicate_groups: pd.DataFrame,
    *,
    val_ratio: float,
    seed: int,
) -> dict[str, Split]:
    """:func:`split_by_patient`, with videos that share a duplicate group kept on one side.

    ``duplicate_groups`` has columns ``video_id`` and ``group_id``: a row per video (or still
    image) and duplicate group it has an item in (:mod:`medvid.cleaning.dedup`; e.g. the
    ``source_id`` of each frame with its ``group_id``). Patient groups joined by a duplicate
    group become one unit (:func:`medvid.cleaning.dedup_policy.split_units`), so a re-encoded
    copy of a video filed under another patient, or under none, lands with the original. Without
    duplicate rows the result equals :func:`split_by_patient`'s. Videos only in
    ``duplicate_groups`` are split too. Raises as :func:`split_by_patient`, and ``ValueError``
    when ``duplicate_groups`` lacks a column.
    """
    # Imported here: medvid.cleaning pulls in scipy and OpenCV, which the rest of the export
    # (and everything importing medvid.export) does not need (+0.9 s at import).
    from medvid.cleaning.dedup_policy import split_units

    missing = [c for c in ("video_id", "group_id") if c not in duplicate_groups.columns]
    if missing:
        raise ValueError(f"duplicate_groups lacks column(s): {', '.join(missing)}")
    links = list(
        zip(
            duplicate_groups["video_id"].astype(str),
            duplicate_groups["group_id"].astype(str),
            strict=True,
        )
    )
    counts = dict(frame_counts)
    for video_id, _ in links:
        counts.setdefault(video_id, 0)
    patient_of_video = _patients(videos, counts, val_ratio)
    key_of_video = {
        video_id: key
        for key, members in _patient_groups(patient_of_video).items()
        for video_id in members
    }
    unit_of_video = split_units(patient_of_video, links)
    # A unit keeps the smallest of its patient-group keys, so without links nothing changes.
    unit_key: dict[str, tuple[int, str]] = {}
    for video_id, unit in unit_of_video.items():
        key = key_of_video[video_id]
        unit_key[unit] = min(unit_key.get(unit, key), key)
    groups: dict[tuple[int, str], list[str]] = {}
    for video_id, unit in unit_of_video.items():
        groups.setdefault(unit_key[unit], []).append(video_id)
    return _assign(groups, counts, val_ratio, seed)


def _patients(
    videos: pd.DataFrame, frame_counts: Mapping[str, int], val_ratio: float
) -> dict[str, str | None]:
    if not 0.0 <= val_ratio <= 1.0:
        raise ValueError(f"val_ratio must be in [0, 1], got {val_ratio}")
    if any(int(count) < 0 for count in frame_counts.values()):
        raise ValueError("frame counts must be >= 0")
    for column in ("video_id", "patient_id"):
        if column not in videos.columns:
            raise ValueError(f"videos table lacks column {column!r}")

    patient_of_video: dict[str, str | None] = {}
    for video_id, patient in zip(videos["video_id"], videos["patient_id"], strict=True):
        video_id, patient = str(video_id), normalize_patient_id(patient)
        if video_id in patient_of_video and patient_of_video[video_id] != patient:
            raise ValueError(
                f"video {video_id} listed with patients {patient_of_video[video_id]!r} "
                f"and {patient!r}"
            )
        patient_of_video[video_id] = patient
    for video_id in frame_counts:
        patient_of_video.setdefault(str(video_id), None)
    return patient_of_video


def _patient_groups(patient_of_video: Mapping[str, str | None]) -> dict[tuple[int, str], list[str]]:
    # Patients and lone videos live in separate key spaces so a patient id that happens to look
    # like a video id never merges with it.
    groups: dict[tuple[int, str], list[str]] = {}
    for video_id, patient in patient_of_video.items():
        key = (0, patient) if patient is not None else (1, video_id)
        groups.setdefault(key, []).append(video_id)
    return groups


def _assign(
    groups: Mapping[tuple[int, str], list[str]],
    frame_counts: Mapping[str, int],
    val_ratio: float,
    seed: int,
) -> dict[str, Split]:
    members = [video_id for videos in groups.values() for video_id in videos]
    counts = {video_id: int(frame_counts.get(video_id, 0)) for video_id in members}
    if sum(counts.values()) == 0:
        counts = dict.fromkeys(counts, 1)
    weight = {key: sum(counts[v] for v in videos) for key, videos in groups.items()}

    keys: list[tuple[int, str]] = sorted(groups)
    random.Random(seed).shuffle(keys)
    target = val_ratio * sum(weight.values())
    side: dict[tuple[int, str], Split] = {}
    val_total = 0
    for key in keys:
        if abs(val_total + weight[key] - target) < abs(val_total - target):
            side[key] = VAL
            val_total += weight[key]
        else:
            side[key] = TRAIN

    if len(keys) >= 2 and 0.0 < val_ratio < 1.0:
        for empty, full in ((VAL, TRAIN), (TRAIN, VAL)):
            if not any(s == empty for s in side.values()):
                # Smallest group of the full side; ties go to the earliest in shuffled order.
                donor = min((k for k in keys if side[k] == full), key=lambda k: weight[k])
                side[donor] = empty

    assignment = {video_id: side[key] for key, videos in groups.items() for video_id in videos}
    return dict(sorted(assignment.items()))
