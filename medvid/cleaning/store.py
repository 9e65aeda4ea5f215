"""Duplicate groups in the media store: the items medvid holds, the persisted index, the tables.

Items are the *de-identified* images only: the redacted frames of every video whose
de-identification passed (``media/frames/``, pHash from its frame manifest) and the redacted
still images of every study whose header and pixel checks passed (``media/dicom_images/``,
decoded pixels hashed here). Nothing is read from ``protected/``, so the tables written here
hold ids, hashes and group ids only.

Tables (:class:`medvid.catalog.keys.Tables`):

- ``duplicate_index``: the :class:`~medvid.cleaning.dedup.DuplicateIndex` carried from run to
  run (:meth:`~medvid.cleaning.dedup.DuplicateIndex.save`).
- ``duplicate_groups``: :data:`GROUPS_SCHEMA`, one row per item.
- ``duplicate_videos``: :data:`VIDEO_PAIRS_SCHEMA`, one row per near-duplicate video pair
  (:func:`~medvid.cleaning.video_dedup.find_near_duplicate_videos`).
- ``fields_of_view``: :data:`FOV_SCHEMA`, one row per video: the box of its frames that holds
  the image (:mod:`medvid.cleaning.fov`), which the export crops frames to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from medvid.catalog import keys
from medvid.catalog.keys import Tables, table_key
from medvid.cleaning.dedup import DEFAULT_RADIUS, DuplicateIndex, build_index, update_groups
from medvid.cleaning.dedup_items import (
    ITEM_COLUMNS,
    frame_items,
    image_item,
    is_lossless_dicom,
    normalize_items,
)
from medvid.cleaning.dedup_policy import representatives
from medvid.cleaning.fov import (
    FieldOfView,
    detect_still_field_of_view,
    detect_video_field_of_view,
)
from medvid.cleaning.hash_index import as_hashes
from medvid.deid.store import patient_of_cine_video, video_deidentified
from medvid.frames.store import read_frame_manifest
from medvid.images import read_rgb
from medvid.intake.ledger import ledger_entry_or_none
from medvid.labels.store import read_patients
from medvid.quarantine import is_input_error, quarantine_error, quarantined_ids
from medvid.store import Store, read_table, write_table

GROUPS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("patient_id", pa.string()),
        pa.field("group_id", pa.string(), nullable=False),
        pa.field("group_size", pa.int64(), nullable=False),
        pa.field("representative_id", pa.string(), nullable=False),
        pa.field("representative", pa.bool_(), nullable=False),
    ]
)
"""``duplicate_groups``, sorted by ``item_id``. ``kind``: ``frame`` (``item_id`` = ``frame_id``,
``source_id`` = ``video_id``) or ``image`` (a DICOM still: ``item_id`` = ``source_id`` = its
instance id). ``group_id``: the smallest ``item_id`` of the group. ``representative``: the export
keeps the item (:func:`~medvid.cleaning.dedup_policy.representatives`: one per group and
patient, lossless before lossy, then more pixels, then the smallest id; the representative's
whole source within the group); ``representative_id``: the item chosen for its group and
patient."""

VIDEO_PAIRS_SCHEMA = pa.schema(
    [
        ("video_a", pa.string()),
        ("video_b", pa.string()),
        ("score", pa.float64()),
        ("offset", pa.int64()),
        ("overlap", pa.int64()),
        ("matched", pa.int64()),
        ("mean_distance", pa.float64()),
    ]
)
"""``duplicate_videos``: :data:`medvid.cleaning.video_dedup.VIDEO_PAIR_COLUMNS`."""


FOV_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("x0", pa.int32()),
        pa.field("y0", pa.int32()),
        pa.field("x1", pa.int32()),
        pa.field("y1", pa.int32()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("frames_digest", pa.string(), nullable=False),
    ]
)
"""``fields_of_view``, sorted by ``video_id``: the box ``(x0, y0, x1, y1)`` in pixels of the
frame files (x1/y1 exclusive), null when none was found; ``source`` ``dicom`` (a cine loop's
ultrasound region), ``motion``, ``detected`` or ``none``; ``frames_digest``: sha256 of the frame
ids and pHashes it was measured on (measured again when they change)."""
#: Frames of a video read to find its field of view (evenly spaced over the live frames).
FOV_FRAMES = 24


def cleanable_videos(store: Store, video_ids: Iterable[str]) -> list[str]:
    """Of ``video_ids``, sorted, those with redacted frames that may leave medvid: not
    quarantined, frame manifest written, de-identification passed."""
    quarantined = quarantined_ids(store)
    return [
        vid
        for vid in sorted(set(video_ids))
        if vid not in quarantined
        and store.exists(table_key(Tables.VIDEO_FRAMES, vid))
        and video_deidentified(store, vid)
    ]


def patients_of_videos(store: Store, video_ids: Iterable[str]) -> dict[str, str | None]:
    """Patient pseudonym of each video: its study's patient for a DICOM cine loop, else the
    patients sheet's, else None."""
    sheet = read_patients(store)
    by_sheet = dict(zip(sheet["video_id"].astype(str), sheet["patient_id"], strict=True))
    out: dict[str, str | None] = {}
    for vid in sorted(set(video_ids)):
        patient = patient_of_cine_video(store, vid) or by_sheet.get(vid)
        out[vid] = None if patient is None or pd.isna(patient) else str(patient)
    return out


def frame_items_of(
    store: Store, video_ids: Iterable[str], patient_of_video: Mapping[str, str | None]
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The live (not dead) frames of ``video_ids`` as items (:data:`ITEM_COLUMNS` plus ``kind``)
    and each video's pHash sequence in frame order, dead frames included, ``(frames,) uint64``
    (for :func:`~medvid.cleaning.video_dedup.find_near_duplicate_videos`)."""
    parts, sequences = [], {}
    for vid in sorted(set(video_ids)):
        manifest = read_frame_manifest(store, vid).to_pandas()
        parts.append(frame_items(manifest, patient_id=patient_of_video.get(vid)))
        ordered = manifest.sort_values("frame_number", kind="stable")
        sequences[vid] = as_hashes(ordered["phash"].tolist())
    return _items(parts, "frame"), sequences


def still_images_of(store: Store, studies: Iterable[str]) -> pd.DataFrame:
    """The de-identified stills of ``studies``: ``image_id``, ``study_key``, ``patient_id``,
    ``image_relative_path`` (under ``media/dicom_images/``), ``width``, ``height``, ``lossless``
    (:func:`~medvid.cleaning.dedup_items.is_lossless_dicom` of its TransferSyntaxUID)."""
    rows = []
    for study in sorted(set(studies)):
        key = table_key(Tables.DICOM_IMAGES, study)
        if not store.exists(key):
            continue
        images = read_table(store, key).to_pandas()
        instances = read_table(store, table_key(Tables.DICOM_INSTANCES, study)).to_pandas()
        instances = instances[["instance_id", "patient_pseudonym", "TransferSyntaxUID"]]
        merged = images.merge(instances, on="instance_id", how="left", validate="one_to_one")
        for row in merged.itertuples(index=False):
            rows.append(
                {
                    "image_id": str(row.instance_id),
                    "study_key": study,
                    "patient_id": None
                    if pd.isna(row.patient_pseudonym)
                    else str(row.patient_pseudonym),
                    "image_relative_path": str(row.image_relative_path),
                    "width": int(row.width),
                    "height": int(row.height),
                    "lossless": is_lossless_dicom(str(row.TransferSyntaxUID or "")),
                }
            )
    columns = ["image_id", "study_key", "patient_id", "image_relative_path", "width", "height"]
    return pd.DataFrame(rows, columns=[*columns, "lossless"])


def still_items_of(
    store: Store, stills: pd.DataFrame, known: DuplicateIndex, *, stage: str = "duplicate_groups"
) -> pd.DataFrame:
    """Items of the stills (:func:`still_images_of`); the pixels of a still already in ``known``
    are not read again (its pHash and digest come from the index: a still's redacted pixels are
    written once per instance), the others are decoded from their redacted PNG.

    A redacted PNG that is missing or cannot be decoded is quarantined under its study at
    ``stage`` (:func:`medvid.quarantine.quarantine_error`) and left out of the items; the other
    stills go on.
    """
    cached = known.items.set_index("item_id")
    rows = []
    for still in stills.to_dict("records"):
        image_id = still["image_id"]
        if image_id in cached.index:
            row = {
                "item_id": image_id,
                "phash": np.uint64(cached.at[image_id, "phash"]),
                "pixel_digest": cached.at[image_id, "pixel_digest"],
                "source_id": image_id,
                "patient_id": still["patient_id"],
                "lossless": bool(still["lossless"]),
                "pixel_count": int(still["width"]) * int(still["height"]),
            }
        else:
            relative = f"{keys.DICOM_IMAGES}/{still['image_relative_path']}"
            path = store.fetch(relative) if store.exists(relative) else store.local_path(relative)
            try:
                pixels = read_rgb(path)  # CorruptMediaError when missing or undecodable
            except Exception as error:
                if not is_input_error(error):
                    raise
                quarantine_error(
                    store, error, content_id=still["study_key"], file=relative, stage=stage
                )
                continue
            row = image_item(
                image_id, pixels, lossless=bool(still["lossless"]), patient_id=still["patient_id"]
            )
        rows.append(row)
    return _items([pd.DataFrame(rows, columns=list(ITEM_COLUMNS))], "image")


def _items(parts: list[pd.DataFrame], kind: str) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=[*ITEM_COLUMNS, "kind"])
    return pd.concat(parts, ignore_index=True).assign(kind=kind)


@dataclass(frozen=True)
class IndexSync:
    """What :func:`sync_index` did: the ``index`` now, items ``added`` (new or changed), and
    whether it was ``rebuilt`` from scratch (items left the index, or the radius changed)."""

    index: DuplicateIndex
    added: int
    rebuilt: bool


def sync_index(
    index: DuplicateIndex | None, items: pd.DataFrame, *, radius: int = DEFAULT_RADIUS
) -> IndexSync:
    """Bring ``index`` to exactly ``items`` (``item_id``, ``phash``, ``pixel_digest``).

    New items, and items whose pHash or digest changed (a re-extracted video), are added
    incrementally (:func:`~medvid.cleaning.dedup.update_groups`). When items the index holds are
    gone (a video re-sampled, a study withdrawn) or ``radius`` differs from the index's, the
    groups are rebuilt from ``items`` (:func:`~medvid.cleaning.dedup.build_index`): a departed
    item could have been the link that joined two groups. Either way the groups equal
    :func:`~medvid.cleaning.dedup.group_duplicates` over ``items``.

    Raises:
        DuplicateInputError: malformed items.
    """
    current = normalize_items(items)
    if index is None or index.radius != radius:
        return IndexSync(build_index(current, radius=radius), len(current), True)
    old = index.items.set_index("item_id")
    if not set(old.index) <= set(current["item_id"]):
        return IndexSync(build_index(current, radius=radius), len(current), True)
    known = current["item_id"].isin(old.index)
    same = np.zeros(len(current), dtype=bool)
    if known.any():
        ids = current.loc[known, "item_id"]
        same_hash = old.loc[ids, "phash"].to_numpy(dtype=np.uint64) == current.loc[
            known, "phash"
        ].to_numpy(dtype=np.uint64)
        old_digest = old.loc[ids, "pixel_digest"].astype(object).to_numpy()
        new_digest = current.loc[known, "pixel_digest"].astype(object).to_numpy()
        same_digest = np.array(
            [(a or None) == (b or None) for a, b in zip(old_digest, new_digest, strict=True)],
            dtype=bool,
        )
        same[known.to_numpy()] = same_hash & same_digest
    fresh = current[~same]
    if fresh.empty:
        return IndexSync(index, 0, False)
    return IndexSync(update_groups(index, fresh).index, len(fresh), False)


def groups_table(index: DuplicateIndex, items: pd.DataFrame) -> pa.Table:
    """The ``duplicate_groups`` table (:data:`GROUPS_SCHEMA`) of ``items`` (``item_id``,
    ``kind``, ``source_id``, ``patient_id``, ``lossless``, ``pixel_count``) grouped by
    ``index``, sorted by ``item_id``: the same inputs give the same bytes."""
    groups = index.groups()
    groups = groups[groups["item_id"].isin(set(items["item_id"].astype(str)))]
    facts = items.assign(item_id=items["item_id"].astype(str))
    chosen = representatives(groups, facts)
    table = groups.merge(chosen[["item_id", "representative_id", "keep"]], on="item_id")
    table = table.merge(facts[["item_id", "kind", "source_id", "patient_id"]], on="item_id")
    table = table.sort_values("item_id", kind="stable", ignore_index=True)
    patients = [None if p is None or pd.isna(p) else str(p) for p in table["patient_id"]]
    return pa.Table.from_pydict(
        {
            "item_id": table["item_id"].astype(str).tolist(),
            "kind": table["kind"].astype(str).tolist(),
            "source_id": table["source_id"].astype(str).tolist(),
            "patient_id": patients,
            "group_id": table["group_id"].astype(str).tolist(),
            "group_size": table["group_size"].astype(np.int64).tolist(),
            "representative_id": table["representative_id"].astype(str).tolist(),
            "representative": table["keep"].astype(bool).tolist(),
        },
        schema=GROUPS_SCHEMA,
    )


def largest_groups(groups: pd.DataFrame, limit: int = 10) -> pd.DataFrame:
    """The ``limit`` largest groups of two or more items of a ``duplicate_groups`` frame:
    ``group_id``, ``size``, ``kinds`` (``frame``/``image``), ``sources`` and ``patients``
    (distinct counts); largest first, then by ``group_id``."""
    shared = groups[groups["group_size"] > 1]
    table = shared.groupby("group_id").agg(
        size=("item_id", "size"),
        kinds=("kind", lambda k: ",".join(sorted(set(k)))),
        sources=("source_id", "nunique"),
        patients=("patient_id", "nunique"),
    )
    table = table.reset_index().sort_values(["size", "group_id"], ascending=[False, True])
    return table.head(limit).reset_index(drop=True)


def pairs_table(pairs: pd.DataFrame) -> pa.Table:
    """``duplicate_videos`` (:data:`VIDEO_PAIRS_SCHEMA`) from
    :func:`~medvid.cleaning.video_dedup.find_near_duplicate_videos`'s frame."""
    return pa.Table.from_pandas(
        pairs.astype({"offset": np.int64, "overlap": np.int64, "matched": np.int64}),
        schema=VIDEO_PAIRS_SCHEMA,
        preserve_index=False,
    )


def frames_digest(manifest: pd.DataFrame) -> str:
    """sha256 of a manifest's ``frame_id`` and ``phash`` in frame order."""
    ordered = manifest.sort_values("frame_number", kind="stable")
    text = "\n".join(f"{f} {h}" for f, h in zip(ordered["frame_id"], ordered["phash"], strict=True))
    return hashlib.sha256(text.encode()).hexdigest()


def video_field_of_view(
    store: Store, video_id: str, manifest: pd.DataFrame, *, max_frames: int = FOV_FRAMES
) -> FieldOfView | None:
    """Where a video's image is in its (redacted) frames: a DICOM cine loop's ultrasound region
    (recorded in its ledger origin), else the pixels that vary over up to ``max_frames`` live
    frames (:func:`~medvid.cleaning.fov.detect_video_field_of_view`), else the lit region of
    its middle frame. None when nothing is found (no live frame, or all black).

    Raises:
        CorruptMediaError: a frame file is missing or cannot be decoded.
    """
    entry = ledger_entry_or_none(store, video_id)
    region = (entry.origin or {}).get("keep_region") if entry is not None else None
    if region:
        x0, y0, x1, y1 = (int(v) for v in region)
        return FieldOfView((x0, y0, x1, y1), "dicom")
    live = manifest[~manifest["is_dead"].astype(bool)].sort_values("frame_number")
    if live.empty:
        return None
    picks = np.unique(np.linspace(0, len(live) - 1, min(max_frames, len(live))).astype(int))
    paths = live["frame_relative_path"].iloc[picks]
    frames = [read_rgb(store.fetch(f"{keys.FRAMES}/{path}")) for path in paths]
    if len({f.shape for f in frames}) == 1 and (box := detect_video_field_of_view(frames)):
        return FieldOfView(box, "motion")
    box = detect_still_field_of_view(frames[len(frames) // 2])
    return FieldOfView(box, "detected") if box is not None else None


def fields_of_view_table(
    store: Store, video_ids: Iterable[str], previous: pd.DataFrame
) -> tuple[pa.Table, int]:
    """``fields_of_view`` (:data:`FOV_SCHEMA`) of ``video_ids``: rows of ``previous`` whose
    frames are unchanged are kept, the others measured (:func:`video_field_of_view`). Returns
    the table and how many videos were measured."""
    known = previous.set_index("video_id") if len(previous) else None
    rows, measured = [], 0
    for vid in sorted(set(video_ids)):
        manifest = read_frame_manifest(store, vid).to_pandas()
        digest = frames_digest(manifest)
        if known is not None and vid in known.index and known.at[vid, "frames_digest"] == digest:
            rows.append({"video_id": vid, **known.loc[vid].to_dict()})
            continue
        found = video_field_of_view(store, vid, manifest)
        measured += 1
        box = found.box if found is not None else (None, None, None, None)
        rows.append(
            {
                "video_id": vid,
                **dict(zip(("x0", "y0", "x1", "y1"), box, strict=True)),
                "source": found.source if found is not None else "none",
                "frames_digest": digest,
            }
        )
    table = pd.DataFrame(rows, columns=FOV_SCHEMA.names)
    for column in ("x0", "y0", "x1", "y1"):
        table[column] = table[column].astype("Int32")
    return pa.Table.from_pandas(table, schema=FOV_SCHEMA, preserve_index=False), measured


def read_fields_of_view(store: Store) -> pd.DataFrame:
    """``fields_of_view`` (:data:`FOV_SCHEMA`); empty before the first run."""
    key = table_key(Tables.FIELDS_OF_VIEW)
    return (read_table(store, key) if store.exists(key) else FOV_SCHEMA.empty_table()).to_pandas()


def write_fields_of_view(store: Store, table: pa.Table) -> None:
    write_table(store, table_key(Tables.FIELDS_OF_VIEW), table)


def video_boxes(fields: pd.DataFrame) -> dict[str, tuple[int, int, int, int]]:
    """``{video_id: (x0, y0, x1, y1)}`` of the videos with a field of view."""
    found = fields.dropna(subset=["x0", "y0", "x1", "y1"])
    return {
        str(row.video_id): (int(row.x0), int(row.y0), int(row.x1), int(row.y1))
        for row in found.itertuples(index=False)
    }


def load_duplicate_index(store: Store) -> DuplicateIndex | None:
    """The persisted index, or None before the first run."""
    key = table_key(Tables.DUPLICATE_INDEX)
    return DuplicateIndex.load(store.fetch(key)) if store.exists(key) else None


def save_duplicate_index(store: Store, index: DuplicateIndex) -> None:
    key = table_key(Tables.DUPLICATE_INDEX)
    index.save(store.local_path(key))
    store.publish(key)


def write_duplicate_tables(store: Store, groups: pa.Table, pairs: pa.Table) -> None:
    write_table(store, table_key(Tables.DUPLICATE_GROUPS), groups)
    write_table(store, table_key(Tables.DUPLICATE_VIDEOS), pairs)


def read_duplicate_groups(store: Store) -> pd.DataFrame:
    """``duplicate_groups`` (:data:`GROUPS_SCHEMA`); empty before the first run."""
    key = table_key(Tables.DUPLICATE_GROUPS)
    table = read_table(store, key) if store.exists(key) else GROUPS_SCHEMA.empty_table()
    return table.to_pandas()


def read_duplicate_videos(store: Store) -> pd.DataFrame:
    """``duplicate_videos`` (:data:`VIDEO_PAIRS_SCHEMA`); empty before the first run."""
    key = table_key(Tables.DUPLICATE_VIDEOS)
    table = read_table(store, key) if store.exists(key) else VIDEO_PAIRS_SCHEMA.empty_table()
    return table.to_pandas()
