"""Extract sampled frames from normalized clips to image files plus a frame manifest table.

One streaming pass per clip: the decoder (FFmpeg frame threads) hands over one frame at a time;
the main thread takes a 128-px grayscale copy of its luma plane, compares it with the previous
frame's (stillness is a run over every decoded frame) and decides whether to keep the frame
(strategy ``unique`` hashes it for that); kept frames go to a small thread pool that measures
them on that copy (pHash, dead/disturbed flags), encodes them (:mod:`medvid.frames.encode`: JPEG
straight from the decoder's YUV 4:2:0 planes with libjpeg-turbo, burned-in text blacked out on
the way; OpenCV, numpy and libjpeg-turbo release the GIL) and writes them; their manifest rows
come back in frame order.

Memory stays flat however long the video is: the pool's queue is bounded by frames and by bytes,
and manifest rows go to Arrow every thousand. A very large frame is not copied around: an
8K clip holds the decoder's own frames (slice threads only, no per-thread frames), one frame in
encoding and its full-range planes (measured: 310 MiB of peak RSS growth for 7680x4320, about
6.5 frames of 47.5 MiB in all, against 840 MiB before).

Image files: ``<frames_root>/video_<video_id>/frame_<frame_id>.<jpg|png>``. The folder is written
whole and atomically (:func:`medvid.io.atomic_dir`): the files go to a fresh temporary folder
that replaces ``video_<video_id>/`` once every frame is written, so a reader sees the previous
run's frames or this run's, never a mix, and frames an earlier run kept that this one does not
are gone. Re-running with the same inputs writes byte-identical files and an identical table."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pyarrow as pa
from av.video.frame import VideoFrame

from medvid.errors import CorruptMediaError
from medvid.frames.encode import ImageFormat, Redaction, encode_frame, frame_to_bgr
from medvid.frames.phash import hamming, phash64, phash_hex
from medvid.frames.quality import QualityThresholds, frame_quality, is_still, small_gray
from medvid.frames.sampling import SamplingConfig, planned_frame_numbers
from medvid.ids import frame_id
from medvid.io import atomic_dir
from medvid.video.decode import iter_video_frames, open_video
from medvid.video.normalize import Clip

__all__ = [
    "FRAME_MANIFEST_SCHEMA",
    "ImageFormat",
    "Redaction",
    "extract_frames",
    "frame_relative_path",
    "frame_to_bgr",
    "luma_small",
]

ProgressCallback = Callable[[int, int], None]

FRAME_MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("frame_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("frame_number", pa.int64(), nullable=False),
        pa.field("clip_index", pa.int32(), nullable=False),
        pa.field("pts", pa.int64()),
        pa.field("time_base", pa.string(), nullable=False),
        pa.field("frame_timestamp", pa.float64(), nullable=False),
        pa.field("frame_relative_path", pa.string(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("phash", pa.string(), nullable=False),
        pa.field("mean_intensity", pa.float32(), nullable=False),
        pa.field("laplacian_var", pa.float32(), nullable=False),
        pa.field("is_dead", pa.bool_(), nullable=False),
        pa.field("dead_reason", pa.string(), nullable=False),
        pa.field("is_disturbed", pa.bool_(), nullable=False),
    ]
)
"""One row per extracted frame. ``frame_number``: 0-based index in the original video;
``pts``/``time_base``: of the decoded clip stream (``pts`` null if the stream has none);
``frame_timestamp``: seconds since the original video's first frame; ``frame_relative_path``:
relative to the ``frames/`` root; ``width``/``height``: pixels of the image file; ``phash``: 16 hex
digits (:mod:`medvid.frames.phash`); quality columns: see :mod:`medvid.frames.quality`."""

# Luma planes of these formats are directly usable as grayscale.
_LUMA_FIRST_FORMATS = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray"}
)
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG
# Limited-range ("TV", 16..235) luma to full range 0..255, as a lookup table.
_TV_TO_PC = np.clip(np.round((np.arange(256) - 16) * 255.0 / 219.0), 0, 255).astype(np.uint8)
_ENCODE_WORKERS = max(2, min(8, len(os.sched_getaffinity(0))))
# Kept frames go to the pool in batches of about this many pixels (14 frames of 270x270, one of
# 1280x720 or more): each hand-over wakes a worker, which on a busy machine can wait for a core
# longer than a small frame takes to encode.
_BATCH_PIXELS = 1_000_000
_MAX_IN_FLIGHT_BATCHES = _ENCODE_WORKERS + 1
# Decoded pictures (yuv420p bytes) waiting for or in encoding, beyond the one batch always
# allowed: 64 MiB is twenty 1080p frames, five 4K frames, one 8K frame (47.5 MiB).
_IN_FLIGHT_BYTES = 64 * 2**20
# Above this frame size (8K class) the decoder runs slice threads only: frame threads would each
# hold a frame of their own (4 more 8K frames, 190 MiB, measured on a synthetic 8K clip).
_FRAME_THREADS_MAX_PIXELS = 4096 * 2304
# Below this frame size the decoder runs on the calling thread alone: the encode workers keep
# the cores busy, and frame threads' hand-offs cost more CPU than a small frame's decoding
# (measured on the 270-478 px clips of shared/data: 5-10% more CPU a frame with them).
_DECODER_THREADS_MIN_PIXELS = 640 * 480
# Manifest rows kept as Python lists before they go to Arrow: memory stays flat in video length.
_ROWS_PER_BATCH = 1024


def frame_relative_path(video_id: str, frame_number: int, image_format: ImageFormat = "jpg") -> str:
    """``video_<video_id>/frame_<frame_id>.<ext>``, relative to the ``frames/`` root."""
    return f"video_{video_id}/frame_{frame_id(video_id, frame_number)}.{image_format}"


def luma_small(frame: VideoFrame) -> np.ndarray:
    """128-px-wide full-range grayscale copy of a decoded frame, ``(h, 128) uint8``.

    Uses the luma plane directly for YUV frames (no colour conversion of the full frame) and
    expands limited-range luma (16..235) to 0..255 so thresholds mean the same for every source.
    """
    name = frame.format.name
    if name in _LUMA_FIRST_FORMATS:
        plane = frame.planes[0]
        luma = np.frombuffer(plane, dtype=np.uint8).reshape(frame.height, plane.line_size)
        small = small_gray(luma[:, : frame.width])
        full_range = name.startswith("yuvj") or name == "gray" or frame.color_range == _FULL_RANGE
        return small if full_range else cv2.LUT(small, _TV_TO_PC)
    return small_gray(frame.to_ndarray(format="gray"))


def extract_frames(
    clips: Sequence[Clip],
    video_id: str,
    frames_root: Path,
    *,
    sampling: SamplingConfig,
    quality: QualityThresholds = QualityThresholds(),  # noqa: B008 (frozen, immutable)
    image_format: ImageFormat = "jpg",
    jpeg_quality: int = 90,
    total_frames: int,
    progress: ProgressCallback | None = None,
    redaction: Redaction | None = None,
) -> pa.Table:
    """Decode ``clips`` (one video, in order), write the sampled frames, return their manifest.

    Args:
        clips: the video's normalized clips, covering frames ``0..total_frames-1`` in order.
        video_id: the video's content id (:func:`medvid.ids.content_id`).
        frames_root: the ``frames/`` root; images go to ``video_<video_id>/`` under it.
        sampling: which frames to keep (:class:`~medvid.frames.sampling.SamplingConfig`).
        quality: thresholds for the dead/disturbed flags.
        image_format: ``"jpg"`` (JPEG, 4:2:0, ``jpeg_quality``) or ``"png"`` (lossless).
        jpeg_quality: libjpeg quality 1..100.
        total_frames: frames in the original video (the sum of the clips' frame counts).
        progress: called with ``(frames_decoded, total_frames)`` after each decoded frame.
        redaction: burned-in text to black out in the written images (de-identification):
            :meth:`Redaction.boxes_at` of each frame's number, and the outside of the kept
            region. Measurements (pHash, quality flags) are taken before it, on the decoded
            frame, so they describe the picture, not the masks.

    Returns:
        A table with :data:`FRAME_MANIFEST_SCHEMA`, one row per kept frame, by ``frame_number``.
        Frames decoded from damaged source data (:attr:`Clip.damaged_spans
        <medvid.video.normalize.Clip.damaged_spans>`) or flagged corrupt by the decoder are
        ``is_disturbed``.

    Raises:
        CorruptMediaError: a clip fails to decode or holds a different number of frames than
            its :class:`~medvid.video.normalize.Clip` says.
        ValueError: bad arguments (unknown image format, clips not covering ``total_frames``).
    """
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    covered = sum(clip.frame_count for clip in clips)
    if covered != total_frames:
        raise ValueError(f"clips hold {covered} frames but total_frames is {total_frames}")
    fps = clips[0].fps if clips else Fraction(1)
    planned = planned_frame_numbers(sampling, total_frames, fps)
    keep_mask: np.ndarray | None = None
    if planned is not None:
        keep_mask = np.zeros(total_frames + 1, dtype=bool)
        keep_mask[planned] = True
    frames_root = Path(frames_root)
    video_dir_name = f"video_{video_id}"
    if redaction is not None and redaction.is_empty:
        redaction = None
    rows: list[tuple] = []
    batches: list[pa.RecordBatch] = []

    def add_rows(measured: list[tuple]) -> None:
        rows.extend(measured)
        if len(rows) >= _ROWS_PER_BATCH:
            batches.append(_record_batch(rows))

    last_kept_hash: int | None = None
    decoded_total = 0

    with (
        _opencv_threads(1),
        atomic_dir(frames_root / video_dir_name) as out_dir,
        ThreadPoolExecutor(max_workers=_ENCODE_WORKERS, thread_name_prefix="frames") as pool,
    ):
        out_prefix = f"{out_dir}{os.sep}"
        encoder = _EncodeQueue(pool, image_format, jpeg_quality, redaction, quality, add_rows)
        try:
            for clip in clips:
                with open_video(clip.path) as stream:
                    if stream.width * stream.height > _FRAME_THREADS_MAX_PIXELS:
                        stream.thread_type = "SLICE"
                    elif stream.width * stream.height < _DECODER_THREADS_MIN_PIXELS:
                        stream.thread_type = "NONE"
                    time_base = Fraction(stream.time_base) if stream.time_base else 1 / fps
                    time_base_str = f"{time_base.numerator}/{time_base.denominator}"
                    start_pts: int | None = stream.start_time
                    previous_small: np.ndarray | None = None
                    still_frames = 0  # consecutive still frames up to the current one
                    index = -1
                    for index, frame in enumerate(iter_video_frames(stream)):
                        frame_number = clip.frame_offset + index
                        if index >= clip.frame_count:
                            raise CorruptMediaError(
                                f"{clip.path.name}: holds more than its {clip.frame_count} frames"
                            )
                        wanted = keep_mask is None or keep_mask[frame_number]
                        # Every frame is measured for stillness: "frozen" is a run of still
                        # frames, however sparse the sampling.
                        gray = luma_small(frame)
                        still_frames = (
                            still_frames + 1 if is_still(gray, previous_small, quality) else 0
                        )
                        frame_hash = None
                        if keep_mask is None:
                            frame_hash = phash64(gray)
                            wanted = (
                                last_kept_hash is None
                                or hamming(frame_hash, last_kept_hash) >= sampling.unique_hamming
                            )
                        if wanted:
                            last_kept_hash = frame_hash
                            if frame.pts is not None and start_pts is None:
                                start_pts = frame.pts
                            name = f"frame_{frame_id(video_id, frame_number)}.{image_format}"
                            width = frame.width - clip.pad_right
                            height = frame.height - clip.pad_bottom
                            if frame.pts is None:
                                pts = None
                                timestamp = clip.time_offset_s + index / float(fps)
                            else:
                                pts = int(frame.pts)
                                timestamp = clip.time_offset_s + float(
                                    (frame.pts - (start_pts or 0)) * time_base
                                )
                            row = (
                                frame_id(video_id, frame_number),
                                video_id,
                                frame_number,
                                clip.clip_index,
                                pts,
                                time_base_str,
                                timestamp,
                                f"{video_dir_name}/{name}",
                                width,
                                height,
                            )
                            measure = _Measure(
                                row,
                                gray,
                                frame_hash,
                                still_frames / float(fps),
                                frame.is_corrupt or clip.is_damaged(frame_number),
                            )
                            encoder.put(
                                frame, out_prefix + name, width, height, frame_number, measure
                            )
                        previous_small = gray
                        decoded_total += 1
                        if progress is not None:
                            progress(decoded_total, total_frames)
                    if index + 1 != clip.frame_count:
                        raise CorruptMediaError(
                            f"{clip.path.name}: decoded {index + 1} frames, expected "
                            f"{clip.frame_count}"
                        )
            encoder.finish()
        finally:
            encoder.cancel()
    batches.append(_record_batch(rows))
    return pa.Table.from_batches(batches, schema=FRAME_MANIFEST_SCHEMA).combine_chunks()


def _record_batch(rows: list[tuple]) -> pa.RecordBatch:
    """The rows gathered so far (tuples in :data:`FRAME_MANIFEST_SCHEMA`'s field order) as Arrow
    (about 200 bytes a row instead of about 1.4 KiB of Python objects), emptying the list."""
    columns = zip(*rows, strict=True) if rows else ([] for _ in FRAME_MANIFEST_SCHEMA)
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array(values, type=field.type)
            for values, field in zip(columns, FRAME_MANIFEST_SCHEMA, strict=True)
        ],
        schema=FRAME_MANIFEST_SCHEMA,
    )
    rows.clear()
    return batch


class _Measure(NamedTuple):
    """What an encode worker needs to measure a kept frame and complete its manifest row."""

    row: tuple
    """The row's fields up to ``height``, in :data:`FRAME_MANIFEST_SCHEMA`'s order."""
    gray: np.ndarray
    """The frame's :func:`luma_small` copy (read only)."""
    frame_hash: int | None
    """Its pHash when already computed (strategy ``unique``), else ``None``."""
    still_for_s: float
    decoder_corrupt: bool


def _measured_row(measure: _Measure, thresholds: QualityThresholds) -> tuple:
    """The complete manifest row of a kept frame: pHash and quality flags of its small copy."""
    frame_hash = measure.frame_hash if measure.frame_hash is not None else phash64(measure.gray)
    quality = frame_quality(
        measure.gray, measure.still_for_s, thresholds, decoder_corrupt=measure.decoder_corrupt
    )
    return (*measure.row, phash_hex(frame_hash), *quality)


@contextmanager
def _opencv_threads(count: int) -> Iterator[None]:
    """OpenCV's own thread pool (``parallel_for_``) limited to ``count`` threads inside the
    block, restored after.

    The pipeline already keeps every core busy (decoder threads, encode workers); OpenCV's pool
    splitting each small resize or conversion across cores, then spinning between calls, cost
    more CPU than it saved: on the 270x270 clip of ``shared/data``, 1.5-2.0 ms of CPU a frame
    with it, 0.9-1.1 ms without. The setting is process-wide, so OpenCV calls made by other threads
    while frames are extracted run single-threaded too (slower, never wrong).
    """
    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


class _EncodeQueue:
    """Hands kept frames to the encode pool in batches of about :data:`_BATCH_PIXELS`, with at
    most :data:`_IN_FLIGHT_BYTES` of decoded pictures (and at least one batch) waiting or in
    encoding: :meth:`put` blocks until older batches are written. The workers measure the
    frames queued with a :class:`_Measure`; their manifest rows go to ``on_rows`` in the order
    the frames were queued, as their batches are awaited."""

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        image_format: ImageFormat,
        jpeg_quality: int,
        redaction: Redaction | None,
        thresholds: QualityThresholds = QualityThresholds(),  # noqa: B008 (frozen, immutable)
        on_rows: Callable[[list[tuple]], None] | None = None,
    ) -> None:
        self._pool = pool
        self._settings = (image_format, jpeg_quality, redaction, thresholds)
        self._on_rows = on_rows
        self._batch: list[_Queued] = []
        self._batch_pixels = 0
        self._pending: deque[tuple[Future[list[tuple]], int]] = deque()
        self._pending_bytes = 0

    def put(
        self,
        frame: VideoFrame,
        path: str,
        width: int,
        height: int,
        number: int,
        measure: _Measure | None = None,
    ) -> None:
        """Queue one frame for :func:`_write_frames`."""
        self._batch.append((frame, path, width, height, number, measure))
        self._batch_pixels += frame.width * frame.height
        if self._batch_pixels >= _BATCH_PIXELS:
            self._submit()

    def finish(self) -> None:
        """Submit what is queued and wait until every frame is written (raising their errors)."""
        self._submit()
        while self._pending:
            self._wait_oldest()

    def cancel(self) -> None:
        """Drop the batches not started yet (after an error)."""
        for future, _ in self._pending:
            future.cancel()

    def _submit(self) -> None:
        if not self._batch:
            return
        picture_bytes = self._batch_pixels * 3 // 2
        future = self._pool.submit(_write_frames, self._batch, *self._settings)
        self._pending.append((future, picture_bytes))
        self._pending_bytes += picture_bytes
        self._batch, self._batch_pixels = [], 0
        while len(self._pending) > 1 and (
            self._pending_bytes > _IN_FLIGHT_BYTES or len(self._pending) > _MAX_IN_FLIGHT_BATCHES
        ):
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        future, picture_bytes = self._pending.popleft()
        self._pending_bytes -= picture_bytes
        rows = future.result()
        if rows and self._on_rows is not None:
            self._on_rows(rows)


_Queued = tuple[VideoFrame, str, int, int, int, _Measure | None]
"""A queued frame: the frame, its file's path, image width and height, frame number, and what
to measure (``None``: nothing)."""


def _write_frames(
    batch: list[_Queued],
    image_format: ImageFormat,
    jpeg_quality: int,
    redaction: Redaction | None,
    thresholds: QualityThresholds,
) -> list[tuple]:
    """Measure, encode and write a batch (in an encode worker); the measured frames' manifest
    rows, in batch order."""
    rows = []
    for frame, path, width, height, number, measure in batch:
        if measure is not None:
            rows.append(_measured_row(measure, thresholds))
        _write_frame(frame, path, width, height, image_format, jpeg_quality, redaction, number)
    return rows


def _write_frame(
    frame: VideoFrame,
    path: str,
    width: int,
    height: int,
    image_format: ImageFormat,
    jpeg_quality: int,
    redaction: Redaction | None,
    frame_number: int,
) -> None:
    """Encode one frame (:func:`~medvid.frames.encode.encode_frame`) and write it to ``path``,
    a new file in the run's temporary folder (the folder as a whole is renamed into place)."""
    data = encode_frame(frame, width, height, image_format, jpeg_quality, redaction, frame_number)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
