"""The cold-label queue in the media store (``labelling/cold_label_queue.csv`` and ``.json``)."""

from __future__ import annotations

import pandas as pd

from medvid.catalog import keys
from medvid.store import Store, read_json


def queue_frames(store: Store) -> pd.DataFrame:
    """The frames of the cold-label queue (``frame_id``, ``video_id``, ``frame_number``...);
    empty when ``cold_label_queue`` was never materialized."""
    key = f"{keys.LABELLING_QUEUE}.json"
    if not store.exists(key):
        return pd.DataFrame(columns=["frame_id", "video_id", "frame_number"])
    return pd.DataFrame(read_json(store, key)["frames"])
