"""A video's frame manifest in the media store, and its sampling record."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from medvid.catalog.keys import Tables, table_key
from medvid.frames.extract import FRAME_MANIFEST_SCHEMA
from medvid.frames.sampling import SamplingConfig, expected_frame_count
from medvid.store import Store, read_table

SAMPLING_METADATA_KEY = b"medvid.sampling"
"""Parquet schema metadata of ``video_frames``: the sampling settings, ``total_frames``, ``fps``."""


def with_sampling_record(table: pa.Table, sampling: SamplingConfig, total: int, fps: float):
    """``table`` with the sampling that made it recorded in its schema metadata."""
    record = {**sampling.__dict__, "total_frames": total, "fps": fps}
    return table.replace_schema_metadata(
        {**(table.schema.metadata or {}), SAMPLING_METADATA_KEY: json.dumps(record)}
    )


def read_frame_manifest(store: Store, video_id: str) -> pa.Table:
    """The ``video_frames`` manifest of a video
    (:data:`~medvid.frames.extract.FRAME_MANIFEST_SCHEMA`)."""
    return read_table(store, table_key(Tables.VIDEO_FRAMES, video_id))


def sampling_record(manifest: pa.Table) -> dict:
    """The sampling settings recorded in a manifest (``{}`` when absent)."""
    return json.loads((manifest.schema.metadata or {}).get(SAMPLING_METADATA_KEY, b"{}"))


def sampling_consistency(store: Store, video_id: str) -> tuple[bool, int, int | None, str]:
    """Whether the manifest holds exactly the frames its recorded sampling asks for:
    ``(passed, actual, expected or None for "unique", description)``."""
    path = store.fetch(table_key(Tables.VIDEO_FRAMES, video_id))
    record = json.loads((pq.read_schema(path).metadata or {})[SAMPLING_METADATA_KEY])
    actual = pq.read_metadata(path).num_rows
    total = record.pop("total_frames")
    fps = record.pop("fps")
    expected = expected_frame_count(SamplingConfig(**record), total, fps)
    if expected is None:  # "unique": data-dependent, bounded by the video
        return 1 <= actual <= total, actual, None, f"{actual} unique frames of {total}"
    description = f"{actual} frames, sampling {record['strategy']} expects {expected}"
    return actual == expected, actual, expected, description


def live_manifest(store: Store, video_ids: list[str]) -> pd.DataFrame:
    """The frame manifests of ``video_ids`` concatenated, without dead frames."""
    parts = [read_frame_manifest(store, vid).to_pandas() for vid in video_ids]
    manifest = (
        pd.concat(parts, ignore_index=True)
        if parts
        else FRAME_MANIFEST_SCHEMA.empty_table().to_pandas()
    )
    return manifest[~manifest["is_dead"].astype(bool)].reset_index(drop=True)
