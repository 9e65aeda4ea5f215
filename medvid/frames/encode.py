"""A decoded frame to image file bytes, with burned-in text blacked out on the way.

JPEG frames are encoded straight from the decoder's YUV 4:2:0 planes with libjpeg-turbo
(``simplejpeg.encode_jpeg_yuv_planes``, TurboJPEG's ``tjCompressFromYUVPlanes``): JPEG (JFIF)
stores full-range BT.601 YCbCr with 4:2:0 chroma, which is what the video already holds up to a
range expansion, so the frame is never converted to BGR and back, and its chroma is not
subsampled a second time. Limited-range ("TV", Y 16..235, C 16..240) video is expanded to full
range per plane, exactly as the BGR path's colour conversion would (ITU-R BT.601 / JFIF 1.02).

BT.709 video (HD: the endoscopy clip of ``shared/data``) is converted to JPEG's BT.601 YCbCr on
the planes as well: the two matrices share their luma-from-grey row, so grey stays grey; chroma is
re-mixed at its own resolution (a 2x2 matrix) and luma gets a correction from the co-sited chroma
sample (:func:`jpeg_ycbcr_planes`). That is the BGR round trip's arithmetic without the trip
(swscale to BGR, then libjpeg back to YCbCr and 4:2:0), minus the clipping of out-of-gamut
colours to RGB: within 0.75 grey levels of the exact conversion, where swscale's fast path sits
about one level below it.

Everything else goes through BGR, as before: PNG output, formats other than yuv420p/yuvj420p, and
other colour matrices (swscale converts them to BGR with the matrix the stream declares).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Literal

import cv2
import numpy as np
import simplejpeg
from av.video.frame import VideoFrame

ImageFormat = Literal["jpg", "png"]
Box = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)`` in pixels of the original frame; x1/y1 exclusive."""

_FULL_RANGE = 2  # AVCOL_RANGE_JPEG
# AVColorSpace values whose YCbCr is JPEG's (BT.601): unspecified, BT.470BG, SMPTE 170M.
_BT601_COLORSPACES = frozenset({2, 5, 6})
# Luma weights (Kr, Kb) of the other matrices converted on the planes, by AVColorSpace value:
# BT.709 (ITU-R BT.709-6 item 3.2).
_PLANE_CONVERTED_KR_KB = {1: (0.2126, 0.0722)}
_BT601_KR_KB = (0.299, 0.114)  # ITU-R BT.601-7 item 2.5.1, JFIF 1.02
_YUV420_FORMATS = frozenset({"yuv420p", "yuvj420p"})
# Limited to full range as out = in * scale + offset, saturated to 0..255 (BT.601 section 2.5.3:
# Y' black 16, white 235; colour difference 128 +- 112).
_LUMA_SCALE, _LUMA_OFFSET = 255.0 / 219.0, -16.0 * 255.0 / 219.0
_CHROMA_SCALE, _CHROMA_OFFSET = 255.0 / 224.0, 128.0 - 128.0 * 255.0 / 224.0
_PNG_COMPRESSION = 3


@dataclass(frozen=True)
class Redaction:
    """Pixels to black out in the written frames of a video: burned-in text found by OCR.

    Attributes:
        boxes: masked in every frame.
        keep_region: the imaging field of view; with ``blank_outside`` every pixel outside it is
            blacked out as well.
        blank_outside: see ``keep_region``.
        spans: ``(box, first_frame, last_frame)``: ``box`` masked only in frames
            ``first_frame..last_frame`` (inclusive; frame numbers of the original video, decode
            order, as in the frame manifest): text that is on screen for a while only.

    All boxes are :data:`Box` rectangles in pixels of the original frame. Black is RGB 0 (Y 0,
    Cb = Cr = 128 in JPEG's YCbCr). Lists (from JSON) are accepted and stored as tuples.

    Raises:
        ValueError: a span ends before it starts or starts before frame 0.
    """

    boxes: tuple[Box, ...] = ()
    keep_region: Box | None = None
    blank_outside: bool = False
    spans: tuple[tuple[Box, int, int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "boxes", tuple(_box(b) for b in self.boxes))
        if self.keep_region is not None:
            object.__setattr__(self, "keep_region", _box(self.keep_region))
        spans = tuple((_box(box), int(first), int(last)) for box, first, last in self.spans)
        for box, first, last in spans:
            if first < 0 or last < first:
                raise ValueError(f"span {box} covers frames {first}..{last}: not a frame range")
        object.__setattr__(self, "spans", spans)

    @cached_property
    def _span_index(self) -> tuple[list[int], list[tuple[Box, ...]]]:
        """Frame numbers where the set of span boxes changes, and that set from each on.

        Built once: a sweep over span starts and ends. Lookup is a bisection, so thousands of
        spans cost O(log n) a frame; memory is the sum, over the stretches between consecutive
        starts/ends, of the spans open there.
        """
        events: dict[int, list[tuple[int, int]]] = {}
        for index, (_, first, last) in enumerate(self.spans):
            events.setdefault(first, []).append((1, index))
            events.setdefault(last + 1, []).append((-1, index))
        bounds: list[int] = []
        sets: list[tuple[Box, ...]] = []
        open_spans: set[int] = set()
        for frame_number in sorted(events):
            for change, index in events[frame_number]:
                if change > 0:
                    open_spans.add(index)
                else:
                    open_spans.discard(index)
            bounds.append(frame_number)
            sets.append(tuple(self.spans[i][0] for i in sorted(open_spans)))
        return bounds, sets

    @property
    def is_empty(self) -> bool:
        """True when it never changes a pixel."""
        return not (self.boxes or self.spans or (self.blank_outside and self.keep_region))

    def boxes_at(self, frame_number: int) -> list[Box]:
        """The boxes to mask in frame ``frame_number``: :attr:`boxes`, then the boxes of the
        spans covering it, in the order given."""
        if not self.spans:
            return list(self.boxes)
        bounds, sets = self._span_index
        position = bisect_right(bounds, frame_number) - 1
        return list(self.boxes) + (list(sets[position]) if position >= 0 else [])

    def apply(self, image: np.ndarray, frame_number: int | None = None) -> np.ndarray:
        """Black out frame ``frame_number``'s boxes (and the outside) of an ``(H, W, C)`` or
        ``(H, W)`` image in place; returns it.

        Raises:
            ValueError: the redaction has spans and no ``frame_number`` is given.
        """
        height, width = image.shape[:2]
        for x0, y0, x1, y1 in self._boxes_for(frame_number):
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
            if x1 > x0 and y1 > y0:  # a negative end would count from the far edge
                image[y0:y1, x0:x1] = 0
        if self.blank_outside and self.keep_region is not None:
            _blank_outside(image, self.keep_region, 0)
        return image

    def apply_ycbcr(
        self, y: np.ndarray, cb: np.ndarray, cr: np.ndarray, frame_number: int | None = None
    ) -> None:
        """Black out frame ``frame_number``'s boxes (and the outside) in full-range 4:2:0
        planes, in place: ``y`` ``(H, W) uint8`` to 0, ``cb``/``cr`` ``(ceil(H/2), ceil(W/2))
        uint8`` to 128 wherever a chroma sample touches a blacked-out pixel, so no colour of
        the masked text survives at its edges.

        Raises:
            ValueError: the redaction has spans and no ``frame_number`` is given.
        """
        height, width = y.shape
        for x0, y0, x1, y1 in self._boxes_for(frame_number):
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
            if x1 <= x0 or y1 <= y0:
                continue
            y[y0:y1, x0:x1] = 0
            chroma = (slice(y0 // 2, (y1 + 1) // 2), slice(x0 // 2, (x1 + 1) // 2))
            cb[chroma] = 128
            cr[chroma] = 128
        if self.blank_outside and self.keep_region is not None:
            _blank_outside(y, self.keep_region, 0)
            x0, y0, x1, y1 = self.keep_region
            # the chroma samples wholly inside the kept region (ceil of the start, floor of the
            # end) keep their colour
            kept = ((max(x0, 0) + 1) // 2, (max(y0, 0) + 1) // 2, x1 // 2, y1 // 2)
            _blank_outside(cb, kept, 128)
            _blank_outside(cr, kept, 128)

    def _boxes_for(self, frame_number: int | None) -> list[Box]:
        if frame_number is None:
            if self.spans:
                raise ValueError("a redaction with spans needs the frame number")
            return list(self.boxes)
        return self.boxes_at(frame_number)


def _box(values) -> Box:
    x0, y0, x1, y1 = (int(v) for v in values)
    return (x0, y0, x1, y1)


def _blank_outside(image: np.ndarray, region: Box, value: int) -> None:
    x0, y0, x1, y1 = region
    image[: max(y0, 0)] = value
    image[max(y1, 0) :] = value
    image[:, : max(x0, 0)] = value
    image[:, max(x1, 0) :] = value


def frame_to_bgr(frame: VideoFrame) -> np.ndarray:
    """A decoded frame as ``(H, W, 3) uint8`` BGR (OpenCV's channel order).

    Limited-range BT.601 (or untagged) yuv420p is converted by OpenCV (SIMD, ~3x faster than
    swscale here); anything else by swscale with the colour matrix and range the frame declares,
    single-threaded because per-call thread start-up costs more than it saves on one frame.
    """
    if (
        frame.format.name == "yuv420p"
        and frame.width % 2 == 0
        and frame.height % 2 == 0
        and frame.color_range != _FULL_RANGE
        and frame.colorspace in _BT601_COLORSPACES
    ):
        i420 = frame.to_ndarray(format="yuv420p")
        return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24", threads=1)


def jpeg_ycbcr_planes(
    frame: VideoFrame, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The top-left ``width`` x ``height`` pixels of a 4:2:0 frame as JPEG's YCbCr planes.

    Returns:
        Fresh, writable full-range BT.601 ``Y (height, width)``, ``Cb`` and ``Cr``
        ``(ceil(height/2), ceil(width/2))`` ``uint8`` planes; ``None`` when the frame is not
        yuv420p/yuvj420p or its colour matrix is neither BT.601 (unspecified counts as BT.601,
        as in :func:`frame_to_bgr`) nor BT.709 (converted here, see the module docstring):
        those go through BGR.
    """
    colorspace = frame.colorspace
    if frame.format.name not in _YUV420_FORMATS or (
        colorspace not in _BT601_COLORSPACES and colorspace not in _PLANE_CONVERTED_KR_KB
    ):
        return None
    chroma_width, chroma_height = (width + 1) // 2, (height + 1) // 2
    y, cb, cr = (
        np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        for plane in frame.planes
    )
    y = y[:height, :width]
    cb = cb[:chroma_height, :chroma_width]
    cr = cr[:chroma_height, :chroma_width]
    full_range = frame.format.name == "yuvj420p" or frame.color_range == _FULL_RANGE
    if colorspace in _PLANE_CONVERTED_KR_KB:
        return _to_bt601_planes(y, cb, cr, _plane_conversion(colorspace, full_range))
    if full_range:
        # copies: the decoder may still read these planes as references for later frames
        return y.copy(), cb.copy(), cr.copy()
    # One saturating multiply-add per plane (OpenCV SIMD): equal to a lookup table for all 256
    # values, at half its cost.
    return (
        cv2.addWeighted(y, _LUMA_SCALE, y, 0.0, _LUMA_OFFSET),
        cv2.addWeighted(cb, _CHROMA_SCALE, cb, 0.0, _CHROMA_OFFSET),
        cv2.addWeighted(cr, _CHROMA_SCALE, cr, 0.0, _CHROMA_OFFSET),
    )


@cache
def _plane_conversion(colorspace: int, full_range: bool) -> tuple[float, ...]:
    """``addWeighted`` coefficients from ``colorspace``'s YCbCr (limited or full range) to
    full-range BT.601 YCbCr, for :func:`_to_bt601_planes`.

    With ``E`` the matrix from R'G'B' to ``(Y, Pb, Pr)`` (Y in 0..1, Pb/Pr in -0.5..0.5) for
    luma weights ``(Kr, Kb)`` (BT.601 item 2.5.2, BT.709 item 3.2-3.3), ``T = E_601 @
    inv(E_src)`` maps the source's ``(Y, Pb, Pr)`` to BT.601's. Both matrices give grey for
    ``Pb = Pr = 0``, so ``T``'s first column is ``(1, 0, 0)``: the new chroma depends on the old
    chroma only, the new luma on the old luma plus a chroma term.

    Returns:
        ``(luma_scale, luma_offset, corr_cb, corr_cr, corr_offset, cb_cb, cb_cr, cb_offset,
        cr_cb, cr_cr, cr_offset)``: ``Y' = luma_scale * Y + C / 2 + luma_offset`` with ``C =
        corr_cb * Cb + corr_cr * Cr + corr_offset`` (twice the chroma term plus 128, so that it
        fits a ``uint8`` at half a level's resolution: at most 87 levels either side of 128 for
        any 8-bit input), ``Cb' = cb_cb * Cb + cb_cr * Cr + cb_offset``, ``Cr'`` likewise.
    """

    def rgb_to_ypbpr(kr: float, kb: float) -> np.ndarray:
        kg = 1.0 - kr - kb
        return np.array(
            [
                [kr, kg, kb],
                [-kr / (2 - 2 * kb), -kg / (2 - 2 * kb), 0.5],
                [0.5, -kg / (2 - 2 * kr), -kb / (2 - 2 * kr)],
            ]
        )

    to_601 = rgb_to_ypbpr(*_BT601_KR_KB) @ np.linalg.inv(
        rgb_to_ypbpr(*_PLANE_CONVERTED_KR_KB[colorspace])
    )
    # source code values to (Y, Pb, Pr) times 255, i.e. to full-range code values
    if full_range:
        luma_scale, luma_black, chroma_scale = 1.0, 0.0, 1.0
    else:
        luma_scale, luma_black, chroma_scale = _LUMA_SCALE, 16.0, _CHROMA_SCALE
    corr_cb, corr_cr = (2 * chroma_scale * to_601[0, 1], 2 * chroma_scale * to_601[0, 2])
    coefficients = [luma_scale, -luma_scale * luma_black - 64.0]
    coefficients += [corr_cb, corr_cr, 128.0 - 128.0 * (corr_cb + corr_cr)]
    for row in (1, 2):
        from_cb, from_cr = chroma_scale * to_601[row, 1], chroma_scale * to_601[row, 2]
        coefficients += [from_cb, from_cr, 128.0 - 128.0 * (from_cb + from_cr)]
    return tuple(float(c) for c in coefficients)


def _to_bt601_planes(
    y: np.ndarray, cb: np.ndarray, cr: np.ndarray, conversion: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """New full-range BT.601 planes from another matrix's 4:2:0 planes (views into the decoded
    frame, cropped), with :func:`_plane_conversion`'s coefficients.

    Each luma pixel takes the chroma term of the chroma sample covering it (nearest: the sample
    a 4:2:0 decoder without chroma interpolation, like swscale's unscaled converters, pairs it
    with). Saturating OpenCV arithmetic throughout, SIMD on ``uint8``; the term is upsampled
    horizontally by interleaving it with itself and vertically by using it for both rows of
    each pair, which costs about a tenth of ``cv2.resize``.
    """
    (luma_scale, luma_offset, corr_cb, corr_cr, corr_offset) = conversion[:5]
    (cb_cb, cb_cr, cb_offset, cr_cb, cr_cr, cr_offset) = conversion[5:]
    height, width = y.shape
    correction = cv2.addWeighted(cb, corr_cb, cr, corr_cr, corr_offset)
    correction = cv2.merge([correction, correction]).reshape(correction.shape[0], -1)
    luma = np.empty((height, width), np.uint8)
    cv2.addWeighted(y[0::2], luma_scale, correction[: (height + 1) // 2, :width], 0.5,
                    luma_offset, dst=luma[0::2])  # fmt: skip
    cv2.addWeighted(y[1::2], luma_scale, correction[: height // 2, :width], 0.5, luma_offset,
                    dst=luma[1::2])  # fmt: skip
    return (
        luma,
        cv2.addWeighted(cb, cb_cb, cr, cb_cr, cb_offset),
        cv2.addWeighted(cb, cr_cb, cr, cr_cr, cr_offset),
    )


def encode_frame(
    frame: VideoFrame,
    width: int,
    height: int,
    image_format: ImageFormat,
    jpeg_quality: int,
    redaction: Redaction | None = None,
    frame_number: int | None = None,
) -> bytes:
    """The top-left ``width`` x ``height`` pixels of a decoded frame (normalization padding
    cropped), redacted, as image file bytes.

    Args:
        frame: the decoded frame.
        width, height: pixels of the image.
        image_format: ``"jpg"`` (baseline JFIF, 4:2:0, ``jpeg_quality``, libjpeg-turbo's
            accurate integer DCT) or ``"png"`` (lossless, zlib level 3).
        jpeg_quality: libjpeg quality 1..100.
        redaction: what to black out; ``frame_number`` (original video) picks its spans.

    Raises:
        RuntimeError: OpenCV could not encode the image (a bug, not bad input).
    """
    if redaction is not None and redaction.is_empty:
        redaction = None
    if image_format == "jpg":
        planes = jpeg_ycbcr_planes(frame, width, height)
        if planes is not None:
            if redaction is not None:
                redaction.apply_ycbcr(*planes, frame_number)
            return simplejpeg.encode_jpeg_yuv_planes(*planes, quality=jpeg_quality)
    bgr = frame_to_bgr(frame)
    if bgr.shape[0] != height or bgr.shape[1] != width:
        bgr = bgr[:height, :width]
    if redaction is not None:
        bgr = redaction.apply(bgr, frame_number)
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
        if image_format == "jpg"
        else [cv2.IMWRITE_PNG_COMPRESSION, _PNG_COMPRESSION]
    )
    ok, encoded = cv2.imencode(f".{image_format}", bgr, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {width}x{height} {image_format} image")
    return encoded.tobytes()
