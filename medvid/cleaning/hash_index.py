"""An incremental index of 64-bit hashes that finds every item within a Hamming radius, exactly.

Multi-index hashing (Norouzi, Punjani & Fleet, "Fast search in Hamming space with multi-index
hashing", CVPR 2012): the 64 bits are cut into four 16-bit substrings, and each substring has a
table (the item positions sorted by that substring, plus the start of each of the 65,536
buckets). If two hashes are at most ``r`` bits apart, then for per-substring radii ``r_i`` with
``sum(r_i + 1) = r + 1`` some substring ``i`` differs in at most ``r_i`` bits (pigeonhole). A
query therefore looks up, in each table, the buckets of every substring value within ``r_i`` of
its own (1 + 16 values for ``r_i = 1``), checks the full distance of each candidate, and keeps a
pair only from the first substring that satisfies the rule, so no pair is reported twice. At
radius 6 that is 52 bucket lookups per query. Tables are rebuilt after ``add``/``remove`` with
four radix sorts (about 50 ms for a million items).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from medvid.cleaning.hamming import check_radius, expand_in_chunks, radix_argsort
from medvid.errors import MedvidInputError
from medvid.io import write_parquet_atomic

SUBSTRINGS = 4
SUBSTRING_BITS = 16
_BUCKETS = 1 << SUBSTRING_BITS
_QUERY_CHUNK = 4096
INDEX_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("hash", pa.uint64(), nullable=False),
    ]
)
"""Parquet layout of a saved :class:`HashIndex`: one row per item, sorted by ``item_id``."""
_FORMAT_KEY = b"medvid.hash_index"
_FORMAT_VERSION = b"1"


class DuplicateInputError(MedvidInputError):
    """Items for duplicate search are malformed: a hash that is not 16 hex digits, a repeated
    or empty item id, a missing column."""


def as_hashes(values: Iterable[object] | np.ndarray) -> np.ndarray:
    """64-bit hashes as ``(n,) uint64``.

    Accepts a ``uint64`` (or other integer) array, Python ints in ``0 .. 2**64 - 1``, or the
    16-hex-digit text of the frame manifests' ``phash`` column
    (:func:`medvid.frames.phash.phash_hex`).

    Raises:
        DuplicateInputError: a value is neither (bad hex text, negative or too large, missing).
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "ui":
        if values.dtype.kind == "i" and len(values) and int(values.min()) < 0:
            raise DuplicateInputError("hash values must be non-negative 64-bit integers")
        return values.astype(np.uint64, copy=False).reshape(-1)
    out = []
    for value in values:
        if isinstance(value, str):
            text = value.strip()
            if len(text) != 16:
                raise DuplicateInputError(f"hash {value!r} is not 16 hex digits")
            try:
                out.append(int(text, 16))
            except ValueError:
                raise DuplicateInputError(f"hash {value!r} is not 16 hex digits") from None
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 0 <= int(value) < 1 << 64:
                raise DuplicateInputError(f"hash {value!r} is not a 64-bit unsigned integer")
            out.append(int(value))
        else:
            raise DuplicateInputError(f"hash {value!r} is neither 16 hex digits nor an integer")
    return np.array(out, dtype=np.uint64)


def _substring(hashes: np.ndarray, index: int) -> np.ndarray:
    """Substring ``index`` (0 = most significant 16 bits) as ``int64``."""
    shift = np.uint64(SUBSTRING_BITS * (SUBSTRINGS - 1 - index))
    return ((hashes >> shift) & np.uint64(_BUCKETS - 1)).astype(np.int64)


def substring_radii(radius: int) -> tuple[int, ...]:
    """Per-substring radii ``r_i`` with ``sum(r_i + 1) == radius + 1``, as even as possible
    (``-1``: that substring is not searched). Radius 6 gives ``(1, 1, 1, 0)``."""
    base, extra = divmod(radius + 1, SUBSTRINGS)
    return tuple(base + (1 if i < extra else 0) - 1 for i in range(SUBSTRINGS))


def _masks(radius: int) -> np.ndarray:
    """Every 16-bit XOR mask with at most ``radius`` bits set, fewest bits first."""
    masks = [0]
    for bits in range(1, radius + 1):
        for chosen in itertools.combinations(range(SUBSTRING_BITS), bits):
            masks.append(sum(1 << b for b in chosen))
    return np.array(masks, dtype=np.int64)


class HashIndex:
    """Items ``(item_id: str, hash: uint64)`` searchable by Hamming radius, exactly.

    ``item_id`` values are unique. Positions (``item_index``) are insertion order and change
    after :meth:`remove`. Not thread-safe for concurrent ``add``/``query``.
    """

    def __init__(
        self, ids: Sequence[str] | np.ndarray = (), hashes: Iterable[object] | np.ndarray = ()
    ) -> None:
        self._ids = np.empty(0, dtype=object)
        self._hashes = np.empty(0, dtype=np.uint64)
        self._position: dict[str, int] = {}
        self._tables: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._sorted: np.ndarray | None = None
        if len(ids):
            self.add(ids, hashes)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._position

    @property
    def ids(self) -> np.ndarray:
        """``(n,) object`` array of item ids, by position (read-only view)."""
        view = self._ids.view()
        view.flags.writeable = False
        return view

    @property
    def hashes(self) -> np.ndarray:
        """``(n,) uint64`` hashes, by position (read-only view)."""
        view = self._hashes.view()
        view.flags.writeable = False
        return view

    def positions(self, ids: Iterable[str]) -> np.ndarray:
        """Positions of ``ids`` as ``int64``; ``KeyError`` for an id not in the index."""
        return np.array([self._position[str(i)] for i in ids], dtype=np.int64)

    def add(self, ids: Sequence[str] | np.ndarray, hashes: Iterable[object] | np.ndarray) -> None:
        """Append items. ``hashes``: anything :func:`as_hashes` accepts, one per id.

        Raises:
            DuplicateInputError: lengths differ, an id is empty, repeated, or already indexed,
                or a hash is malformed.
        """
        new_ids = np.array([str(i) for i in ids], dtype=object)
        new_hashes = as_hashes(hashes)
        if len(new_ids) != len(new_hashes):
            raise DuplicateInputError(f"{len(new_ids)} item ids but {len(new_hashes)} hashes")
        start = len(self._ids)
        for offset, item_id in enumerate(new_ids):
            if not item_id:
                raise DuplicateInputError("an item id is empty")
            if item_id in self._position:
                for added in new_ids[:offset]:
                    del self._position[added]
                raise DuplicateInputError(f"item id {item_id!r} is already in the index")
            self._position[item_id] = start + offset
        self._ids = np.concatenate([self._ids, new_ids])
        self._hashes = np.concatenate([self._hashes, new_hashes])
        self._tables = None
        self._sorted = None

    def copy(self) -> HashIndex:
        """An independent copy (tables included)."""
        twin = HashIndex()
        twin._ids, twin._hashes = self._ids.copy(), self._hashes.copy()
        twin._position = self._position.copy()
        twin._tables, twin._sorted = self._tables, self._sorted  # never modified in place
        return twin

    def remove(self, ids: Iterable[str]) -> None:
        """Remove items by id (ids not in the index are ignored); later positions shift down."""
        gone = {str(i) for i in ids} & self._position.keys()
        if not gone:
            return
        keep = np.array([item_id not in gone for item_id in self._ids], dtype=bool)
        self._ids, self._hashes = self._ids[keep], self._hashes[keep]
        self._position = {item_id: pos for pos, item_id in enumerate(self._ids)}
        self._tables = None
        self._sorted = None

    def _built(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self._tables is None:
            tables = []
            for index in range(SUBSTRINGS):
                sub = _substring(self._hashes, index)
                order = radix_argsort(sub.astype(np.uint64), SUBSTRING_BITS)
                bounds = np.zeros(_BUCKETS + 1, dtype=np.int64)
                np.cumsum(np.bincount(sub, minlength=_BUCKETS), out=bounds[1:])
                tables.append((order, bounds))
            self._tables = tables
        return self._tables

    def query_positions(
        self, hashes: Iterable[object] | np.ndarray, radius: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every ``(query, item)`` pair at most ``radius`` bits apart, as arrays.

        Returns ``(query_index int64, item_index int64, distance uint8)`` sorted by query then
        item position; each pair once. ``radius`` in ``0..32``.
        """
        radius = check_radius(radius)
        queries = as_hashes(hashes)
        empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint8))
        if len(queries) == 0 or len(self) == 0:
            return empty
        if radius == 0:
            return self._equal(queries)
        radii = substring_radii(radius)
        masks = [_masks(r) if r >= 0 else None for r in radii]
        lookups = sum(len(m) for m in masks if m is not None)
        if lookups * len(self) / _BUCKETS >= len(self):
            return self._brute_force(queries, radius)
        tables = self._built()
        found_q, found_i, found_d = [], [], []
        for first in range(0, len(queries), _QUERY_CHUNK):
            chunk = queries[first : first + _QUERY_CHUNK]
            subs = [_substring(chunk, i) for i in range(SUBSTRINGS)]
            for index, (order, bounds) in enumerate(tables):
                if masks[index] is None:
                    continue
                keys = (subs[index][:, None] ^ masks[index][None, :]).ravel()
                starts, counts = bounds[keys], bounds[keys + 1] - bounds[keys]
                owner_of_key = np.repeat(np.arange(len(chunk)), len(masks[index]))
                for owner, slot in expand_in_chunks(starts, counts):
                    query_pos = owner_of_key[owner]
                    item_pos = order[slot]
                    diff = chunk[query_pos] ^ self._hashes[item_pos]
                    distance = np.bitwise_count(diff)
                    keep = distance <= radius
                    # Report a pair only from the first substring within its radius.
                    for earlier in range(index):
                        if radii[earlier] >= 0:
                            sub_diff = np.bitwise_count(_substring(diff, earlier))
                            keep &= sub_diff > radii[earlier]
                    found_q.append(query_pos[keep] + first)
                    found_i.append(item_pos[keep])
                    found_d.append(distance[keep].astype(np.uint8))
        if not found_q:
            return empty
        q, i, d = np.concatenate(found_q), np.concatenate(found_i), np.concatenate(found_d)
        order = np.lexsort((i, q))
        return q[order], i[order], d[order]

    def _equal(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Radius 0: binary search in the hashes sorted once."""
        if self._sorted is None:
            self._sorted = np.argsort(self._hashes, kind="stable")
        sorted_hashes = self._hashes[self._sorted]
        low = np.searchsorted(sorted_hashes, queries, side="left")
        high = np.searchsorted(sorted_hashes, queries, side="right")
        owner, slot = next(expand_in_chunks(low, high - low, limit=1 << 62), (None, None))
        if owner is None:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint8)
        item = self._sorted[slot]
        order = np.lexsort((item, owner))
        return owner[order], item[order], np.zeros(len(order), dtype=np.uint8)

    def _brute_force(
        self, queries: np.ndarray, radius: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = max(1, 4_000_000 // len(self))
        found_q, found_i, found_d = [], [], []
        for first in range(0, len(queries), rows):
            block = np.bitwise_count(queries[first : first + rows, None] ^ self._hashes[None, :])
            q, i = np.nonzero(block <= radius)
            found_q.append(q + first)
            found_i.append(i)
            found_d.append(block[q, i].astype(np.uint8))
        return np.concatenate(found_q), np.concatenate(found_i), np.concatenate(found_d)

    def query(self, hashes: Iterable[object] | np.ndarray, radius: int) -> pd.DataFrame:
        """Every indexed item at most ``radius`` bits from each query hash.

        Args:
            hashes: query hashes (anything :func:`as_hashes` accepts).
            radius: Hamming radius in bits, ``0..32``.

        Returns:
            Columns ``query_index`` (int64, position in ``hashes``), ``item_id`` (str),
            ``item_index`` (int64, position in the index), ``distance`` (uint8 bits); sorted by
            ``query_index`` then ``item_index``. Exact: equal to a brute-force scan.

        Raises:
            DuplicateInputError: a malformed hash. ``ValueError``: radius outside 0..32.
        """
        q, i, d = self.query_positions(hashes, radius)
        return pd.DataFrame(
            {"query_index": q, "item_id": self._ids[i], "item_index": i, "distance": d}
        )

    def to_arrow(self) -> pa.Table:
        """The items as an :data:`INDEX_SCHEMA` table sorted by ``item_id``."""
        order = np.argsort(self._ids.astype(str), kind="stable")
        table = pa.table(
            {"item_id": self._ids[order].tolist(), "hash": self._hashes[order]},
            schema=INDEX_SCHEMA,
        )
        return table.replace_schema_metadata({_FORMAT_KEY: _FORMAT_VERSION})

    def save(self, path: str | Path) -> Path:
        """Write the index as Parquet (:data:`INDEX_SCHEMA`, rows sorted by id) atomically; the
        same items give the same bytes whatever order they were added in."""
        return write_parquet_atomic(self.to_arrow(), path)

    @classmethod
    def load(cls, path: str | Path) -> HashIndex:
        """Read an index written by :meth:`save`.

        Raises:
            DuplicateInputError: the file lacks the ``item_id``/``hash`` columns or repeats an
                id. OSError / pyarrow errors: unreadable file.
        """
        table = pq.read_table(path)
        missing = {"item_id", "hash"} - set(table.column_names)
        if missing:
            raise DuplicateInputError(f"{Path(path).name}: lacks column(s) {sorted(missing)}")
        hashes = table.column("hash").to_numpy().astype(np.uint64, copy=False)
        return cls(table.column("item_id").to_pylist(), hashes)
