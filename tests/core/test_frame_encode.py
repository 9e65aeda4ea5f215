"""Frames to JPEG straight from the decoder's YUV planes, and the redaction applied on the way."""

from __future__ import annotations

from concurrent.futures import Future
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest
import simplejpeg

from medvid.frames.encode import Redaction, encode_frame, frame_to_bgr, jpeg_ycbcr_planes
from medvid.frames.extract import _MAX_IN_FLIGHT_BATCHES, _EncodeQueue
from tests.core.conftest import H1N1, SONOSITE, write_h264


def _frames(path: Path, limit: int) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return [frame for _, frame in zip(range(limit), container.decode(video=0), strict=False)]


def _decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(int)


def _bgr_path(frame: av.VideoFrame, redaction: Redaction | None = None, number: int = 0) -> bytes:
    """The JPEG medvid wrote before: BGR conversion, redaction on BGR, OpenCV's encoder."""
    bgr = frame_to_bgr(frame)
    if redaction is not None:
        redaction.apply(bgr, number)
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _segments_before_scan(jpeg: bytes) -> list[tuple[bytes, bytes]]:
    """(marker, payload) of every JPEG segment up to and including the start of scan."""
    segments, index = [], 2
    while index < len(jpeg):
        marker, length = jpeg[index : index + 2], int.from_bytes(jpeg[index + 2 : index + 4])
        segments.append((marker, jpeg[index + 4 : index + 2 + length]))
        if marker == b"\xff\xda":
            return segments
        index += 2 + length
    raise AssertionError("no start of scan")


@pytest.fixture(scope="module")
def sonosite_frames(videos_dir: Path) -> list[av.VideoFrame]:
    """Five 960x720 frames of the SonoSite clip: limited-range BT.601 yuv420p, burned-in text."""
    return _frames(videos_dir / SONOSITE, 5)


# --- JPEG from the YUV planes -------------------------------------------------------------------


def test_jpeg_headers_are_the_ones_opencv_writes_at_the_same_quality(
    sonosite_frames: list[av.VideoFrame],
) -> None:
    frame = sonosite_frames[0]
    ours = encode_frame(frame, frame.width, frame.height, "jpg", 90)
    # JFIF, the two quality-90 quantization tables, baseline SOF with 4:2:0 sampling, Huffman
    # tables: byte for byte what the BGR path (OpenCV, libjpeg-turbo) writes
    assert _segments_before_scan(ours) == _segments_before_scan(_bgr_path(frame))
    assert simplejpeg.decode_jpeg_header(ours) == (720, 960, "YCbCr", "420")


def test_jpeg_from_yuv_looks_like_the_bgr_path(sonosite_frames: list[av.VideoFrame]) -> None:
    for frame in sonosite_frames:
        ours = encode_frame(frame, frame.width, frame.height, "jpg", 90)
        before = _bgr_path(frame)
        diff = np.abs(_decode(ours) - _decode(before))
        # measured: mean 0.12 grey levels, 99.9th percentile 5, max 18 (the coloured text's
        # chroma is subsampled once instead of twice); sizes within 0.04%
        assert diff.mean() < 0.2
        assert np.percentile(diff, 99.9) <= 6
        assert diff.max() <= 24
        assert abs(len(ours) / len(before) - 1) < 0.002


def test_limited_range_video_is_expanded_to_full_range(tmp_path: Path) -> None:
    black_white = np.zeros((64, 64, 3), np.uint8)
    black_white[:, 32:] = 255
    video = write_h264(tmp_path / "bw.mp4", [black_white] * 2, Fraction(25))
    frame = _frames(video, 1)[0]
    assert frame.color_range != 2  # stored as TV range: Y 16 and 235
    y, cb, cr = jpeg_ycbcr_planes(frame, 64, 64)
    assert (int(y[:, :24].max()), int(y[:, 40:].min())) == (0, 255)
    assert int(np.abs(cb.astype(int) - 128).max()) <= 1
    decoded = _decode(encode_frame(frame, 64, 64, "jpg", 90))
    assert decoded[:, :24].max() <= 1 and decoded[:, 40:].min() >= 254


def _exact_bt601_from_bt709(frame: av.VideoFrame, width: int, height: int):
    """Float64 reference: limited-range BT.709 4:2:0 to R'G'B' (each pixel with its co-sited
    chroma sample, unclipped), then to full-range BT.601 YCbCr (JFIF 1.02); chroma at the chroma
    samples' positions."""
    y, cb, cr = (
        np.frombuffer(p, np.uint8).reshape(p.height, p.line_size).astype(float)
        for p in frame.planes
    )
    chroma = (slice(0, (height + 1) // 2), slice(0, (width + 1) // 2))
    pb, pr = (cb[chroma] - 128) / 224, (cr[chroma] - 128) / 224
    luma = (y[:height, :width] - 16) / 219
    pb_full = np.repeat(np.repeat(pb, 2, 0), 2, 1)[:height, :width]
    pr_full = np.repeat(np.repeat(pr, 2, 0), 2, 1)[:height, :width]

    def rgb(lum, b, r):
        red, blue = lum + 1.5748 * r, lum + 1.8556 * b
        return red, (lum - 0.2126 * red - 0.0722 * blue) / 0.7152, blue

    red, green, blue = rgb(luma, pb_full, pr_full)
    y601 = 0.299 * red + 0.587 * green + 0.114 * blue
    red, green, blue = rgb(0.0, pb, pr)
    cb601 = -0.168736 * red - 0.331264 * green + 0.5 * blue
    cr601 = 0.5 * red - 0.418688 * green - 0.081312 * blue
    return [np.clip(v, 0, 255) for v in (255 * y601, 128 + 255 * cb601, 128 + 255 * cr601)]


@pytest.mark.parametrize("crop", [0, 1])
def test_bt709_video_is_converted_to_bt601_on_the_planes(videos_dir: Path, crop: int) -> None:
    frame = _frames(videos_dir / "rvimlab_endo.mp4", 1)[0]  # BT.709 endoscopy, reds
    assert (frame.colorspace, frame.color_range) == (1, 1)  # BT.709, limited range
    width, height = frame.width - crop, frame.height - crop
    planes = jpeg_ycbcr_planes(frame, width, height)
    exact = _exact_bt601_from_bt709(frame, width, height)
    errors = [np.abs(ours.astype(float) - ref) for ours, ref in zip(planes, exact, strict=True)]
    # luma: the chroma term is kept at half a level's resolution; chroma: rounded once
    largest = [round(float(error.max()), 3) for error in errors]
    assert largest[0] <= 0.75 and largest[1] <= 0.5 and largest[2] <= 0.5
    assert errors[0].mean() < 0.3


def test_bt709_video_keeps_its_colours(videos_dir: Path) -> None:
    frame = _frames(videos_dir / "rvimlab_endo.mp4", 1)[0]
    written = _decode(encode_frame(frame, frame.width, frame.height, "jpg", 90))
    as_709 = frame.to_ndarray(format="bgr24").astype(int)
    as_601 = cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)
    assert np.abs(written - as_709).mean() < np.abs(written - as_601.astype(int)).mean() / 2


def test_bt709_jpeg_from_yuv_looks_like_the_bgr_path(videos_dir: Path) -> None:
    for frame in _frames(videos_dir / "rvimlab_endo.mp4", 3):
        ours = encode_frame(frame, frame.width, frame.height, "jpg", 90)
        before = _bgr_path(frame)
        diff = _decode(ours) - _decode(before)
        # measured on 10 frames: about one grey level brighter on average (swscale's fast
        # BT.709 path sits 0.9-1.2 levels below the exact conversion, this one within 0.75
        # of it), 99.9th percentile 6, max 19; sizes within 0.3%
        assert 0.5 < diff.mean() < 1.5
        assert np.percentile(np.abs(diff), 99.9) <= 8
        assert np.abs(diff).max() <= 24
        assert abs(len(ours) / len(before) - 1) < 0.005


def test_normalization_padding_is_cropped_to_an_odd_size(videos_dir: Path) -> None:
    frame = _frames(videos_dir / H1N1, 1)[0]  # 270x270, cropped as if padded from 269x267
    ours = encode_frame(frame, 269, 267, "jpg", 90)
    assert simplejpeg.decode_jpeg_header(ours)[:2] == (267, 269)
    expected = frame_to_bgr(frame)[:267, :269]
    before = cv2.imencode(".jpg", expected, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    assert np.abs(_decode(ours) - _decode(before)).mean() < 1.0


def test_png_stays_lossless(videos_dir: Path) -> None:
    frame = _frames(videos_dir / H1N1, 1)[0]
    png = encode_frame(frame, 270, 270, "png", 90)
    assert np.array_equal(_decode(png), frame_to_bgr(frame).astype(int))


class _RecordingPool:
    """Stands in for the encode pool: runs nothing, records each batch's size and how many
    batches are outstanding (submitted, not yet awaited) after each frame is queued."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.outstanding: set[Future] = set()

    def submit(self, fn, batch, *settings) -> Future:
        pool = self

        class Awaited(Future):
            def result(self, timeout=None):
                pool.outstanding.discard(self)

        future = Awaited()
        self.batch_sizes.append(len(batch))
        self.outstanding.add(future)
        return future


def _queue_frames(width: int, height: int, count: int) -> tuple[_RecordingPool, list[int]]:
    pool = _RecordingPool()
    queue = _EncodeQueue(pool, "jpg", 90, None)  # type: ignore[arg-type]
    outstanding = []
    for number in range(count):
        queue.put(
            SimpleNamespace(width=width, height=height), f"{number}.jpg", width, height, number
        )
        outstanding.append(len(pool.outstanding))
    queue.finish()
    assert not pool.outstanding
    return pool, outstanding


def test_8k_frames_are_encoded_one_at_a_time() -> None:
    pool, outstanding = _queue_frames(7680, 4320, 6)
    assert pool.batch_sizes == [1] * 6
    assert max(outstanding) == 1  # one 8K frame in encoding while the next one decodes


def test_small_frames_go_to_the_encoders_in_batches() -> None:
    pool, outstanding = _queue_frames(270, 270, 200)
    assert pool.batch_sizes == [14] * 14 + [4]  # 14 x 72900 px reach 1 Mpx
    assert max(outstanding) == _MAX_IN_FLIGHT_BATCHES


# --- redaction ------------------------------------------------------------------------------------


def test_boxes_at_gives_every_frame_boxes_and_the_spans_covering_it() -> None:
    every = (0, 0, 10, 10)
    name, date = (100, 0, 200, 20), (100, 30, 200, 50)
    redaction = Redaction(boxes=(every,), spans=((name, 5, 9), (date, 8, 20)))
    assert redaction.boxes_at(4) == [every]
    assert redaction.boxes_at(5) == [every, name]
    assert redaction.boxes_at(8) == [every, name, date]
    assert redaction.boxes_at(10) == [every, date]
    assert redaction.boxes_at(21) == [every]


def test_boxes_at_agrees_with_a_scan_of_thousands_of_spans() -> None:
    rng = np.random.default_rng(7)
    firsts = rng.integers(0, 100_000, 5000)
    lengths = rng.integers(0, 400, 5000)
    spans = tuple(
        ((i, i, i + 1, i + 1), int(f), int(f + n))
        for i, (f, n) in enumerate(zip(firsts, lengths, strict=True))
    )
    redaction = Redaction(spans=spans)
    for frame_number in rng.integers(0, 100_500, 300):
        expected = [box for box, first, last in spans if first <= frame_number <= last]
        assert redaction.boxes_at(int(frame_number)) == expected


def test_a_redaction_read_from_json_lists_works_like_tuples() -> None:
    redaction = Redaction(
        boxes=[[1, 2, 3, 4]], keep_region=[0, 0, 9, 9], spans=[[[5, 5, 6, 6], 0, 3]]
    )
    assert redaction == Redaction(((1, 2, 3, 4),), (0, 0, 9, 9), False, (((5, 5, 6, 6), 0, 3),))
    assert redaction.boxes_at(2) == [(1, 2, 3, 4), (5, 5, 6, 6)]


def test_a_span_ending_before_it_starts_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a frame range"):
        Redaction(spans=(((0, 0, 5, 5), 10, 9),))


def test_applying_spans_without_a_frame_number_is_refused() -> None:
    with pytest.raises(ValueError, match="needs the frame number"):
        Redaction(spans=(((0, 0, 5, 5), 0, 9),)).apply(np.zeros((8, 8, 3), np.uint8))


def test_a_box_past_the_top_left_edge_masks_nothing() -> None:
    image = np.full((8, 8, 3), 200, np.uint8)
    Redaction(boxes=((-10, -10, -5, -5),)).apply(image)
    assert image.min() == 200


def test_redaction_on_yuv_matches_the_bgr_path(sonosite_frames: list[av.VideoFrame]) -> None:
    # The SonoSite screen's burned-in text rows, masked with boxes off the 2-px chroma grid,
    # plus everything outside an odd-edged imaging region.
    redaction = Redaction(
        boxes=((13, 7, 421, 41), (600, 651, 957, 703)),
        keep_region=(101, 45, 859, 641),
        blank_outside=True,
    )
    for frame in sonosite_frames:
        ours = _decode(encode_frame(frame, 960, 720, "jpg", 90, redaction, 0))
        before = _decode(_bgr_path(frame, redaction))
        diff = np.abs(ours - before)
        # measured: mean 0.08 grey levels, 99.9th percentile 3, max 18 (where the coloured text
        # meets the masks; the YUV path also neutralises chroma samples straddling a box edge)
        assert diff.mean() < 0.15
        assert np.percentile(diff, 99.9) <= 4
        assert diff.max() <= 24
        assert ours[16:36, 24:410].max() <= 2  # inside the box, away from its edges
        # outside the region: black, exactly so in the JPEG blocks wholly outside it
        assert ours[:40, :].max() <= 8 and ours[:32, :].max() == 0
        assert ours[656:, :].max() == 0


def test_spans_mask_only_their_frames_on_a_real_clip(sonosite_frames: list[av.VideoFrame]):
    box = (16, 0, 432, 48)  # the SonoSite header text, on the 16-px grid: whole JPEG blocks
    redaction = Redaction(spans=((box, 1, 3),))
    for number, frame in enumerate(sonosite_frames):
        redacted = encode_frame(frame, 960, 720, "jpg", 90, redaction, number)
        plain = encode_frame(frame, 960, 720, "jpg", 90)
        if number in (1, 2, 3):
            # exactly black but for 2 px at the edges, where the decoder's chroma upsampling
            # blends in the colour of the picture beside the box
            assert _decode(redacted)[0:46, 18:430].max() == 0
            assert _decode(plain)[0:46, 18:430].max() > 150  # there is text to hide
        else:
            assert redacted == plain
