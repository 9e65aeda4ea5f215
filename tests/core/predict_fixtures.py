"""Synthetic frames for the predict tests: small JPEGs of two classes a tiny network learns in
a second, and that survive the ultrasound augmentation (flips, small rotations, gain, speckle,
desaturation): ``red`` frames have horizontal stripes and a red tint, ``blue`` frames vertical
stripes and a blue tint."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medvid.ids import frame_id


def write_videos(
    root: Path, videos: int = 6, frames: int = 8, size: int = 40, seed: int = 0
) -> pd.DataFrame:
    """Write ``videos x frames`` JPEGs under ``root``; even videos ``red``, odd ``blue``.

    Returns the frame manifest (``frame_id``, ``video_id``, ``frame_number``,
    ``frame_timestamp``, ``frame_relative_path``, ``is_dead``, ``phash``) plus ``label_name``
    and ``patient_id`` (videos 2i and 2i+1 belong to patient ``p<i>``).
    """
    rng = np.random.default_rng(seed)
    rows = []
    stripes = (np.arange(size) // 4 % 2 * 90).astype(np.uint8)
    for v in range(videos):
        video_id = f"{v:016x}"
        label = "red" if v % 2 == 0 else "blue"
        for number in range(frames):
            bgr = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            pattern = stripes[:, None] if label == "red" else stripes[None, :]
            bgr += np.broadcast_to(pattern, (size, size))[..., None]
            bgr[..., 2 if label == "red" else 0] += 80
            fid = frame_id(video_id, number)
            rel = f"video_{video_id}/frame_{fid}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / rel), bgr)
            rows.append(
                {
                    "frame_id": fid,
                    "video_id": video_id,
                    "frame_number": number,
                    "frame_timestamp": number / 25.0,
                    "frame_relative_path": rel,
                    "is_dead": False,
                    "phash": f"{(v * 7919 + number * 104729) % 2**64:016x}",
                    "label_name": label,
                    "patient_id": f"p{v // 2}",
                }
            )
    return pd.DataFrame(rows)
