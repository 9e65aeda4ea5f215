"""The labels stage: the current version of every sheet (labels, segments, patients, reviews),
the project's label schema, and every video's frame labels from them.

A sheet is a *place* (its landing path) with versions: a new version replaces the rows of the
earlier one, so an edited sheet (a label renamed, a range shortened, a row deleted) leaves no
stale rows behind. Sheets name videos by their original file names; names are resolved in the
protected zone, and the tables here carry video ids only. Rows naming a video medvid has not
seen yet are reported and kept (they are read again every time, so they apply once it arrives).
"""

import datetime as dt
import hashlib
import json

import dagster as dg
import pandas as pd
import pyarrow as pa

from medvid.catalog import keys
from medvid.catalog.keys import Tables, table_key
from medvid.catalog.schemas import (
    LABEL_RANGES_SCHEMA,
    REVIEWS_SCHEMA,
    SEGMENT_SHEETS_SCHEMA,
)
from medvid.deid.sheets import pseudonymize_patients
from medvid.deid.store import known_identifiers_of, open_pseudonym_map
from medvid.errors import MedvidInputError, SheetError
from medvid.frames.store import read_frame_manifest
from medvid.ids import sha256_file
from medvid.labels.labelsets import merge_label_sets
from medvid.labels.reviews import read_reviews_sheet
from medvid.labels.schema import LabelSchema, empty_frame_labels
from medvid.labels.segments import (
    SEGMENT_COLUMNS,
    dry_run_counts,
    read_segments_sheet,
    segments_to_frame_labels,
)
from medvid.labels.sheet_versions import current_sheet_versions, labels_version
from medvid.labels.sheets import (
    labels_from_ranges,
    read_labels_sheet,
    read_patients_sheet,
    sheet_kind,
)
from medvid.labels.store import (
    read_label_schema,
    read_segment_sheets,
    resolve_label_schema,
    video_name_index,
    videos_with_frames,
)
from medvid.quarantine import is_input_error, quarantine_error
from medvid.settings import LabelSettings, SegmentSettings
from medvid.store import read_json_or, read_table, write_json, write_table
from medvid_assets.policy import SettingsResource, resolve_settings, settings_config
from medvid_assets.runs import record_worker
from medvid_resources import DeidentificationResource, MediaStore

LabelSheetsConfig = settings_config(LabelSettings, "LabelSheetsConfig")
SegmentLabelsConfig = settings_config(SegmentSettings, "SegmentLabelsConfig")


def _check_labels(schema: LabelSchema, names, allow_new: bool) -> None:
    if allow_new:
        return
    for name in sorted({str(n).strip() for n in names}):
        schema.id_of(name)  # raises UnknownLabelError (a MedvidInputError) naming the label


def _resolve(sheet: pd.DataFrame, names: dict[str, str]) -> tuple[pd.DataFrame, int]:
    """The rows of ``sheet`` whose ``video`` is known, with ``video_id``; and how many not."""
    video_ids = sheet["video"].astype(str).str.strip().map(names)
    known = sheet.assign(video_id=video_ids)[video_ids.notna()]
    return known, int(video_ids.isna().sum())


@dg.asset(
    group_name="labels",
    kinds={"parquet", "csv"},
    code_version="2",
    # sheets are taken in by intake: a backfill of a day reads them after that day's intake
    deps=["landing_intake"],
    description="The current version of every sheet that landed, validated and resolved to"
    " video ids: labels (video, start_s, end_s, label), segments (video, start_frame|start_s,"
    " end_frame|end_s, label[, value]), patients (video, patient_id -> pseudonym, allow-listed"
    " attributes) and reviews (video, reviewer[, source]); the project label schema; rows naming"
    " unknown videos reported. A malformed sheet is quarantined.",
)
def label_sheets(
    context: dg.AssetExecutionContext,
    config: LabelSheetsConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    settings: SettingsResource,
    deid: DeidentificationResource,
) -> dg.MaterializeResult:
    record_worker(context)
    labels, recorded = resolve_settings(context, settings, "labels", config)
    version = labels_version(media_store, labels, settings.load().segments)
    schema, moved = resolve_label_schema(read_label_schema(media_store), labels.label_ids)
    if moved:
        context.log.warning(f"label ids changed by the configuration: {moved}")
    names = video_name_index(media_store)
    ranges, segments, reviews, patients = [], [], [], []
    unknown: dict[str, int] = {}
    quarantined = 0
    for sheet in current_sheet_versions(media_store):
        path = media_store.fetch(keys.sheet_copy_key(sheet["content_id"]))
        shown, landed = sheet["display_name"], sheet["landed_at"]
        try:
            kind = sheet_kind(path)
            if kind is None:
                raise SheetError(
                    "CSV is not a labels sheet (video,start_s,end_s,label), a segments sheet"
                    " (video,start_frame|start_s,end_frame|end_s,label[,value]), a patients sheet"
                    " (video,patient_id,...) nor a reviews sheet (video,reviewer[,source])"
                )
            rows = {
                "labels": read_labels_sheet,
                "segments": read_segments_sheet,
                "reviews": read_reviews_sheet,
                "patients": read_patients_sheet,
            }[kind](path)
            if kind in ("labels", "segments"):
                _check_labels(schema, rows["label"], labels.allow_new_labels)
            if kind == "labels":
                rows = rows.reset_index(drop=True).assign(row_number=lambda d: d.index + 2)
        except Exception as error:
            if not is_input_error(error):
                raise
            quarantined += 1
            quarantine_error(
                media_store, error, content_id=sheet["content_id"], file=shown, stage="label_sheets"
            )
            context.log.warning(f"quarantined sheet {shown}: {getattr(error, 'reason', error)}")
            continue
        known, missing = _resolve(rows, names)
        if missing:
            unknown[shown] = missing
        extra = {"sheet_id": sheet["sheet_id"], "sheet_landed_at": landed}
        if kind == "labels":
            ranges.append(known.assign(**extra))
        elif kind == "segments":
            segments.append(known.assign(sheet_display_name=shown, **extra))
        elif kind == "reviews":
            reviews.append(known.assign(**extra))
        else:
            patients.append(rows)  # resolved after pseudonymisation (row order is kept)
    if unknown:
        context.log.warning(
            f"{sum(unknown.values())} sheet row(s) name videos medvid has not seen (kept until"
            f" they arrive): {unknown}"
        )

    def frame(parts, schema_):
        if not parts:
            return schema_.empty_table()
        df = pd.concat(parts, ignore_index=True)
        return pa.Table.from_pandas(df[schema_.names], schema=schema_, preserve_index=False)

    ranges_table = frame(ranges, LABEL_RANGES_SCHEMA)
    segments_table = frame(segments, SEGMENT_SHEETS_SCHEMA)
    for part in reviews:
        part["source"] = part["source"].fillna("").astype(str)
    reviews_table = frame(reviews, REVIEWS_SCHEMA)
    write_table(media_store, table_key(Tables.LABEL_RANGES), ranges_table)
    write_table(media_store, table_key(Tables.SEGMENT_SHEETS), segments_table)
    write_table(media_store, table_key(Tables.LABEL_REVIEWS), reviews_table)
    patients_df = pd.DataFrame(columns=["video_id", "patient_id"])
    report: dict = {}
    if patients:
        mapping = open_pseudonym_map(media_store, deid.get_salt())
        pseudonymous, sheet_report = pseudonymize_patients(
            pd.concat(patients, ignore_index=True),
            mapping,
            attributes=labels.patient_attributes,
            known_identifiers=known_identifiers_of(media_store),
        )
        mapping.save()
        media_store.publish(keys.PSEUDONYM_MAP)
        report = sheet_report.as_dict()
        for warning in sheet_report.warnings():
            context.log.warning(f"patients sheet: {warning}")
        resolved, _ = _resolve(pseudonymous, names)
        patients_df = resolved.drop(columns=["video"]).drop_duplicates("video_id", keep="last")
        patients_df = patients_df[
            ["video_id", *[c for c in patients_df.columns if c != "video_id"]]
        ]
    write_table(
        media_store,
        table_key(Tables.PATIENTS),
        pa.Table.from_pandas(patients_df.astype("string"), preserve_index=False),
    )
    if labels.allow_new_labels:
        used = [*ranges_table["label"].to_pylist(), *segments_table["label"].to_pylist()]
        schema = schema.extend(sorted(set(used)))
    write_json(media_store, keys.LABEL_SCHEMA, schema.to_dict())
    ranges_df = ranges_table.to_pandas()
    return dg.MaterializeResult(
        metadata={
            "labels_version": version,
            "sheets": len(current_sheet_versions(media_store)),
            "label_ranges": ranges_table.num_rows,
            "labelled_videos": int(ranges_df["video_id"].nunique()),
            "segments": segments_table.num_rows,
            "reviews": reviews_table.num_rows,
            "patients": int(patients_df["patient_id"].nunique()) if len(patients_df) else 0,
            "patients_sheet_report": dg.MetadataValue.json(report),
            "rows_naming_unknown_videos": sum(unknown.values()),
            "unknown_videos_by_sheet": dg.MetadataValue.json(unknown),
            "quarantined_sheets": quarantined,
            "label_schema": dg.MetadataValue.json(schema.to_dict()),
            "label_ids_changed": dg.MetadataValue.json(moved),
            "videos_per_label": dg.MetadataValue.json(
                {k: int(v) for k, v in ranges_df.groupby("label")["video_id"].nunique().items()}
            ),
            **recorded,
        }
    )


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _manifest_digest(store: MediaStore, video_id: str) -> str:
    return sha256_file(store.fetch(table_key(Tables.VIDEO_FRAMES, video_id)))[:16]


@dg.asset(
    group_name="labels",
    kinds={"parquet"},
    deps=["label_sheets", "video_frames"],
    code_version="2",
    description="Frame labels of every video with frames, from the labels sheets' timestamp"
    " ranges: one row per (frame, label) with value, source 'sheet', confidence, annotator,"
    " reviewed, dates (tables/frame_labels/<video_id>.parquet). Only videos whose frames or"
    " ranges changed are rewritten; a video whose rows left the sheet gets an empty table.",
)
def frame_labels(context: dg.AssetExecutionContext, media_store: MediaStore):
    record_worker(context)
    schema = read_label_schema(media_store)
    ranges = read_table(media_store, table_key(Tables.LABEL_RANGES)).to_pandas()
    index_key = keys.label_index_key(Tables.FRAME_LABELS)
    index = read_json_or(media_store, index_key, {})
    written, positives = 0, {}
    videos = videos_with_frames(media_store)
    for vid in videos:
        mine = ranges[ranges["video_id"] == vid]
        digest = _digest(
            _manifest_digest(media_store, vid),
            mine.drop(columns=["sheet_id"]).to_dict("records"),
            schema.to_dict(),
        )
        key = table_key(Tables.FRAME_LABELS, vid)
        if index.get(vid) == digest and media_store.exists(key):
            continue
        frames = read_frame_manifest(media_store, vid).to_pandas()
        if mine.empty or frames.empty:
            table = empty_frame_labels()
        else:
            created = dt.datetime.fromisoformat(str(mine["sheet_landed_at"].max()))
            table = labels_from_ranges(frames, mine, schema=schema, created_at=created)
        write_table(media_store, key, table)
        index[vid] = digest
        written += 1
    write_json(media_store, index_key, index)
    for vid in videos:
        df = read_table(media_store, table_key(Tables.FRAME_LABELS, vid)).select(
            ["label_name", "value"]
        )
        for name, value in zip(df["label_name"].to_pylist(), df["value"].to_pylist(), strict=True):
            if value:
                positives[name] = positives.get(name, 0) + 1
    return dg.MaterializeResult(
        metadata={
            "videos": len(videos),
            "videos_rewritten": written,
            "positive_frames_per_label": dg.MetadataValue.json(positives),
        }
    )


@dg.asset(
    group_name="labels",
    kinds={"parquet"},
    deps=["label_sheets", "video_frames"],
    code_version="2",
    description="Frame labels of every video with frames from the segments sheets (frame or time"
    " ranges with a value): one row per written frame inside a segment and label, source"
    " 'segment'. The dry-run count (rows per label, segments that cover no written frame) is in"
    " the metadata and log; with dry_run nothing is written.",
)
def segment_labels(
    context: dg.AssetExecutionContext,
    config: SegmentLabelsConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    settings: SettingsResource,
):
    record_worker(context)
    options, recorded = resolve_settings(context, settings, "segments", config)
    schema = read_label_schema(media_store)
    segments = read_segment_sheets(media_store).rename(columns={"video_id": "video"})
    videos = videos_with_frames(media_store)
    manifests = {vid: read_frame_manifest(media_store, vid).to_pandas() for vid in videos}
    all_frames = (
        pd.concat(manifests.values(), ignore_index=True)
        if manifests
        else pd.DataFrame(columns=["frame_id", "video_id", "frame_number", "frame_timestamp"])
    )
    counts = dry_run_counts(all_frames, segments[list(SEGMENT_COLUMNS)])
    context.log.info(f"segments dry run: {counts}")
    metadata = {"segments": counts["segments"], "dry_run": dg.MetadataValue.json(counts)}
    if options.dry_run:
        return dg.MaterializeResult(metadata={"status": "dry_run", **metadata, **recorded})
    index_key = keys.label_index_key(Tables.SEGMENT_LABELS)
    index = read_json_or(media_store, index_key, {})
    written, bad_sheets = 0, set()
    for vid, frames in manifests.items():
        mine = segments[segments["video"] == vid]
        digest = _digest(
            _manifest_digest(media_store, vid),
            mine.astype(str).to_dict("records"),
            schema.to_dict(),
            options.model_dump(),
        )
        key = table_key(Tables.SEGMENT_LABELS, vid)
        if index.get(vid) == digest and media_store.exists(key):
            continue
        tables = []
        for (sheet_id, name, landed), sheet in mine.groupby(
            ["sheet_id", "sheet_display_name", "sheet_landed_at"], sort=True
        ):
            try:
                tables.append(
                    segments_to_frame_labels(
                        frames,
                        sheet[list(SEGMENT_COLUMNS)],
                        schema=schema,
                        annotator=str(name),
                        created_at=dt.datetime.fromisoformat(str(landed)),
                        reviewed=options.reviewed,
                        reviewer=options.reviewer or None,
                    )
                )
            except MedvidInputError as error:  # a bad sheet is quarantined; the rest goes on
                bad_sheets.add(str(name))
                quarantine_error(
                    media_store,
                    error,
                    content_id=str(sheet_id),
                    file=str(name),
                    stage="segment_labels",
                )
        # a later sheet corrects an earlier one: merge keeps the latest date_modified
        table = merge_label_sets(tables) if tables else empty_frame_labels()
        write_table(media_store, key, table)
        index[vid] = digest
        written += 1
    write_json(media_store, index_key, index)
    if bad_sheets:
        context.log.warning(f"segments sheets quarantined: {sorted(bad_sheets)}")
    return dg.MaterializeResult(
        metadata={
            "status": "ok",
            "videos": len(videos),
            "videos_rewritten": written,
            "quarantined_sheets": dg.MetadataValue.json(sorted(bad_sheets)),
            **metadata,
            **recorded,
        }
    )
