"""Duplicate groups over DICOM stills and extracted frames: exact by decoded pixels, near by pHash.

An *item* is one image: an extracted frame (``item_id`` = ``frame_id``) or a DICOM still
(``item_id`` = its image id); see :mod:`medvid.cleaning.dedup_items`. Two items are linked when
their decoded pixels are identical (``pixel_digest``) or their 64-bit pHashes
(:func:`medvid.frames.phash.phash64`) are at most ``radius`` bits apart; a *group* is a
connected component of those links, so a chain of near duplicates is one group. A group's id is
its smallest ``item_id``, so it depends only on its members.

Incremental use (one partition at a time, never the whole archive): :class:`DuplicateIndex`
holds every item seen so far with its group; :func:`update_groups` compares a new partition's
items with the index (multi-index hashing, :class:`~medvid.cleaning.hash_index.HashIndex`) and
with each other, and returns the new index plus the groups that changed. Updating partition by
partition gives exactly the groups of :func:`group_duplicates` over all items at once.

Why the default radius is 4 bits (measured on the 74 real clips of ``shared/data``): a re-encode
with x264 at CRF 23-28, or at half size, moves each frame's pHash by 0-4 bits (CRF 35: up to
8); frames of *different* patients' lung clips come within 2 bits of each other in 1 of 2,701
clip pairs and within 4 bits in 3, which
:func:`~medvid.cleaning.dedup_policy.groups_spanning_patients` reports. pHashes of
real content have exactly 32 bits set (a median split), so distances are even: radius 5 finds
what radius 4 finds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from medvid.cleaning.dedup_items import normalize_items
from medvid.cleaning.hamming import check_radius, hamming_components, join_components
from medvid.cleaning.hash_index import DuplicateInputError, HashIndex
from medvid.io import write_parquet_atomic

DEFAULT_RADIUS = 4
GROUP_COLUMNS = ("item_id", "group_id", "group_size")
"""Columns of a groups table: one row per item, sorted by ``item_id``."""
INDEX_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("phash", pa.uint64(), nullable=False),
        pa.field("pixel_digest", pa.string()),
        pa.field("group_id", pa.string(), nullable=False),
    ]
)
"""Parquet layout of a saved :class:`DuplicateIndex`, rows sorted by ``item_id``; the radius is
in the schema metadata (``medvid.dedup.radius``)."""
_RADIUS_KEY = b"medvid.dedup.radius"


def _digest_links(digests: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (position, first position with the same digest)."""
    first: dict[object, int] = {}
    a, b = [], []
    for position, digest in enumerate(digests):
        if not isinstance(digest, str) or not digest:
            continue
        seen = first.setdefault(digest, position)
        if seen != position:
            a.append(position)
            b.append(seen)
    return np.array(a, dtype=np.int64), np.array(b, dtype=np.int64)


def _labels(table: pd.DataFrame, radius: int) -> np.ndarray:
    """Component of each row (smallest row) of a normalized items table."""
    labels = hamming_components(table["phash"].to_numpy(dtype=np.uint64), radius)
    a, b = _digest_links(table["pixel_digest"].tolist())
    return join_components(labels, a, b) if len(a) else labels


def _groups_frame(ids: np.ndarray, group_ids: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"item_id": ids, "group_id": group_ids})
    frame["group_size"] = frame.groupby("group_id")["item_id"].transform("size").astype(np.int64)
    return frame.sort_values("item_id", kind="stable", ignore_index=True)


def group_duplicates(items: pd.DataFrame, *, radius: int = DEFAULT_RADIUS) -> pd.DataFrame:
    """Duplicate groups of all ``items`` at once.

    Args:
        items: ``item_id``, ``phash`` and optionally ``pixel_digest`` (see
            :func:`~medvid.cleaning.dedup_items.normalize_items`); other columns are ignored.
        radius: pHash Hamming radius in bits (0..32); 0 links equal hashes only.

    Returns:
        :data:`GROUP_COLUMNS`: every item with its ``group_id`` (smallest ``item_id`` of the
        group) and ``group_size``; a lone item is a group of 1. Sorted by ``item_id``.

    Raises:
        DuplicateInputError: malformed items. ValueError: radius outside 0..32.
    """
    radius = check_radius(radius)
    table = normalize_items(items)
    ids = table["item_id"].to_numpy(dtype=object)
    return _groups_frame(ids, ids[_labels(table, radius)])


@dataclass(eq=False)
class DuplicateIndex:
    """Every item seen so far with its group: the state :func:`update_groups` carries forward.

    ``items``: ``item_id``, ``phash`` (uint64), ``pixel_digest`` (str or None), ``group_id``,
    in insertion order (row ``i`` is position ``i`` of :attr:`hash_index`; :meth:`groups` and
    :meth:`save` sort by ``item_id``). ``radius`` is fixed for the life of the index (changing
    it means regrouping everything with :func:`group_duplicates`).
    """

    radius: int = DEFAULT_RADIUS
    items: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            {
                "item_id": pd.Series(dtype=object),
                "phash": pd.Series(dtype=np.uint64),
                "pixel_digest": pd.Series(dtype=object),
                "group_id": pd.Series(dtype=object),
            }
        )
    )
    _hash_index: HashIndex | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def hash_index(self) -> HashIndex:
        """The items' pHashes as a :class:`HashIndex`, row order (built on first use)."""
        if self._hash_index is None:
            self._hash_index = HashIndex(self.items["item_id"].tolist(), self.items["phash"])
        return self._hash_index

    def groups(self) -> pd.DataFrame:
        """The groups table (:data:`GROUP_COLUMNS`) of every item in the index."""
        ids = self.items["item_id"].to_numpy(dtype=object)
        return _groups_frame(ids, self.items["group_id"].to_numpy(dtype=object))

    def save(self, path: str | Path) -> Path:
        """Write the index as Parquet (:data:`INDEX_SCHEMA`, rows sorted by ``item_id``)
        atomically; the same items and groups give the same bytes, whatever the update order."""
        rows = self.items.sort_values("item_id", kind="stable")
        table = pa.Table.from_pandas(rows, schema=INDEX_SCHEMA, preserve_index=False)
        table = table.replace_schema_metadata({_RADIUS_KEY: str(self.radius).encode()})
        return write_parquet_atomic(table, path)

    @classmethod
    def load(cls, path: str | Path) -> DuplicateIndex:
        """Read an index written by :meth:`save`.

        Raises:
            DuplicateInputError: the file is not a saved duplicate index (columns or radius
                missing).
        """
        table = pq.read_table(path)
        metadata = table.schema.metadata or {}
        missing = set(INDEX_SCHEMA.names) - set(table.column_names)
        if missing or _RADIUS_KEY not in metadata:
            raise DuplicateInputError(f"{Path(path).name}: not a saved duplicate index")
        items = table.select(INDEX_SCHEMA.names).to_pandas()
        items["item_id"] = items["item_id"].astype(object)
        items["group_id"] = items["group_id"].astype(object)
        items["pixel_digest"] = (
            items["pixel_digest"].astype(object).where(items["pixel_digest"].notna(), None)
        )
        return cls(radius=int(metadata[_RADIUS_KEY]), items=items)


def build_index(items: pd.DataFrame, *, radius: int = DEFAULT_RADIUS) -> DuplicateIndex:
    """A :class:`DuplicateIndex` of ``items`` grouped from scratch (:func:`group_duplicates`)."""
    radius = check_radius(radius)
    table = normalize_items(items)
    ids = table["item_id"].to_numpy(dtype=object)
    table["group_id"] = ids[_labels(table, radius)]
    return DuplicateIndex(radius=radius, items=table)


@dataclass(frozen=True)
class GroupUpdate:
    """What :func:`update_groups` returns.

    ``index``: the index with the new items. ``changed``: the groups table rows
    (:data:`GROUP_COLUMNS`) of every group that gained, lost or merged members; groups not listed
    are exactly as before. ``removed_group_ids``: group ids that no longer exist (merged into
    another group, or emptied by a re-run partition).
    """

    index: DuplicateIndex
    changed: pd.DataFrame
    removed_group_ids: tuple[str, ...]


def update_groups(index: DuplicateIndex, new_items: pd.DataFrame) -> GroupUpdate:
    """Add one partition's items to ``index``, comparing them with the index and each other only.

    Items whose ids are already indexed replace their earlier versions (a re-run partition):
    they are taken out first and the groups they were in are regrouped from their remaining
    members. The result equals :func:`group_duplicates` over the old and new items together.

    Args:
        index: the state so far (not modified).
        new_items: as for :func:`group_duplicates`.

    Raises:
        DuplicateInputError: malformed items.
    """
    radius = index.radius
    new = normalize_items(new_items)
    old = index.items
    hash_index = index.hash_index.copy()
    changed_ids: set[str] = set()
    removed: set[str] = set()

    rerun = old["item_id"].isin(set(new["item_id"]))
    if rerun.any():
        old, hash_index, regrouped, emptied = _take_out(old, rerun.to_numpy(), hash_index, radius)
        changed_ids |= regrouped
        removed |= emptied

    new_ids = new["item_id"].to_numpy(dtype=object)
    n_new = len(new)
    old_groups = old["group_id"].to_numpy(dtype=object)
    # Rows of ``old`` are the index's positions, so a hit's row is its position.
    query, hit, _ = hash_index.query_positions(new["phash"].to_numpy(dtype=np.uint64), radius)
    hit_groups = old_groups[hit]
    has_digest = new["pixel_digest"].notna().to_numpy()
    if has_digest.any():
        known = old[old["pixel_digest"].notna()].drop_duplicates("pixel_digest")
        group_of_digest = pd.Series(known["group_id"].to_numpy(), index=known["pixel_digest"])
        found = group_of_digest.reindex(new["pixel_digest"][has_digest]).to_numpy(dtype=object)
        same = pd.notna(found)
        query = np.concatenate([query, np.flatnonzero(has_digest)[same]])
        hit_groups = np.concatenate([hit_groups, found[same]])
    # Nodes: the new items 0..n_new-1, then the old groups they touch.
    codes, touched = pd.factorize(hit_groups)
    labels = np.arange(n_new + len(touched), dtype=np.int64)
    labels[:n_new] = _labels(new, radius)
    if len(query):
        labels = join_components(labels, query.astype(np.int64), n_new + codes.astype(np.int64))

    # A component's id is the smallest id among its new items and its old groups' ids (each
    # already the smallest id of that group).
    names = pd.Series(np.concatenate([new_ids, np.asarray(touched, dtype=object)]))
    smallest = names.groupby(labels).min()
    new_group = smallest.reindex(labels[:n_new]).to_numpy(dtype=object)
    renamed = dict(
        zip(touched, smallest.reindex(labels[n_new:]).to_numpy(dtype=object), strict=True)
    )
    removed |= {old_id for old_id, new_id in renamed.items() if old_id != new_id}
    changed_ids |= set(new_group)
    removed -= changed_ids

    old = old.copy()
    moved = old["group_id"].isin(renamed.keys()).to_numpy()
    if moved.any():
        old.loc[moved, "group_id"] = old.loc[moved, "group_id"].map(renamed)
    new = new.assign(group_id=new_group)
    items = pd.concat([old, new], ignore_index=True)
    hash_index.add(new_ids, new["phash"].to_numpy(dtype=np.uint64))
    state = DuplicateIndex(radius=radius, items=items, _hash_index=hash_index)
    members = items[items["group_id"].isin(changed_ids)]
    changed = _groups_frame(
        members["item_id"].to_numpy(dtype=object), members["group_id"].to_numpy(dtype=object)
    )
    return GroupUpdate(index=state, changed=changed, removed_group_ids=tuple(sorted(removed)))


def _take_out(
    old: pd.DataFrame, rerun: np.ndarray, hash_index: HashIndex, radius: int
) -> tuple[pd.DataFrame, HashIndex, set[str], set[str]]:
    """Drop re-run items; regroup the rest of their groups. Returns the table, the index, the
    group ids that now exist for those members, and the old ids that no longer do."""
    affected = set(old.loc[rerun, "group_id"])
    hash_index.remove(old.loc[rerun, "item_id"])
    old = old[~rerun].reset_index(drop=True)
    members = old["group_id"].isin(affected).to_numpy()
    if not members.any():
        return old, hash_index, set(), affected
    part = old[members].reset_index(drop=True)
    ids = part["item_id"].to_numpy(dtype=object)
    # Rows are in insertion order, not id order: name each component by its smallest id.
    labels = _labels(part, radius)
    regrouped = pd.Series(ids).groupby(labels).min().reindex(labels).to_numpy(dtype=object)
    old = old.copy()
    old.loc[members, "group_id"] = regrouped
    now = set(regrouped)
    return old, hash_index, now, affected - now
