"""Probe and normalize on real clips from ../shared/data/videos (see its MANIFEST.tsv)."""

from __future__ import annotations

import struct
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from medvid.errors import CorruptMediaError, EmptyFileError, UnsupportedMediaError
from medvid.video.decode import (
    DecodeStats,
    _frames_by_seeking,
    _frames_decoding_forward,
    frames_at_times,
    iter_video_frames,
    open_video,
)
from medvid.video.normalize import decode_summary, normalize_video, plan_clips
from medvid.video.probe import MP4_FORMAT_NAME, needs_transcode, probe_video
from tests.core.conftest import AVI, H1N1, MOV, MPEG, SONOSITE, decode_rgb

# name, container, codec, width, height, avg_frame_rate, frame_count, frame_count_source,
# duration_s, start_pts, has_audio: measured with PyAV/ffprobe, consistent with MANIFEST.tsv.
PROBED = [
    (AVI, "avi", "mpeg4", 478, 478, Fraction(11500, 517), 92, "header", 4.136, 0, False),
    (MPEG, "mpeg", "mpeg2video", 370, 370, Fraction(25), 280, "counted", 11.2, 48600, False),
    (MOV, MP4_FORMAT_NAME, "h264", 450, 450, Fraction(39), 403, "header", 403 / 39, 0, False),
    (H1N1, MP4_FORMAT_NAME, "h264", 270, 270, Fraction(25), 123, "header", 4.92, 0, True),
    (SONOSITE, MP4_FORMAT_NAME, "h264", 960, 720, Fraction(25), 100, "header", 4.0, 0, False),
]


@pytest.mark.parametrize(
    (
        "name",
        "container",
        "codec",
        "width",
        "height",
        "fps",
        "frames",
        "source",
        "duration_s",
        "start_pts",
        "has_audio",
    ),
    PROBED,
)
def test_probe_reports_the_real_clip_values(
    videos_dir: Path,
    name,
    container,
    codec,
    width,
    height,
    fps,
    frames,
    source,
    duration_s,
    start_pts,
    has_audio,
) -> None:
    info = probe_video(videos_dir / name)
    assert (info.container, info.codec, info.pix_fmt) == (container, codec, "yuv420p")
    assert (info.width, info.height) == (width, height)
    assert info.avg_frame_rate == fps
    assert (info.frame_count, info.frame_count_source) == (frames, source)
    assert info.duration_s == pytest.approx(duration_s, abs=1e-6)
    assert info.start_pts == start_pts
    assert info.has_audio is has_audio
    assert info.rotation == 0


def test_as_row_writes_fractions_as_num_den_and_adds_fps(avi_path: Path) -> None:
    row = probe_video(avi_path).as_row()
    assert row["avg_frame_rate"] == "11500/517"
    assert row["time_base"] == "517/11500"
    assert row["fps"] == pytest.approx(22.2437137)


def test_a_lying_header_frame_count_is_replaced_by_the_counted_one(
    avi_path: Path, tmp_path: Path
) -> None:
    data = bytearray(avi_path.read_bytes())
    # AVI main header dwTotalFrames and video stream header dwLength both claim 200 frames.
    struct.pack_into("<I", data, data.find(b"avih") + 24, 200)
    struct.pack_into("<I", data, data.find(b"strh") + 40, 200)
    lying = tmp_path / "lying.avi"
    lying.write_bytes(bytes(data))
    assert av.open(str(lying)).streams.video[0].frames == 200
    info = probe_video(lying)
    assert (info.frame_count, info.frame_count_source) == (92, "counted")
    assert info.duration_s == pytest.approx(4.136)


def test_zero_byte_file_raises_empty_file_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(EmptyFileError, match="0 bytes"):
        probe_video(empty)


@pytest.mark.parametrize("name", [AVI, MPEG, H1N1, "rvimlab_endo.mp4"])
def test_file_truncated_to_40_percent_raises_corrupt_media_error(
    videos_dir: Path, tmp_path: Path, name: str
) -> None:
    data = (videos_dir / name).read_bytes()
    truncated = tmp_path / name
    truncated.write_bytes(data[: int(len(data) * 0.4)])
    with pytest.raises(CorruptMediaError):
        probe_video(truncated)


def test_text_file_renamed_mp4_raises_corrupt_media_error(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("Patient seen on ward 4; scan saved to the shared drive.\n" * 20)
    with pytest.raises(CorruptMediaError, match="not a readable media container"):
        probe_video(fake)


def test_audio_only_file_raises_unsupported_media_error(tmp_path: Path) -> None:
    wav = tmp_path / "dictation.wav"
    with av.open(str(wav), mode="w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        samples = (np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = 8000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(UnsupportedMediaError, match="no video stream"):
        probe_video(wav)


@pytest.mark.parametrize(
    ("name", "expected"), [(H1N1, False), (SONOSITE, False), (MOV, True), (AVI, True), (MPEG, True)]
)
def test_needs_transcode_unless_h264_yuv420p_mp4(videos_dir: Path, name: str, expected: bool):
    path = videos_dir / name
    assert needs_transcode(probe_video(path), path) is expected


@pytest.mark.parametrize("name", [AVI, MPEG, MOV])
def test_normalize_transcodes_to_h264_mp4_with_same_fps_and_frame_count(
    videos_dir: Path, tmp_path: Path, name: str
) -> None:
    source = probe_video(videos_dir / name)
    clips = normalize_video(videos_dir / name, tmp_path, source)
    assert len(clips) == 1
    assert clips[0].path == tmp_path / "clip_000.mp4"
    out = probe_video(clips[0].path)
    assert (out.codec, out.container, out.pix_fmt) == ("h264", MP4_FORMAT_NAME, "yuv420p")
    assert (out.width, out.height) == (source.width, source.height)
    assert out.avg_frame_rate == source.avg_frame_rate
    assert out.frame_count == clips[0].frame_count == source.frame_count


def test_normalize_strips_container_and_stream_tags(avi_path: Path, tmp_path: Path) -> None:
    # The AVI's tags hold a date and venue ("Date:20200722, Time:101158").
    assert "date" in av.open(str(avi_path)).metadata
    clip = normalize_video(avi_path, tmp_path, probe_video(avi_path))[0]
    with av.open(str(clip.path)) as out:
        assert "date" not in out.metadata and "copyright" not in out.metadata
        assert "title" not in out.streams.video[0].metadata


def test_h264_mp4_is_remuxed_without_reencoding_audio_or_tags(
    h1n1_path: Path, tmp_path: Path
) -> None:
    clip = normalize_video(h1n1_path, tmp_path, probe_video(h1n1_path))[0]
    with av.open(str(h1n1_path)) as src, av.open(str(clip.path)) as out:
        src_packets = [bytes(p) for p in src.demux(video=0) if p.size]
        out_packets = [bytes(p) for p in out.demux(video=0) if p.size]
        assert out_packets == src_packets
        assert not out.streams.audio
        assert not {
            k
            for k in out.metadata
            if k not in ("major_brand", "minor_version", "compatible_brands", "encoder")
        }


def test_long_video_is_split_into_clips_covering_every_frame_once(
    h1n1_path: Path, tmp_path: Path
) -> None:
    info = probe_video(h1n1_path)  # 123 frames at 25 fps = 4.92 s
    clips = normalize_video(h1n1_path, tmp_path, info, max_duration_s=2.0, clip_duration_s=1.0)
    assert [c.frame_count for c in clips] == [25, 25, 25, 25, 23]
    assert [c.frame_offset for c in clips] == [0, 25, 50, 75, 100]
    assert [c.time_offset_s for c in clips] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [c.path.name for c in clips] == [f"clip_00{i}.mp4" for i in range(5)]
    assert [probe_video(c.path).frame_count for c in clips] == [25, 25, 25, 25, 23]


def test_split_clips_decode_to_the_original_frames(h1n1_path: Path, tmp_path: Path) -> None:
    info = probe_video(h1n1_path)
    clips = normalize_video(h1n1_path, tmp_path, info, max_duration_s=2.0, clip_duration_s=1.0)
    original = np.stack(decode_rgb(h1n1_path, limit=51)).astype(np.int16)
    second_clip = np.stack(decode_rgb(clips[1].path)).astype(np.int16)  # frames 25..49

    def error(shift: int) -> float:
        return float(np.abs(second_clip - original[25 + shift : 50 + shift]).mean())

    # Aligned with original frames 25..49 (CRF 18: close to the source), not one frame off.
    assert error(0) < 1.5
    assert error(0) < error(-1) and error(0) < error(1)


def test_plan_clips_last_clip_takes_the_remainder() -> None:
    assert plan_clips(280, Fraction(25), max_duration_s=5, clip_duration_s=4) == [
        (0, 100),
        (100, 100),
        (200, 80),
    ]
    assert plan_clips(280, Fraction(25), max_duration_s=11.2, clip_duration_s=4) == [(0, 280)]


def test_odd_sized_gif_is_padded_to_even_not_scaled(h1n1_path: Path, tmp_path: Path) -> None:
    gif = tmp_path / "odd.gif"
    frames = [rgb[:267, :269] for rgb in decode_rgb(h1n1_path, limit=10)]
    with av.open(str(gif), mode="w") as out:
        stream = out.add_stream("gif", rate=10)
        stream.width, stream.height, stream.pix_fmt = 269, 267, "rgb8"
        for rgb in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))
    info = probe_video(gif)
    assert (info.codec, info.width, info.height, info.frame_count) == ("gif", 269, 267, 10)
    clip = normalize_video(gif, tmp_path / "out", info)[0]
    assert (clip.pad_right, clip.pad_bottom) == (1, 1)
    out = probe_video(clip.path)
    assert (out.width, out.height, out.frame_count) == (270, 268, 10)
    assert out.avg_frame_rate == Fraction(10)
    padded = decode_rgb(clip.path, limit=1)[0]
    assert padded[:, 269].max() < 20 and padded[267, :].max() < 20  # black padding


def test_normalize_reports_progress_up_to_the_frame_count(avi_path: Path, tmp_path: Path):
    calls: list[tuple[int, int]] = []
    normalize_video(
        avi_path,
        tmp_path,
        probe_video(avi_path),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[-1] == (92, 92) and len(calls) == 92


def test_normalize_keeps_the_decoded_frames_when_the_container_announces_more(
    avi_path: Path, tmp_path: Path
) -> None:
    info = replace(probe_video(avi_path), frame_count=95)  # 92 frames decode
    clips = normalize_video(avi_path, tmp_path, info)
    assert [c.frame_count for c in clips] == [92]
    assert clips[0].frame_count_announced == 95
    assert probe_video(clips[0].path).frame_count == 92


def test_normalize_rejects_a_source_of_which_less_than_half_decodes(
    avi_path: Path, tmp_path: Path
) -> None:
    info = replace(probe_video(avi_path), frame_count=200)
    with pytest.raises(CorruptMediaError, match="only 92 of the 200 announced frames decode"):
        normalize_video(avi_path, tmp_path / "out", info)
    assert not list((tmp_path / "out").glob("*.mp4"))


# name, frames the container announces, frames that decode (edit-list pre-roll hides the rest)
LUNG_MOV = [
    ("Cov_convex_volpecelli_sonographic_v1.mov", 403, 403),
    ("Cov_convex_volpecelli_sonographic_v2.mov", 402, 402),
    ("Cov_convex_volpecelli_sonographic_v3.mov", 399, 399),
    ("Cov_convex_volpecelli_sonographic_v4.mov", 405, 405),
    ("Cov_convex_volpecelli_sonographic_v5.mov", 401, 401),
    ("Cov_denault_proposedUS_vid1.mov", 145, 144),
    ("Cov_denault_proposedUS_vid5.mov", 210, 192),
    ("Cov_recommendations_likebutterfly_mov5.mov", 138, 138),
]


@pytest.mark.parametrize(("name", "announced", "decoded"), LUNG_MOV)
def test_real_quicktime_clips_normalize_with_announced_and_decoded_counts(
    shared_data: Path, tmp_path: Path, name: str, announced: int, decoded: int
) -> None:
    source = shared_data / "lung" / name
    info = probe_video(source)
    assert info.frame_count == announced
    clips = normalize_video(source, tmp_path, info, preset="ultrafast")
    assert decode_summary(clips) == {
        "frame_count_announced": announced,
        "frame_count_decoded": decoded,
        "frames_not_decoded": announced - decoded,
        "decode_errors": 0,
        "frames_damaged": 0,
    }
    assert probe_video(clips[0].path).frame_count == decoded


def test_a_split_video_announcing_more_frames_ends_with_a_shorter_last_clip(
    shared_data: Path, tmp_path: Path
) -> None:
    source = shared_data / "lung" / "Cov_denault_proposedUS_vid5.mov"  # 210 announced, 192 decode
    info = probe_video(source)
    # 210 announced frames over 3.78 s: clips of round(1.5 s * 55.5 fps) = 83 frames planned
    assert info.avg_frame_rate == Fraction(12600, 227)
    clips = normalize_video(
        source, tmp_path, info, max_duration_s=2.0, clip_duration_s=1.5, preset="ultrafast"
    )
    assert [(c.frame_offset, c.frame_count) for c in clips] == [(0, 83), (83, 83), (166, 26)]
    assert [c.frame_count_announced for c in clips] == [210, 210, 210]


def test_decoding_a_damaged_mp4_skips_and_counts_the_rejected_packets(damaged_h1n1: Path):
    assert probe_video(damaged_h1n1).frame_count == 123  # the container is intact
    stats = DecodeStats()
    with open_video(damaged_h1n1) as stream:
        frames = list(iter_video_frames(stream, stats))
    assert (len(frames), stats.frames, stats.decode_errors) == (112, 112, 11)
    assert (stats.damaged_frames, stats.demux_error) == (60, None)


def test_normalize_keeps_the_frames_of_an_mp4_with_a_damaged_middle(
    damaged_h1n1: Path, tmp_path: Path
) -> None:
    clips = normalize_video(damaged_h1n1, tmp_path, probe_video(damaged_h1n1))
    assert decode_summary(clips) == {
        "frame_count_announced": 123,
        "frame_count_decoded": 112,
        "frames_not_decoded": 11,
        "decode_errors": 11,
        "frames_damaged": 60,
    }
    assert probe_video(clips[0].path).frame_count == 112


def test_frames_decoded_from_damaged_data_are_recorded_as_damaged(
    damaged_h1n1: Path, h1n1_path: Path, tmp_path: Path
) -> None:
    clip = normalize_video(damaged_h1n1, tmp_path, probe_video(damaged_h1n1))[0]
    # The clip's only keyframe is its first: everything after the first rejected packet
    # decodes from damaged references (frame 52, decoded just before it, is marked too).
    assert clip.damaged_spans == ((52, 111),)
    assert not clip.is_damaged(51) and clip.is_damaged(52) and clip.is_damaged(111)
    normalized = decode_rgb(clip.path)
    original = decode_rgb(h1n1_path)

    def error(ours: int, theirs: int) -> float:
        return float(np.abs(normalized[ours].astype(int) - original[theirs].astype(int)).mean())

    assert error(51, 51) < 1.0  # intact, through a CRF 18 transcode
    assert error(111, 122) > 5.0  # the last frame: same picture, visibly damaged


def test_frames_at_times_reads_a_damaged_mp4_without_raising(
    damaged_h1n1: Path, h1n1_path: Path
) -> None:
    times = [0.0, 1.0, 4.0, 10.0]
    damaged, clean = frames_at_times(damaged_h1n1, times), frames_at_times(h1n1_path, times)
    assert [t for t, _ in damaged] == [t for t, _ in clean] == [0.0, 1.0, 4.0, 4.88]
    # before the damaged block (from 2.08 s) the frames are the intact file's
    assert np.array_equal(damaged[0][1], clean[0][1])
    assert np.array_equal(damaged[1][1], clean[1][1])


def test_decoding_forward_finds_the_frames_seeking_finds(h1n1_path: Path) -> None:
    times = [0.0, 0.5, 2.02, 4.5, 10.0]
    with open_video(h1n1_path, threads=False) as stream:
        seeking = _frames_by_seeking(stream, times)
    with open_video(h1n1_path, threads=False) as stream:
        forward = _frames_decoding_forward(stream, times)
    expected = [0, 6656, 26112, 57856, 62464]  # frames every 512 ticks of 1/12800 s
    assert [f.pts for _, f in forward] == [f.pts for _, f in seeking] == expected
