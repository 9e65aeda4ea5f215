"""Cleaning: duplicate groups (exact by pixels, near by pHash), near-duplicate videos, fields of
view, on-image marks and their inpainting.

Duplicates: :mod:`~medvid.cleaning.dedup_items` (items from frames and stills),
:mod:`~medvid.cleaning.dedup` (groups, the incremental index), :mod:`~medvid.cleaning.dedup_policy`
(patient check, representatives, split units), :mod:`~medvid.cleaning.video_dedup`
(near-duplicate videos), :mod:`~medvid.cleaning.hash_index` (exact Hamming-radius search),
:mod:`~medvid.cleaning.hamming` (the grouping engine).

On-image marks: :mod:`~medvid.cleaning.marks` (synthetic vendor marks with exact masks, the
colour-threshold baseline), :mod:`~medvid.cleaning.mark_net` (the mark finder),
:mod:`~medvid.cleaning.inpaint` (filling marks at full resolution),
:mod:`~medvid.cleaning.twins` (the same frame before and after calipers).

Field of view: :mod:`~medvid.cleaning.fov` (the DICOM ultrasound region, else detected in a
video's moving pixels or a still's lit region). The media store's duplicate tables:
:mod:`medvid.cleaning.store`; the marks of its stills: :mod:`medvid.cleaning.marks_store`
(neither imported here).

Probe orientation: :mod:`medvid.cleaning.orientation` (weak labels from the orientation text
OCR read, the label-model engine held out by study; not imported here).
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
from medvid.cleaning.inpaint import INPAINT_METHODS, inpaint, mean_fill
from medvid.cleaning.marks import (
    MARK_COLOURS,
    VENDOR_STYLES,
    RenderedMarks,
    VendorStyle,
    colour_marks,
    render_marks,
)
from medvid.cleaning.twins import Twin, TwinCriteria, find_twins, twin_difference
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
    # on-image marks
    "INPAINT_METHODS",
    "MARK_COLOURS",
    "VENDOR_STYLES",
    "MarkFinding",
    "MarkNet",
    "RenderedMarks",
    "TrainConfig",
    "Twin",
    "TwinCriteria",
    "VendorStyle",
    "colour_marks",
    "find_marks",
    "find_twins",
    "inpaint",
    "load_mark_net",
    "mean_fill",
    "render_marks",
    "save_mark_net",
    "train_mark_net",
    "twin_difference",
]

# The mark finder needs torch: imported on first use, so `import medvid.cleaning` stays light.
_MARK_NET_NAMES = frozenset(
    {"MarkFinding", "MarkNet", "TrainConfig", "find_marks", "load_mark_net", "save_mark_net"}
    | {"train_mark_net"}
)


def __getattr__(name: str):
    if name in _MARK_NET_NAMES:
        from medvid.cleaning import mark_net

        return getattr(mark_net, name)
    raise AttributeError(f"module 'medvid.cleaning' has no attribute {name!r}")
