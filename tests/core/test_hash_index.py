"""medvid.cleaning.hash_index and .hamming: exact Hamming-radius search and grouping."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from medvid.cleaning import DuplicateInputError, HashIndex, hamming, hamming_components
from medvid.cleaning.hamming import block_scheme
from medvid.cleaning.hash_index import as_hashes, substring_radii
from medvid.frames.phash import phash_hex


def _flip(rng: np.random.Generator, base: np.ndarray, max_bits: int) -> np.ndarray:
    """Copies of ``base`` with 0..max_bits distinct random bits flipped."""
    flips = rng.integers(0, max_bits + 1, len(base))
    order = np.argsort(rng.random((len(base), 64)), axis=1)
    mask = np.zeros(len(base), dtype=np.uint64)
    for k in range(max_bits):
        chosen = flips > k
        mask[chosen] |= np.uint64(1) << order[chosen, k].astype(np.uint64)
    return base ^ mask


def _clustered(seed: int, bases: int, copies: int, random: int) -> np.ndarray:
    """Clusters of near copies (like frames of one sweep and their re-encodes) plus uniform
    random hashes; contains exact repeats."""
    rng = np.random.default_rng(seed)
    centre = rng.integers(0, 2**63, bases, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    near = _flip(rng, np.repeat(centre, copies), 8)
    uniform = rng.integers(0, 2**63, random, dtype=np.uint64) * np.uint64(2)
    return np.concatenate([near, near[:50], uniform])


def _brute_pairs(queries: np.ndarray, hashes: np.ndarray, radius: int) -> set[tuple[int, int]]:
    distance = np.bitwise_count(queries[:, None] ^ hashes[None, :])
    query, item = np.nonzero(distance <= radius)
    return set(zip(query.tolist(), item.tolist(), strict=True))


def _brute_components(hashes: np.ndarray, radius: int) -> np.ndarray:
    near = np.bitwise_count(hashes[:, None] ^ hashes[None, :]) <= radius
    _, component = connected_components(csr_matrix(near), directed=False)
    first = np.full(component.max() + 1, len(hashes))
    np.minimum.at(first, component, np.arange(len(hashes)))
    return first[component]


@pytest.fixture(scope="module")
def clustered() -> np.ndarray:
    return _clustered(seed=1, bases=60, copies=40, random=1500)


@pytest.mark.parametrize("radius", range(9))
def test_query_returns_exactly_the_brute_force_pairs(clustered: np.ndarray, radius: int) -> None:
    rng = np.random.default_rng(radius)
    index = HashIndex([f"i{k}" for k in range(len(clustered))], clustered)
    queries = np.concatenate(
        [clustered[rng.choice(len(clustered), 300, replace=False)], _flip(rng, clustered[:100], 8)]
    )
    query, item, distance = index.query_positions(queries, radius)
    found = list(zip(query.tolist(), item.tolist(), strict=True))
    assert set(found) == _brute_pairs(queries, clustered, radius)
    assert len(found) == len(set(found))  # each pair once
    assert np.array_equal(distance, np.bitwise_count(queries[query] ^ clustered[item]))


@pytest.mark.parametrize("radius", range(9))
def test_components_equal_brute_force_components(clustered: np.ndarray, radius: int) -> None:
    # 4,050 hashes: above the size where the engine switches from a distance matrix to tables.
    assert len(np.unique(clustered)) * (len(np.unique(clustered)) - 1) // 2 > 2_000_000
    assert np.array_equal(
        hamming_components(clustered, radius), _brute_components(clustered, radius)
    )


@pytest.mark.parametrize("pivot_ratio", [0, 10**9])
def test_components_are_exact_with_and_without_pivot_rounds(
    clustered: np.ndarray, pivot_ratio: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hamming, "_PIVOT_WORK_RATIO", pivot_ratio)
    assert np.array_equal(hamming_components(clustered, 6), _brute_components(clustered, 6))


def test_components_of_a_small_set_use_the_distance_matrix_and_agree() -> None:
    hashes = _clustered(seed=2, bases=5, copies=20, random=50)
    assert np.array_equal(hamming_components(hashes, 6), _brute_components(hashes, 6))


def test_a_chain_of_near_hashes_is_one_component() -> None:
    # 0 -> 3 bits -> 6 bits -> 9 bits: neighbours 3 apart, ends 9 apart.
    chain = np.array([0b0, 0b111, 0b111111, 0b111111111, 0xFFFF_FFFF_0000_0000], dtype=np.uint64)
    assert hamming_components(chain, 3).tolist() == [0, 0, 0, 0, 4]


def test_radius_6_on_a_million_uses_nine_blocks_three_agreeing() -> None:
    blocks, agree = block_scheme(1_000_000, 6)
    assert (len(blocks), agree) == (9, 3)
    assert sum(width for _, width in blocks) == 64


def test_substring_radii_follow_the_pigeonhole_rule() -> None:
    assert substring_radii(6) == (1, 1, 1, 0)
    assert substring_radii(0) == (0, -1, -1, -1)
    assert substring_radii(8) == (2, 1, 1, 1)
    assert all(sum(r + 1 for r in substring_radii(radius)) == radius + 1 for radius in range(33))


def test_query_of_an_empty_index_finds_nothing() -> None:
    query, item, _ = HashIndex().query_positions([5], 4)
    assert len(query) == len(item) == 0


def test_query_table_names_the_items() -> None:
    index = HashIndex(["a", "b", "c"], [0b0, 0b11, 0b1111])
    found = index.query([0b1], 2)
    assert found[["query_index", "item_id", "distance"]].values.tolist() == [
        [0, "a", 1],
        [0, "b", 1],
    ]


def test_removed_items_are_not_found_and_positions_shift() -> None:
    index = HashIndex(["a", "b", "c"], [1, 2, 3])
    index.remove(["b", "missing"])
    assert index.ids.tolist() == ["a", "c"]
    assert index.query([2], 0).empty
    assert index.query([3], 0)["item_index"].tolist() == [1]


def test_adding_an_indexed_id_is_refused_and_leaves_the_index_unchanged() -> None:
    index = HashIndex(["a"], [1])
    with pytest.raises(DuplicateInputError, match="already in the index"):
        index.add(["b", "a"], [2, 3])
    assert index.ids.tolist() == ["a"] and "b" not in index


def test_manifest_hex_hashes_are_read_as_uint64() -> None:
    value = 0xF0E1D2C3B4A59687
    assert as_hashes([phash_hex(value), value]).tolist() == [value, value]


@pytest.mark.parametrize("bad", ["xyz", "123", -1, 2**64, None, 1.5])
def test_a_malformed_hash_is_a_bad_input(bad: object) -> None:
    with pytest.raises(DuplicateInputError):
        as_hashes([bad])


def test_saved_index_is_the_same_bytes_whatever_the_insertion_order(tmp_path) -> None:
    ids, hashes = ["b", "a", "c"], [7, 9, 11]
    first = HashIndex(ids, hashes).save(tmp_path / "one.parquet")
    second = HashIndex(ids[::-1], hashes[::-1]).save(tmp_path / "two.parquet")
    assert first.read_bytes() == second.read_bytes()
    loaded = HashIndex.load(first)
    assert loaded.ids.tolist() == ["a", "b", "c"]
    assert loaded.hashes.tolist() == [9, 7, 11]
    assert loaded.query([7], 0)["item_id"].tolist() == ["b"]


def test_a_radius_beyond_half_a_hash_is_refused() -> None:
    with pytest.raises(ValueError, match="radius"):
        hamming_components(np.zeros(2, dtype=np.uint64), 33)
