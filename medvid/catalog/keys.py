"""Every key medvid writes in its media store, named once.

Keys are posix paths relative to the store root (a folder, or a bucket prefix). Two zones:

- ``protected/``: everything that holds or may hold PHI — original file names (ledger, intake
  records, sheets), raw copies and normalized clips of videos (burned-in text still there), raw
  DICOM and its index, header PHI values, the pseudonym map, OCR text and the frames it was read
  from, decoded DICOM pixels before redaction. Nothing under it is exported or uploaded.
- everything else: de-identified or PHI-free (redacted frames and images, tables keyed by ids,
  redaction rectangles, de-identification outcomes, models, exports).

Callers build keys with these functions and constants only; a grep for a literal key outside this
module is a bug.
"""

from __future__ import annotations

PROTECTED = "protected"

# --- protected zone --------------------------------------------------------------------------
LEDGER = f"{PROTECTED}/ledger"
"""``<content_id>.json``: what arrived (kind, names, landing key, partition)."""
INTAKE = f"{PROTECTED}/intake"
"""``<fingerprint>.json``: the outcome of one landing file version (processed or quarantined)."""
SHEETS = f"{PROTECTED}/sheets"
RAW_VIDEOS = f"{PROTECTED}/media/raw"
NORMALIZED = f"{PROTECTED}/media/normalized"
RAW_DICOM = f"{PROTECTED}/dicom"
DICOM_INDEX = f"{PROTECTED}/dicom_index"
DICOM_PHI = f"{PROTECTED}/phi"
DICOM_PIXELS = f"{PROTECTED}/dicom_pixels"
PSEUDONYM_MAP = f"{PROTECTED}/pseudonym_map.json"
OCR_FRAMES = f"{PROTECTED}/ocr_frames"
PROTECTED_TABLES = f"{PROTECTED}/tables"
DEID_SALT = f"{PROTECTED}/deid_salt"

# --- de-identified zone ----------------------------------------------------------------------
BATCHES = "batches"
"""``<batch>/<kind>_<id>.json``: which videos and studies a batch (a partition) holds."""
BATCH_MARKERS = "batch_markers"
"""``<batch>.json``: one record per batch with members (listing them lists batches only)."""
STATUS = "status"
"""``<asset>/<member>.json``: what an asset did for one video or study of a batch."""
TABLES = "tables"
FRAMES = "media/frames"
"""``video_<video_id>/frame_<frame_id>.<jpg|png>``: redacted frames (the export's layout)."""
DICOM_IMAGES = "media/dicom_images"
"""``study_<study_key>/image_<instance_id>.png``: de-identified still images."""
MASKS = "media/masks"
MARK_MASKS = "media/mark_masks"
"""``study_<study_key>/image_<instance_id>.png``: the marks found on a de-identified still
(0/255 grey PNG, :mod:`medvid.cleaning.marks_store`)."""
INPAINTED_IMAGES = "media/inpainted_images"
"""``study_<study_key>/image_<instance_id>.png``: a de-identified still with its marks filled
(written only for stills where marks were found)."""
PREVIEWS = "previews"
QUARANTINE = "quarantine"
DEID_STATUS = "deid_status"
REDACTION_PLANS = f"{TABLES}/redaction_plans"
LABEL_SCHEMA = f"{TABLES}/label_schema.json"
LABEL_INDEXES = f"{TABLES}/indexes"
"""``<label set>.json``: per video, the digest of the inputs its label table was made from."""
EXPORTS = "exports"
#: ``snapshots/<dataset_name>/<day>/``: the dataset of one day's arrivals (``daily_snapshot``)
SNAPSHOTS = "snapshots"
MODELS = "models"
CURRENT_MODEL = f"{MODELS}/label_model.json"
BACKBONES = f"{MODELS}/backbones"
"""``<backbone_id>.pt`` + ``.json``: SimCLR-pretrained backbones (never overwritten)."""
CURRENT_BACKBONE = f"{MODELS}/backbone.json"
"""Names the backbone a label model with ``backbone: pretrained`` starts from."""
ORIENTATION_MODELS = f"{MODELS}/orientation"
"""``<model_id>.pt`` + ``.json``: probe-orientation classifiers (never overwritten)."""
CURRENT_ORIENTATION_MODEL = f"{MODELS}/orientation.json"
"""The last ``probe_orientation`` run: trained or not (and why), the model it wrote."""
LABELLING_QUEUE = "labelling/cold_label_queue"
"""``.csv`` and ``.json``: the cold-label queue a person fills in."""
LABELBOX_EXPORTS = "labelbox/exports"
LABELBOX_UPLOADS = "labelbox/uploads"
REPORTS = "reports"
EVALUATION_REPORT = f"{REPORTS}/label_prediction_evaluation"
"""``.json`` and ``.md``: the label prediction evaluation by patient."""


class Tables:
    """Names of medvid's tables: ``tables/<name>/<partition>.parquet`` per partition or
    ``tables/<name>.parquet`` for one table (protected ones under ``protected/tables/``)."""

    ARRIVALS = "landing_arrivals"
    VIDEO_METADATA = "video_metadata"
    NORMALIZED_VIDEOS = "normalized_videos"
    VIDEO_FRAMES = "video_frames"
    FRAME_LABELS = "frame_labels"
    SEGMENT_LABELS = "segment_labels"
    PREDICTED_LABELS = "predicted_labels"
    CUSTOM_MODEL_LABELS = "custom_model_labels"
    PREDICTION_FLAGS = "prediction_flags"
    """Per video: the trust flags of its predicted labels (low confidence, out of
    distribution), :data:`medvid.predict.infer.PREDICTION_FLAGS_SCHEMA`."""
    LABELBOX_LABELS = "labelbox_labels"
    LABELBOX_OBJECTS = "labelbox_objects"
    COLD_LABEL_ANSWERS = "cold_label_answers"
    LABEL_RANGES = "label_ranges"
    SEGMENT_SHEETS = "segment_sheets"
    LABEL_REVIEWS = "label_reviews"
    PATIENTS = "patients"
    SHEET_ROWS = "sheet_rows"
    """Protected: every sheet row as written (original video names)."""
    QUARANTINE = "quarantine"
    DICOM_INSTANCES = "dicom_instances"
    DICOM_PIXELS = "dicom_pixels"
    DICOM_IMAGES = "dicom_images"
    DICOM_STUDIES = "dicom_studies"
    VIDEO_OCR_TEXT = "video_ocr_text"
    DICOM_OCR_TEXT = "dicom_ocr_text"
    FRAME_OCR_TEXT = "frame_ocr_text"
    DUPLICATE_INDEX = "duplicate_index"
    """Every de-identified still and frame with its pHash, pixel digest and duplicate group."""
    DUPLICATE_GROUPS = "duplicate_groups"
    DUPLICATE_VIDEOS = "duplicate_videos"
    FIELDS_OF_VIEW = "fields_of_view"
    """Per video: the imaging region of its frames (:mod:`medvid.cleaning.fov`)."""
    IMAGE_MARKS = "image_marks"
    """Per de-identified still: marks found, caliper twin, inpainted image
    (:mod:`medvid.cleaning.marks_store`)."""
    ORIENTATION_PREDICTIONS = "orientation_predictions"
    """Probe orientation predicted for stills and frames whose text gave none
    (:data:`medvid.catalog.schemas.ORIENTATION_PREDICTIONS_SCHEMA`)."""


def table_key(name: str, partition_key: str | None = None) -> str:
    """``tables/<name>/<partition>.parquet``, or ``tables/<name>.parquet`` without a partition."""
    if partition_key is None:
        return f"{TABLES}/{name}.parquet"
    return f"{TABLES}/{name}/{partition_key}.parquet"


def protected_table_key(name: str, partition_key: str | None = None) -> str:
    """A table that may hold PHI: ``protected/tables/<name>[/<partition>].parquet``."""
    if partition_key is None:
        return f"{PROTECTED_TABLES}/{name}.parquet"
    return f"{PROTECTED_TABLES}/{name}/{partition_key}.parquet"


def partition_of_table_key(key: str) -> str:
    """The partition a per-partition table key names (``tables/x/<p>.parquet`` -> ``<p>``)."""
    return key.rsplit("/", 1)[-1].removesuffix(".parquet")


# --- intake and ledger --------------------------------------------------------------------------
def ledger_key(content_id: str) -> str:
    return f"{LEDGER}/{content_id}.json"


def intake_key(fingerprint: str) -> str:
    return f"{INTAKE}/{fingerprint}.json"


def sheet_copy_key(content_id: str) -> str:
    """The verified copy of a sheet version (original names inside: protected)."""
    return f"{SHEETS}/{content_id}.csv"


def sheet_version_key(sheet_id: str) -> str:
    """The current version of one sheet (one landing path): ``protected/sheets/current/<id>``."""
    return f"{SHEETS}/current/{sheet_id}.json"


# --- videos ---------------------------------------------------------------------------------
def raw_video_key(video_id: str, suffix: str) -> str:
    """The verified raw copy: ``protected/media/raw/<video_id><suffix>`` (unredacted pixels)."""
    return f"{RAW_VIDEOS}/{video_id}{suffix}"


def normalized_prefix(video_id: str) -> str:
    return f"{NORMALIZED}/{video_id}"


def frames_prefix(video_id: str) -> str:
    """``media/frames/video_<video_id>``: the video's redacted frames."""
    return f"{FRAMES}/video_{video_id}"


def ocr_frames_prefix(video_id: str) -> str:
    return f"{OCR_FRAMES}/{video_id}"


def redaction_plan_key(video_id: str) -> str:
    return f"{REDACTION_PLANS}/{video_id}.json"


def contact_sheet_key(video_id: str) -> str:
    return f"{PREVIEWS}/contact_{video_id}.jpg"


# --- DICOM ----------------------------------------------------------------------------------
def dicom_source_key(content_id: str, suffix: str) -> str:
    return f"{RAW_DICOM}/{content_id}/source{suffix}"


def dicom_unzip_prefix(content_id: str) -> str:
    return f"{RAW_DICOM}/{content_id}/unzipped"


def dicom_index_prefix(study: str) -> str:
    """``protected/dicom_index/<study>/``: one JSON record per instance of the study."""
    return f"{DICOM_INDEX}/{study}"


def dicom_index_key(study: str, instance_id: str) -> str:
    return f"{DICOM_INDEX}/{study}/{instance_id}.json"


def dicom_phi_key(study: str) -> str:
    return f"{DICOM_PHI}/{study}.json"


def dicom_pixels_key(study: str, instance_id: str, suffix: str) -> str:
    return f"{DICOM_PIXELS}/{study}/{instance_id}{suffix}"


def dicom_image_relative_path(study: str, instance_id: str) -> str:
    """Relative to ``media/dicom_images/`` and to an export's ``images/``."""
    return f"study_{study}/image_{instance_id}.png"


# --- outcomes -------------------------------------------------------------------------------
def quarantine_key(record_key: str) -> str:
    return f"{QUARANTINE}/{record_key}.json"


def deid_status_key(scope: str, key: str) -> str:
    """``deid_status/<video|study_header|study_pixels>/<key>.json``."""
    return f"{DEID_STATUS}/{scope}/{key}.json"


# --- models, labelling, exports --------------------------------------------------------------
def model_key(model_id: str) -> str:
    return f"{MODELS}/{model_id}.pt"


def backbone_key(backbone_id: str) -> str:
    return f"{BACKBONES}/{backbone_id}.pt"


def orientation_model_key(model_id: str) -> str:
    return f"{ORIENTATION_MODELS}/{model_id}.pt"


def export_prefix(dataset_name: str) -> str:
    return f"{EXPORTS}/{dataset_name}"


def snapshot_prefix(dataset_name: str, day: str) -> str:
    """The folder of the dataset of the arrivals of the UTC ``day`` (``YYYY-MM-DD``)."""
    return f"{SNAPSHOTS}/{dataset_name}/{day}"


def labelbox_upload_key(video_id: str) -> str:
    return f"{LABELBOX_UPLOADS}/{video_id}.json"


def report_prefix(name: str) -> str:
    return f"{REPORTS}/{name}"


def label_index_key(label_set: str) -> str:
    return f"{LABEL_INDEXES}/{label_set}.json"


# --- batches and per-member status ------------------------------------------------------------
def batch_prefix(batch: str) -> str:
    return f"{BATCHES}/{batch}"


def batch_member_key(batch: str, kind: str, member_id: str) -> str:
    """``batches/<batch>/<kind>_<id>.json``: one record per member (no read-modify-write)."""
    return f"{BATCHES}/{batch}/{kind}_{member_id}.json"


def study_batch_key(study: str) -> str:
    """The batch a study was first registered in (its later instances join it there)."""
    return f"{DICOM_INDEX}/{study}.batch.json"


def status_key(asset: str, member_id: str) -> str:
    return f"{STATUS}/{asset}/{member_id}.json"


def batch_marker_key(batch: str) -> str:
    return f"{BATCH_MARKERS}/{batch}.json"
