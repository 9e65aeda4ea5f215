"""Cleaning: duplicate groups (exact by pixels, near by pHash) and near-duplicate videos.

Duplicates: :mod:`~medvid.cleaning.dedup_items` (items from frames and stills),
:mod:`~medvid.cleaning.dedup` (groups, the incremental index), :mod:`~medvid.cleaning.dedup_policy`
(patient check, representatives, split units), :mod:`~medvid.cleaning.video_dedup`
(near-duplicate videos), :mod:`~medvid.cleaning.hash_index` (exact Hamming-radius search),
:mod:`~medvid.cleaning.hamming` (the grouping engine).
"""

from medvid.cleaning.dedup import (
    DEFAULT_RADIUS,
    DuplicateIndex,
    GroupUpdate,
    build_index,
    group_duplicates,
    update_groups,
)
from medvid.cleaning.dedup_items import frame_items, image_item, is_lossless_dicom, pixel_digest
from medvid.cleaning.dedup_policy import (
    PatientSpan,
    groups_spanning_patients,
    representatives,
    split_units,
)
from medvid.cleaning.hamming import hamming_components
from medvid.cleaning.hash_index import DuplicateInputError, HashIndex
from medvid.cleaning.video_dedup import (
    VideoMatch,
    find_near_duplicate_videos,
    video_frame_hashes,
    video_near_duplicates,
)

__all__ = [
    "DEFAULT_RADIUS",
    "DuplicateIndex",
    "DuplicateInputError",
    "GroupUpdate",
    "HashIndex",
    "PatientSpan",
    "VideoMatch",
    "build_index",
    "find_near_duplicate_videos",
    "frame_items",
    "group_duplicates",
    "groups_spanning_patients",
    "hamming_components",
    "image_item",
    "is_lossless_dicom",
    "pixel_digest",
    "representatives",
    "split_units",
    "update_groups",
    "video_frame_hashes",
    "video_near_duplicates",
]
