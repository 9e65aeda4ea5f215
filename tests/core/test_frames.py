"""Frame sampling, pHash, quality flags and extraction on real clips."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import cv2
import imagehash
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from medvid.errors import CorruptMediaError
from medvid.frames.extract import FRAME_MANIFEST_SCHEMA, Redaction, extract_frames
from medvid.frames.phash import hamming, phash64, phash_hex
from medvid.frames.quality import QualityThresholds, frame_quality, is_still, small_gray
from medvid.frames.sampling import SamplingConfig, expected_frame_count, planned_frame_numbers
from medvid.ids import frame_id
from medvid.video.normalize import Clip, normalize_video
from medvid.video.probe import probe_video
from tests.core.conftest import MPEG, SONOSITE, decode_rgb, write_h264

VIDEO_ID = "0123456789abcdef"


@pytest.fixture(scope="module")
def h1n1_clips(h1n1_path: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    """The 123-frame H.264 clip normalized into 5 clips of <= 25 frames."""
    out = tmp_path_factory.mktemp("normalized")
    return normalize_video(
        h1n1_path, out, probe_video(h1n1_path), max_duration_s=2.0, clip_duration_s=1.0
    )


def _extract(clips: list[Clip], root: Path, **sampling) -> pa.Table:
    total = sum(c.frame_count for c in clips)
    return extract_frames(
        clips, VIDEO_ID, root, sampling=SamplingConfig(**sampling), total_frames=total
    )


# --- sampling ---------------------------------------------------------------------------------


def test_all_keeps_every_frame() -> None:
    assert planned_frame_numbers(SamplingConfig("all"), 5, 25).tolist() == [0, 1, 2, 3, 4]


def test_every_n_keeps_multiples_of_n() -> None:
    numbers = planned_frame_numbers(SamplingConfig("every_n", every_n=10), 92, 22.2)
    assert numbers.tolist() == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]


def test_fps_picks_the_frame_nearest_each_sample_time() -> None:
    # 92 frames at 11500/517 fps (4.136 s); samples every 0.5 s: round(t * 22.2437).
    config = SamplingConfig("fps", target_fps=2.0)
    numbers = planned_frame_numbers(config, 92, Fraction(11500, 517))
    assert numbers.tolist() == [0, 11, 22, 33, 44, 56, 67, 78, 89]


def test_uniform_k_spreads_k_frames_over_the_video() -> None:
    numbers = planned_frame_numbers(SamplingConfig("uniform_k", uniform_k=5), 100, 25)
    assert numbers.tolist() == [0, 25, 50, 74, 99]


def test_uniform_k_at_least_the_frame_count_keeps_all() -> None:
    assert planned_frame_numbers(SamplingConfig("uniform_k", uniform_k=16), 7, 25).size == 7


def test_unique_is_decided_while_decoding() -> None:
    assert planned_frame_numbers(SamplingConfig("unique"), 100, 25) is None
    assert expected_frame_count(SamplingConfig("unique"), 100, 25) is None
    assert expected_frame_count(SamplingConfig("fps", target_fps=1.0), 123, 25) == 5


def test_unknown_strategy_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown sampling strategy"):
        SamplingConfig("random")  # type: ignore[arg-type]


# --- pHash --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_frames(videos_dir: Path) -> list[np.ndarray]:
    """48 RGB frames from four different real clips."""
    names = [MPEG, SONOSITE, "covid19us_Reg_northumbria_1009_vid1.avi", "rvimlab_endo.mp4"]
    return [rgb for name in names for rgb in decode_rgb(videos_dir / name, limit=12)]


def test_phash_is_close_to_imagehash_on_real_frames(real_frames: list[np.ndarray]) -> None:
    distances = [
        hamming(phash64(rgb), int(str(imagehash.phash(Image.fromarray(rgb))), 16))
        for rgb in real_frames
    ]
    # Measured on these 48 frames: mean 0.79 bits, max 2 (only the 32x32 resize filter differs).
    assert np.mean(distances) <= 1.5
    assert max(distances) <= 4


def test_phash_of_the_small_gray_copy_matches_the_full_frame(
    real_frames: list[np.ndarray],
) -> None:
    distances = [
        hamming(phash64(rgb), phash64(small_gray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))))
        for rgb in real_frames
    ]
    assert np.mean(distances) <= 1.0  # measured: 0.17


def test_phash_hex_is_16_digits_like_imagehash() -> None:
    assert phash_hex(0xF) == "000000000000000f"
    assert hamming(0b1011, 0b0001) == 2


# --- quality ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sharp_gray(videos_dir: Path) -> np.ndarray:
    rgb = decode_rgb(videos_dir / MPEG, limit=1)[0]
    return small_gray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


@pytest.mark.parametrize(("value", "reason"), [(0, "black"), (255, "blank"), (128, "uniform")])
def test_flat_frames_are_dead(value: int, reason: str) -> None:
    result = frame_quality(np.full((96, 128), value, np.uint8), 0.0, QualityThresholds())
    assert (result.is_dead, result.dead_reason) == (True, reason)


def test_a_frame_identical_to_the_previous_one_is_still(sharp_gray: np.ndarray) -> None:
    assert is_still(sharp_gray, sharp_gray.copy())
    assert not is_still(sharp_gray, None)
    assert not is_still(sharp_gray, np.roll(sharp_gray, 7, axis=1))


def test_a_picture_still_for_half_a_second_is_frozen(sharp_gray: np.ndarray) -> None:
    assert frame_quality(sharp_gray, 0.5, QualityThresholds()).dead_reason == "frozen"


def test_one_repeated_frame_is_not_frozen(sharp_gray: np.ndarray) -> None:
    # a clip stored at 25 fps holding 12.5 fps of content repeats every other frame
    assert not frame_quality(sharp_gray, 1 / 25, QualityThresholds()).is_dead


def test_a_real_ultrasound_frame_is_neither_dead_nor_disturbed(sharp_gray: np.ndarray) -> None:
    result = frame_quality(sharp_gray, 0.0, QualityThresholds())
    assert (result.is_dead, result.dead_reason, result.is_disturbed) == (False, "", False)
    assert result.laplacian_var > 100


def test_a_heavily_blurred_frame_is_disturbed(sharp_gray: np.ndarray) -> None:
    blurred = cv2.GaussianBlur(sharp_gray, (0, 0), sigmaX=2)
    result = frame_quality(blurred, 0.0, QualityThresholds())
    assert result.is_disturbed and not result.is_dead


def test_a_decoder_corrupt_frame_is_disturbed(sharp_gray: np.ndarray) -> None:
    assert frame_quality(sharp_gray, 0.0, decoder_corrupt=True).is_disturbed


# --- extraction ---------------------------------------------------------------------------------


def test_manifest_has_the_schema_and_one_row_per_frame(
    h1n1_clips: list[Clip], tmp_path: Path
) -> None:
    table = _extract(h1n1_clips, tmp_path, strategy="all")
    assert table.schema == FRAME_MANIFEST_SCHEMA
    assert table.column("frame_number").to_pylist() == list(range(123))
    assert table.column("clip_index").to_pylist() == [i // 25 for i in range(123)]
    row = table.slice(30, 1).to_pylist()[0]
    assert row["frame_id"] == frame_id(VIDEO_ID, 30) == f"{VIDEO_ID}-0000030"
    assert row["frame_relative_path"] == f"video_{VIDEO_ID}/frame_{VIDEO_ID}-0000030.jpg"
    assert (row["width"], row["height"]) == (270, 270)
    image = cv2.imread(str(tmp_path / row["frame_relative_path"]))
    assert image.shape == (270, 270, 3)
    assert len(list((tmp_path / f"video_{VIDEO_ID}").iterdir())) == 123


def test_frame_timestamps_agree_with_frame_number_over_fps(
    h1n1_clips: list[Clip], tmp_path: Path
) -> None:
    table = _extract(h1n1_clips, tmp_path, strategy="all")
    numbers = np.array(table.column("frame_number").to_pylist())
    timestamps = np.array(table.column("frame_timestamp").to_pylist())
    assert np.abs(timestamps - numbers / 25.0).max() < 0.5 / 25.0


def test_mpeg_timestamps_start_at_zero_despite_its_start_pts(
    videos_dir: Path, tmp_path: Path
) -> None:
    info = probe_video(videos_dir / MPEG)  # start_pts 48600 in 1/90000 s
    clip = Clip(0, videos_dir / MPEG, 0, info.frame_count, 0.0, info.avg_frame_rate)
    table = _extract([clip], tmp_path, strategy="uniform_k", uniform_k=3)
    assert table.column("frame_number").to_pylist() == [0, 140, 279]
    assert table.column("pts").to_pylist()[0] == 48600
    assert table.column("time_base").to_pylist()[0] == "1/90000"
    assert table.column("frame_timestamp").to_pylist() == pytest.approx([0.0, 5.6, 11.16])


@pytest.mark.parametrize(
    "sampling",
    [
        {"strategy": "every_n", "every_n": 10},
        {"strategy": "fps", "target_fps": 3.0},
        {"strategy": "uniform_k", "uniform_k": 7},
    ],
)
def test_extraction_keeps_exactly_the_planned_frames(
    h1n1_clips: list[Clip], tmp_path: Path, sampling: dict
) -> None:
    table = _extract(h1n1_clips, tmp_path, **sampling)
    planned = planned_frame_numbers(SamplingConfig(**sampling), 123, Fraction(25))
    assert table.column("frame_number").to_pylist() == planned.tolist()
    assert len(list((tmp_path / f"video_{VIDEO_ID}").iterdir())) == planned.size


def test_unique_keeps_fewer_frames_each_far_from_the_last_kept(
    h1n1_clips: list[Clip], tmp_path: Path
) -> None:
    table = _extract(h1n1_clips, tmp_path, strategy="unique", unique_hamming=10)
    hashes = [int(h, 16) for h in table.column("phash").to_pylist()]
    assert table.column("frame_number").to_pylist()[0] == 0
    assert 1 < len(hashes) < 123
    assert all(hamming(a, b) >= 10 for a, b in zip(hashes, hashes[1:], strict=False))


def test_black_frames_in_a_real_video_are_dead_black(h1n1_path: Path, tmp_path: Path) -> None:
    real = decode_rgb(h1n1_path, limit=4)
    black = [np.zeros_like(real[0])] * 3
    video = write_h264(tmp_path / "black_then_real.mp4", black + real, Fraction(25))
    clip = Clip(0, video, 0, 7, 0.0, Fraction(25))
    table = _extract([clip], tmp_path / "frames", strategy="all")
    assert table.column("dead_reason").to_pylist()[:3] == ["black", "black", "black"]
    assert table.column("is_dead").to_pylist()[3] is False
    assert max(table.column("mean_intensity").to_pylist()[:3]) < 1.0  # TV-range 16 -> 0


def test_rerunning_extraction_writes_identical_files_and_table(
    h1n1_clips: list[Clip], tmp_path: Path
) -> None:
    first = _extract(h1n1_clips, tmp_path, strategy="every_n", every_n=5)
    folder = tmp_path / f"video_{VIDEO_ID}"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    second = _extract(h1n1_clips, tmp_path, strategy="every_n", every_n=5)
    assert second.equals(first)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_rerunning_with_sparser_sampling_removes_stale_frames(
    h1n1_clips: list[Clip], tmp_path: Path
) -> None:
    _extract(h1n1_clips, tmp_path, strategy="every_n", every_n=5)
    table = _extract(h1n1_clips, tmp_path, strategy="every_n", every_n=50)
    names = sorted(p.name for p in (tmp_path / f"video_{VIDEO_ID}").iterdir())
    assert names == sorted(Path(p).name for p in table.column("frame_relative_path").to_pylist())
    assert len(names) == 3


def test_png_output_is_lossless(h1n1_clips: list[Clip], tmp_path: Path) -> None:
    clip = h1n1_clips[0]
    table = extract_frames(
        [clip],
        VIDEO_ID,
        tmp_path,
        sampling=SamplingConfig("uniform_k", uniform_k=1),
        image_format="png",
        total_frames=clip.frame_count,
    )
    path = tmp_path / table.column("frame_relative_path").to_pylist()[0]
    assert path.suffix == ".png"
    decoded = cv2.cvtColor(decode_rgb(clip.path, limit=1)[0], cv2.COLOR_RGB2BGR)
    assert np.abs(cv2.imread(str(path)).astype(int) - decoded.astype(int)).max() <= 2


def test_progress_is_reported_for_every_decoded_frame(
    h1n1_clips: list[Clip], tmp_path: Path
) -> None:
    calls: list[tuple[int, int]] = []
    extract_frames(
        h1n1_clips,
        VIDEO_ID,
        tmp_path,
        sampling=SamplingConfig("every_n"),
        total_frames=123,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(i, 123) for i in range(1, 124)]


def test_clips_not_covering_total_frames_are_rejected(
    h1n1_clips: list[Clip], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="clips hold 123 frames but total_frames is 124"):
        extract_frames(
            h1n1_clips, VIDEO_ID, tmp_path, sampling=SamplingConfig("all"), total_frames=124
        )


def test_a_picture_held_for_a_second_is_frozen_after_half_a_second(
    h1n1_path: Path, tmp_path: Path
) -> None:
    real = decode_rgb(h1n1_path, limit=30)
    held = [real[0]] * 25 + real[1:6]  # one picture held 1 s at 25 fps, then motion
    video = write_h264(tmp_path / "held.mp4", held, Fraction(25))
    clip = Clip(0, video, 0, len(held), 0.0, Fraction(25))
    table = _extract([clip], tmp_path / "frames", strategy="every_n", every_n=3)
    frozen = {
        n
        for n, reason in zip(
            table.column("frame_number").to_pylist(),
            table.column("dead_reason").to_pylist(),
            strict=True,
        )
        if reason == "frozen"
    }
    # still since frame 0: frame k has been still k/25 s; frozen from 0.5 s (frame 13) to 24
    assert frozen == {15, 18, 21, 24}


def test_a_clip_repeating_every_other_frame_has_no_frozen_frames(
    h1n1_path: Path, tmp_path: Path
) -> None:
    real = decode_rgb(h1n1_path, limit=15)
    doubled = [frame for frame in real for _ in range(2)]  # 12.5 fps content stored at 25 fps
    video = write_h264(tmp_path / "doubled.mp4", doubled, Fraction(25))
    clip = Clip(0, video, 0, len(doubled), 0.0, Fraction(25))
    table = _extract([clip], tmp_path / "frames", strategy="all")
    assert "frozen" not in table.column("dead_reason").to_pylist()


# --- redaction, damaged frames, atomic folder ------------------------------------------------


def test_redaction_spans_mask_the_frames_of_their_original_frame_numbers(
    h1n1_clips: list[Clip], tmp_path: Path
) -> None:
    # frames 20..30 straddle the boundary of the first two 25-frame clips
    box = (0, 0, 128, 64)  # JPEG-block aligned: exactly black inside
    table = extract_frames(
        h1n1_clips,
        VIDEO_ID,
        tmp_path,
        sampling=SamplingConfig("every_n", every_n=5),
        total_frames=123,
        redaction=Redaction(spans=((box, 20, 30),)),
    )
    masked = {}
    for number, rel in zip(
        table.column("frame_number").to_pylist(),
        table.column("frame_relative_path").to_pylist(),
        strict=True,
    ):
        image = cv2.imread(str(tmp_path / rel))
        masked[number] = int(image[:62, :126].max()) == 0
    assert [n for n, black in masked.items() if black] == [20, 25, 30]


def test_measurements_are_taken_before_redaction(h1n1_clips: list[Clip], tmp_path: Path):
    clip = h1n1_clips[0]
    plain = _extract([clip], tmp_path / "plain", strategy="all")
    redacted = extract_frames(
        [clip],
        VIDEO_ID,
        tmp_path / "redacted",
        sampling=SamplingConfig("all"),
        total_frames=clip.frame_count,
        redaction=Redaction(boxes=((0, 0, 270, 135),)),
    )
    for column in ("phash", "mean_intensity", "laplacian_var", "is_dead"):
        assert redacted.column(column).equals(plain.column(column))


def test_frames_decoded_from_damaged_data_are_disturbed(h1n1_clips: list[Clip], tmp_path: Path):
    clip = replace(h1n1_clips[0], damaged_spans=((5, 9), (20, 20)))
    table = _extract([clip], tmp_path, strategy="all")
    disturbed = [n for n, d in enumerate(table.column("is_disturbed").to_pylist()) if d]
    assert disturbed == [5, 6, 7, 8, 9, 20]


def test_a_failed_extraction_leaves_the_previous_frames_in_place(
    h1n1_clips: list[Clip], tmp_path: Path
) -> None:
    _extract(h1n1_clips, tmp_path, strategy="every_n", every_n=5)
    folder = tmp_path / f"video_{VIDEO_ID}"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    liar = replace(h1n1_clips[0], frame_count=30)  # the file holds 25
    with pytest.raises(CorruptMediaError, match="decoded 25 frames, expected 30"):
        extract_frames([liar], VIDEO_ID, tmp_path, sampling=SamplingConfig("all"), total_frames=30)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"video_{VIDEO_ID}"]


def test_frames_of_a_damaged_mp4_are_extracted_and_the_damaged_ones_flagged(
    damaged_h1n1: Path, tmp_path: Path
) -> None:
    clips = normalize_video(damaged_h1n1, tmp_path / "normalized", probe_video(damaged_h1n1))
    table = _extract(clips, tmp_path / "frames", strategy="all")
    assert table.column("frame_number").to_pylist() == list(range(112))
    disturbed = table.column("is_disturbed").to_pylist()
    assert [n for n, d in enumerate(disturbed) if d] == list(range(52, 112))
