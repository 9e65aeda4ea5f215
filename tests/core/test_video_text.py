"""Burned-in text anywhere in a video: the whole-video scan, its plan, the allow-list and the
independent residual check (medvid.deid.video_text, medvid.deid.residual, medvid.ocr.detect)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from medvid.deid import PhiValues
from medvid.deid.pixels import KEPT_REASON, redact_pixels, text_decision
from medvid.deid.residual import (
    default_residual_engines,
    residual_check_frames,
    residual_hit,
    residual_text_findings,
)
from medvid.deid.video_text import TextScanSettings, VideoRedactionPlan, scan_video_text
from medvid.ocr import TesseractEngine
from medvid.ocr.detect import CPU_PROVIDER, CUDA_PROVIDER, TextDetector, TextRecognizer
from medvid.ocr.detect import execution_providers as providers_for
from medvid.ocr.parse import is_clinical_annotation
from tests.core.conftest import H1N1, decode_rgb, write_h264
from tests.core.dicom_fixtures import load_rgb

FPS = Fraction(25)
LINE = "ID 5551234 JOHN SMITH"
FLASH = "DOE JANE 4432109"
FLASH_FRAMES = range(27, 42)  # 15 frames = 0.6 s, starting between detection points 24 and 30
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@pytest.fixture(scope="module")
def detector() -> TextDetector:
    return TextDetector(threads=1)


@pytest.fixture(scope="module")
def recognizer() -> TextRecognizer:
    return TextRecognizer(threads=1)


def _hershey(text: str, origin: tuple[int, int], scale: float, color) -> Callable:
    def draw(image: np.ndarray) -> np.ndarray:
        cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
        return image

    return draw


def _dejavu(text: str, baseline: tuple[int, int], cap_px: int, color) -> Callable:
    font = ImageFont.truetype(str(DEJAVU), round(cap_px / 0.729))  # DejaVu cap height 0.729 em

    def draw(image: np.ndarray) -> np.ndarray:
        canvas = Image.fromarray(image)
        ImageDraw.Draw(canvas).text(baseline, text, fill=color, font=font, anchor="ls")
        image[:] = np.asarray(canvas)
        return image

    return draw


def _ink(shape: tuple[int, ...], draw: Callable) -> np.ndarray:
    """Pixels a drawing touches (drawn in white on black)."""
    return draw(np.zeros(shape, np.uint8)).max(axis=2) > 0


def _uncovered(plan: VideoRedactionPlan, frame_number: int, ink: np.ndarray) -> int:
    covered = np.zeros(ink.shape, bool)
    for x0, y0, x1, y1 in plan.boxes_for_frame(frame_number):
        covered[y0:y1, x0:x1] = True
    return int((ink & ~covered).sum())


def _video(tmp: Path, frames: list[np.ndarray], draws: dict[int, list[Callable]]) -> Path:
    out = []
    for number, frame in enumerate(frames):
        frame = frame.copy()
        for draw in draws.get(number, []):
            frame = draw(frame)
        out.append(frame)
    return write_h264(tmp, out, FPS)


@pytest.fixture(scope="module")
def attack(videos_dir: Path, tmp_path_factory: pytest.TempPathFactory, detector, recognizer):
    """The issue's two attacks on a real lung clip (270x270, 25 fps, first 3 s): an 11 px line
    at the bottom of every frame and a name + id shown for 0.6 s mid-video, over the image."""
    frames = decode_rgb(videos_dir / H1N1, 75)
    line = _hershey(LINE, (4, 262), 0.36, (255, 255, 255))  # cap height 8 px, line 11 px
    flash = _hershey(FLASH, (60, 140), 0.45, (255, 255, 0))
    draws = {n: [line] + ([flash] if n in FLASH_FRAMES else []) for n in range(len(frames))}
    path = _video(tmp_path_factory.mktemp("attack") / "attack.mp4", frames, draws)
    scan = scan_video_text(path, detector=detector, recognizer=recognizer)
    shape = frames[0].shape
    return {"path": path, "scan": scan, "line": _ink(shape, line), "flash": _ink(shape, flash)}


def test_small_line_at_the_bottom_is_masked_in_every_frame(attack) -> None:
    plan = attack["scan"].plan
    assert plan.frame_count == 75
    assert [_uncovered(plan, n, attack["line"]) for n in range(75)] == [0] * 75


def test_text_shown_for_0_6_s_between_detection_points_is_masked_in_every_frame_it_shows(
    attack,
) -> None:
    plan = attack["scan"].plan
    assert plan.detect_step == 6  # floor(0.25 s x 25 fps): detection points 24 and 30, 36...
    assert [_uncovered(plan, n, attack["flash"]) for n in FLASH_FRAMES] == [0] * 15


def test_flash_mask_stays_within_the_neighbouring_detection_points(attack) -> None:
    plan = attack["scan"].plan
    flash_spans = [s for s in plan.spans if s[0][1] < 200]
    assert flash_spans
    assert min(s[1] for s in flash_spans) >= 12 and max(s[2] for s in flash_spans) <= 54


def test_the_scan_reads_each_text_once_per_appearance_not_per_frame(attack) -> None:
    plan = attack["scan"].plan
    assert plan.detection_points == 14  # 0, 6, ..., 72 and the last frame 74
    assert plan.recognitions <= 6


def test_plan_holds_no_text_and_round_trips_through_json(attack) -> None:
    plan = attack["scan"].plan
    stored = json.dumps(plan.as_dict())
    for token in ("5551234", "JOHN", "SMITH", "DOE", "JANE"):
        assert token not in stored.upper()
    assert VideoRedactionPlan.from_dict(json.loads(stored)) == plan
    kwargs = plan.redaction_kwargs()
    assert kwargs["spans"] == plan.redaction_spans() == plan.spans
    assert set(kwargs) == {"boxes", "keep_region", "blank_outside", "spans"}


def test_masked_reasons_name_the_id_not_the_text(attack) -> None:
    reasons = dict(attack["scan"].plan.masked_reasons)
    assert reasons.get("id-like number", 0) >= 2
    assert all(t.masked for t in attack["scan"].tracks)


def test_residual_check_passes_on_the_plan_and_fails_when_the_plan_is_emptied(attack) -> None:
    plan = attack["scan"].plan
    decoded = decode_rgb(attack["path"])
    written = list(range(0, 75, 10)) + [30, 33]  # frames 30, 33 show the flash
    picks = residual_check_frames(plan, written, random_frames=0, max_text_frames=None)
    assert 30 in picks and 33 in picks
    engines = default_residual_engines()
    # Frame 33 shows both attacks.
    assert residual_text_findings([(33, plan.apply(decoded[33].copy(), 33))], engines) == []
    empty = dataclasses.replace(plan, boxes=(), spans=())
    leaked = residual_text_findings([(33, empty.apply(decoded[33].copy(), 33))], engines)
    assert any("id-like number" in f for f in leaked)
    assert not any(token in " ".join(leaked) for token in ("5551234", "JOHN", "DOE", "4432109"))


def test_eight_pixel_text_is_found_and_masked(
    videos_dir: Path, tmp_path: Path, detector, recognizer
) -> None:
    frames = decode_rgb(videos_dir / H1N1, 12)
    draw = _dejavu("MRN 8812345 ROE", (70, 120), 8, (200, 200, 200))
    path = _video(tmp_path / "small.mp4", frames, {n: [draw] for n in range(12)})
    plan = scan_video_text(path, detector=detector, recognizer=recognizer).plan
    ink = _ink(frames[0].shape, draw)
    assert [_uncovered(plan, n, ink) for n in range(12)] == [0] * 12


def test_allow_listed_annotations_inside_the_field_of_view_are_kept(
    videos_dir: Path, tmp_path: Path, detector, recognizer
) -> None:
    frames = decode_rgb(videos_dir / H1N1, 10)
    draws = [
        _hershey("LT BREAST 2:00 5CM FN TRANS", (20, 60), 0.42, (255, 255, 255)),
        _hershey("D1 3 mm", (150, 160), 0.42, (255, 255, 0)),
        _hershey("4 cm", (200, 220), 0.42, (255, 255, 255)),
    ]
    path = _video(tmp_path / "annotated.mp4", frames, {n: draws for n in range(10)})
    scan = scan_video_text(
        path, detector=detector, recognizer=recognizer, keep_region=(0, 0, 270, 270)
    )
    kept = {t.text.replace(" ", "") for t in scan.tracks if not t.masked}
    assert {"LTBREAST2:005CMFNTRANS", "D13mm", "4cm"} <= kept
    assert scan.plan.boxes == () and scan.plan.spans == ()
    assert scan.plan.kept_boxes == len(scan.tracks)


def test_static_screen_costs_one_detection_per_scale_and_one_recognition(
    tmp_path: Path, detector, recognizer
) -> None:
    frame = np.full((96, 192, 3), 40, np.uint8)
    draw = _hershey("JOHN SMITH", (10, 50), 0.6, (255, 255, 255))
    path = _video(tmp_path / "static.mp4", [frame] * 50, {n: [draw] for n in range(50)})
    plan = scan_video_text(path, detector=detector, recognizer=recognizer, detect_fov=False).plan
    assert (plan.detection_points, plan.detector_crops, plan.recognitions) == (10, 2, 1)
    assert len(plan.boxes) == 1 and plan.spans == ()  # on screen throughout: every frame


def test_the_plan_is_deterministic(tmp_path: Path, detector, recognizer) -> None:
    frames = [np.full((64, 160, 3), 30 + 3 * n, np.uint8) for n in range(20)]
    draw = _hershey("ID 99887766", (6, 40), 0.5, (250, 250, 250))
    path = _video(tmp_path / "d.mp4", frames, {n: [draw] for n in range(5, 15)})
    first = scan_video_text(path, detector=detector, recognizer=recognizer, sampled_frames=[3, 9])
    again = scan_video_text(path, detector=detector, recognizer=recognizer, sampled_frames=[3, 9])
    assert json.dumps(first.plan.as_dict()) == json.dumps(again.plan.as_dict())
    assert first.plan.detect_step == 6
    assert first.plan.detection_points == 5  # 0, 3 and 9 (sampled), 15 (gap 6), 19 (last)


def test_endoscopy_patient_panel_is_fully_masked(
    shared_data: Path, tmp_path: Path, detector, recognizer
) -> None:
    # The left half of the 1920x1080 screen: the whole patient panel and part of the scope image.
    image = np.ascontiguousarray(
        load_rgb(shared_data, "images/lxanon_endoscopy_frame1.jpg")[:, :960]
    )
    path = write_h264(tmp_path / "endo.mp4", [image] * 3, FPS)
    scan = scan_video_text(path, detector=detector, recognizer=recognizer)
    x0, _, _, _ = scan.plan.keep_region
    assert 500 <= x0 <= 600  # the scope image; the panel is left of it
    panel = [t for t in scan.tracks if t.box[2] <= x0]
    assert panel and all(t.masked for t in panel)
    redacted = scan.plan.apply(decode_rgb(path, 1)[0], 0)
    phi = PhiValues(name_parts=("LUX", "THOMAS"), patient_birth_date="19940321")
    # tesseract: the independent engine (rapidocr's own reading is what the plan used).
    engines = [TesseractEngine(upscale=1.0)]
    assert residual_text_findings([(0, redacted)], engines, phi=phi, upscale=1.0) == []


# -- the allow-list and the policy -----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "LT BREAST 2:00 5CM FN TRANS",
        "D1 3 mm",
        "4 cm",
        "+ Cist Mag 1.06 cm",
        "Adult Echo S5-1 49Hz 16cm",
        "MI 1.1",
        "TIS<0.4 MI=0.8",
        "Gen OB",
        "LYMPH NODE",
        "RT KIDNEY LONG",
        "GN: 70dB",
    ],
)
def test_clinical_annotations_are_allow_listed(text: str) -> None:
    assert is_clinical_annotation(text)


@pytest.mark.parametrize(
    "text",
    [
        LINE,
        "JOHN SMITH",
        "1994",
        "15/02",
        "01/02/1970",
        "29",
        "48/48",
        "SMITH 3 mm",
        "D1 5551234 mm",
        "Lux, Thomas",
        "Name: --",
        "",
    ],
)
def test_names_ids_dates_and_bare_numbers_are_not_allow_listed(text: str) -> None:
    assert not is_clinical_annotation(text)


def test_text_decision_reasons() -> None:
    inside = {"inside_field_of_view": True, "phi": None}
    assert text_decision("D1 3 mm", 0.99, **inside) == (False, (KEPT_REASON,))
    assert text_decision("D1 3 mm", 0.99, inside_field_of_view=False, phi=None) == (
        True,
        ("outside field of view",),
    )
    assert text_decision("D1 3 mm", 0.2, **inside) == (True, ("unreadable",))
    assert text_decision("JOHN SMITH", 0.99, **inside) == (True, ("not a clinical annotation",))
    masked, reasons = text_decision("ID 5551234", 0.99, **inside)
    assert masked and "id-like number" in reasons


def test_redact_pixels_masks_unallowed_text_inside_the_field_of_view() -> None:
    from medvid.ocr import OcrBox

    image = np.full((60, 200, 3), 90, np.uint8)
    boxes = [OcrBox(10, 10, 60, 10, "4 cm", 0.98), OcrBox(10, 30, 80, 10, "JOHN SMITH", 0.97)]
    out, decisions = redact_pixels(image, boxes, keep_region=None, phi=None)
    assert [d.masked for d in decisions] == [False, True]
    assert out[30:40, 10:90].max() == 0 and out[10:20, 10:70].min() == 90


@pytest.mark.parametrize(
    ("text", "hit"),
    [("ID 5551234", True), ("JANE DOE", True), ("4 cm", False), ("ee", False), ("~", False)],
)
def test_residual_hit_fires_on_words_and_numbers_not_on_annotations_or_noise(
    text: str, hit: bool
) -> None:
    assert bool(residual_hit(text, None)) is hit


def test_residual_hit_needs_confidence_for_plain_words_not_for_phi() -> None:
    assert residual_hit("all", None, confidence=0.53) == []  # tesseract on speckle
    assert residual_hit("ID 5551234", None, confidence=0.53) != []


def test_execution_providers_fall_back_to_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CPU_PROVIDER])
    assert providers_for("cuda") == [CPU_PROVIDER]
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: [CUDA_PROVIDER, CPU_PROVIDER]
    )
    assert providers_for("auto") == [CUDA_PROVIDER, CPU_PROVIDER]
    assert providers_for("cpu") == [CPU_PROVIDER]
    with pytest.raises(ValueError):
        providers_for("tpu")  # type: ignore[arg-type]


def test_detector_reports_the_provider_it_runs_on(detector: TextDetector) -> None:
    assert detector.provider == providers_for("cpu")[0]
    assert TextDetector(device="auto").provider in (CPU_PROVIDER, CUDA_PROVIDER)


def test_scan_settings_step_is_a_quarter_second_of_frames() -> None:
    settings = TextScanSettings()
    assert [settings.step(fps) for fps in (25, 29.97, 30, 22, 39, 4)] == [6, 7, 7, 5, 9, 1]


def test_written_frames_denser_than_the_grid_leave_the_grid_alone(
    tmp_path: Path, detector, recognizer
) -> None:
    frames = [np.full((64, 96, 3), 50, np.uint8)] * 25
    path = _video(tmp_path / "all.mp4", frames, {})
    every = scan_video_text(
        path, detector=detector, recognizer=recognizer, sampled_frames=range(25)
    )
    assert every.plan.detection_points == 5  # 0, 6, 12, 18, 24 (the last): the grid alone


def test_residual_frames_are_the_text_spans_plus_seeded_random_ones(attack) -> None:
    plan = attack["scan"].plan
    written = list(range(0, 75, 5))
    # Text is on screen throughout: every written frame, or a bounded, edge-first choice.
    assert residual_check_frames(plan, written, max_text_frames=None) == written
    bounded = residual_check_frames(plan, written)  # at most 4 text-span frames by default
    assert len(bounded) == 4 and bounded[0] == 0 and bounded[-1] == 70
    spanless = dataclasses.replace(plan, text_spans=())
    picks = residual_check_frames(spanless, written, random_frames=3, seed=7)
    again = residual_check_frames(spanless, written, random_frames=3, seed=7)
    assert len(picks) == 3 and picks == again


def test_detection_engine_reports_unreadable_boxes_for_stills(
    shared_data: Path, detector, recognizer
) -> None:
    from medvid.ocr.detect import DetectionOcrEngine

    image = load_rgb(shared_data, "images/itkpocus_clarius-ocular-image.png")
    boxes = DetectionOcrEngine(detector=detector, recognizer=recognizer).read(image)
    assert any(b.text == "4 cm" for b in boxes)
    assert all(b.h <= 128 for b in boxes)


def test_header_phi_values_mask_even_allow_listed_words() -> None:
    phi = PhiValues(name_parts=("LONG",))  # a patient named Long, "LONG" also an orientation
    assert text_decision("LONG", 0.99, inside_field_of_view=True, phi=None)[0] is False
    masked, reasons = text_decision("LONG", 0.99, inside_field_of_view=True, phi=phi)
    assert masked and "patient name" in reasons


def test_rapidocr_engine_asked_for_cuda_runs_on_what_is_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import onnxruntime

    from medvid.ocr import RapidOcrEngine

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CPU_PROVIDER])
    assert RapidOcrEngine(device="cuda").provider == CPU_PROVIDER


def test_tesseract_enlargement_is_bounded_by_max_side(shared_data: Path) -> None:
    image = load_rgb(shared_data, "images/itkpocus_clarius-ocular-image.png")  # 1280x960
    bounded = TesseractEngine(upscale=4.0, max_side=1280).read(image)  # stays at 1x
    assert any("4" in b.text and "cm" in b.text for b in bounded)
    assert all(b.x + b.w <= 1280 and b.y + b.h <= 960 for b in bounded)


class _RecordingSession:
    """An onnxruntime session that records the input shape of every call."""

    def __init__(self, session) -> None:
        self.session, self.shapes = session, []

    def run(self, outputs, feeds):
        self.shapes += [next(iter(feeds.values())).shape]
        return self.session.run(outputs, feeds)


def test_recognizer_calls_stay_within_max_batch_pixels(recognizer: TextRecognizer) -> None:
    lines = [LINE[:n] for n in (4, 8, 12, 16, 21)] + [f"{LINE} {LINE}", f"{LINE} {LINE} {LINE}"]
    crops = []
    for line in lines:
        (w, h), _ = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)
        crop = np.full((h + 10, w + 10, 3), 255, np.uint8)
        crops.append(cv2.putText(crop, line, (5, h + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 0, 1))
    capped = TextRecognizer(threads=1, max_batch_pixels=48 * 800 * 2)
    capped._session = recording = _RecordingSession(capped._session)
    readings = capped.recognize(crops)
    assert sorted(n for n, _, _, _ in recording.shapes) != [len(crops)]
    for n, _, height, width in recording.shapes:
        assert n == 1 or n * height * width <= capped.max_batch_pixels
    # the single lines read as in one call of all seven; the doubled and tripled ones are
    # padded differently there, which can change a letter (O for 0): not compared
    uncapped = recognizer.recognize(crops)
    assert [text for text, _ in readings[:5]] == [text for text, _ in uncapped[:5]]
    assert readings[0][0] == "ID 5"
