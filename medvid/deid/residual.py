"""The residual check of a video's written frames: OCR of frames after redaction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medvid.deid.phi import PhiValues
from medvid.deid.pixels import residual_phi
from medvid.images import read_rgb
from medvid.ocr.engines import OcrEngine


def residual_findings(
    engine: OcrEngine,
    frames_root: Path,
    manifest: pd.DataFrame,
    n_frames: int,
    phi: PhiValues | None,
) -> tuple[list[str], int]:
    """OCR ``n_frames`` written frames (evenly spaced, live frames first) again; returns the
    findings (``"frame <n>: <what>"``, never the PHI itself) and how many frames were read."""
    live = manifest[~manifest["is_dead"]] if len(manifest) else manifest
    pool = live if len(live) else manifest
    if not len(pool):
        return [], 0
    picks = np.unique(np.linspace(0, len(pool) - 1, min(n_frames, len(pool))).round().astype(int))
    findings: list[str] = []
    for index in picks:
        frame = pool.iloc[int(index)]
        image = read_rgb(frames_root / frame["frame_relative_path"])
        findings += [
            f"frame {frame['frame_number']}: {f}" for f in residual_phi(image, engine, phi)
        ]
    return findings, len(picks)
