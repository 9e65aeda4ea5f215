"""Colour-Doppler detection on real DICOM stills: the fraction of coloured pixels inside the
field of view separates a power-Doppler image from grey B-mode with coloured calipers."""

import numpy as np
import pydicom
import pytest

from medvid.cleaning.filters import DEFAULT_MAX_COLOUR_FRACTION, colour_fraction
from medvid.cleaning.fov import region_from_dicom
from medvid.dicom.pixels import read_frame
from medvid.images import read_rgb


def _fraction(path) -> float:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return colour_fraction(read_frame(path), region_from_dicom(ds))


def test_a_power_doppler_still_is_over_the_limit(shared_data):
    # US1: GE power Doppler of a lymph node, orange flow over the grey image
    assert colour_fraction(read_frame(shared_data / "dicom" / "US1_J2KR.dcm")) > 0.05


def test_grey_bmode_with_coloured_calipers_is_under_the_limit(shared_data):
    # OBXXXX1A: palette colour, a grey image with a yellow caliper pair inside its region
    assert _fraction(shared_data / "dicom" / "OBXXXX1A.dcm") < DEFAULT_MAX_COLOUR_FRACTION
    assert _fraction(shared_data / "dicom" / "JPGLosslessP14SV1_1s_1f_8b.dcm") == 0.0
    annotated = read_rgb(shared_data / "images" / "itkpocus_interson-image-annotation.jpg")
    assert colour_fraction(annotated) < DEFAULT_MAX_COLOUR_FRACTION


def test_colour_is_counted_inside_the_box_only():
    image = np.zeros((10, 10, 3), np.uint8)
    image[:, :5] = (200, 0, 0)  # left half red
    assert colour_fraction(image) == 0.5
    assert colour_fraction(image, (0, 0, 5, 10)) == 1.0
    assert colour_fraction(image, (5, 0, 10, 10)) == 0.0
    assert colour_fraction(image[:, :, 0]) == 0.0  # grey


def test_malformed_input_is_refused():
    with pytest.raises(ValueError):
        colour_fraction(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError):
        colour_fraction(np.zeros((4, 4, 3), np.uint8), (2, 2, 2, 4))
