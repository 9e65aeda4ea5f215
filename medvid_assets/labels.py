"""The labels stage: the sheets that arrive in the landing zone (labels as timestamp ranges,
segments, patients, reviews), the project's label schema, and frame-level label sets per video.

Every source of labels is a *label set* with the frame-label schema
(:data:`medvid.labels.schema.FRAME_LABELS_SCHEMA`): ``frame_labels`` (labels sheets),
``segment_labels`` (segments sheets), ``labelbox_labels`` (Labelbox retrievals),
``cold_label_answers`` (a person's answers to the cold-label queue), ``predicted_labels`` and
``custom_model_labels`` (models). :func:`label_sets_of_videos` reads them all for export and
training, with the reviews of the reviews sheets applied.
"""

import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetExecutionContext
from pydantic import Field

from medvid.errors import MedvidInputError, SheetError
from medvid.labels.labelsets import merge_label_sets
from medvid.labels.reviews import REVIEW_COLUMNS, apply_reviews, read_reviews_sheet
from medvid.labels.schema import LabelSchema, empty_frame_labels
from medvid.labels.segments import (
    SEGMENT_COLUMNS,
    dry_run_counts,
    read_segments_sheet,
    segments_to_frame_labels,
)
from medvid.labels.sheets import (
    labels_from_ranges,
    read_labels_sheet,
    read_patients_sheet,
    sheet_kind,
)
from medvid_assets.frames import read_frame_manifest, video_frames
from medvid_assets.landing import LedgerEntry, ledger_entries
from medvid_assets.partitions import video_partitions
from medvid_assets.quarantine import quarantine_error, quarantined_record, skip_if_quarantined
from medvid_assets.storage import read_json, read_table, table_key, write_json, write_table
from medvid_assets.videos import read_video_metadata
from medvid_resources import LandingZone, MediaStore

LABEL_SCHEMA_KEY = "tables/label_schema.json"
#: Label sets stored per video (``tables/<name>/<video_id>.parquet``), in merge order.
PER_VIDEO_LABEL_SETS = ("frame_labels", "segment_labels", "predicted_labels", "custom_model_labels")
#: Label sets stored as one table for all videos (``tables/<name>.parquet``).
SHARED_LABEL_SETS = ("labelbox_labels", "cold_label_answers")
SEGMENT_SHEETS_SCHEMA = pa.schema(
    [
        ("row_number", pa.int64()),
        ("video", pa.string()),
        ("start_frame", pa.int64()),
        ("end_frame", pa.int64()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("label", pa.string()),
        ("value", pa.bool_()),
        ("sheet_content_id", pa.string()),
        ("sheet_name", pa.string()),
        ("sheet_arrived_at", pa.string()),
    ]
)
REVIEWS_SCHEMA = pa.schema(
    [
        ("video", pa.string()),
        ("reviewer", pa.string()),
        ("source", pa.string()),
        ("sheet_content_id", pa.string()),
        ("sheet_arrived_at", pa.string()),
    ]
)
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
    """The project's label schema as last written by ``label_sheets`` (empty before that)."""
    if not store.exists(LABEL_SCHEMA_KEY):
        return LabelSchema({})
    return LabelSchema.from_dict(read_json(store, LABEL_SCHEMA_KEY))


def resolve_label_schema(
    stored: LabelSchema, configured: Mapping[str, int]
) -> tuple[LabelSchema, list[str]]:
    """The configured ids, plus every stored name the configuration does not mention.

    A stored name keeps its id unless the configuration gave that id to another name; then it
    moves to the next free id after the largest one. Returns the schema and the names whose id
    changed (configured names included). Raises ``ValueError`` for an invalid configuration
    (two names with one id, an id outside int32, a blank name).
    """
    ids = dict(LabelSchema.from_dict(configured).ids)
    moved = [name for name, label_id in ids.items() if stored.ids.get(name, label_id) != label_id]
    for name, label_id in stored.ids.items():
        if name in ids:
            continue
        if label_id in ids.values():
            label_id = max([*ids.values(), *stored.ids.values()]) + 1
            moved.append(name)
        ids[name] = label_id
    return LabelSchema(ids), sorted(moved)


class LabelSheetsConfig(dg.Config):
    """The project's label schema: which labels exist and their ids.

    label_ids: ``{label name: id}`` (distinct ids in 0..2147483647), e.g. ``{healthy: 0,
    covid19: 1, viral_pneumonia: 2}``. These ids are written in every label table, export and
    model of the project; label names are matched exactly (case and spaces count).
    allow_new_labels: when true (default), a label first seen in a sheet gets the next free id,
    kept in ``tables/label_schema.json`` so it never moves; when false, a sheet that uses a label
    outside ``label_ids`` (and the stored schema) is quarantined with the label named.
    """

    label_ids: dict[str, int] = Field(default_factory=dict)
    allow_new_labels: bool = True


def _check_labels(schema: LabelSchema, names: Iterable[str], allow_new: bool) -> None:
    if allow_new:
        return
    for name in sorted({str(n).strip() for n in names}):
        schema.id_of(name)  # raises UnknownLabelError (a MedvidInputError) naming the label


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
    description="Every sheet that arrived in the landing zone, copied, validated and merged:"
    " labels (video, start_s, end_s, label), segments (video, start_frame|start_s,"
    " end_frame|end_s, label[, value]), patients (video, patient_id, attributes) and reviews"
    " (video, reviewer[, source]); plus the project label schema (ids from the config, stable)"
    " and a dry-run count of the frame labels the segments will give. A malformed sheet is"
    " quarantined.",
)
def label_sheets(
    context: AssetExecutionContext,
    config: LabelSheetsConfig,
    landing_zone: LandingZone,
    media_store: MediaStore,
) -> dg.MaterializeResult:
    schema, moved = resolve_label_schema(read_label_schema(media_store), config.label_ids)
    if moved:
        context.log.warning(f"label ids changed by the configuration: {moved}")
    ranges, patients, segments, reviews, bad = [], [], [], [], 0
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
                _check_labels(schema, sheet["label"], config.allow_new_labels)
                ranges.append(
                    sheet.assign(
                        sheet_content_id=entry.content_id, sheet_arrived_at=entry.arrived_at
                    )
                )
            elif kind == "segments":
                sheet = read_segments_sheet(path)
                _check_labels(schema, sheet["label"], config.allow_new_labels)
                segments.append(
                    sheet.assign(
                        sheet_content_id=entry.content_id,
                        sheet_name=entry.original_name,
                        sheet_arrived_at=entry.arrived_at,
                    )
                )
            elif kind == "reviews":
                reviews.append(
                    read_reviews_sheet(path).assign(
                        sheet_content_id=entry.content_id, sheet_arrived_at=entry.arrived_at
                    )
                )
            elif kind == "patients":
                patients.append(read_patients_sheet(path))
            elif kind is None:
                raise MedvidInputError(
                    "CSV is not a labels sheet (video,start_s,end_s,label), a segments sheet"
                    " (video,start_frame|start_s,end_frame|end_s,label[,value]), a patients sheet"
                    " (video,patient_id,...) nor a reviews sheet (video,reviewer[,source])"
                )
        except MedvidInputError as error:
            bad += 1
            quarantine_error(
                media_store,
                error,
                content_id=entry.content_id,
                file=entry.original_name,
                stage="label_sheets",
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
    segments_df = (
        pd.concat(segments, ignore_index=True)
        if segments
        else pd.DataFrame(columns=SEGMENT_SHEETS_SCHEMA.names)
    )
    write_table(
        media_store,
        table_key("segment_sheets"),
        pa.Table.from_pandas(
            segments_df[SEGMENT_SHEETS_SCHEMA.names],
            schema=SEGMENT_SHEETS_SCHEMA,
            preserve_index=False,
        ),
    )
    reviews_df = (
        pd.concat(reviews, ignore_index=True)
        if reviews
        else pd.DataFrame(columns=REVIEWS_SCHEMA.names)
    )
    write_table(
        media_store,
        table_key("label_reviews"),
        pa.Table.from_pandas(
            reviews_df[REVIEWS_SCHEMA.names].astype(str),
            schema=REVIEWS_SCHEMA,
            preserve_index=False,
        ),
    )
    if config.allow_new_labels:
        schema = schema.extend(sorted({*ranges_df["label"], *segments_df["label"]}))
    write_json(media_store, LABEL_SCHEMA_KEY, schema.to_dict())
    distribution = ranges_df.groupby("label")["video"].nunique().to_dict() if ranges else {}
    return dg.MaterializeResult(
        metadata={
            "label_ranges": len(ranges_df),
            "labelled_videos": int(ranges_df["video"].nunique()) if ranges else 0,
            "segments": len(segments_df),
            "reviews": len(reviews_df),
            "patients": int(patients_df["patient_id"].nunique()),
            "quarantined_sheets": bad,
            "label_schema": dg.MetadataValue.json(schema.to_dict()),
            "label_ids_changed": dg.MetadataValue.json(moved),
            "videos_per_label": dg.MetadataValue.json(distribution),
            "segments_dry_run": dg.MetadataValue.json(
                segments_dry_run(media_store, segments_df) if segments else {"rows": 0}
            ),
        }
    )


def video_aliases(store: MediaStore, video_ids: Iterable[str]) -> dict[str, str]:
    """``{name a sheet may use: video_id}`` for the given videos: every name each arrived
    under (with and without suffix) and the video id itself."""
    aliases: dict[str, str] = {}
    for vid in video_ids:
        aliases[vid] = vid
        if store.exists(table_key("video_metadata", vid)):
            for name in video_names(read_video_metadata(store, vid)):
                aliases.setdefault(name, vid)
    return aliases


def videos_with_frames(store: MediaStore, partition_keys: Iterable[str]) -> list[str]:
    """The videos (sorted) whose frames were extracted and whose input is not quarantined."""
    return [
        vid
        for vid in sorted(partition_keys)
        if store.exists(table_key("video_frames", vid)) and quarantined_record(store, vid) is None
    ]


def segments_dry_run(store: MediaStore, segments: pd.DataFrame) -> dict:
    """:func:`~medvid.labels.segments.dry_run_counts` of the segments over every video whose
    frames are extracted: the frame labels ``segment_labels`` will write, nothing written."""
    keys = [
        k.rsplit("/", 1)[-1].removesuffix(".parquet")
        for k in store.list_keys("tables/video_frames")
    ]
    vids = videos_with_frames(store, keys)
    manifests = [read_frame_manifest(store, vid).to_pandas() for vid in vids]
    frames = (
        pd.concat(manifests, ignore_index=True)
        if manifests
        else pd.DataFrame(columns=["frame_id", "video_id", "frame_number", "frame_timestamp"])
    )
    return dry_run_counts(
        frames, segments[list(SEGMENT_COLUMNS)], video_aliases=video_aliases(store, vids)
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


class SegmentLabelsConfig(dg.Config):
    """How segments become frame labels.

    dry_run: only count the frame labels the segments would give (asset metadata and log),
    write nothing. reviewed / reviewer: the segments were validated on the video, so their frame
    labels are ground truth for training and evaluation (segments sheets are not assumed
    reviewed; a reviews sheet row ``video,reviewer,segment`` does the same per video).
    """

    dry_run: bool = False
    reviewed: bool = False
    reviewer: str = ""


def read_segment_sheets(store: MediaStore) -> pd.DataFrame:
    """Every validated segment (``tables/segment_sheets.parquet``); empty when none."""
    key = table_key("segment_sheets")
    if not store.exists(key):
        return pd.DataFrame(columns=SEGMENT_SHEETS_SCHEMA.names)
    return (
        read_table(store, key)
        .to_pandas()
        .astype(
            {
                "row_number": "int64",
                "video": "string",
                "start_frame": "Int64",
                "end_frame": "Int64",
                "start_s": "Float64",
                "end_s": "Float64",
                "label": "string",
                "value": "bool",
                "sheet_content_id": "string",
                "sheet_name": "string",
                "sheet_arrived_at": "string",
            }
        )
    )


@dg.asset(
    partitions_def=video_partitions,
    group_name="labels",
    kinds={"parquet"},
    deps=[video_frames, label_sheets],
    automation_condition=dg.AutomationCondition.eager(),
    description="Frame-level labels of the video from the segments sheets (frame or time ranges"
    " with a value): one row per extracted frame inside a segment and label, source 'segment'."
    " The dry-run count (rows per label, segments that cover no extracted frame) is in the"
    " metadata and log before anything is written; with dry_run nothing is written.",
)
def segment_labels(
    context: AssetExecutionContext, config: SegmentLabelsConfig, media_store: MediaStore
) -> dg.MaterializeResult:
    if skipped := skip_if_quarantined(context, media_store):
        return skipped
    video_id = context.partition_key
    meta = read_video_metadata(media_store, video_id)
    frames = read_frame_manifest(media_store, video_id).to_pandas()
    aliases = {name: video_id for name in video_names(meta)} | {video_id: video_id}
    segments = read_segment_sheets(media_store)
    segments = segments[segments["video"].isin(list(aliases))]
    counts = dry_run_counts(frames, segments[list(SEGMENT_COLUMNS)], video_aliases=aliases)
    context.log.info(f"segments dry run for {meta['original_name']}: {counts}")
    metadata = {
        "original_name": meta["original_name"],
        "segments": counts["segments"],
        "dry_run": dg.MetadataValue.json(counts),
    }
    if config.dry_run:
        return dg.MaterializeResult(metadata={"status": "dry_run", **metadata})
    schema = read_label_schema(media_store)
    tables = []
    for (cid, name, arrived), sheet in segments.groupby(
        ["sheet_content_id", "sheet_name", "sheet_arrived_at"], sort=False
    ):
        try:
            tables.append(
                segments_to_frame_labels(
                    frames,
                    sheet[list(SEGMENT_COLUMNS)],
                    schema=schema,
                    annotator=str(name),
                    created_at=dt.datetime.fromisoformat(str(arrived)),
                    video_aliases=aliases,
                    reviewed=config.reviewed,
                    reviewer=config.reviewer or None,
                )
            )
        except SheetError as error:  # a bad sheet is quarantined; the video goes on
            quarantine_error(
                media_store,
                error,
                content_id=str(cid),
                file=str(name),
                stage="segment_labels",
            )
            context.log.warning(f"quarantined segments sheet {name}: {error.reason}")
    # a later sheet corrects an earlier one: merge keeps the latest date_modified
    table = merge_label_sets(tables) if tables else empty_frame_labels()
    write_table(media_store, table_key("segment_labels", video_id), table)
    return dg.MaterializeResult(
        metadata={"status": "ok", "annotations": table.num_rows, **metadata}
    )


def read_reviews(store: MediaStore, aliases: Mapping[str, str]) -> pd.DataFrame:
    """Reviews sheet rows of the videos in ``aliases`` (name -> video_id) with ``video_id`` and
    ``reviewed_at`` (the sheet's arrival, UTC) added; empty when none."""
    key = table_key("label_reviews")
    columns = [*REVIEW_COLUMNS, "video_id", "reviewed_at"]
    if not store.exists(key):
        return pd.DataFrame(columns=columns)
    reviews = read_table(store, key).to_pandas()
    reviews = reviews[reviews["video"].isin(list(aliases))]
    return reviews.assign(
        video_id=reviews["video"].map(aliases),
        reviewed_at=[dt.datetime.fromisoformat(a) for a in reviews["sheet_arrived_at"]],
    )[columns]


def label_sets_of_videos(
    store: MediaStore, video_ids: Iterable[str], names: Iterable[str] | None = None
) -> dict[str, dict[str, pa.Table]]:
    """``{video_id: {label set name: table}}``: every stored label set of each video, with the
    reviews of the reviews sheets applied. ``names`` restricts the label sets read (default:
    :data:`PER_VIDEO_LABEL_SETS` and :data:`SHARED_LABEL_SETS`); label sets never materialized
    for a video are absent."""
    video_ids = list(video_ids)
    wanted = list(names) if names is not None else [*PER_VIDEO_LABEL_SETS, *SHARED_LABEL_SETS]
    shared = {
        name: read_table(store, table_key(name))
        for name in wanted
        if name in SHARED_LABEL_SETS and store.exists(table_key(name))
    }
    reviews = read_reviews(store, video_aliases(store, video_ids))
    out: dict[str, dict[str, pa.Table]] = {}
    for vid in video_ids:
        sets: dict[str, pa.Table] = {}
        for name in wanted:
            if name in shared:
                rows = shared[name].filter(pc.equal(shared[name]["video_id"], vid))
                if rows.num_rows:
                    sets[name] = rows
            elif name in PER_VIDEO_LABEL_SETS and store.exists(table_key(name, vid)):
                sets[name] = read_table(store, table_key(name, vid))
        mine = reviews[reviews["video_id"] == vid]
        out[vid] = {name: apply_reviews(table, mine) for name, table in sets.items()}
    return out
