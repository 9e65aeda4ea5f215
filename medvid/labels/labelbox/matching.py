"""Matching Labelbox data rows to medvid's frames (global keys, external ids, video names)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

from medvid.labels.labelbox.common import _FRAME_COLUMNS, _FRAME_ID_RE

# --------------------------------------------------------------------------------------------
# Frame manifest lookups


@dataclass(frozen=True)
class _FrameRef:
    frame_id: str
    video_id: str
    frame_number: int
    frame_timestamp: float | None  # None when there is no manifest


class _Manifest:
    """Frame-manifest lookups: frame id -> frame, (video, frame number) -> frame."""

    def __init__(self, frames: pd.DataFrame | None) -> None:
        self.present = frames is not None
        self.by_frame_id: dict[str, _FrameRef] = {}
        self.by_video: dict[str, dict[int, _FrameRef]] = {}
        if frames is None:
            return
        missing = [name for name in _FRAME_COLUMNS if name not in frames.columns]
        if missing:
            raise ValueError(f"frame manifest lacks column(s): {', '.join(missing)}")
        for frame_id, video_id, frame_number, stamp in frames.loc[
            :, list(_FRAME_COLUMNS)
        ].itertuples(index=False):
            ref = _FrameRef(str(frame_id), str(video_id), int(frame_number), float(stamp))
            self.by_frame_id[ref.frame_id] = ref
            self.by_video.setdefault(ref.video_id, {})[ref.frame_number] = ref

    def image_frame(self, keys: Iterable[str | None]) -> _FrameRef | None:
        for key in keys:
            if not key:
                continue
            if key in self.by_frame_id:
                return self.by_frame_id[key]
            if not self.present:
                match = _FRAME_ID_RE.match(key)
                if match:
                    return _FrameRef(key, match["video_id"], int(match["frame_number"]), None)
        return None

    def video(self, keys: Iterable[str | None]) -> str | None:
        for key in keys:
            if key and key in self.by_video:
                return key
        return None


@dataclass(frozen=True)
class _DataRow:
    data_row_id: str
    global_key: str | None
    external_id: str | None

    def keys(self, aliases: Mapping[str, str]) -> list[str | None]:
        names = [self.global_key, self.external_id]
        return [
            *names,
            *(aliases.get(name) for name in names if name),
            aliases.get(self.data_row_id),
        ]

    def mask_folder(self, frame: _FrameRef | None) -> str:
        if frame is not None:
            return frame.frame_id
        return self.data_row_id
