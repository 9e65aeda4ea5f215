"""The one gate for anything that leaves medvid (exports, Labelbox uploads)."""

from __future__ import annotations

from collections.abc import Iterable

from medvid.catalog.keys import Tables, table_key
from medvid.deid.store import study_deidentified, video_deidentified
from medvid.quarantine import quarantined_ids
from medvid.store import Store


def exportable_videos(store: Store, video_ids: Iterable[str]) -> list[str]:
    """Of ``video_ids``, in sorted order, those that may leave medvid: input not quarantined,
    frames and frame labels written, and de-identification passed (redacted frames with no
    residual PHI; for a DICOM cine loop, its study's header check too)."""
    quarantined = quarantined_ids(store)
    return [
        vid
        for vid in sorted(set(video_ids))
        if vid not in quarantined
        and store.exists(table_key(Tables.VIDEO_FRAMES, vid))
        and store.exists(table_key(Tables.FRAME_LABELS, vid))
        and video_deidentified(store, vid)
    ]


def exportable_studies(store: Store, studies: Iterable[str]) -> list[str]:
    """Of ``studies``, sorted, those whose header and pixel de-identification both passed."""
    return [s for s in sorted(set(studies)) if study_deidentified(store, s)]
