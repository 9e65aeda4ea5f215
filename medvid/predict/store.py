"""What the predict stage reads from a media store besides labels and frames: the patient of
each video (to hold out whole patients), the current label model and the current backbone.

A video's patient is the one the export split uses (``medvid_assets.export``): the
pseudonymised ``patient_id`` of the patients sheet (``tables/patients.parquet``), overridden for
a DICOM cine loop by its study's patient pseudonym (PatientID (0010,0020) with
IssuerOfPatientID (0010,0021), salted). Only pseudonyms are returned, never a raw id.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from medvid.catalog import keys
from medvid.deid.store import patient_of_cine_video
from medvid.export.splits import normalize_patient_id
from medvid.labels.store import read_patients
from medvid.store import Store, read_json


def patients_of_videos(store: Store, video_ids: Iterable[str]) -> dict[str, str]:
    """``{video_id: patient pseudonym}`` for the videos of ``video_ids`` with a known patient
    (a video without one is absent: callers treat it as a patient of its own)."""
    wanted = [str(v) for v in video_ids]
    patients = read_patients(store)
    sheet = {
        str(v): p
        for v, p in zip(patients["video_id"], patients["patient_id"], strict=True)
        if normalize_patient_id(p) is not None
    }
    out: dict[str, str] = {}
    for video_id in wanted:
        pseudonym = patient_of_cine_video(store, video_id) or sheet.get(video_id)
        if normalize_patient_id(pseudonym) is not None:
            out[video_id] = str(normalize_patient_id(pseudonym))
    return out


def read_current_backbone(store: Store) -> dict[str, Any] | None:
    """``models/backbone.json`` (``backbone_id``, ``weights_key``) or ``None`` when no
    ``pretrained_backbone`` was materialized."""
    if not store.exists(keys.CURRENT_BACKBONE):
        return None
    return read_json(store, keys.CURRENT_BACKBONE)
