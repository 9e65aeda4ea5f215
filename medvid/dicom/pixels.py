"""Decoding DICOM pixel data to display-ready RGB frames, and writing PNG / H.264 MP4.

Every frame leaves this module as an ``(H, W, 3) uint8 RGB`` array whatever the source:

- PALETTE COLOR: the stored indices go through the palette LUT
  (``pydicom.pixels.apply_color_lut``); 16-bit LUT entries are scaled to 8 bits.
- RGB, YBR_FULL, YBR_FULL_422, YBR_RCT, YBR_ICT: pydicom 3 already returns RGB for these when
  decoding with its default ``as_rgb=True`` (YBR_FULL[_422] through ``convert_color_space``,
  including JPEG streams whose JFIF marker contradicts an 'RGB' header, as in the Sonoque file;
  YBR_RCT/ICT through the JPEG 2000 codec's inverse colour transform). Converting again here
  would double-convert, so these are only scaled to 8 bits.
- MONOCHROME1/2: Modality LUT, then VOI LUT or windowing (``apply_voi_lut``), then scaled from
  the VOI output range to 0..255 (MONOCHROME1 inverted) and repeated on three channels.

Frames are decoded one at a time with ``pydicom.pixels.iter_pixels``, so a cine loop of N frames
never holds more than one decoded frame in memory. Compressed transfer syntaxes (RLE, JPEG
baseline/lossless, JPEG 2000) decode through the installed pylibjpeg plugins.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, iter_pixels

from medvid.dicom.header import DicomHeader, cine_fps, read_header
from medvid.errors import CorruptMediaError, UnsupportedMediaError
from medvid.images import write_png  # noqa: F401 (re-exported: medvid.dicom.write_png)
from medvid.io import atomic_path

#: Photometric interpretations that pydicom hands back as RGB after decoding (see module doc).
_RGB_AFTER_DECODE = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT"}
_MONOCHROME = {"MONOCHROME1", "MONOCHROME2"}
_PALETTE = "PALETTE COLOR"


def _scale_to_uint8(arr: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(arr.shape, dtype=np.uint8)
    scaled = (arr.astype(np.float32) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class _FrameConverter:
    """Turns one decoded frame into ``(H, W, 3) uint8 RGB`` for a given header."""

    ds: Dataset
    photometric: str
    bits_stored: int
    palette_shift: int  # right shift for 16-bit palette entries (0 for 8-bit LUTs)

    @classmethod
    def for_dataset(cls, ds: Dataset) -> _FrameConverter:
        photometric = str(ds.get("PhotometricInterpretation", "")).strip()
        supported = _RGB_AFTER_DECODE | _MONOCHROME | {_PALETTE}
        if photometric not in supported:
            raise UnsupportedMediaError(
                f"PhotometricInterpretation {photometric!r} is not supported"
            )
        bits_stored = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
        shift = 0
        if photometric == _PALETTE:
            descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
            if descriptor is None and "SegmentedRedPaletteColorLookupTableData" not in ds:
                raise CorruptMediaError("PALETTE COLOR image without a palette LUT")
            # Probe the whole LUT once: some writers declare 16-bit entries but store 0..255.
            entries = (int(descriptor[0]) or 65536) if descriptor is not None else 256
            first = int(descriptor[1]) if descriptor is not None else 0
            probe = np.arange(first, first + entries, dtype=np.uint16)
            lut = apply_color_lut(probe.reshape(1, -1), ds)
            shift = 8 if lut.max() > 255 else 0
        return cls(ds, photometric, bits_stored, shift)

    def __call__(self, arr: np.ndarray) -> np.ndarray:
        if self.photometric == _PALETTE:
            rgb = apply_color_lut(arr, self.ds)
            rgb = (rgb >> self.palette_shift) if self.palette_shift else rgb
            return np.ascontiguousarray(rgb.astype(np.uint8))
        if self.photometric in _MONOCHROME:
            gray = self._monochrome(arr)
            return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise CorruptMediaError(f"expected 3 samples per pixel, decoded shape {arr.shape}")
        if arr.dtype == np.uint8:
            return arr
        return _scale_to_uint8(arr, 0, 2**self.bits_stored - 1)

    def _monochrome(self, arr: np.ndarray) -> np.ndarray:
        ds = self.ds
        if arr.ndim == 3:  # (H, W, 1)
            arr = arr[..., 0]
        values = apply_modality_lut(arr, ds)
        low, high = self._voi_range(values)
        if low is not None:
            values = apply_voi_lut(values, ds, index=0, prefer_lut=True)
        else:
            low, high = float(values.min()), float(values.max())
        gray = _scale_to_uint8(values, low, high)
        if self.photometric == "MONOCHROME1":
            gray = 255 - gray
        return gray

    def _voi_range(self, values: np.ndarray) -> tuple[float | None, float | None]:
        """Output range of ``apply_voi_lut`` (mirrors pydicom's apply_windowing), or
        (None, None) when the header has no VOI LUT or window and the raw range is used."""
        ds = self.ds
        if "VOILUTSequence" in ds:
            bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
            return 0.0, float(2**bits - 1)
        if "WindowCenter" in ds and "WindowWidth" in ds:
            if "ModalityLUTSequence" in ds:
                bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
                return 0.0, float(2**bits - 1)
            signed = int(ds.get("PixelRepresentation", 0)) == 1
            bits = self.bits_stored
            y_min = -(2 ** (bits - 1)) if signed else 0
            y_max = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
            slope = float(ds.get("RescaleSlope", 1) or 1)
            intercept = float(ds.get("RescaleIntercept", 0) or 0)
            return y_min * slope + intercept, y_max * slope + intercept
        return None, None


def _frames(header: DicomHeader, indices: Sequence[int] | None) -> Iterator[np.ndarray]:
    convert = _FrameConverter.for_dataset(header.dataset)
    frames = iter_pixels(header.path, indices=indices)
    number = 0
    while True:
        try:
            with warnings.catch_warnings():
                # Already recorded by read_header (InstanceRecord.warnings).
                warnings.filterwarnings("ignore", message="Unknown encoding", category=UserWarning)
                arr = next(frames)
        except StopIteration:
            return
        except Exception as exc:  # codec plugins raise many types for damaged streams
            raise CorruptMediaError(
                f"cannot decode frame {number} of {header.path.name}: {type(exc).__name__}: {exc}"
            ) from exc
        yield convert(arr)
        number += 1


def number_of_frames(ds: Dataset) -> int:
    """NumberOfFrames, 1 when absent (single-frame IODs)."""
    value = ds.get("NumberOfFrames")
    return int(value) if value not in (None, "") else 1


def read_frames(path: str | Path, *, indices: Sequence[int] | None = None) -> Iterator[np.ndarray]:
    """Decode the frames of a DICOM file one at a time as ``(H, W, 3) uint8 RGB`` arrays.

    Args:
        path: a DICOM image (single- or multi-frame).
        indices: 0-based frame indices to decode (default: all, in order).

    Raises (on the first ``next()``, or when the bad frame is reached):
        EmptyFileError, UnsupportedMediaError, CorruptMediaError: see
            :func:`medvid.dicom.header.read_header`; plus unsupported photometric
            interpretations and frames the codec cannot decode (CorruptMediaError).
    """
    header = read_header(path, compute_sha256=False)
    total = number_of_frames(header.dataset)
    if indices is not None:
        bad = [i for i in indices if not 0 <= i < total]
        if bad:
            raise IndexError(f"frame indices {bad} out of range 0..{total - 1}")
    yield from _frames(header, indices)


def read_frame(path: str | Path, index: int = 0) -> np.ndarray:
    """One decoded frame, ``(H, W, 3) uint8 RGB`` (``index`` 0-based). Errors as
    :func:`read_frames`."""
    return next(iter(read_frames(path, indices=[index])))


@dataclass(frozen=True)
class CineExport:
    """What :func:`write_cine_mp4` wrote: frame count, rate (frames/s), the source size and the
    encoded size (even, padded bottom/right with black when the source is odd)."""

    path: Path
    frame_count: int
    fps: Fraction
    width: int
    height: int
    encoded_width: int
    encoded_height: int


def write_cine_mp4(
    path_in: str | Path,
    mp4_out: str | Path,
    fps: Fraction | float | None = None,
    *,
    crf: int = 17,
) -> CineExport:
    """Encode every frame of a DICOM (cine loop) as H.264 yuv420p MP4 through PyAV, atomically.

    Args:
        fps: frames per second; default :func:`medvid.dicom.header.cine_fps` of the header.
        crf: x264 constant rate factor (17 is visually lossless for ultrasound).

    Odd widths/heights are padded by one black row/column (yuv420p needs even sizes); pixel
    coordinates of the source stay valid in the output (padding is bottom/right).

    Raises:
        UnsupportedMediaError: no rate in the header and none given; errors of
            :func:`read_frames`.
    """
    import av

    header = read_header(path_in, compute_sha256=False)
    rate = Fraction(fps).limit_denominator(1001) if fps is not None else cine_fps(header.dataset)
    if rate is None or rate <= 0:
        raise UnsupportedMediaError(
            f"{header.path.name} has no FrameTime, CineRate or RecommendedDisplayFrameRate"
        )
    height = int(header.dataset.Rows)
    width = int(header.dataset.Columns)
    enc_w, enc_h = width + width % 2, height + height % 2
    count = 0
    with atomic_path(mp4_out) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = enc_w, enc_h
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for rgb in _frames(header, None):
            if (enc_h, enc_w) != rgb.shape[:2]:
                rgb = np.pad(rgb, ((0, enc_h - height), (0, enc_w - width), (0, 0)))
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = count
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
            count += 1
        container.mux(stream.encode(None))
    return CineExport(Path(mp4_out), count, rate, width, height, enc_w, enc_h)
