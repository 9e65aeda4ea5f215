"""The OCR stage: burned-in text of every single-frame DICOM image of a batch, and on demand of
every written (redacted) frame of its videos. (A video's text is read by the deid stage's whole-
video scan.)

OCR text can name the patient, so these tables live under ``protected/`` and are never
exported; what leaves medvid is the redaction they drive and the clinical fields parsed from
text a person may see.
"""

import dagster as dg
import pyarrow as pa

from medvid.catalog import keys
from medvid.catalog.keys import Tables, protected_table_key, table_key
from medvid.catalog.schemas import FRAME_FIELDS_SCHEMA, OCR_SCHEMA
from medvid.images import read_rgb
from medvid.ocr import lines_text
from medvid.ocr.tables import ocr_rows, parsed_fields
from medvid.store import read_table, write_table
from medvid_assets.partitions import batch_partitions
from medvid_assets.policy import MemberResult, per_member
from medvid_resources import MediaStore
from medvid_resources.ocr import OcrEngineResource


@dg.asset(
    partitions_def=batch_partitions,
    group_name="ocr",
    kinds={"parquet"},
    deps=["dicom_pixels"],
    code_version="3",
    description="Every text line (x, y, w, h in pixels, text, confidence; unreadable lines too)"
    " of every single-frame DICOM image of the batch's studies, found by rapidocr's detector at"
    " two scales (down to 8 px text) and read by its recogniser (cine loops are read by the"
    " video path). Protected: OCR text may name the patient.",
)
@per_member("study", upstream=("dicom_pixels",))
def dicom_ocr_text(
    context: dg.AssetExecutionContext,
    member_id: str,
    options,
    media_store: MediaStore,
    ocr_engine: OcrEngineResource,
):
    engine = ocr_engine.still_engine()
    images = [
        r
        for r in read_table(media_store, table_key(Tables.DICOM_PIXELS, member_id)).to_pylist()
        if r["kind"] == "image"
    ]
    rows = []
    for image in images:
        rgb = read_rgb(media_store.fetch(image["pixels_key"]))
        rows += ocr_rows(image["instance_id"], 0, 0.0, engine.read(rgb), engine.name)
    write_table(
        media_store,
        protected_table_key(Tables.DICOM_OCR_TEXT, member_id),
        pa.Table.from_pylist(rows, schema=OCR_SCHEMA),
    )
    return MemberResult(metadata={"images": len(images), "text_lines": len(rows)})


class FrameOcrConfig(dg.Config):
    """OCR of the written (already redacted) frames: every ``every_n``-th frame of the
    manifest, dead frames skipped."""

    every_n: int = 1


@dg.asset(
    partitions_def=batch_partitions,
    group_name="ocr",
    kinds={"parquet"},
    deps=["video_frames"],
    code_version="3",
    description="On demand (not in the batch pipeline): OCR of the written, redacted frames of the"
    " batch's videos and the annotation fields parsed from each (laterality, clock position,"
    " distance from nipple, orientation, measurements with units, depth, device model)."
    " Protected.",
)
@per_member("video", upstream=("video_frames",))
def frame_ocr_text(
    context: dg.AssetExecutionContext,
    member_id: str,
    options,
    config: FrameOcrConfig,
    media_store: MediaStore,
    ocr_engine: OcrEngineResource,
):
    engine = ocr_engine.engine()
    manifest = read_table(media_store, table_key(Tables.VIDEO_FRAMES, member_id)).to_pandas()
    manifest = manifest[~manifest["is_dead"]].iloc[:: max(config.every_n, 1)]
    root = media_store.fetch_prefix(keys.frames_prefix(member_id)).parent
    rows = []
    for frame in manifest.itertuples(index=False):
        text = lines_text(engine.read(read_rgb(root / frame.frame_relative_path)))
        rows.append(
            {
                "frame_id": frame.frame_id,
                "frame_number": frame.frame_number,
                "text": text,
                **parsed_fields(text),
            }
        )
    table = pa.Table.from_pylist(rows, schema=FRAME_FIELDS_SCHEMA)
    write_table(media_store, protected_table_key(Tables.FRAME_OCR_TEXT, member_id), table)
    return MemberResult(
        metadata={"frames_read": len(rows), "with_text": sum(bool(r["text"]) for r in rows)}
    )
