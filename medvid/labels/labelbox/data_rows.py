"""Upload payloads: medvid frames as Labelbox data rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

# --------------------------------------------------------------------------------------------
# Upload payloads


def data_rows_for_frames(
    frames: pd.DataFrame, url_for: Callable[[str], str]
) -> list[dict[str, Any]]:
    """Labelbox data-row payloads for ``dataset.create_data_rows`` (one per frame).

    Args:
        frames: frame manifest with ``frame_id`` and ``frame_relative_path``
            (``video_<video_id>/frame_<frame_id>.jpg``, relative to the frames root).
        url_for: maps a ``frame_relative_path`` to a URL Labelbox can read (a signed S3 URL,
            or a public/IAM-delegated bucket URL).

    Returns:
        ``[{"row_data": url, "global_key": frame_id, "external_id": frame_relative_path,
        "media_type": "IMAGE"}, ...]`` in manifest order. The global key makes re-uploads
        detectable and lets exports find the frame again.

    Raises:
        ValueError: a column is missing or a frame id appears twice.
    """
    missing = [name for name in ("frame_id", "frame_relative_path") if name not in frames.columns]
    if missing:
        raise ValueError(f"frame manifest lacks column(s): {', '.join(missing)}")
    duplicated = frames["frame_id"][frames["frame_id"].duplicated()]
    if not duplicated.empty:
        raise ValueError(f"frame ids appear more than once: {', '.join(map(str, duplicated[:5]))}")
    return [
        {
            "row_data": url_for(str(relative_path)),
            "global_key": str(frame_id),
            "external_id": str(relative_path),
            "media_type": "IMAGE",
        }
        for frame_id, relative_path in frames.loc[
            :, ["frame_id", "frame_relative_path"]
        ].itertuples(index=False)
    ]
