"""Choose which frames of each video a person labels for cold label.

Three methods, all deterministic; the first two read only the frame manifest:

- ``uniform``: the AIGVA thesis (seed 003, section 4.3.1, Algorithm 1) samples K frames per video
  with a skip factor ``n_frames / K``; for 300 frames and K = 5 it returns the frames at
  positions 0, 60, 120, 180, 240. We do the same over the live (not dead) frames of the manifest,
  ordered by ``frame_number``.
- ``unique``: the thesis keeps a frame when the Hamming distance of its perceptual hash to the
  last kept frame's hash reaches a threshold (Algorithm 2). We compare with *every* kept frame
  (so a scene that returns is not labelled twice), then fit the result to K: more than K unique
  frames are thinned evenly, fewer are topped up with evenly spaced frames not yet chosen.
  ``phash`` is the manifest's 64-bit perceptual hash written as 16 hex digits.
- ``active``: uncertainty and diversity on a network's pooled features (one row per manifest
  row). Within each video, greedy k-center (Sener and Savarese, "Active Learning for
  Convolutional Neural Networks: A Core-Set Approach", ICLR 2018) on L2-normalised features:
  the first frame is the video's most typical one (nearest its mean feature), each next one
  maximises its cosine distance to the nearest frame already chosen. With a model's class
  probabilities, that distance is multiplied by ``0.5 + H`` (``H`` the entropy normalised to
  [0, 1]), so among equally new frames the ones the model is unsure of win: the idea of BADGE
  (Ash et al., ICLR 2020), whose gradient embeddings grow with uncertainty. Frames already
  labelled count towards K and steer the distances, so rounds of labelling add up.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from medvid.predict.errors import FrameSelectionError

#: Hamming distance (bits of a 64-bit pHash) at or above which two frames count as different.
#: imagehash's documentation treats distances up to about 10 as "the same picture"; ultrasound
#: clips of one scan plane differ by 4-12 bits frame to frame.
DEFAULT_HAMMING_THRESHOLD = 12

SELECTION_METHODS = ("uniform", "unique", "active")
#: Weight of certainty in the ``active`` score ``distance * (UNCERTAINTY_FLOOR + entropy)``.
UNCERTAINTY_FLOOR = 0.5


def evenly_spaced_positions(n: int, k: int) -> list[int]:
    """``k`` positions in ``range(n)`` with skip factor ``n / k``: ``floor(i * n / k)``.

    All ``n`` positions when ``k >= n``. For n=300, k=5: [0, 60, 120, 180, 240].
    """
    if k <= 0 or n <= 0:
        return []
    if k >= n:
        return list(range(n))
    return [(i * n) // k for i in range(k)]


def hamming_distance(phash_a: int, phash_b: int) -> int:
    """Number of differing bits between two 64-bit perceptual hashes."""
    return (phash_a ^ phash_b).bit_count()


def _parse_phash(value: object) -> int:
    try:
        text = str(value).strip()
        if len(text) != 16:
            raise ValueError(text)
        return int(text, 16)
    except ValueError:
        raise FrameSelectionError(f"phash {value!r} is not 16 hex digits") from None


def unique_positions(
    phashes: Sequence[str], k: int | None, hamming_threshold: int = DEFAULT_HAMMING_THRESHOLD
) -> list[int]:
    """Positions (into ``phashes``, in order) of up to ``k`` mutually different frames.

    Greedy pass in order: keep a frame when its Hamming distance to every kept frame is
    ``>= hamming_threshold``. With ``k=None`` all kept positions are returned (the thesis'
    variable-count behaviour). Otherwise more than ``k`` kept positions are thinned with
    :func:`evenly_spaced_positions`, and fewer are topped up with evenly spaced positions from
    the frames not kept, so exactly ``min(k, len(phashes))`` positions come back, sorted.
    Raises :class:`FrameSelectionError` for a hash that is not 16 hex digits.
    """
    hashes = [_parse_phash(h) for h in phashes]
    kept: list[int] = []
    for position, value in enumerate(hashes):
        if all(hamming_distance(value, hashes[j]) >= hamming_threshold for j in kept):
            kept.append(position)
    if k is None:
        return kept
    if len(kept) >= k:
        return [kept[i] for i in evenly_spaced_positions(len(kept), k)]
    rest = [p for p in range(len(hashes)) if p not in set(kept)]
    extra = [rest[i] for i in evenly_spaced_positions(len(rest), k - len(kept))]
    return sorted(kept + extra)


def active_positions(
    features: np.ndarray,
    k: int,
    probabilities: np.ndarray | None = None,
    chosen: Sequence[int] = (),
) -> list[int]:
    """Positions (sorted) of ``min(k, n)`` frames of one video by the ``active`` rule.

    ``features`` ``(n, D)``, ``probabilities`` ``(n, C)`` or ``None``, ``chosen`` positions
    already labelled (kept, and counted in ``k``). Ties go to the earliest position.
    """
    n = len(features)
    picked = [int(p) for p in chosen]
    if n == 0 or k <= len(picked):
        return sorted(picked)
    f = np.asarray(features, dtype=np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    weight = np.ones(n)
    if probabilities is not None:
        p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0)
        entropy = -(p * np.log(p)).sum(axis=1) / max(np.log(p.shape[1]), 1e-12)
        weight = UNCERTAINTY_FLOOR + entropy
    if picked:
        distance = (1.0 - f @ f[picked].T).min(axis=1)
    else:
        mean = f.mean(axis=0)
        first = int(np.argmax(f @ mean))
        picked.append(first)
        distance = 1.0 - f @ f[first]
    distance[picked] = -np.inf
    while len(picked) < min(k, n):
        best = int(np.argmax(distance * weight))
        picked.append(best)
        distance = np.minimum(distance, 1.0 - f @ f[best])
        distance[picked] = -np.inf
    return sorted(picked)


def select_frames(
    manifest: pd.DataFrame,
    k: int | None,
    method: str = "uniform",
    *,
    hamming_threshold: int = DEFAULT_HAMMING_THRESHOLD,
    features: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    already_labelled: Sequence[str] = (),
) -> pd.DataFrame:
    """Rows of ``manifest`` chosen for labelling: K per video (fewer if a video is shorter).

    ``manifest`` needs ``video_id`` and ``frame_number`` (plus ``phash`` for ``unique``); rows
    with a true ``is_dead`` column are never chosen. The result keeps the manifest's columns,
    sorted by ``(video_id, frame_number)`` with a fresh index. ``k=None`` is allowed for
    ``unique`` only (keep every unique frame).

    ``active`` needs ``features``, ``(len(manifest), D)`` pooled features of the manifest rows
    in manifest order (:func:`medvid.predict.infer.extract_outputs`), and takes optional
    ``probabilities`` ``(len(manifest), C)`` of the current model and the ``frame_id`` of
    frames ``already_labelled`` (kept and counted in K). Raises :class:`FrameSelectionError`
    for a bad method, K, manifest, or features of the wrong length.
    """
    if method not in SELECTION_METHODS:
        raise FrameSelectionError(
            f"unknown selection method {method!r}; use one of {', '.join(SELECTION_METHODS)}"
        )
    if k is None and method != "unique":
        raise FrameSelectionError("k=None (all unique frames) needs method='unique'")
    if k is not None and k < 1:
        raise FrameSelectionError(f"k must be >= 1 frames per video, got {k}")
    if method == "active":
        if features is None or len(features) != len(manifest):
            got = "none" if features is None else len(features)
            raise FrameSelectionError(
                f"active selection needs one feature row per manifest row ({len(manifest)}), "
                f"got {got}"
            )
        if probabilities is not None and len(probabilities) != len(manifest):
            raise FrameSelectionError("probabilities need one row per manifest row")
    needed = ["video_id", "frame_number"] + (["phash"] if method == "unique" else [])
    missing = [c for c in needed if c not in manifest.columns]
    if missing:
        raise FrameSelectionError(f"frame manifest lacks column(s): {', '.join(missing)}")
    rows = np.arange(len(manifest))
    live_mask = np.ones(len(manifest), dtype=bool)
    if "is_dead" in manifest.columns:
        live_mask = ~manifest["is_dead"].fillna(False).astype(bool).to_numpy()
    order = manifest.iloc[rows[live_mask]].assign(_row=rows[live_mask])
    live = order.sort_values(["video_id", "frame_number"], kind="stable")
    labelled = {str(f) for f in already_labelled}
    chosen: list[pd.DataFrame] = []
    for _, video in live.groupby("video_id", sort=True):
        if method == "uniform":
            assert k is not None
            positions = evenly_spaced_positions(len(video), k)
        elif method == "unique":
            positions = unique_positions(list(video["phash"]), k, hamming_threshold)
        else:
            assert k is not None and features is not None
            at = video["_row"].to_numpy()
            done = (
                np.flatnonzero(video["frame_id"].astype(str).isin(labelled).to_numpy())
                if labelled and "frame_id" in video.columns
                else []
            )
            positions = active_positions(
                features[at], k, None if probabilities is None else probabilities[at], done
            )
        chosen.append(video.iloc[positions].drop(columns="_row"))
    if not chosen:
        return manifest.iloc[0:0].reset_index(drop=True)
    return pd.concat(chosen).reset_index(drop=True)
