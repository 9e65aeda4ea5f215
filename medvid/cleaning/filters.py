"""Image filters applied before export: colour-Doppler ultrasound and images too small to use.

Colour: a grey-scale B-mode image has equal channels (chroma 0) apart from JPEG/YBR noise and a
few coloured calipers or icons; a colour or power Doppler box paints blood flow in red, blue or
orange over a tenth of the image or more. :func:`colour_fraction` counts the pixels inside the
field of view whose chroma (max - min of R, G, B, in 0..255) exceeds :data:`COLOUR_CHROMA`.
Measured on ``shared/data``: US1 (GE power Doppler lymph node) 0.113; OBXXXX1A (palette
colour, grey image with yellow calipers) 0.0013; an Interson capture with yellow distance
calipers 0.007; grey B-mode stills 0.000. The default limit, :data:`DEFAULT_MAX_COLOUR_FRACTION`
(0.02), sits between them.
"""

from __future__ import annotations

import numpy as np

#: Chroma (max - min of the RGB channels, 0..255) above which a pixel counts as coloured.
COLOUR_CHROMA = 30
#: Fraction of coloured pixels inside the field of view above which an ultrasound image is
#: taken as colour Doppler.
DEFAULT_MAX_COLOUR_FRACTION = 0.02


def colour_fraction(
    image: np.ndarray, box: tuple[int, int, int, int] | None = None, *, chroma: int = COLOUR_CHROMA
) -> float:
    """Fraction (0..1) of the pixels of ``image`` inside ``box`` whose chroma exceeds ``chroma``.

    Args:
        image: ``(H, W, 3) uint8`` RGB (or BGR: the measure is symmetric in the channels);
            ``(H, W)`` grey images have no colour (0.0).
        box: ``(x0, y0, x1, y1)`` pixels, x1/y1 exclusive (e.g. the field of view); None: all.

    Raises:
        ValueError: an image that is neither ``(H, W)`` nor ``(H, W, 3)``, or an empty box.
    """
    array = np.asarray(image)
    if array.ndim == 2:
        return 0.0
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected (H, W, 3) RGB, got {array.shape}")
    if box is not None:
        x0, y0, x1, y1 = (int(v) for v in box)
        array = array[max(0, y0) : y1, max(0, x0) : x1]
    if array.size == 0:
        raise ValueError(f"empty box {box} on a {image.shape} image")
    rgb = array[:, :, :3].astype(np.int16)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return float((spread > chroma).mean())
