"""Cleaning: duplicate groups (exact by pixels, near by pHash) and near-duplicate videos.

Duplicates: :mod:`~medvid.cleaning.dedup_items` (items from frames and stills),
:mod:`~medvid.cleaning.dedup` (groups, the incremental index), :mod:`~medvid.cleaning.dedup_policy`
(patient check, representatives, split units), :mod:`~medvid.cleaning.video_dedup`
(near-duplicate videos), :mod:`~medvid.cleaning.hash_index` (exact Hamming-radius search),
:mod:`~medvid.cleaning.hamming` (the grouping engine).

Field of view: :mod:`~medvid.cleaning.fov` (the DICOM ultrasound region, else detected in a
video's moving pixels or a still's lit region). The media store's duplicate tables:
:mod:`medvid.cleaning.store` (not imported here).
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
from medvid.cleaning.fov import (
    FieldOfView,
    crop_to,
    detect_still_field_of_view,
    detect_video_field_of_view,
    field_of_view,
    region_from_dicom,
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
    "FieldOfView",
    "GroupUpdate",
    "HashIndex",
    "PatientSpan",
    "VideoMatch",
    "build_index",
    "crop_to",
    "detect_still_field_of_view",
    "detect_video_field_of_view",
    "field_of_view",
    "find_near_duplicate_videos",
    "frame_items",
    "group_duplicates",
    "groups_spanning_patients",
    "hamming_components",
    "image_item",
    "is_lossless_dicom",
    "pixel_digest",
    "region_from_dicom",
    "representatives",
    "split_units",
    "update_groups",
    "video_frame_hashes",
    "video_near_duplicates",
]
