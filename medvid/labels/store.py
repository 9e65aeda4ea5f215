"""Label tables in the media store: the label schema, every label set of a video with its
reviews applied, patients, and how sheets' video names resolve to video ids.

Sheets name videos by the file name they arrived under (or a video id, or ``cine_<instance>``
for a DICOM cine loop). Names are resolved in the protected zone (:func:`video_name_index` reads
the ledger); the public label tables carry only video ids.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from medvid.catalog import keys
from medvid.catalog.keys import Tables, table_key
from medvid.catalog.schemas import SEGMENT_SHEETS_SCHEMA
from medvid.intake.ledger import ledger_entries
from medvid.labels.labelsets import ground_truth, merge_label_sets
from medvid.labels.reviews import REVIEW_COLUMNS, apply_reviews
from medvid.labels.schema import LabelSchema, empty_frame_labels
from medvid.quarantine import quarantined_ids
from medvid.store import Store, read_json, read_table

#: Label sets stored per video (``tables/<name>/<video_id>.parquet``), in merge order.
PER_VIDEO_LABEL_SETS = (
    Tables.FRAME_LABELS,
    Tables.SEGMENT_LABELS,
    Tables.PREDICTED_LABELS,
    Tables.CUSTOM_MODEL_LABELS,
)
#: Label sets stored as one table for all videos (``tables/<name>.parquet``).
SHARED_LABEL_SETS = (Tables.LABELBOX_LABELS, Tables.COLD_LABEL_ANSWERS)


def video_name_index(store: Store) -> dict[str, str]:
    """``{name a sheet may use: video_id}`` (protected: built from original names).

    Every name a video arrived under, with and without its suffix; its video id; for a DICOM
    cine loop ``cine_<instance_id>`` (with and without ``.mp4``). A name two videos share is
    left out (ambiguous: the sheet must use the video id)."""
    index: dict[str, str] = {}
    ambiguous: set[str] = set()
    for entry in ledger_entries(store, kind="video"):
        names = {entry.content_id, *entry.names}
        names |= {PurePosixPath(n).stem for n in entry.names}
        for name in names:
            if index.get(name, entry.content_id) != entry.content_id:
                ambiguous.add(name)
            index.setdefault(name, entry.content_id)
    return {name: vid for name, vid in index.items() if name not in ambiguous}


def videos_with_frames(store: Store, video_ids: Iterable[str] | None = None) -> list[str]:
    """Videos (sorted) whose frames were written and whose input is not quarantined; all
    such videos when ``video_ids`` is None."""
    if video_ids is None:
        video_ids = [
            keys.partition_of_table_key(k)
            for k in store.list_keys(f"{keys.TABLES}/{Tables.VIDEO_FRAMES}")
        ]
    quarantined = quarantined_ids(store)
    return [
        vid
        for vid in sorted(set(video_ids))
        if vid not in quarantined and store.exists(table_key(Tables.VIDEO_FRAMES, vid))
    ]


def read_label_schema(store: Store) -> LabelSchema:
    """The project's label schema as last written by ``label_sheets`` (empty before that)."""
    if not store.exists(keys.LABEL_SCHEMA):
        return LabelSchema({})
    return LabelSchema.from_dict(read_json(store, keys.LABEL_SCHEMA))


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


def read_patients(store: Store) -> pd.DataFrame:
    """The patients table (``video_id``, ``patient_id`` pseudonym, allowed attributes); empty
    when no patients sheet arrived."""
    key = table_key(Tables.PATIENTS)
    if not store.exists(key):
        return pd.DataFrame(columns=["video_id", "patient_id"])
    return read_table(store, key).to_pandas()


def read_segment_sheets(store: Store) -> pd.DataFrame:
    """Every segment of known videos (``tables/segment_sheets.parquet``); empty when none."""
    key = table_key(Tables.SEGMENT_SHEETS)
    table = read_table(store, key) if store.exists(key) else SEGMENT_SHEETS_SCHEMA.empty_table()
    return table.to_pandas().astype(
        {
            "row_number": "int64",
            "video_id": "string",
            "start_frame": "Int64",
            "end_frame": "Int64",
            "start_s": "Float64",
            "end_s": "Float64",
            "label": "string",
            "value": "bool",
            "sheet_id": "string",
            "sheet_display_name": "string",
            "sheet_landed_at": "string",
        }
    )


def read_reviews(store: Store, video_ids: Iterable[str]) -> pd.DataFrame:
    """Reviews sheet rows of ``video_ids`` with ``reviewed_at`` (the sheet's landing time)."""
    key = table_key(Tables.LABEL_REVIEWS)
    columns = [*REVIEW_COLUMNS, "video_id", "reviewed_at"]
    if not store.exists(key):
        return pd.DataFrame(columns=columns)
    reviews = read_table(store, key).to_pandas()
    reviews = reviews[reviews["video_id"].isin(list(video_ids))]
    return reviews.assign(
        video=reviews["video_id"],
        reviewed_at=[dt.datetime.fromisoformat(a) for a in reviews["sheet_landed_at"]],
    )[columns]


def label_sets_of_videos(
    store: Store, video_ids: Iterable[str], names: Iterable[str] | None = None
) -> dict[str, dict[str, pa.Table]]:
    """``{video_id: {label set name: table}}``: every stored label set of each video, with the
    reviews of the reviews sheets applied. ``names`` restricts the label sets read (default:
    :data:`PER_VIDEO_LABEL_SETS` and :data:`SHARED_LABEL_SETS`); label sets never made for a
    video are absent."""
    video_ids = list(video_ids)
    wanted = list(names) if names is not None else [*PER_VIDEO_LABEL_SETS, *SHARED_LABEL_SETS]
    shared = {
        name: read_table(store, table_key(name))
        for name in wanted
        if name in SHARED_LABEL_SETS and store.exists(table_key(name))
    }
    reviews = read_reviews(store, video_ids)
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


def reviewed_training_labels(store: Store, video_ids: list[str]) -> pa.Table:
    """Ground truth for training: per video, every label set merged (reviewed first), then
    only the reviewed rows."""
    tables = [
        ground_truth(merge_label_sets(sets.values()))
        for sets in label_sets_of_videos(store, video_ids).values()
        if sets
    ]
    return merge_label_sets(tables) if tables else empty_frame_labels()
