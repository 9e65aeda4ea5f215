"""Benchmark medvid's duplicate grouping against faiss-cpu and imagededup on a million pHashes.

Usage::

    python benchmarks/dedup.py [--sizes N ...] [--radius 6] [--repeats 2] [--faiss-cap-s 600]
                               [--imagededup-budget-s 180] [--hashes-cache FILE] [--report FILE]
                               [--uniform]
    pip install -e '.[bench]'   # faiss-cpu and imagededup, the same-run peers

Input: the pHash (:func:`medvid.frames.phash.phash64`, as the frame manifests hold it) of every
frame of ``../shared/data/videos`` and ``../shared/data/lung`` (about 11,500 frames), plus
copies of randomly chosen frames with 0..8 random bits flipped (re-encodes, rescales,
watermarks), filled to each size; seed 0. Clustered like a real archive: every sweep's frames
are close to each other, so a million hashes hold about 5e8 pairs within 6 bits. ``--uniform``:
uniform random hashes instead, where almost no pair is within a few bits (the easy case).

Task: the connected components of "at most ``radius`` bits apart" (what
:func:`medvid.cleaning.group_duplicates` needs), total time from the raw hash array, index
building included:

- medvid :func:`medvid.cleaning.hamming_components`: one thread.
- faiss ``IndexBinaryMultiHash`` (4 tables of 16 bits, ``nflip=1``: exact up to 7 bits by
  pigeonhole), ``range_search`` over every hash in batches, each batch's pairs folded into the
  components as they come (all pairs at once do not fit in memory); OpenMP, 2 threads. Runs in
  a child process killed after ``--faiss-cap-s``.
- imagededup ``PHash.find_duplicates`` with its default ``brute_force_cython`` search (2
  workers), then components of the pairs it returns; at growing sizes until one takes longer
  than ``--imagededup-budget-s`` (child process, killed at twice that).

Exactness: components must equal faiss's wherever faiss finishes and a brute-force computation
at 20,000 hashes; on 1,000 random queries of the largest size, :class:`medvid.cleaning.
HashIndex` must return exactly the brute-force pairs (0 missed, 0 false) and every brute-force
neighbour must lie in the query's medvid group. Wall and CPU seconds are both reported: the
machine is shared, so wall time depends on the load (printed) while CPU time does not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from medvid.cleaning import (  # noqa: E402
    HashIndex,
    build_index,
    group_duplicates,
    hamming_components,
    update_groups,
)
from medvid.cleaning.hamming import join_components  # noqa: E402
from medvid.cleaning.video_dedup import video_frame_hashes  # noqa: E402

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mpeg", ".mpg", ".gif"}
MAX_FLIPS = 8
FAISS_TABLES, FAISS_BITS, FAISS_NFLIP = 4, 16, 1
FAISS_BATCH = 10_000


def real_hashes(shared: Path, cache: Path | None) -> np.ndarray:
    """pHash of every frame of the shared clips (cached in ``cache`` when given)."""
    if cache is not None and cache.exists():
        return np.load(cache)
    clips = sorted(p for p in (shared / "videos").iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    clips += sorted(p for p in (shared / "lung").iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    hashes = np.concatenate([video_frame_hashes(clip) for clip in clips])
    if cache is not None:
        np.save(cache, hashes)
    return hashes


def fill(real: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """``real`` plus copies of random real hashes with 0..8 distinct random bits flipped."""
    rng = np.random.default_rng(seed)
    base = real[:size]
    copies = size - len(base)
    if copies <= 0:
        return base.copy()
    source = real[rng.integers(0, len(real), copies)]
    flips = rng.integers(0, MAX_FLIPS + 1, copies)
    mask = np.zeros(copies, dtype=np.uint64)
    for start in range(0, copies, 200_000):
        stop = min(start + 200_000, copies)
        order = np.argsort(rng.random((stop - start, 64)), axis=1)[:, :MAX_FLIPS]
        for k in range(MAX_FLIPS):
            chosen = flips[start:stop] > k
            bits = order[chosen, k].astype(np.uint64)
            mask[start:stop][chosen] |= np.uint64(1) << bits
    return np.concatenate([base, source ^ mask])


def uniform(size: int, seed: int = 0) -> np.ndarray:
    """Uniform random 64-bit hashes: almost no pair within a few bits (the easy case)."""
    return np.random.default_rng(seed).integers(0, 2**64, size, dtype=np.uint64)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label arrays describe the same components."""
    pairs = np.unique(np.stack([a, b]), axis=1)
    return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b))


def load_average() -> float:
    return os.getloadavg()[0]


def time_medvid(hashes: np.ndarray, radius: int, repeats: int) -> tuple[float, float, np.ndarray]:
    best_wall = best_cpu = float("inf")
    labels = np.empty(0)
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        labels = hamming_components(hashes, radius)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu, labels


# --- peers, each in a child process so a slow one can be stopped ---------------------------------


def faiss_components(hashes: np.ndarray, radius: int) -> np.ndarray:
    import faiss

    vectors = np.ascontiguousarray(hashes).view(np.uint8).reshape(-1, 8)
    index = faiss.IndexBinaryMultiHash(64, FAISS_TABLES, FAISS_BITS)
    index.nflip = FAISS_NFLIP
    index.add(vectors)
    labels = np.arange(len(hashes), dtype=np.int64)
    for start in range(0, len(hashes), FAISS_BATCH):
        # faiss's binary range search keeps distances strictly below its radius.
        lims, _, found = index.range_search(vectors[start : start + FAISS_BATCH], radius + 1)
        counts = np.diff(lims.astype(np.int64))
        owner = np.repeat(np.arange(start, start + len(counts)), counts)
        labels = join_components(labels, owner, found.astype(np.int64))
    return labels


def imagededup_components(hashes: np.ndarray, radius: int) -> np.ndarray:
    from imagededup.methods import PHash

    names = [f"{k}" for k in range(len(hashes))]
    encodings = {name: f"{int(h):016x}" for name, h in zip(names, hashes, strict=True)}
    found = PHash(verbose=False).find_duplicates(
        encoding_map=encodings,
        max_distance_threshold=radius,
        search_method="brute_force_cython",
        num_dist_workers=2,
    )
    a = [int(k) for k, dups in found.items() for _ in dups]
    b = [int(d) for dups in found.values() for d in dups]
    labels = np.arange(len(hashes), dtype=np.int64)
    return join_components(labels, np.array(a, dtype=np.int64), np.array(b, dtype=np.int64))


def worker(peer: str, hashes_file: Path, radius: int, labels_file: Path) -> None:
    hashes = np.load(hashes_file)
    # Import outside the timing, as medvid's modules are imported before its timing.
    if peer == "faiss":
        import faiss

        faiss.omp_set_num_threads(2)
    else:
        import imagededup.methods  # noqa: F401
    wall, cpu = time.perf_counter(), time.process_time()
    run = faiss_components if peer == "faiss" else imagededup_components
    labels = run(hashes, radius)
    result = {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "children_cpu_s": sum(os.times()[2:4]),
    }
    np.save(labels_file, labels)
    print(json.dumps(result), flush=True)


def run_peer(
    peer: str, hashes: np.ndarray, radius: int, cap_s: float, work: Path
) -> dict[str, object]:
    hashes_file, labels_file = work / "hashes.npy", work / f"{peer}_labels.npy"
    np.save(hashes_file, hashes)
    labels_file.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--worker", peer, str(hashes_file), str(radius)]
    command.append(str(labels_file))
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=cap_s, check=True)
    except subprocess.TimeoutExpired:
        return {"status": "killed", "wall_s": time.perf_counter() - started}
    except subprocess.CalledProcessError as exc:
        return {"status": "failed", "error": exc.stderr[-2000:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(status="done", labels=np.load(labels_file))
    return result


# --- exactness ---------------------------------------------------------------------------------


def brute_components(hashes: np.ndarray, radius: int) -> np.ndarray:
    labels = np.arange(len(hashes), dtype=np.int64)
    for start in range(0, len(hashes), 500):
        block = np.bitwise_count(hashes[start : start + 500, None] ^ hashes[None, :]) <= radius
        a, b = np.nonzero(block)
        labels = join_components(labels, a + start, b)
    return labels


def sample_check(hashes: np.ndarray, labels: np.ndarray, radius: int, queries: int) -> dict:
    rng = np.random.default_rng(1)
    picked = rng.choice(len(hashes), queries, replace=False)
    index = HashIndex(np.arange(len(hashes)).astype(str), hashes)
    wall = time.perf_counter()
    query, item, _ = index.query_positions(hashes[picked], radius)
    query_s = time.perf_counter() - wall
    found = set(zip(query.tolist(), item.tolist(), strict=True))
    truth: set[tuple[int, int]] = set()
    outside_group = 0
    for number, position in enumerate(picked):
        near = np.flatnonzero(np.bitwise_count(hashes ^ hashes[position]) <= radius)
        truth.update((number, int(i)) for i in near)
        outside_group += int((labels[near] != labels[position]).sum())
    return {
        "queries": queries,
        "true_pairs": len(truth),
        "index_missed": len(truth - found),
        "index_false": len(found - truth),
        "index_query_s": query_s,
        "neighbours_outside_group": outside_group,
    }


def incremental(hashes: np.ndarray, radius: int, partition: int) -> dict[str, object]:
    """Time adding one partition of ``partition`` items (near copies of indexed frames) to a
    :class:`DuplicateIndex` of ``hashes``, against regrouping everything from scratch."""
    import pandas as pd

    ids = np.char.add("f", np.arange(len(hashes)).astype(str)).astype(object)
    clock = (time.perf_counter(), time.process_time())
    index = build_index(pd.DataFrame({"item_id": ids, "phash": hashes}), radius=radius)
    _ = index.hash_index
    build = (time.perf_counter() - clock[0], time.process_time() - clock[1])
    new_hashes = fill(hashes[:partition], 2 * partition, seed=5)[partition:]
    new = pd.DataFrame(
        {"item_id": np.char.add("n", np.arange(partition).astype(str)), "phash": new_hashes}
    )
    clock = (time.perf_counter(), time.process_time())
    update = update_groups(index, new)
    updated = (time.perf_counter() - clock[0], time.process_time() - clock[1])
    clock = (time.perf_counter(), time.process_time())
    scratch = group_duplicates(pd.concat([index.items[["item_id", "phash"]], new]), radius=radius)
    from_scratch = (time.perf_counter() - clock[0], time.process_time() - clock[1])
    return {
        "indexed": len(hashes),
        "partition": partition,
        "build_index_wall_cpu_s": build,
        "update_wall_cpu_s": updated,
        "from_scratch_wall_cpu_s": from_scratch,
        "changed_groups": int(update.changed["group_id"].nunique()),
        "same_groups": bool(update.index.groups().equals(scratch)),
    }


# --- report ------------------------------------------------------------------------------------


def fmt(result: dict[str, object] | None) -> str:
    if result is None:
        return "not run"
    if result.get("status") == "killed":
        return f"> {result['wall_s']:.0f} (killed)"
    if result.get("status") == "failed":
        return "failed"
    wall = float(result["wall_s"])  # type: ignore[arg-type]
    cpu = float(result["cpu_s"]) + float(result.get("children_cpu_s", 0))  # type: ignore[arg-type]
    return f"{wall:.3g} / {cpu:.3g}"


def ratio(peer: dict[str, object], medvid: dict[str, object]) -> str:
    if peer.get("status") not in ("done", "killed"):
        return ""
    prefix = "> " if peer["status"] == "killed" else ""
    return f"{prefix}{float(peer['wall_s']) / float(medvid['wall_s']):.0f}x"  # type: ignore[arg-type]


def print_tables(report: dict[str, object], radius: int, elapsed_s: float) -> None:
    print(f"\nwall / CPU s; load average when each row started; whole run {elapsed_s:.0f} s")
    print("| hashes | radius | load | medvid | faiss MultiHash | faiss/medvid | same groups |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for row in report["rows"]:  # type: ignore[union-attr]
        peer = row.get("faiss", {})
        print(
            f"| {row['size']:,} | {row['radius']} | {row['load']:.1f} | {fmt(row['medvid'])} | "
            f"{fmt(peer or None)} | {ratio(peer, row['medvid'])} | {peer.get('same_groups', '')} |"
        )
    print("\n| hashes | radius | medvid | imagededup | imagededup/medvid | same groups |")
    print("|---:|---:|---:|---:|---:|---|")
    for entry in report["imagededup"]:  # type: ignore[union-attr]
        peer = entry["imagededup"]
        print(
            f"| {entry['size']:,} | {radius} | {fmt(entry['medvid'])} | {fmt(peer)} | "
            f"{ratio(peer, entry['medvid'])} | {peer.get('same_groups', '')} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 200_000, 1_000_000])
    parser.add_argument("--radius", type=int, default=6)
    parser.add_argument("--faiss-radii", type=int, nargs="*", default=[4, 6])
    parser.add_argument("--repeats", type=int, default=2, help="medvid runs per size (best)")
    parser.add_argument("--faiss-cap-s", type=float, default=600.0)
    parser.add_argument("--imagededup-budget-s", type=float, default=180.0)
    parser.add_argument("--imagededup-sizes", type=int, nargs="*", default=[10_000, 20_000, 40_000])
    parser.add_argument(
        "--uniform", action="store_true", help="uniform random hashes instead (no clusters)"
    )
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--partition", type=int, default=2000, help="items of the incremental run")
    parser.add_argument("--hashes-cache", type=Path)
    parser.add_argument("--report", type=Path)
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        peer, hashes_file, radius, labels_file = args.worker
        worker(peer, Path(hashes_file), int(radius), Path(labels_file))
        return

    started = time.perf_counter()
    real = real_hashes(args.shared_data, args.hashes_cache)
    print(f"{len(real)} real frame hashes ({len(np.unique(real))} distinct)", flush=True)
    report: dict[str, object] = {"real_frames": len(real), "rows": [], "imagededup": []}
    rows: list[dict[str, object]] = report["rows"]  # type: ignore[assignment]
    with tempfile.TemporaryDirectory(prefix="medvid-dedup-bench-") as tmp:
        work = Path(tmp)
        hashes = np.empty(0, dtype=np.uint64)
        labels = np.empty(0, dtype=np.int64)
        for size in args.sizes:
            hashes = uniform(size) if args.uniform else fill(real, size)
            for radius in sorted({args.radius, *args.faiss_radii}):
                load = load_average()
                wall, cpu, labels = time_medvid(hashes, radius, args.repeats)
                row: dict[str, object] = {
                    "size": size,
                    "radius": radius,
                    "load": load,
                    "medvid": {"wall_s": wall, "cpu_s": cpu, "status": "done"},
                    "groups": int(len(np.unique(labels))),
                }
                if radius in args.faiss_radii:
                    peer = run_peer("faiss", hashes, radius, args.faiss_cap_s, work)
                    if peer.get("status") == "done":
                        peer["same_groups"] = same_partition(labels, peer.pop("labels"))
                    row["faiss"] = peer
                rows.append(row)
                print(json.dumps(row, default=str), flush=True)
            if size == args.sizes[-1]:
                report["sample"] = sample_check(hashes, labels, args.radius, args.queries)
                print(json.dumps(report["sample"]), flush=True)
                report["incremental"] = incremental(hashes, args.radius, args.partition)
                print(json.dumps(report["incremental"]), flush=True)

        small = uniform(20_000) if args.uniform else fill(real, 20_000)
        report["brute_force_20k_equal"] = same_partition(
            hamming_components(small, args.radius), brute_components(small, args.radius)
        )
        print("brute force 20k equal:", report["brute_force_20k_equal"], flush=True)

        for size in args.imagededup_sizes:
            subset = fill(real, size)
            wall, cpu, medvid_labels = time_medvid(subset, args.radius, args.repeats)
            cap = 2 * args.imagededup_budget_s
            peer = run_peer("imagededup", subset, args.radius, cap, work)
            if peer.get("status") == "done":
                peer["same_groups"] = same_partition(medvid_labels, peer.pop("labels"))
            entry = {
                "size": size,
                "medvid": {"wall_s": wall, "cpu_s": cpu, "status": "done"},
                "imagededup": peer,
            }
            report["imagededup"].append(entry)  # type: ignore[union-attr]
            print(json.dumps(entry, default=str), flush=True)
            if peer.get("status") != "done" or float(peer["wall_s"]) > args.imagededup_budget_s:
                break

    print_tables(report, args.radius, time.perf_counter() - started)
    if args.report:
        args.report.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
