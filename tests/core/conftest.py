"""Fixtures for the video and frames core tests: the small real clips and a tiny H.264 writer."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

AVI = "covid19us_Reg_northumbria_1009_vid1.avi"  # MPEG-4 part 2, 478x478, 92 frames
MPEG = "covid19us_Reg_pat1Image_132943.mpeg"  # MPEG-2 PS, 370x370, 25 fps, 280 frames
MOV = "covid19us_Cov_convex_volpecelli_sonographic_v1.mov"  # H.264 in QuickTime, 403 frames
H1N1 = "covid19us_Vir_whitelung_h1n1.mp4"  # H.264 MP4 with audio, 270x270, 25 fps, 123 frames
SONOSITE = "itkpocus_sonosite-anon-eye1-video.mp4"  # H.264 MP4, 960x720, 25 fps, 100 frames


@pytest.fixture(scope="session")
def h1n1_path(videos_dir: Path) -> Path:
    return videos_dir / H1N1


@pytest.fixture(scope="session")
def avi_path(videos_dir: Path) -> Path:
    return videos_dir / AVI


@pytest.fixture(scope="session")
def damaged_h1n1(videos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 123-frame H.264 MP4 with a tenth of its mdat, in the middle, overwritten: 112 frames
    decode, 11 packets are rejected, frames 52..111 decode from damaged references."""
    return damage_mdat_middle(
        videos_dir / H1N1, tmp_path_factory.mktemp("damaged") / "damaged_h1n1.mp4"
    )


def decode_rgb(path: Path, limit: int | None = None) -> list[np.ndarray]:
    """The first ``limit`` frames of a video as ``(H, W, 3) uint8`` RGB arrays."""
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if limit is not None and len(frames) >= limit:
                break
    return frames


def write_h264(path: Path, frames_rgb: Sequence[np.ndarray], fps: Fraction) -> Path:
    """Encode ``(H, W, 3) uint8`` RGB frames (even sizes) as an H.264/yuv420p MP4, pts = i."""
    height, width = frames_rgb[0].shape[:2]
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = 1 / fps
        for index, rgb in enumerate(frames_rgb):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def damage_mdat_middle(src: Path, dst: Path, fraction: float = 0.1, seed: int = 0) -> Path:
    """Copy an MP4 to ``dst`` with ``fraction`` of its ``mdat`` payload, centred in the middle,
    overwritten by seeded random bytes: a file whose container is intact but whose middle
    packets are damaged (a bad sector, an interrupted copy patched over)."""
    data = bytearray(src.read_bytes())
    box = data.find(b"mdat")
    size = int.from_bytes(data[box - 4 : box], "big")  # 32-bit box size, header included
    payload_start, payload_size = box + 4, size - 8
    block = int(payload_size * fraction)
    start = payload_start + (payload_size - block) // 2
    noise = np.random.default_rng(seed).integers(0, 256, block, dtype=np.uint8).tobytes()
    data[start : start + block] = noise
    dst.write_bytes(bytes(data))
    return dst
