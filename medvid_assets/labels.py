"""The labels stage: label sheets (timestamp ranges) and the patients sheet, mapped onto the
extracted frames of each video."""

import datetime as dt
from pathlib import PurePosixPath

import dagster as dg
import pandas as pd
import pyarrow as pa
from dagster import AssetExecutionContext

from medvid.errors import MedvidInputError
from medvid.labels.schema import LabelSchema, empty_frame_labels
from medvid.labels.sheets import (
    labels_from_ranges,
    read_labels_sheet,
    read_patients_sheet,
    sheet_kind,
)
from medvid_assets.frames import read_frame_manifest, video_frames
from medvid_assets.landing import LedgerEntry, ledger_entries
from medvid_assets.partitions import video_partitions
from medvid_assets.quarantine import quarantine_input, skip_if_quarantined
from medvid_assets.storage import read_json, read_table, table_key, write_json, write_table
from medvid_assets.videos import read_video_metadata
from medvid_resources import LandingZone, MediaStore

LABEL_SCHEMA_KEY = "tables/label_schema.json"
LABEL_RANGES_SCHEMA = pa.schema(
    [
        ("video", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("label", pa.string()),
        ("sheet_content_id", pa.string()),
        ("sheet_arrived_at", pa.string()),
    ]
)


def sheet_key(entry: LedgerEntry) -> str:
    return f"media/sheets/{entry.content_id}.csv"


def video_names(meta: dict) -> set[str]:
    """Names a sheet may use for a video: every name it arrived under, with and without suffix."""
    names = {meta["original_name"], *(meta.get("aliases") or [])}
    return names | {PurePosixPath(n).stem for n in names}


def read_label_schema(store: MediaStore) -> LabelSchema:
    if not store.exists(LABEL_SCHEMA_KEY):
        return LabelSchema({})
    return LabelSchema.from_dict(read_json(store, LABEL_SCHEMA_KEY))


def read_patients(store: MediaStore) -> pd.DataFrame:
    """The merged patients sheet (``video``, ``patient_id``, attribute columns); empty if none."""
    key = table_key("patients")
    if not store.exists(key):
        return pd.DataFrame(columns=["video", "patient_id"])
    return read_table(store, key).to_pandas()


@dg.asset(
    group_name="labels",
    kinds={"parquet", "csv"},
    # the sensor requests it when a sheet arrives; the daily batch refreshes it after 05:00
    automation_condition=dg.AutomationCondition.on_cron("10 5 * * *"),
    description="Every labels sheet (video, start_s, end_s, label) and patients sheet (video,"
    " patient_id, attributes) that arrived in the landing zone, copied, validated and merged;"
    " plus the project label schema (stable label ids). A malformed sheet is quarantined.",
)
def label_sheets(
    context: AssetExecutionContext, landing_zone: LandingZone, media_store: MediaStore
) -> dg.MaterializeResult:
    ranges, patients, bad = [], [], 0
    for entry in ledger_entries(media_store, kind="sheet"):
        key = sheet_key(entry)
        if not media_store.exists(key):
            landing_zone.download(entry.landing_key, media_store.local_path(key))
            media_store.publish(key)
        path = media_store.fetch(key)
        try:
            kind = sheet_kind(path)
            if kind == "labels":
                sheet = read_labels_sheet(path)
                sheet["sheet_content_id"] = entry.content_id
                sheet["sheet_arrived_at"] = entry.arrived_at
                ranges.append(sheet)
            elif kind == "patients":
                patients.append(read_patients_sheet(path))
            elif kind is None:
                raise MedvidInputError(
                    "CSV is not a labels sheet (video,start_s,end_s,label) nor a patients sheet"
                    " (video,patient_id,...)"
                )
        except MedvidInputError as error:
            bad += 1
            quarantine_input(
                media_store,
                content_id=entry.content_id,
                file=entry.original_name,
                stage="label_sheets",
                reason=error.reason,
                error_type=type(error).__name__,
            )
            context.log.warning(f"quarantined sheet {entry.original_name}: {error.reason}")
    ranges_df = (
        pd.concat(ranges, ignore_index=True)
        if ranges
        else pd.DataFrame(columns=LABEL_RANGES_SCHEMA.names)
    )
    table = pa.Table.from_pandas(
        ranges_df[LABEL_RANGES_SCHEMA.names], schema=LABEL_RANGES_SCHEMA, preserve_index=False
    )
    write_table(media_store, table_key("label_sheets"), table)
    # later sheets win for a video that appears in several patients sheets
    patients_df = (
        pd.concat(patients, ignore_index=True).drop_duplicates("video", keep="last")
        if patients
        else pd.DataFrame(columns=["video", "patient_id"])
    )
    write_table(
        media_store,
        table_key("patients"),
        pa.Table.from_pandas(patients_df.astype(str), preserve_index=False),
    )
    schema = read_label_schema(media_store).extend(sorted(set(ranges_df["label"])))
    write_json(media_store, LABEL_SCHEMA_KEY, schema.to_dict())
    distribution = ranges_df.groupby("label")["video"].nunique().to_dict() if ranges else {}
    return dg.MaterializeResult(
        metadata={
            "label_ranges": len(ranges_df),
            "labelled_videos": int(ranges_df["video"].nunique()) if ranges else 0,
            "patients": int(patients_df["patient_id"].nunique()),
            "quarantined_sheets": bad,
            "label_schema": dg.MetadataValue.json(schema.to_dict()),
            "videos_per_label": dg.MetadataValue.json(distribution),
        }
    )


@dg.asset(
    partitions_def=video_partitions,
    group_name="labels",
    kinds={"parquet"},
    deps=[video_frames, label_sheets],
    automation_condition=dg.AutomationCondition.eager(),
    description="Frame-level labels of the video from the labels sheet's timestamp ranges: one row"
    " per (frame, label) with value, source, confidence, annotator, reviewed, timestamps.",
)
def frame_labels(context: AssetExecutionContext, media_store: MediaStore) -> dg.MaterializeResult:
    if skipped := skip_if_quarantined(context, media_store):
        return skipped
    video_id = context.partition_key
    meta = read_video_metadata(media_store, video_id)
    frames = read_frame_manifest(media_store, video_id).to_pandas()
    key = table_key("label_sheets")
    ranges = read_table(media_store, key).to_pandas() if media_store.exists(key) else None
    if ranges is not None:
        ranges = ranges[ranges["video"].isin(video_names(meta))]
    if ranges is None or ranges.empty or frames.empty:
        table = empty_frame_labels()
    else:
        created = dt.datetime.fromisoformat(ranges["sheet_arrived_at"].max())
        table = labels_from_ranges(
            frames, ranges, schema=read_label_schema(media_store), created_at=created
        )
    write_table(media_store, table_key("frame_labels", video_id), table)
    df = table.select(["label_name", "value"]).to_pandas()
    positives = df[df["value"]].groupby("label_name").size().to_dict()
    return dg.MaterializeResult(
        metadata={
            "status": "ok",
            "original_name": meta["original_name"],
            "annotations": table.num_rows,
            "positive_frames_per_label": dg.MetadataValue.json(
                {k: int(v) for k, v in positives.items()}
            ),
        }
    )
