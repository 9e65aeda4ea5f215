"""medvid.cleaning.video_dedup on real clips: re-encodes and trimmed copies are near duplicates."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from medvid.cleaning import find_near_duplicate_videos, video_frame_hashes, video_near_duplicates
from medvid.frames import SamplingConfig, extract_frames
from medvid.frames.phash import phash_from_hex
from medvid.video.normalize import Clip
from medvid.video.probe import probe_video

CLIP = "covid19us_Reg_northumbria_1009_vid1.avi"  # 92 frames, lung ultrasound
UNRELATED = "itkpocus_clarius-ocular-short.mp4"  # 50 frames, ocular ultrasound


def _reencode(src: Path, dst: Path, *, crf: int, first: int = 0, last: int | None = None) -> Path:
    """x264 copy of frames ``first..last-1`` of ``src`` at another quality (PyAV)."""
    with av.open(str(src)) as source, av.open(str(dst), "w") as target:
        stream = source.streams.video[0]
        out = target.add_stream("libx264", rate=stream.average_rate or 25)
        out.width = stream.codec_context.width // 2 * 2
        out.height = stream.codec_context.height // 2 * 2
        out.pix_fmt = "yuv420p"
        out.options = {"crf": str(crf), "preset": "ultrafast"}
        for number, frame in enumerate(source.decode(stream)):
            if number < first or (last is not None and number >= last):
                continue
            picture = frame.reformat(width=out.width, height=out.height, format="yuv420p")
            picture.pts = None
            for packet in out.encode(picture):
                target.mux(packet)
        for packet in out.encode():
            target.mux(packet)
    return dst


@pytest.fixture(scope="module")
def hashes(videos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    work = tmp_path_factory.mktemp("video_dedup")
    clip = videos_dir / CLIP
    return {
        "original": video_frame_hashes(clip),
        "reencoded": video_frame_hashes(_reencode(clip, work / "crf30.mp4", crf=30)),
        "trimmed": video_frame_hashes(_reencode(clip, work / "cut.mp4", crf=23, first=30, last=75)),
        "unrelated": video_frame_hashes(videos_dir / UNRELATED),
    }


def test_a_reencoded_real_clip_is_a_near_duplicate_at_offset_zero(hashes) -> None:
    match = video_near_duplicates(hashes["original"], hashes["reencoded"])
    assert (match.offset, match.overlap) == (0, 92)
    assert match.score >= 0.95 and match.mean_distance <= 2.0
    assert match.is_near_duplicate()


def test_a_trimmed_copy_is_a_near_duplicate_at_its_cut(hashes) -> None:
    match = video_near_duplicates(hashes["original"], hashes["trimmed"])
    assert (match.offset, match.overlap) == (30, 45)
    assert match.score >= 0.95 and match.is_near_duplicate()
    reverse = video_near_duplicates(hashes["trimmed"], hashes["original"])
    assert (reverse.offset, reverse.matched) == (-30, match.matched)


def test_an_unrelated_clip_is_not_a_near_duplicate(hashes) -> None:
    match = video_near_duplicates(hashes["original"], hashes["unrelated"])
    assert match.matched == 0 and not match.is_near_duplicate()


def test_clips_of_two_patients_with_close_frames_are_not_near_duplicates(shared_data) -> None:
    # Single frames of these two patients' clips come within 2 bits of each other.
    lung = shared_data / "lung"
    first = video_frame_hashes(lung / "Reg_pat1Image_133327.mpeg")
    second = video_frame_hashes(lung / "Reg_pat3Image_135128.mpeg")
    closest = np.bitwise_count(first[:, None] ^ second[None, :]).min()
    assert closest <= 2
    match = video_near_duplicates(first, second)
    assert match.score < 0.2 and not match.is_near_duplicate()


def test_finding_among_many_videos_returns_only_the_copies(hashes) -> None:
    found = find_near_duplicate_videos(hashes)
    pairs = {(row.video_a, row.video_b): row.offset for row in found.itertuples()}
    assert pairs == {
        ("original", "reencoded"): 0,
        ("original", "trimmed"): 30,
        ("reencoded", "trimmed"): 30,
    }


def test_an_empty_sequence_matches_nothing(hashes) -> None:
    match = video_near_duplicates(hashes["original"], np.empty(0, dtype=np.uint64))
    assert (match.score, match.overlap, match.matched) == (0.0, 0, 0)


def test_frame_hashes_equal_the_frame_manifests_phash(videos_dir: Path, tmp_path: Path) -> None:
    clip_path = videos_dir / UNRELATED
    info = probe_video(clip_path)
    clip = Clip(0, clip_path, 0, info.frame_count, 0.0, info.avg_frame_rate)
    manifest = extract_frames(
        [clip],
        "v",
        tmp_path,
        sampling=SamplingConfig(strategy="all"),
        total_frames=info.frame_count,
    )
    expected = [phash_from_hex(text) for text in manifest.column("phash").to_pylist()]
    assert video_frame_hashes(clip_path).tolist() == expected
