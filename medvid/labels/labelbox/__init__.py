"""Labelbox exports parsed into medvid tables (pure parsing: no SDK, no network).

Two export formats are read:

- **Export v2 / ``project.export()``** rows (one JSON object per data row, as streamed by the SDK
  or archived as NDJSON): ``data_row`` (``id``, ``global_key``, ``external_id``,
  ``row_data``), ``media_attributes`` (``width``, ``height``, ``frame_count``...), and
  ``projects.<project_id>`` with ``project_details`` (``workflow_status``) and ``labels[]``,
  each with ``label_details`` (``created_by``, ``created_at``, ``updated_at``, ``reviews``) and
  ``annotations``. For images ``annotations`` holds ``objects`` (bounding boxes, polygons,
  points, lines, masks) and ``classifications``; for videos it holds ``frames``
  (``{"<n>": {"objects": {feature_id: ...}, "classifications": [...]}}``), ``segments``
  (``{feature_id: [[start, end], ...]}``), ``key_frame_feature_map`` and video-wide
  ``classifications``. Reference: Labelbox "Export v2" documentation and the SDK's own export
  tests (``expected_export_v2_video``).
- **Legacy v1 exports** (``parse_export_v1``): a JSON list of labels with ``DataRow ID``,
  ``External ID``, ``Label`` (``{"objects", "classifications"}`` for images, a list of
  ``{"frameNumber", "objects", "classifications"}`` for videos), ``Created By``,
  ``Created At``/``Updated At`` and ``Reviews``.

How rows find our frames
    Frames we upload carry ``global_key = frame_id`` (:func:`data_rows_for_frames`), so an image
    data row is matched to the frame manifest by its global key (then external id, then
    ``video_aliases``). A video data row is matched to a ``video_id`` by global key, external id
    or ``video_aliases`` (name -> video_id). Labelbox numbers video frames from **1**; medvid's
    ``frame_number`` is 0-based, so Labelbox frame ``n`` is ``frame_number = n - 1``; only frames
    present in the manifest get rows. Data rows that match nothing are listed in
    :attr:`LabelboxParseResult.unmatched`; an unmatched image row still gives its objects
    (``frame_id`` null) but no frame labels, an unmatched video row gives nothing. Without a
    manifest (``frames=None``) an image row whose global key has the shape of a frame id still
    gets that ``frame_id`` on its objects.

Classifications become frame labels (:data:`~medvid.labels.schema.FRAME_LABELS_SCHEMA`, source
``labelbox``, confidence 1.0):

- a radio (single-choice) answer ``A`` of question ``Q``: label ``A`` = true, except when the
  answer is a yes/no word (``true``/``false``/``yes``/``no``), then label ``Q`` = that value;
  the options not chosen are not written as false (the export does not list them);
- each checked answer ``A`` of a checklist: label ``A`` = true;
- a free-text answer that reads as a number ``x``: label ``Q`` = true, ``float_value`` = ``x``;
  other text is skipped and counted in ``skipped``;
- answers nested under an answer are read the same way; a label name is looked up in the schema
  by its display name, then by its ``value`` slug; names outside the schema are counted in
  ``unknown_labels`` and skipped.

Video classifications apply on the frames of their ``segments`` (inclusive ranges), taking the
answer of the nearest key frame at or before each frame; a classification on a frame outside
any segment applies to that frame; video-wide ``classifications`` apply to every extracted frame
of the video. Video objects are read frame by frame from ``frames`` (ask the export for
``interpolated_frames`` to get every frame, not only key frames).

Reviewed (documented rule): a label is reviewed when its ``label_details.reviews`` (v1:
``Reviews``) hold an approval (``review_action`` "Approve" / v1 ``score`` > 0) — the reviewer is
the latest approver — or when the data row's ``project_details.workflow_status`` is ``DONE``
(reviewer unknown, null). Otherwise it is unreviewed. A project whose workflow has no review
step sends labels straight to Done, so configure a review step if "reviewed" should mean a
second person looked.

Masks are written as single-channel PNG (``(H, W) uint8``, 0 = background, 255 = object) at
``masks_dir / "masks" / <frame_id> / <feature_id>.png``; ``mask_relative_path`` is that path
relative to ``masks_dir`` (``masks/<frame_id>/<feature_id>.png``; a data row without a frame id
uses its data row id). Export v2 gives mask URLs (``mask.url``, or ``composite_mask.url`` with
the feature's ``color_rgb``), fetched with the injected ``mask_fetcher``; inline PNG bytes
(``mask.png`` base64) are used directly.
"""

from medvid.labels.labelbox.common import (
    OBJECT_KINDS,
    OBJECTS_SCHEMA,
    LabelboxExportError,
    LabelboxParseResult,
    MaskFetcher,
)
from medvid.labels.labelbox.data_rows import data_rows_for_frames
from medvid.labels.labelbox.v1 import parse_export_v1
from medvid.labels.labelbox.v2 import parse_export_v2_rows, read_export_ndjson

__all__ = [
    "LabelboxExportError",
    "LabelboxParseResult",
    "MaskFetcher",
    "OBJECTS_SCHEMA",
    "OBJECT_KINDS",
    "data_rows_for_frames",
    "parse_export_v1",
    "parse_export_v2_rows",
    "read_export_ndjson",
]
