"""Exact grouping of 64-bit hashes within a Hamming radius, in vectorized numpy.

:func:`hamming_components` answers "which hashes are connected by chains of near-duplicates",
the connected components of the graph whose edges join two hashes at most ``radius`` bits apart,
without listing every edge: clustered data (the frames of one ultrasound sweep and their
re-encodes) holds hundreds of millions of such edges at radius 6 for a million hashes.

How (pigeonhole over bit blocks, Manku, Jain & Das Sarma, "Detecting near-duplicates for web
crawling", WWW 2007): the 64 bits are cut into ``b`` blocks; two hashes at most ``r`` bits apart
differ in at most ``r`` blocks, so they agree on at least ``b - r`` of them. Each choice of
``b - r`` blocks is a *table*: hashes are sorted by those blocks (LSD radix sort on 16-bit
digits, numpy's stable sort of ``uint16`` is a radix sort), and every near pair shares a run of
equal keys in at least one table. Inside a run only pairs whose current components differ are
compared ("label pruning"): after the first tables nearly every run lies inside one component
and is skipped in O(run). Runs that still hold many unmerged items first compare a few pivot
items against the whole run, which merges most of a cluster for O(run) work, before the complete
comparison of every item outside the run's largest component with the rest of the run. The
result is exact: every pair within the radius is either compared or already connected.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np

HASH_BITS = 64
MAX_RADIUS = 32
_DIGIT_BITS = 16
_DIGIT_MASK = np.uint64((1 << _DIGIT_BITS) - 1)
# Below this many candidate pairs a full distance matrix is cheaper than building tables.
_BRUTE_FORCE_PAIRS = 2_000_000
# Pairs expanded at once (each costs ~40 bytes across the temporary arrays).
_PAIR_CHUNK = 4_000_000
# Pivot rounds: taken while a complete pass would compare more than this many pairs per item.
_PIVOTS_PER_RUN = 4
_PIVOT_WORK_RATIO = 8
_MAX_PIVOT_ROUNDS = 3


def check_radius(radius: int) -> int:
    """``radius`` as an int; ``ValueError`` outside ``0..MAX_RADIUS`` (32 bits, half a hash)."""
    radius = int(radius)
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f"radius must be in 0..{MAX_RADIUS} bits, got {radius}")
    return radius


def radix_argsort(keys: np.ndarray, bits: int) -> np.ndarray:
    """Stable argsort of ``(n,) uint64`` keys below ``2**bits``, as ``(n,) int64`` positions.

    LSD radix over 16-bit digits: numpy sorts ``uint16`` with a stable radix sort, about 10x
    faster than its quicksort of ``uint64`` for a million keys.
    """
    order: np.ndarray | None = None
    for shift in range(0, max(bits, 1), _DIGIT_BITS):
        digit = ((keys >> np.uint64(shift)) & _DIGIT_MASK).astype(np.uint16)
        if order is None:
            order = np.argsort(digit, kind="stable")
        else:
            order = order[np.argsort(digit[order], kind="stable")]
    assert order is not None
    return order


def bit_blocks(count: int) -> list[tuple[int, int]]:
    """``count`` contiguous blocks covering the 64 bits as ``(shift, width)``, widths within one
    bit of each other, lowest bits first."""
    edges = [round(i * HASH_BITS / count) for i in range(count + 1)]
    return [(edges[i], edges[i + 1] - edges[i]) for i in range(count)]


def block_scheme(n: int, radius: int) -> tuple[list[tuple[int, int]], int]:
    """Blocks and the number that must agree (``blocks - radius``) for ``n`` hashes.

    Chooses the block count minimizing ``tables * (n + n**2 / 2**(key_bits + 1))``, the sorting
    work plus the chance collisions of uniform hashes in runs, over ``radius + 1 ..
    radius + 12`` blocks. For a million hashes at radius 6: 9 blocks of 7 bits, 3 must agree,
    84 tables.
    """
    best: tuple[float, int] | None = None
    for count in range(radius + 1, min(HASH_BITS, radius + 12) + 1):
        agree = count - radius
        widths = sorted(width for _, width in bit_blocks(count))
        key_bits = sum(widths[:agree])
        cost = math.comb(count, agree) * (n + n * n / 2.0 ** (key_bits + 1))
        if best is None or cost < best[0]:
            best = (cost, count)
    assert best is not None
    return bit_blocks(best[1]), best[1] - radius


def _ragged(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expand ranges ``[starts[k], starts[k] + counts[k])``: ``(owner k, value)`` per element."""
    owner = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    return owner, starts[owner] + (np.arange(len(owner)) - first[owner])


def expand_in_chunks(
    starts: np.ndarray, counts: np.ndarray, limit: int = _PAIR_CHUNK
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`_ragged` over consecutive slices holding about ``limit`` elements each (a range
    longer than ``limit`` is one slice); owners are indices into the full ``counts``."""
    total = np.cumsum(counts)
    low = 0
    while low < len(counts):
        done = int(total[low - 1]) if low else 0
        high = max(int(np.searchsorted(total, done + limit, side="right")), low + 1)
        owner, values = _ragged(starts[low:high], counts[low:high])
        yield owner + low, values
        low = high


def join_components(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Labels after joining the components of positions ``a[k]`` and ``b[k]``.

    ``labels``: ``(n,) int64``, each position's component as its smallest position (``arange(n)``
    for singletons). Returns new labels in the same convention, or ``labels`` itself (the same
    object) when nothing merges.
    """
    root_a, root_b = labels[a], labels[b]
    differ = root_a != root_b
    if not differ.any():
        return labels
    root_a, root_b = root_a[differ], root_b[differ]
    n = len(labels)
    if 4 * len(root_a) > n:
        nodes = np.arange(n)
        left, right = root_a, root_b
    else:
        nodes, inverse = np.unique(np.concatenate([root_a, root_b]), return_inverse=True)
        left, right = inverse[: len(root_a)], inverse[len(root_a) :]
    size = len(nodes)
    # scipy's sparse graphs (about 17 MiB resident) load with the first merge, not with medvid
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(size, size))
    count, component = connected_components(graph.tocsr(), directed=False)
    new_root = np.full(count, n, dtype=np.int64)
    np.minimum.at(new_root, component, nodes)
    relabel = np.arange(n, dtype=np.int64)
    relabel[nodes] = new_root[component]
    return relabel[labels]


def _table_key(hashes: np.ndarray, blocks: Sequence[tuple[int, int]]) -> tuple[np.ndarray, int]:
    """The chosen blocks' bits packed into one key, and its width in bits."""
    key = np.zeros(len(hashes), dtype=np.uint64)
    bits = 0
    for shift, width in blocks:
        block = (hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        key |= block << np.uint64(bits)
        bits += width
    return key, bits


def _close_pairs(
    hashes: np.ndarray,
    radius: int,
    items: np.ndarray,
    pool: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    *,
    first_only: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(items[k], pool[j])`` for ``j`` in ``[starts[k], starts[k] + counts[k])`` whose
    hashes are at most ``radius`` bits apart, as two position arrays; with ``first_only`` only
    the first such ``j`` of each ``k`` (enough when the pool range is one component)."""
    found_a, found_b = [], []
    pool_hashes = hashes[pool]
    for owner, other in expand_in_chunks(starts, counts):
        near = np.flatnonzero(np.bitwise_count(hashes[items[owner]] ^ pool_hashes[other]) <= radius)
        if first_only and len(near):
            near = near[np.concatenate(([True], owner[near[1:]] != owner[near[:-1]]))]
        found_a.append(items[owner[near]])
        found_b.append(pool[other[near]])
    if not found_a:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(found_a), np.concatenate(found_b)


def _resolve_table(
    hashes: np.ndarray, radius: int, labels: np.ndarray, order: np.ndarray, starts: np.ndarray
) -> np.ndarray:
    """Merge every pair within ``radius`` that shares a run of one table; returns the labels.

    ``order``: hash positions sorted by the table's key; ``starts``: where its runs begin. In
    each run the *reference* component is the largest one present (smallest label on ties);
    each item outside it is compared with the run's reference items and with the outside items
    of other labels that follow it, which covers every pair of items with different labels once.
    """
    n = len(labels)
    label_bits = np.uint64(max(1, int(n - 1).bit_length()))
    low_mask = (np.uint64(1) << label_bits) - np.uint64(1)
    sizes = np.diff(np.append(starts, len(order)))
    run_of = np.repeat(np.arange(len(starts)), sizes)
    pivot_rounds = 0
    while True:
        label = labels[order]
        component_size = np.bincount(labels, minlength=n).astype(np.uint64)
        # Largest component first, then smallest label: one maximum per run, no sort.
        rank = (component_size[label] << label_bits) | (np.uint64(n) - label.astype(np.uint64))
        best = np.maximum.reduceat(rank, starts)
        reference = (np.uint64(n) - (best & low_mask)).astype(np.int64)
        is_outside = label != reference[run_of]
        outside = np.flatnonzero(is_outside)
        if len(outside) == 0:
            return labels
        run = run_of[outside]
        inside = np.flatnonzero(~is_outside)
        inside_per_run = np.bincount(run_of[inside], minlength=len(starts))
        inside_count = inside_per_run[run]
        inside_start = (np.cumsum(inside_per_run) - inside_per_run)[run]
        outside_per_run = np.bincount(run).astype(np.int64)
        work = int(inside_count.sum()) + int((outside_per_run * outside_per_run).sum()) // 2
        if work > _PIVOT_WORK_RATIO * len(order) and pivot_rounds < _MAX_PIVOT_ROUNDS:
            pivot_rounds += 1
            # The first few outside items of each run against the whole run: cheap, and merges
            # most of a cluster before the complete pass.
            chosen = np.arange(len(outside)) - np.searchsorted(run, run) < _PIVOTS_PER_RUN
            a, b = _close_pairs(
                hashes,
                radius,
                order[outside[chosen]],
                order,
                starts[run[chosen]],
                sizes[run[chosen]],
            )
            merged = join_components(labels, a, b)
            if merged is labels:
                pivot_rounds = _MAX_PIVOT_ROUNDS
            labels = merged
            continue
        # Outside items sorted by (run, label): the items of later labels in the same run follow.
        by_label = np.argsort(
            (run.astype(np.uint64) << label_bits) | label[outside].astype(np.uint64)
        )
        outside, run = outside[by_label], run[by_label]
        inside_start, inside_count = inside_start[by_label], inside_count[by_label]
        out_label = label[outside]
        next_block = np.flatnonzero(
            np.concatenate(([True], (run[1:] != run[:-1]) | (out_label[1:] != out_label[:-1])))
        )
        block_end = np.append(next_block[1:], len(outside))
        later_start = np.repeat(block_end, np.diff(np.append(next_block, len(outside))))
        later_count = np.searchsorted(run, run, side="right") - later_start
        items = order[outside]
        a1, b1 = _close_pairs(
            hashes, radius, items, order[inside], inside_start, inside_count, first_only=True
        )
        a2, b2 = _close_pairs(hashes, radius, items, items, later_start, later_count)
        return join_components(labels, np.concatenate([a1, a2]), np.concatenate([b1, b2]))


def _unique_components(unique: np.ndarray, radius: int) -> np.ndarray:
    """Component labels (smallest index) of sorted distinct hashes."""
    n = len(unique)
    labels = np.arange(n, dtype=np.int64)
    if n < 2 or radius == 0:
        return labels
    if n * (n - 1) // 2 <= _BRUTE_FORCE_PAIRS:
        near = np.bitwise_count(unique[:, None] ^ unique[None, :]) <= radius
        a, b = np.nonzero(np.triu(near, 1))
        return join_components(labels, a, b)
    blocks, agree = block_scheme(n, radius)
    for chosen in itertools.combinations(range(len(blocks)), agree):
        labels = _table(unique, radius, labels, [blocks[i] for i in chosen])
    return labels


def _table(
    unique: np.ndarray, radius: int, labels: np.ndarray, blocks: Sequence[tuple[int, int]]
) -> np.ndarray:
    """One table: sort by the blocks' key, keep the runs holding more than one label, resolve."""
    key, bits = _table_key(unique, blocks)
    order = radix_argsort(key, bits)
    sorted_key = key[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_key[1:] != sorted_key[:-1])))
    label = labels[order]
    mixed = np.minimum.reduceat(label, starts) != np.maximum.reduceat(label, starts)
    if not mixed.any():
        return labels
    sizes = np.diff(np.append(starts, len(unique)))
    kept_sizes = sizes[mixed]
    kept_starts = np.cumsum(kept_sizes) - kept_sizes
    return _resolve_table(unique, radius, labels, order[np.repeat(mixed, sizes)], kept_starts)


def hamming_components(hashes: np.ndarray, radius: int) -> np.ndarray:
    """Connected components of ``hashes`` under "at most ``radius`` bits apart".

    Args:
        hashes: ``(n,) uint64`` (e.g. 64-bit pHashes, :func:`medvid.frames.phash.phash64`).
        radius: Hamming radius in bits, ``0..32``; 0 groups equal hashes only.

    Returns:
        ``(n,) int64``: for each position, the smallest position in its component. Exact (no
        missed and no false links) and deterministic.

    Raises:
        ValueError: ``radius`` outside ``0..32`` or ``hashes`` not one-dimensional.
    """
    radius = check_radius(radius)
    hashes = np.asarray(hashes, dtype=np.uint64)
    if hashes.ndim != 1:
        raise ValueError(f"hashes must be one-dimensional, got shape {hashes.shape}")
    if len(hashes) == 0:
        return np.empty(0, dtype=np.int64)
    unique, inverse = np.unique(hashes, return_inverse=True)
    component = _unique_components(unique, radius)[inverse]
    first = np.full(len(unique), len(hashes), dtype=np.int64)
    np.minimum.at(first, component, np.arange(len(hashes)))
    return first[component]
