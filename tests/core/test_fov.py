"""Field of view on real files whose image region is known: from the DICOM ultrasound region,
from a video's moving pixels, from a still's largest lit region (boxes checked by eye once and
written here with a few pixels' tolerance)."""

import av
import numpy as np
import pydicom
import pytest

from medvid.cleaning.fov import (
    FieldOfView,
    crop_to,
    detect_still_field_of_view,
    detect_video_field_of_view,
    field_of_view,
    region_from_dicom,
)
from medvid.dicom.pixels import read_frames
from medvid.images import read_rgb


def _close(box, expected, tolerance=6):
    return all(abs(a - b) <= tolerance for a, b in zip(box, expected, strict=True))


def _every(path, step):
    with av.open(str(path)) as container:
        return [
            f.to_ndarray(format="rgb24")
            for i, f in enumerate(container.decode(video=0))
            if i % step == 0
        ]


def test_the_dicom_ultrasound_region_is_the_box_with_exclusive_maxima(shared_data):
    # OBXXXX1A: RegionLocationMinX0/MinY0/MaxX1/MaxY1 = 120, 60, 800, 518 on an 800x600 image
    ds = pydicom.dcmread(shared_data / "dicom" / "OBXXXX1A.dcm", stop_before_pixels=True)
    assert region_from_dicom(ds) == (120, 60, 800, 519)
    assert field_of_view(dicom=ds) == FieldOfView((120, 60, 800, 519), "dicom")


def test_a_dicom_file_without_regions_has_none(shared_data):
    ds = pydicom.dcmread(shared_data / "dicom" / "US1_J2KR.dcm", stop_before_pixels=True)
    assert region_from_dicom(ds) is None


def test_a_region_covering_the_whole_frame_says_nothing(shared_data):
    path = shared_data / "dicom" / "itkpocus_sonoque_anechoic-3mm-3mm.dcm"  # 0,0,2083,1455
    assert region_from_dicom(pydicom.dcmread(path, stop_before_pixels=True)) is None


def test_the_moving_pixels_of_a_clip_are_its_image(shared_data):
    # Clarius ocular clip, 1280x960: the B-mode image spans x 264..1016, y 85..874; the depth
    # scale, its dots and the "4 cm" label stay still
    frames = _every(shared_data / "videos" / "itkpocus_clarius-ocular-short.mp4", 5)
    box = detect_video_field_of_view(frames)
    assert _close(box, (264, 85, 1016, 874))
    assert field_of_view(frames=frames).source == "motion"


def test_a_cine_loop_moves_inside_its_declared_region(shared_data):
    path = shared_data / "dicom" / "color3d_jpeg_baseline.dcm"  # region 84, 31, 596, 415
    frames = list(read_frames(path, indices=range(0, 60, 3)))
    x0, y0, x1, y1 = detect_video_field_of_view(frames)
    assert 84 <= x0 < x1 <= 596 and 31 <= y0 < y1 <= 415
    assert (x1 - x0) * (y1 - y0) > 0.5 * 512 * 384


def test_a_video_that_never_changes_falls_back_to_the_lit_region(shared_data):
    frames = _every(shared_data / "videos" / "itkpocus_sonosite-anon-eye1-video.mp4", 10)
    assert detect_video_field_of_view(frames) is None
    found = field_of_view(frames=frames)
    assert found is not None and found.source == "detected"


def test_the_largest_lit_region_of_an_endoscopy_still_is_the_scope_image(shared_data):
    # the octagonal scope image spans x 550..1901 and the full height; the patient panel on the
    # left is text on black and is not part of it
    image = read_rgb(shared_data / "images" / "lxanon_endoscopy_frame1.jpg")
    assert _close(detect_still_field_of_view(image), (550, 0, 1901, 1080))


def test_the_largest_lit_region_of_an_ultrasound_screen_capture(shared_data):
    # Interson capture 1357x870: the B-mode image spans x 388..913, y 60..850 between the depth
    # scale and the tool bar
    image = read_rgb(shared_data / "images" / "itkpocus_interson-image.jpg")
    assert _close(detect_still_field_of_view(image), (388, 60, 913, 850))


def test_a_black_frame_has_no_field_of_view():
    black = np.zeros((120, 160, 3), np.uint8)
    assert detect_still_field_of_view(black) is None
    assert detect_video_field_of_view([black, black]) is None
    assert field_of_view(image=black) is None


def test_crop_takes_the_box_and_refuses_one_outside():
    image = np.arange(12 * 10 * 3, dtype=np.uint8).reshape(10, 12, 3)
    assert crop_to(image, (2, 3, 7, 9)).shape == (6, 5, 3)
    np.testing.assert_array_equal(crop_to(image, (2, 3, 7, 9)), image[3:9, 2:7])
    for bad in ((0, 0, 13, 5), (5, 5, 5, 6), (-1, 0, 3, 3)):
        with pytest.raises(ValueError):
            crop_to(image, bad)


def test_frames_of_different_sizes_are_refused():
    with pytest.raises(ValueError):
        detect_video_field_of_view([np.zeros((4, 4), np.uint8), np.zeros((5, 4), np.uint8)])
