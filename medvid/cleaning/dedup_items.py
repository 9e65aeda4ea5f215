"""Items for duplicate search: one row per image, from a frame manifest or a decoded still.

An *item* is one image: an extracted frame (``item_id`` = ``frame_id``, ``source_id`` =
``video_id``) or a DICOM still (``item_id`` = its image id, its own source). Columns:

- ``item_id`` (str, unique), ``phash`` (uint64 or 16 hex digits,
  :func:`medvid.frames.phash.phash64`), ``pixel_digest`` (str or null, :func:`pixel_digest`):
  what grouping uses (:mod:`medvid.cleaning.dedup`);
- ``source_id``, ``patient_id``, ``lossless`` (bool), ``pixel_count`` (int): what choosing
  representatives and checking patients use (:mod:`medvid.cleaning.dedup_policy`).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa

from medvid.cleaning.hash_index import DuplicateInputError, as_hashes
from medvid.frames.phash import phash64

ITEM_COLUMNS = (
    "item_id",
    "phash",
    "pixel_digest",
    "source_id",
    "patient_id",
    "lossless",
    "pixel_count",
)
"""Columns of :func:`frame_items` and :func:`image_item` rows."""

# DICOM PS3.5 section 8 and Annex A: transfer syntaxes whose encoding is lossless.
LOSSLESS_TRANSFER_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
        "1.2.840.10008.1.2.5",  # RLE Lossless
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless, First-Order Prediction (Process 14 SV1)
        "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 (Lossless Only)
        "1.2.840.10008.1.2.4.201",  # HTJ2K (Lossless Only)
        "1.2.840.10008.1.2.4.202",  # HTJ2K with RPCL Options (Lossless Only)
    }
)


def pixel_digest(image: np.ndarray) -> str:
    """Exact-duplicate key of decoded pixels: sha256 (64 hex digits) of shape, dtype and bytes.

    The same pixels give the same key whatever file they came from (PNG, RLE or JPEG-lossless
    DICOM, uncompressed DICOM in either byte order). Normalized first: a trailing channel axis
    of 1 is dropped, and a 3-channel image whose channels are all equal counts as its single
    channel, so a grayscale picture stored as MONOCHROME2 or as RGB gets one key. Values are
    hashed little-endian.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array of any numeric dtype, e.g. ``(H, W, 3) uint8``
            RGB from :func:`medvid.dicom.read_frame` or :func:`medvid.images.read_rgb`.

    Raises:
        ValueError: not a 2-D or 3-D numeric array.
    """
    array = np.asarray(image)
    if array.ndim not in (2, 3) or array.dtype.kind not in "uif" or array.size == 0:
        raise ValueError(f"expected a non-empty (H, W[, C]) numeric image, got {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] == 3 and _channels_equal(array):
        array = array[:, :, 0]
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    digest = hashlib.sha256(f"{array.shape}|{array.dtype.str}|".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _channels_equal(array: np.ndarray) -> bool:
    return bool(np.array_equal(array[:, :, 0], array[:, :, 1])) and bool(
        np.array_equal(array[:, :, 0], array[:, :, 2])
    )


def normalize_items(items: pd.DataFrame) -> pd.DataFrame:
    """``item_id`` (str), ``phash`` (uint64), ``pixel_digest`` (str or None), sorted by id.

    ``items`` needs ``item_id`` and ``phash`` (16 hex digits as in the frame manifests, or
    integers); ``pixel_digest`` is optional (null: no exact key).

    Raises:
        DuplicateInputError: a missing column, an empty or repeated id, a malformed hash.
    """
    missing = [c for c in ("item_id", "phash") if c not in items.columns]
    if missing:
        raise DuplicateInputError(f"items lack column(s): {', '.join(missing)}")
    ids = items["item_id"].astype(str).to_numpy(dtype=object)
    if (ids == "").any():
        raise DuplicateInputError("an item id is empty")
    hashes = as_hashes(items["phash"].to_numpy())
    if "pixel_digest" in items.columns:
        digests = [
            None
            if d is None or d is pd.NA or (isinstance(d, float) and d != d) or d == ""
            else str(d)
            for d in items["pixel_digest"].tolist()
        ]
    else:
        digests = [None] * len(ids)
    table = pd.DataFrame(
        {
            "item_id": pd.Series(ids, dtype=object),
            "phash": hashes,
            "pixel_digest": pd.Series(digests, dtype=object),
        }
    )
    table = table.sort_values("item_id", kind="stable", ignore_index=True)
    repeated = table["item_id"][table["item_id"].duplicated()]
    if len(repeated):
        raise DuplicateInputError(f"item id {repeated.iloc[0]!r} is listed twice")
    return table


def is_lossless_dicom(transfer_syntax_uid: str, lossy_image_compression: object = None) -> bool:
    """Whether a DICOM image's pixels never went through lossy compression.

    Lossy Image Compression (0028,2110) ``"01"`` means the image was lossy-compressed at some
    point, even if it is stored uncompressed now (PS3.3 C.7.6.1.1.5); otherwise a transfer
    syntax in :data:`LOSSLESS_TRANSFER_SYNTAXES` is lossless, and any other (JPEG baseline,
    JPEG 2000 that may be lossy, MPEG) counts as lossy unless the tag says ``"00"``.
    """
    flag = str(lossy_image_compression).strip() if lossy_image_compression is not None else ""
    if flag == "01":
        return False
    return str(transfer_syntax_uid).strip() in LOSSLESS_TRANSFER_SYNTAXES or flag == "00"


def image_item(
    item_id: str,
    image: np.ndarray,
    *,
    lossless: bool,
    source_id: str | None = None,
    patient_id: str | None = None,
) -> dict[str, object]:
    """One still image as an item row (:data:`ITEM_COLUMNS`).

    Args:
        item_id: the image's id (e.g. the still's pseudonymous image id).
        image: decoded pixels, ``(H, W, 3) uint8`` RGB (:func:`medvid.dicom.read_frame`) or
            ``(H, W) uint8``.
        lossless: whether the pixels are as acquired (:func:`is_lossless_dicom`).
        source_id: what the image belongs to (default: itself).
        patient_id: pseudonymous patient id, None when unknown.
    """
    return {
        "item_id": str(item_id),
        "phash": np.uint64(phash64(image)),
        "pixel_digest": pixel_digest(image),
        "source_id": source_id if source_id is not None else str(item_id),
        "patient_id": patient_id,
        "lossless": bool(lossless),
        "pixel_count": int(image.shape[0]) * int(image.shape[1]),
    }


def frame_items(
    manifest: pa.Table | pd.DataFrame,
    *,
    patient_id: str | None = None,
    include_dead: bool = False,
) -> pd.DataFrame:
    """The frames of a frame manifest (:data:`medvid.frames.FRAME_MANIFEST_SCHEMA`) as items.

    ``item_id`` = ``frame_id``, ``phash`` from the manifest, no ``pixel_digest`` (the manifest
    holds none; equal frames have equal pHashes), ``source_id`` = ``video_id``, ``lossless`` =
    written as PNG, ``pixel_count`` = ``width * height``. Dead frames (``is_dead``) are left
    out unless ``include_dead``: every black frame has the same pHash, and would join every
    video that has one into one group.

    Raises:
        DuplicateInputError: a column is missing or a ``phash`` is not 16 hex digits.
    """
    frame = manifest.to_pandas() if isinstance(manifest, pa.Table) else manifest
    needed = ["frame_id", "video_id", "phash", "frame_relative_path", "width", "height"]
    needed += [] if include_dead else ["is_dead"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DuplicateInputError(f"frame manifest lacks column(s): {', '.join(missing)}")
    if not include_dead:
        frame = frame[~frame["is_dead"].astype(bool)]
    return pd.DataFrame(
        {
            "item_id": frame["frame_id"].astype(str).to_numpy(dtype=object),
            "phash": as_hashes(frame["phash"].tolist()),
            "pixel_digest": [None] * len(frame),
            "source_id": frame["video_id"].astype(str).to_numpy(dtype=object),
            "patient_id": [patient_id] * len(frame),
            "lossless": frame["frame_relative_path"].astype(str).str.lower().str.endswith(".png"),
            "pixel_count": frame["width"].astype(np.int64) * frame["height"].astype(np.int64),
        }
    ).reset_index(drop=True)
