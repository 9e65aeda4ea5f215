"""Synthetic on-image marks with their exact pixel mask, and a colour-threshold mark detector.

Ultrasound machines draw measurement marks into the pixels they store: caliper crosses (``+``
on Philips and GE, ``x`` on SonoSite), dotted lines between a caliper pair, arrows, and small
body-marker pictograms showing where the probe sat. A model trained on such frames learns the
marks (shortcut learning), so the cleaning stage finds and removes them. Real frames with a
pixel-exact mark mask do not exist; :func:`render_marks` draws marks in several vendor styles
onto clean real frames and returns the mask of every pixel it wrote, which is what the mark
finder (:mod:`medvid.cleaning.mark_net`) trains on and the benchmark scores against.

Every mark is drawn without anti-aliasing (``cv2.LINE_8``) into a layer of its own and copied
onto the frame in one colour, so the mask is exactly the set of written pixels: a pixel is
changed only inside the mask, and a pixel inside the mask differs from the frame unless the
frame already had that colour there (white on saturated tissue, a black outline on black).

:func:`colour_marks` is the trivial baseline: saturated yellow, green or cyan pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

MARK_COLOURS: dict[str, tuple[int, int, int]] = {
    "yellow": (255, 255, 0),
    "green": (0, 255, 0),
    "white": (255, 255, 255),
    "cyan": (0, 255, 255),
}
"""RGB of the mark colours vendors use (before the per-frame brightness draw)."""


@dataclass(frozen=True)
class VendorStyle:
    """How one family of machines draws its marks.

    Attributes:
        name: the style's name (a key of :data:`VENDOR_STYLES`).
        caliper: ``"+"`` or ``"x"``.
        colours: names in :data:`MARK_COLOURS` the style draws in, one drawn per frame.
        arm_px: (min, max) half-length of a caliper arm, pixels at a 600-pixel short side.
        thickness_px: (min, max) line thickness, pixels at a 600-pixel short side.
        outline: a 1-pixel black outline around every mark (as some machines draw for contrast).
        dot_gap_px: (min, max) distance between the dots of a measurement line, pixels.
    """

    name: str
    caliper: str
    colours: tuple[str, ...]
    arm_px: tuple[int, int] = (4, 8)
    thickness_px: tuple[int, int] = (1, 1)
    outline: bool = False
    dot_gap_px: tuple[int, int] = (3, 6)

    def __post_init__(self) -> None:
        if self.caliper not in ("+", "x"):
            raise ValueError(f"caliper must be '+' or 'x', got {self.caliper!r}")
        unknown = set(self.colours) - set(MARK_COLOURS)
        if not self.colours or unknown:
            raise ValueError(f"colours must be names in MARK_COLOURS, got {self.colours!r}")


VENDOR_STYLES: dict[str, VendorStyle] = {
    style.name: style
    for style in (
        VendorStyle("plus_yellow", "+", ("yellow",), arm_px=(4, 8)),
        VendorStyle("plus_green", "+", ("green", "cyan"), arm_px=(5, 10), thickness_px=(1, 2)),
        VendorStyle("x_white", "x", ("white",), arm_px=(3, 7)),
        VendorStyle("x_yellow", "x", ("yellow", "green"), arm_px=(4, 9), thickness_px=(1, 2)),
        VendorStyle("plus_white_outlined", "+", ("white", "yellow"), arm_px=(5, 9), outline=True),
        VendorStyle("plus_cyan_large", "+", ("cyan",), arm_px=(8, 14), thickness_px=(1, 2)),
    )
}
"""The vendor styles :func:`render_marks` draws from (plus/x, sizes, colours, outline)."""


@dataclass(frozen=True)
class RenderedMarks:
    """A frame with synthetic marks drawn on it.

    Attributes:
        image: ``(H, W, 3) uint8`` RGB, the frame with the marks.
        mask: ``(H, W) bool``, every pixel a mark was written to (outline included).
        caliper_mask: ``(H, W) bool``, the pixels of caliper crosses only (a subset of ``mask``).
        calipers: ``(x, y)`` pixel centres of the caliper crosses, in drawing order (pairs).
        style: name of the :class:`VendorStyle` used.
        colour: the RGB the marks were drawn in.
    """

    image: np.ndarray
    mask: np.ndarray
    caliper_mask: np.ndarray
    calipers: tuple[tuple[int, int], ...]
    style: str
    colour: tuple[int, int, int]

    @property
    def has_calipers(self) -> bool:
        return bool(self.calipers)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    array = np.asarray(frame)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {array.shape} {array.dtype}")
    if min(array.shape[:2]) < 32:
        raise ValueError(f"frame too small for marks (short side < 32 px): {array.shape}")
    return array


def draw_caliper(layer: np.ndarray, centre: tuple[int, int], shape: str, arm: int, thickness: int):
    """Draw one caliper cross (``"+"`` or ``"x"``, half-length ``arm`` px) as 1s into ``layer``
    (``(H, W) uint8``, modified in place), without anti-aliasing."""
    x, y = centre
    if shape == "+":
        segments = [((x - arm, y), (x + arm, y)), ((x, y - arm), (x, y + arm))]
    else:
        segments = [
            ((x - arm, y - arm), (x + arm, y + arm)),
            ((x - arm, y + arm), (x + arm, y - arm)),
        ]
    for start, end in segments:
        cv2.line(layer, start, end, 1, thickness, lineType=cv2.LINE_8)


def draw_dotted_line(
    layer: np.ndarray, start: tuple[int, int], end: tuple[int, int], gap: int, dot: int
) -> None:
    """Dots of side ``dot`` px every ``gap`` px from ``start`` to ``end`` (caliper centres
    excluded: the dots stop ``gap`` short of each end), as 1s into ``layer``."""
    (x0, y0), (x1, y1) = start, end
    length = float(np.hypot(x1 - x0, y1 - y0))
    for distance in np.arange(2 * gap, length - 2 * gap + 1e-9, gap):
        t = distance / length
        x = int(round(x0 + t * (x1 - x0)))
        y = int(round(y0 + t * (y1 - y0)))
        layer[max(y, 0) : y + dot, max(x, 0) : x + dot] = 1


def draw_arrow(
    layer: np.ndarray, tip: tuple[int, int], tail: tuple[int, int], thickness: int
) -> None:
    """An arrow from ``tail`` to ``tip`` (head a quarter of its length), as 1s into ``layer``."""
    cv2.arrowedLine(layer, tail, tip, 1, thickness, line_type=cv2.LINE_8, tipLength=0.25)


def draw_body_marker(layer: np.ndarray, corner: tuple[int, int], size: int, rng) -> None:
    """A body-marker pictogram in a ``size`` x ``size`` box at ``corner`` (top-left): an
    outline (torso ellipse, breast circle or a box) and a probe bar across it, as 1s."""
    x, y = corner
    half = size // 2
    kind = int(rng.integers(3))
    if kind == 0:
        cv2.ellipse(layer, (x + half, y + half), (half * 2 // 3, half - 1), 0, 0, 360, 1, 1)
    elif kind == 1:
        cv2.circle(layer, (x + half, y + half), half - 1, 1, 1, lineType=cv2.LINE_8)
        cv2.circle(layer, (x + half, y + half), max(half // 5, 1), 1, -1, lineType=cv2.LINE_8)
    else:
        cv2.rectangle(layer, (x, y), (x + size - 1, y + size - 1), 1, 1)
    angle = rng.uniform(0, np.pi)
    dx, dy = int(round(np.cos(angle) * half * 0.6)), int(round(np.sin(angle) * half * 0.6))
    cv2.line(layer, (x + half - dx, y + half - dy), (x + half + dx, y + half + dy), 1, 3)


def render_marks(
    frame: np.ndarray,
    rng: np.random.Generator,
    *,
    style: str | None = None,
    caliper_pairs: int | None = None,
    arrows: int | None = None,
    body_marker: bool | None = None,
) -> RenderedMarks:
    """Draw synthetic vendor marks onto a clean frame; returns the image and the exact mask.

    Marks are drawn at sizes that follow the frame (the style's pixel sizes are for a 600-pixel
    short side; at least the style's minimum), so a 270-pixel clip and a 2000-pixel DICOM both
    get marks the size a machine would draw. Unset arguments are drawn from ``rng``: the style
    (uniform over :data:`VENDOR_STYLES`), 0..2 caliper pairs (none in a quarter of frames), 0..1
    arrows, a body marker in a third of frames; brightness 0.8..1.0 of the style's colour.

    Args:
        frame: ``(H, W, 3) uint8`` RGB, short side >= 32 px; not modified.
        rng: the random draws (same seed, same frame -> same bytes).
        style: a key of :data:`VENDOR_STYLES`.
        caliper_pairs: caliper pairs, each two crosses joined by a dotted line.
        arrows: arrows pointing into the image.
        body_marker: draw a body-marker pictogram in a corner.

    Raises:
        ValueError: not an ``(H, W, 3) uint8`` frame, too small, or an unknown style.
    """
    frame = _check_frame(frame)
    if style is None:
        style = sorted(VENDOR_STYLES)[int(rng.integers(len(VENDOR_STYLES)))]
    if style not in VENDOR_STYLES:
        raise ValueError(f"unknown style {style!r}; known: {sorted(VENDOR_STYLES)}")
    vendor = VENDOR_STYLES[style]
    if caliper_pairs is None:
        caliper_pairs = 0 if rng.random() < 0.25 else int(rng.integers(1, 3))
    if arrows is None:
        arrows = int(rng.integers(0, 2))
    if body_marker is None:
        body_marker = bool(rng.random() < 1 / 3)
    height, width = frame.shape[:2]
    scale = max(1.0, min(height, width) / 600)
    colour_name = vendor.colours[int(rng.integers(len(vendor.colours)))]
    brightness = rng.uniform(0.8, 1.0)
    colour = tuple(int(round(c * brightness)) for c in MARK_COLOURS[colour_name])

    def pixels(bounds: tuple[int, int]) -> int:
        return max(int(round(rng.integers(bounds[0], bounds[1] + 1) * scale)), 1)

    marks = np.zeros((height, width), np.uint8)
    calipers_layer = np.zeros((height, width), np.uint8)
    centres: list[tuple[int, int]] = []
    thickness = pixels(vendor.thickness_px)
    margin = int(vendor.arm_px[1] * scale) + 3
    for _ in range(caliper_pairs):
        arm = pixels(vendor.arm_px)
        first = (
            int(rng.integers(margin, width - margin)),
            int(rng.integers(margin, height - margin)),
        )
        for _attempt in range(20):
            second = (
                int(rng.integers(margin, width - margin)),
                int(rng.integers(margin, height - margin)),
            )
            if np.hypot(second[0] - first[0], second[1] - first[1]) >= 6 * arm:
                break
        for centre in (first, second):
            draw_caliper(calipers_layer, centre, vendor.caliper, arm, thickness)
            centres.append(centre)
        gap = pixels(vendor.dot_gap_px)
        draw_dotted_line(marks, first, second, gap, dot=max(thickness, int(round(scale))))
    marks |= calipers_layer
    for _ in range(arrows):
        length = pixels((15, 40))
        tip = (
            int(rng.integers(length, width - length)),
            int(rng.integers(length, height - length)),
        )
        angle = rng.uniform(0, 2 * np.pi)
        tail = (
            int(round(tip[0] + length * np.cos(angle))),
            int(round(tip[1] + length * np.sin(angle))),
        )
        draw_arrow(marks, tip, tail, thickness)
    if body_marker:
        size = pixels((24, 40))
        corner_x = 4 if rng.random() < 0.5 else width - size - 4
        draw_body_marker(marks, (corner_x, height - size - 4), size, rng)
    image = frame.copy()
    mask = marks.astype(bool)
    if vendor.outline:
        outline = cv2.dilate(marks, np.ones((3, 3), np.uint8)).astype(bool) & ~mask
        image[outline] = 0
        mask = mask | outline
    image[marks.astype(bool)] = colour
    return RenderedMarks(
        image=image,
        mask=mask,
        caliper_mask=calipers_layer.astype(bool),
        calipers=tuple(centres),
        style=style,
        colour=colour,
    )


def colour_marks(
    image: np.ndarray,
    *,
    hues: Sequence[tuple[int, int]] = ((20, 100),),
    min_saturation: int = 128,
    min_value: int = 128,
) -> np.ndarray:
    """The trivial mark detector: saturated yellow, green and cyan pixels.

    Args:
        image: ``(H, W, 3) uint8`` RGB.
        hues: OpenCV hue ranges (0..179: yellow 30, green 60, cyan 90), inclusive.
        min_saturation, min_value: HSV saturation and value floors (0..255).

    Returns:
        ``(H, W) bool``.

    Raises:
        ValueError: not an ``(H, W, 3) uint8`` image.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    in_hue = np.zeros(hue.shape, bool)
    for low, high in hues:
        in_hue |= (hue >= low) & (hue <= high)
    return in_hue & (saturation >= min_saturation) & (value >= min_value)
