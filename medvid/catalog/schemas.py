"""Arrow schemas of medvid's tables (the names are in :class:`medvid.catalog.keys.Tables`).

Tables outside ``protected/`` carry ids, display names and de-identified values only.
The frame manifest (:data:`medvid.frames.extract.FRAME_MANIFEST_SCHEMA`), frame labels
(:data:`medvid.labels.schema.FRAME_LABELS_SCHEMA`) and quarantine records
(:data:`medvid.quarantine.QUARANTINE_SCHEMA`) live beside the code that writes them.
"""

from __future__ import annotations

import pyarrow as pa

VIDEO_METADATA_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("display_name", pa.string()),
        ("kind", pa.string()),
        ("sha256", pa.string()),
        ("landed_at", pa.string()),
        ("container", pa.string()),
        ("codec", pa.string()),
        ("pix_fmt", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("avg_frame_rate", pa.string()),
        ("fps", pa.float64()),
        ("frame_count", pa.int64()),
        ("frame_count_source", pa.string()),
        ("duration_s", pa.float64()),
        ("bit_rate", pa.int64()),
        ("rotation", pa.int32()),
        ("has_audio", pa.bool_()),
        ("time_base", pa.string()),
        ("start_pts", pa.int64()),
    ]
)
"""``video_metadata``: one row per video. ``display_name`` is the file name with PHI-like tokens
replaced (the original names stay in the protected ledger); ``kind`` is ``landing`` or
``dicom_cine``; ``landed_at`` is the landing file's modification time (UTC, ISO 8601), not the
time medvid saw it; fractions are ``"num/den"`` strings (see :class:`medvid.video.VideoInfo`)."""

ARRIVALS_SCHEMA = pa.schema(
    [
        ("content_id", pa.string()),
        ("kind", pa.string()),
        ("display_name", pa.string()),
        ("partition", pa.string()),
        ("size", pa.int64()),
        ("landed_at", pa.string()),
        ("outcome", pa.string()),
        ("reason", pa.string()),
    ]
)
"""``landing_arrivals``: per UTC day of landing, every file version's outcome (``processed``,
``duplicate`` of an earlier content id, or ``quarantined`` with its reason)."""

LABEL_RANGES_SCHEMA = pa.schema(
    [
        ("sheet_id", pa.string()),
        ("row_number", pa.int64()),
        ("video_id", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("label", pa.string()),
        ("sheet_landed_at", pa.string()),
    ]
)
"""``label_ranges``: rows of the current version of every labels sheet whose video is known,
keyed by ``sheet_id`` (the landing path's id: a new version of the sheet replaces its rows)."""

NORMALIZED_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("clip_index", pa.int32()),
        ("clip_key", pa.string()),
        ("frame_offset", pa.int64()),
        ("frame_count", pa.int64()),
        ("time_offset_s", pa.float64()),
        ("fps", pa.string()),
        ("pad_right", pa.int32()),
        ("pad_bottom", pa.int32()),
        ("transcoded", pa.bool_()),
        ("frame_count_announced", pa.int64()),
        ("decode_errors", pa.int64()),
        ("damaged_spans", pa.list_(pa.list_(pa.int64()))),
    ]
)
"""``normalized_videos``: one row per clip (protected media; the table itself holds no PHI).
``frame_count`` counts the frames the decoder yielded (the truth); ``frame_count_announced`` is
what the source's container claimed for the whole video (null when unknown),
``decode_errors`` the source packets the decoder rejected, ``damaged_spans`` the frame ranges
decoded from damaged data (see :class:`medvid.video.normalize.Clip`)."""


OCR_SCHEMA = pa.schema(
    [
        ("source_id", pa.string()),
        ("frame_number", pa.int64()),
        ("frame_timestamp", pa.float64()),
        ("box_index", pa.int32()),
        ("x", pa.int32()),
        ("y", pa.int32()),
        ("w", pa.int32()),
        ("h", pa.int32()),
        ("text", pa.string()),
        ("confidence", pa.float32()),
        ("engine", pa.string()),
    ]
)
"""One row per text box: ``source_id`` (a DICOM instance id or a video id), the frame
(``frame_number`` in the original video, 0 for a DICOM image; ``frame_timestamp`` in seconds),
the box in pixels of the full frame (``x``, ``y`` top-left, ``w``, ``h``), the text and the
engine's confidence in [0, 1]. PHI: protected zone only."""


FRAME_FIELDS_SCHEMA = pa.schema(
    [
        ("frame_id", pa.string()),
        ("frame_number", pa.int64()),
        ("text", pa.string()),
        ("laterality", pa.string()),
        ("clock_position", pa.string()),
        ("distance_from_nipple_cm", pa.float64()),
        ("orientation", pa.string()),
        ("measurements", pa.string()),
        ("depth_cm", pa.float64()),
        ("device_model", pa.string()),
    ]
)
"""Per frame: the text read on the redacted frame (lines joined by newlines) and the fields
parsed from it (:func:`medvid.ocr.parse_annotation_text`; ``measurements`` as JSON
``[[name, value, unit], ...]``)."""


ORIENTATION_PREDICTIONS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("study_id", pa.string(), nullable=False),
        pa.field("orientation", pa.string(), nullable=False),
        pa.field("confidence", pa.float32(), nullable=False),
        pa.field("label_set", pa.string(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("beats_majority", pa.bool_(), nullable=False),
    ]
)
"""``orientation_predictions``: one row per still or frame whose burned-in text named no probe
orientation, predicted by the probe-orientation model (:mod:`medvid.cleaning.orientation`).
``item_id`` is the ``image_id`` (``kind`` ``image``) or ``frame_id`` (``kind`` ``frame``);
``study_id`` the group it was held out with (``study:<study_key>`` or ``video:<video_id>``);
``orientation`` one of :data:`medvid.ocr.parse.ORIENTATIONS`; ``confidence`` the calibrated
softmax probability of that class in [0, 1]; ``label_set`` ``model:<model_id>``;
``beats_majority`` whether the model's accuracy on held-out studies was above the majority
class (the export uses only those rows unless ``export.include_untrusted_predictions``). Never
holds a row for an item whose text named an orientation."""


INSTANCE_EXTRA_COLUMNS = [
    ("study_key", pa.string()),
    ("instance_id", pa.string()),
    ("patient_pseudonym", pa.string()),
    ("StudyDate", pa.string()),
    ("SeriesNumber", pa.string()),
    ("InstanceNumber", pa.string()),
]
INSTANCES_SCHEMA = pa.schema(
    INSTANCE_EXTRA_COLUMNS
    + [
        ("sha256", pa.string()),
        ("size_bytes", pa.int64()),
        ("StudyInstanceUID", pa.string()),
        ("SeriesInstanceUID", pa.string()),
        ("SOPInstanceUID", pa.string()),
        ("SOPClassUID", pa.string()),
        ("Modality", pa.string()),
        ("Manufacturer", pa.string()),
        ("ManufacturerModelName", pa.string()),
        ("TransferSyntaxUID", pa.string()),
        ("PhotometricInterpretation", pa.string()),
        ("Rows", pa.int32()),
        ("Columns", pa.int32()),
        ("NumberOfFrames", pa.int32()),
        ("FrameTime", pa.float64()),
        ("CineRate", pa.float64()),
        ("RecommendedDisplayFrameRate", pa.float64()),
        ("fps", pa.float64()),
        ("BitsAllocated", pa.int32()),
        ("SamplesPerPixel", pa.int32()),
        ("PhysicalDeltaX", pa.float64()),
        ("PhysicalDeltaY", pa.float64()),
        ("PhysicalUnitsXDirection", pa.int32()),
        ("PhysicalUnitsYDirection", pa.int32()),
        ("RegionLocationMinX0", pa.int32()),
        ("RegionLocationMinY0", pa.int32()),
        ("RegionLocationMaxX1", pa.int32()),
        ("RegionLocationMaxY1", pa.int32()),
        ("BodyPartExamined", pa.string()),
        ("Laterality", pa.string()),
        ("ImageType", pa.string()),
        ("BurnedInAnnotation", pa.string()),
        ("warnings", pa.string()),
    ]
)
"""``dicom_instances``: one row per SOP instance, de-identified values only (UIDs replaced,
dates shifted, pseudonym instead of the patient). Units as in
:class:`medvid.dicom.InstanceRecord`."""


PIXELS_SCHEMA = pa.schema(
    [
        ("study_key", pa.string()),
        ("instance_id", pa.string()),
        ("kind", pa.string()),
        ("pixels_key", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("frames", pa.int32()),
        ("fps", pa.string()),
        ("fps_source", pa.string()),
        ("region_x0", pa.int32()),
        ("region_y0", pa.int32()),
        ("region_x1", pa.int32()),
        ("region_y1", pa.int32()),
        ("video_id", pa.string()),
    ]
)
"""``dicom_pixels``: where each instance's decoded pixels are (protected). ``kind`` is ``image``
(PNG, ``(H, W, 3) uint8 RGB``) or ``cine`` (H.264 MP4 at the header's rate, ``fps`` an exact
fraction, entered in the video path as ``video_id``); ``fps_source`` is ``header`` (FrameTime,
CineRate or RecommendedDisplayFrameRate) or ``default`` (none of them:
:data:`medvid.dicom.DEFAULT_CINE_FPS`). ``region_*``: the ultrasound region from
SequenceOfUltrasoundRegions as a crop box in pixels (x1/y1 exclusive), null when absent."""


STUDIES_SCHEMA = pa.schema(
    [
        ("study_key", pa.string()),
        ("patient_pseudonym", pa.string()),
        ("StudyDate", pa.string()),
        ("Modality", pa.string()),
        ("Manufacturer", pa.string()),
        ("ManufacturerModelName", pa.string()),
        ("series", pa.int32()),
        ("images", pa.int32()),
        ("cine_loops", pa.int32()),
        ("frames", pa.int64()),
        ("header_deidentified", pa.bool_()),
        ("pixels_deidentified", pa.bool_()),
    ]
)


DICOM_IMAGES_SCHEMA = pa.schema(
    [
        ("study_key", pa.string()),
        ("instance_id", pa.string()),
        ("image_relative_path", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("region_x0", pa.int32()),
        ("region_y0", pa.int32()),
        ("region_x1", pa.int32()),
        ("region_y1", pa.int32()),
        ("region_source", pa.string()),
        ("masked_boxes", pa.int32()),
        ("kept_text_boxes", pa.int32()),
        ("laterality", pa.string()),
        ("clock_position", pa.string()),
        ("distance_from_nipple_cm", pa.float64()),
        ("orientation", pa.string()),
        ("measurements", pa.string()),
        ("depth_cm", pa.float64()),
        ("device_model", pa.string()),
    ]
)
"""``dicom_images``: one row per de-identified single-frame image. ``image_relative_path`` is
``study_<study_key>/image_<instance_id>.png`` under ``media/dicom_images/`` (and under the
export's ``images/``). ``region_*`` is the crop box of the imaging region in pixels (x1/y1
exclusive) from SequenceOfUltrasoundRegions (``region_source`` ``dicom``) or detected
(``detected``). The clinical fields are parsed from the text left visible (see
:func:`medvid.ocr.parse_annotation_text`; ``measurements`` JSON ``[[name, value, unit]]``)."""


SEGMENT_SHEETS_SCHEMA = pa.schema(
    [
        ("row_number", pa.int64()),
        ("video_id", pa.string()),
        ("start_frame", pa.int64()),
        ("end_frame", pa.int64()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("label", pa.string()),
        ("value", pa.bool_()),
        ("sheet_id", pa.string()),
        ("sheet_display_name", pa.string()),
        ("sheet_landed_at", pa.string()),
    ]
)
"""``segment_sheets``: rows of the current version of every segments sheet whose video is known
(``video_id``; original names are resolved in the protected zone)."""


REVIEWS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("reviewer", pa.string()),
        ("source", pa.string()),
        ("sheet_id", pa.string()),
        ("sheet_landed_at", pa.string()),
    ]
)
"""``label_reviews``: reviews sheet rows (current versions) of known videos."""

TEXT_TRACKS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("x", pa.int32()),
        ("y", pa.int32()),
        ("w", pa.int32()),
        ("h", pa.int32()),
        ("first_frame", pa.int64()),
        ("last_frame", pa.int64()),
        ("text", pa.string()),
        ("confidence", pa.float32()),
        ("masked", pa.bool_()),
        ("reasons", pa.string()),
    ]
)
"""``video_ocr_text`` (protected): one row per piece of burned-in text followed across a video
(:class:`medvid.deid.TextTrack`): its box in pixels of the original frame, the first and last
detection points it was seen on, the text read, whether it is masked and why. PHI."""
