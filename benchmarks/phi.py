"""Adversarial burned-in PHI: leaks per class and seconds per video (``python benchmarks/phi.py``).

The suite is generated from the real clips in ../shared/data/videos and frames of the real DICOM
files in ../shared/data/dicom (nothing of them is written outside ``--work-dir``). Each attacked
video takes the first ``--seconds`` of a clip, widens the screen with a black side panel (where
devices print patient panels), and burns in ``--items`` texts, each with its own class:

- content: a name ("MARIA GARCIA"), an id ("ID 5553817"), a date ("DOB 12/03/1961",
  "1961-03-12", "12 MAR 1961") or name and id;
- height: 6 (below the guarantee, reported apart), 8, 11, 16, 24, 32 px cap height (letters and
  digits, pixels of the frame);
- time on screen: 0.2, 0.5, 1, 5 s (5 s: the whole clip);
- place: over the image (inside the field of view) or beside it (on the side panel);
- colour: white, yellow, grey on grey (text 130 on a box of 80);
- font: OpenCV Hershey simplex, plain, duplex, complex; DejaVu Sans, Serif, Sans Mono, Sans
  Condensed (Pillow, /usr/share/fonts).

Methods, same run, interleaved per video:

- ``today``: main's pipeline as it was: ``video_ocr_text`` (3 frames at 0, 1/3, 2/3 of the
  duration, seeked, rapidocr), ``video_redaction_plan`` (field of view from those frames, mask
  text outside it or matching PHI patterns, in every frame), the residual check on 3 written
  frames (``residual_phi``).
- ``medvid``: :func:`medvid.deid.video_text.scan_video_text` (detection at every written frame
  and every 0.25 s, allow-list) and the residual check of :mod:`medvid.deid.residual`
  (:func:`~medvid.deid.residual.residual_check`: words it reads with no PHI pattern are masked in
  every frame and read again; leaks are counted on the frames as the check leaves them).

Written frames: the default sampling, every 10th frame. A *leak*: an injected text visible on a
written frame whose redacted pixels, cropped around it and enlarged 2x, let tesseract or
rapidocr read the string or a PHI part of it (a name token, the id number, the date's digits;
one edit allowed for parts of 5+ characters), i.e. the way an attacker would check. An item no
written frame shows is not *exposed* and is not counted.

Still images (DICOM frames with the same kind of items): medvid
(:class:`medvid.ocr.detect.DetectionOcrEngine` + :func:`medvid.deid.redact_pixels`) against
presidio-image-redactor (``pip install -e '.[bench]'``; see benchmarks/README.md). Its spaCy NER
model cannot be downloaded here, so it runs its pattern recognisers only (a blank English spaCy
pipeline: dates, phone numbers, licence and account numbers...; no names).

Timings are wall-clock seconds on whatever machine runs it (it is shared: read ratios).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from medvid.deid import detect_field_of_view, phi_hits, redact_pixels, residual_phi  # noqa: E402
from medvid.deid.residual import (  # noqa: E402
    ResidualCheck,
    default_residual_engines,
    residual_check,
)
from medvid.deid.video_text import scan_video_text  # noqa: E402
from medvid.dicom import read_frame, read_instance  # noqa: E402
from medvid.frames.encode import Redaction  # noqa: E402
from medvid.ocr import OcrBox, RapidOcrEngine, TesseractEngine  # noqa: E402
from medvid.ocr.detect import DetectionOcrEngine, TextDetector, TextRecognizer  # noqa: E402
from medvid.ocr.metrics import substring_edit_distance  # noqa: E402
from medvid.video.decode import frames_at_times  # noqa: E402
from medvid.video.normalize import Clip  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
CLIPS = [
    "covid19us_Vir_whitelung_h1n1.mp4",
    "covid19us_Reg_pat1Image_132943.mpeg",
    "covid19us_Cov_convex_volpecelli_sonographic_v1.mov",
    "covid19us_Reg_northumbria_1009_vid1.avi",
    "itkpocus_sonosite-anon-eye1-video.mp4",
    "rvimlab_endo.mp4",
]
DICOMS = [
    "OBXXXX1A.dcm",
    "US1_J2KR.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "color3d_jpeg_baseline.dcm",
]
SIZES = [8, 11, 16, 24, 32, 6]
DURATIONS = [0.2, 0.5, 1.0, 5.0]
PLACES = ["over", "beside"]
COLOURS = ["white", "yellow", "grey"]
FONTS = [
    "hershey_simplex",
    "hershey_plain",
    "hershey_duplex",
    "hershey_complex",
    "DejaVuSans",
    "DejaVuSerif",
    "DejaVuSansMono",
    "DejaVuSansCondensed",
]
CONTENTS = ["name", "id", "date", "name+id"]
FIRST = ["MARIA", "JOHN", "AHMED", "OLGA", "PETER", "SARAH", "KENJI", "FATIMA"]
LAST = ["GARCIA", "SMITH", "NGUYEN", "MUELLER", "ROSSI", "KOWALSKI", "OKAFOR", "JOHANSSON"]
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
EVERY_N = 10
DEBUG: Path | None = None  # --debug DIR: leaked crops and what was read (PHI: synthetic only)
COLOUR_RGB = {"white": (255, 255, 255), "yellow": (255, 255, 0), "grey": (130, 130, 130)}
HERSHEY = {
    "hershey_simplex": cv2.FONT_HERSHEY_SIMPLEX,
    "hershey_plain": cv2.FONT_HERSHEY_PLAIN,
    "hershey_duplex": cv2.FONT_HERSHEY_DUPLEX,
    "hershey_complex": cv2.FONT_HERSHEY_COMPLEX,
}


@dataclass
class Item:
    text: str
    parts: list[str]
    content: str
    size: int
    duration: float
    place: str
    colour: str
    font: str
    origin: tuple[int, int] = (0, 0)  # baseline-left
    first: int = 0
    last: int = 0
    bbox: tuple[int, int, int, int] = (0, 0, 0, 0)


def _content(kind: str, rng: random.Random) -> tuple[str, list[str]]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    number = str(rng.randint(1_000_000, 9_999_999))
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(1930, 2005)
    if kind == "name":
        return f"{first} {last}", [first, last]
    if kind == "id":
        return f"ID {number}", [number]
    if kind == "date":
        style = rng.randrange(3)
        if style == 0:
            return f"DOB {day:02d}/{month:02d}/{year}", [f"{day:02d}{month:02d}{year}"]
        if style == 1:
            return f"{year}-{month:02d}-{day:02d}", [f"{year}{month:02d}{day:02d}"]
        return f"{day} {MONTHS[month - 1]} {year}", [f"{MONTHS[month - 1]}{year}"]
    return f"{last} {first} {number}", [first, last, number]


def _pil_font(name: str, cap: int) -> ImageFont.FreeTypeFont:
    path = f"/usr/share/fonts/truetype/dejavu/{name}.ttf"
    size = cap
    for _ in range(6):  # find the point size whose "H" is ``cap`` pixels tall
        font = ImageFont.truetype(path, size)
        box = font.getbbox("H")
        height = box[3] - box[1]
        if height == cap:
            break
        size = max(4, round(size * cap / max(height, 1)))
    return ImageFont.truetype(path, size)


def _hershey_scale(font: int, cap: int) -> float:
    (_, height), _ = cv2.getTextSize("H", font, 1.0, 1)
    return cap / height


def _extent(item: Item) -> tuple[int, int]:
    """(width, height) of the drawn text in pixels."""
    if item.font in HERSHEY:
        font = HERSHEY[item.font]
        thickness = 2 if item.size >= 20 else 1
        (w, h), base = cv2.getTextSize(item.text, font, _hershey_scale(font, item.size), thickness)
        return w, h + base
    font = _pil_font(item.font, item.size)
    box = font.getbbox(item.text, anchor="ls")
    return box[2] - box[0], box[3] - box[1]


def _draw(image: np.ndarray, item: Item) -> None:
    x, y = item.origin
    if item.colour == "grey":
        w, h = _extent(item)
        pad = max(2, item.size // 3)
        cv2.rectangle(
            image, (x - pad, y - item.size - pad), (x + w + pad, y + pad), (80, 80, 80), -1
        )
    colour = COLOUR_RGB[item.colour]
    if item.font in HERSHEY:
        font = HERSHEY[item.font]
        thickness = 2 if item.size >= 20 else 1
        scale = _hershey_scale(font, item.size)
        cv2.putText(image, item.text, (x, y), font, scale, colour, thickness, cv2.LINE_AA)
        return
    canvas = Image.fromarray(image)
    ImageDraw.Draw(canvas).text(
        (x, y), item.text, fill=colour, font=_pil_font(item.font, item.size), anchor="ls"
    )
    image[:] = np.asarray(canvas)


def _ink(shape: tuple[int, ...], item: Item) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    grey = item.colour
    item.colour = "white"  # ink only, no background box
    _draw(canvas, item)
    item.colour = grey
    return canvas.max(axis=2) > 0


class Classes:
    """Item classes over the whole run: sizes and durations cycle evenly (every size meets every
    duration), place, colour, font and content are drawn without replacement from their shuffled
    product."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.count = 0
        self.combos: list[tuple] = []

    def take(self, count: int) -> list[dict]:
        out = []
        for _ in range(count):
            if not self.combos:
                self.combos = list(itertools.product(PLACES, COLOURS, FONTS, CONTENTS))
                self.rng.shuffle(self.combos)
            place, colour, font, content = self.combos.pop()
            i = self.count
            self.count += 1
            out.append(
                {
                    "size": SIZES[i % len(SIZES)],
                    "duration": DURATIONS[(i // len(SIZES)) % len(DURATIONS)],
                    "place": place,
                    "colour": colour,
                    "font": font,
                    "content": content,
                }
            )
        return out


def _decode(path: Path, limit: int) -> tuple[list[np.ndarray], float]:
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= limit:
                break
    return frames, fps


def _write(path: Path, frames: list[np.ndarray], fps: float) -> None:
    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w", format="mp4") as out:
        rate = Fraction(fps).limit_denominator(1000)
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18"}
        stream.codec_context.time_base = 1 / rate
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _place(items: list[Item], width: int, panel: int, height: int, rng: random.Random) -> None:
    """Give each item a baseline origin in free rows of its place (over the image or on the
    side panel), so items never overlap."""
    rows: dict[str, list[tuple[int, int]]] = {"over": [], "beside": []}
    for item in items:
        w, h = _extent(item)
        x_lo, x_hi = (panel + 4, width - w - 4) if item.place == "over" else (4, panel - w - 4)
        if x_hi < x_lo:  # too wide for the panel: start at the left edge, may run into the image
            x_lo = x_hi = 4
        for _ in range(200):
            top = rng.randint(4, max(5, height - h - 8))
            if all(top + h + 6 < a or top > b + 6 for a, b in rows[item.place]):
                break
        rows[item.place].append((top, top + h))
        x = rng.randint(x_lo, max(x_lo, x_hi))
        item.origin = (x, top + item.size)
        pad = max(2, item.size // 3) + 2
        item.bbox = (
            max(x - pad, 0),
            max(top - pad, 0),
            min(x + w + pad, width),
            min(top + h + pad + 4, height),
        )


def build_video(
    clip: Path, out: Path, count: int, seconds: float, rng: random.Random, classes: Classes
):
    frames, fps = _decode(clip, int(seconds * 40) + 1)
    frames = frames[: max(1, round(seconds * fps))]
    while len(frames) < round(seconds * fps):  # short clips loop
        frames += frames[: round(seconds * fps) - len(frames)]
    h, w = frames[0].shape[:2]
    panel = max(160, w // 3)
    panel += panel % 2
    height = h + h % 2
    items = []
    for cls in classes.take(count):
        text, parts = _content(cls["content"], rng)
        items.append(Item(text, parts, **cls))
    _place(items, panel + w, panel, height, rng)
    total = len(frames)
    for item in items:
        length = total if item.duration >= 5.0 else max(1, round(item.duration * fps))
        item.first = rng.randint(0, total - length)
        item.last = item.first + length - 1
    written = []
    for number, frame in enumerate(frames):
        screen = np.zeros((height, panel + w, 3), np.uint8)
        screen[:h, panel:] = frame
        for item in items:
            if item.first <= number <= item.last:
                _draw(screen, item)
        written.append(screen)
    _write(out, written, fps)
    return items, (panel, 0, panel + w, h)


# -- today's method, as main had it ------------------------------------------------------------


def _old_policy_masks(image: np.ndarray, boxes: list[OcrBox], region, pad: int = 2) -> list:
    """main's ``redact_pixels`` rule: mask text outside the region or matching PHI patterns."""
    height, width = image.shape[:2]
    masks = []
    for box in boxes:
        outside = region is not None and not (
            box.x >= region[0]
            and box.y >= region[1]
            and box.x1 <= region[2]
            and box.y1 <= region[3]
        )
        if outside or phi_hits(box.text, None):
            masks.append(
                (
                    max(box.x - pad, 0),
                    max(box.y - pad, 0),
                    min(box.x1 + pad, width),
                    min(box.y1 + pad, height),
                )
            )
    return masks


def today(path: Path, frame_count: int, fps: float, written: list[int], decoded, engine):
    start = time.perf_counter()
    duration = frame_count / fps
    picked = frames_at_times(path, [i * duration / 3 for i in range(3)])
    images = [rgb for _, rgb in picked]
    regions = [r for im in images if (r := detect_field_of_view(im))]
    region = None
    if regions:
        region = (
            min(r[0] for r in regions),
            min(r[1] for r in regions),
            max(r[2] for r in regions),
            max(r[3] for r in regions),
        )
    masks: list = []
    for image in images:
        for rect in _old_policy_masks(image, engine.read(image), region):
            if rect not in masks:
                masks.append(rect)
    plan_s = time.perf_counter() - start

    def apply(image: np.ndarray, _number: int) -> np.ndarray:
        for x0, y0, x1, y1 in masks:
            image[y0:y1, x0:x1] = 0
        return image

    start = time.perf_counter()
    picks = np.unique(np.linspace(0, len(written) - 1, min(3, len(written))).round().astype(int))
    findings = []
    for index in picks:
        number = written[int(index)]
        findings += residual_phi(apply(decoded[number].copy(), number), engine, None)
    check_s = time.perf_counter() - start
    return apply, plan_s, check_s, not findings


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def checked(plan, written, decoded, engines) -> ResidualCheck:
    """:func:`medvid.deid.residual_check` as ``video_frames`` runs it, on decoded frames: a
    "write" only records the redaction, a "read" applies it to a decoded frame."""
    current = [Redaction(**plan.redaction_kwargs())]

    def write(redaction: Redaction) -> list[int]:
        current[0] = redaction
        return written

    def read(number: int) -> np.ndarray:
        return current[0].apply(decoded[number].copy(), number)

    return residual_check(write, read, plan, engines, redaction=current[0])


def new(path, written, decoded, detector, recognizer, engines):
    start = time.perf_counter()
    scan = scan_video_text(path, detector=detector, recognizer=recognizer, sampled_frames=written)
    plan_s = time.perf_counter() - start
    plan = scan.plan
    start = time.perf_counter()
    check = checked(plan, [n for n in written if n < len(decoded)], decoded, engines)
    check_s = time.perf_counter() - start
    return check.redaction.apply, plan_s, check_s, check.passed, plan, check


# -- leaks -------------------------------------------------------------------------------------


def _compact(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def readable(parts: list[str], texts: list[str]) -> bool:
    haystack = "\x00".join(_compact(t) for t in texts)
    for part in parts:
        allowed = 1 if len(part) >= 5 else 0
        if substring_edit_distance(_compact(part), haystack) <= allowed:
            return True
    return False


def leak_of(item: Item, redacted: np.ndarray, ink: np.ndarray, attackers, label: str = "") -> bool:
    x0, y0, x1, y1 = item.bbox
    if not (ink & (redacted.max(axis=2) > 0)).any():
        return False  # every pixel of the text is blacked out
    margin = item.size + 8
    crop = redacted[max(y0 - margin, 0) : y1 + margin, max(x0 - margin, 0) : x1 + margin]
    big = cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    texts = [b.text for engine in attackers for b in engine.read(big)]
    leaked = readable(item.parts, texts)
    if leaked and DEBUG:
        cv2.imwrite(str(DEBUG / f"{label}_{len(list(DEBUG.iterdir()))}.png"), big[:, :, ::-1])
        print("  leak:", label, item.text, item.size, item.place, item.colour, item.font, texts)
    return leaked


def run_videos(args, work: Path, rng: random.Random) -> dict:
    detector = TextDetector(threads=args.threads)
    recognizer = TextRecognizer(threads=args.threads)
    engine = RapidOcrEngine(threads=args.threads)
    engines = default_residual_engines(threads=args.threads)
    attackers = [TesseractEngine(upscale=1.0, psm=11), RapidOcrEngine(text_score=0.3)]
    rows = []
    videos = []
    classes = Classes(rng)
    for round_ in range(args.videos_per_clip):
        for clip in args.clips:
            path = work / f"{Path(clip).stem}_{round_}.mp4"
            items, _ = build_video(
                SHARED / "videos" / clip, path, args.items, args.seconds, rng, classes
            )
            decoded, fps = _decode(path, 10**6)
            written = list(range(0, len(decoded), EVERY_N))
            inks = [_ink(decoded[0].shape, item) for item in items]
            methods = {}
            order = ["today", "medvid"] if len(videos) % 2 == 0 else ["medvid", "today"]
            for name in order:
                if name == "today":
                    apply, plan_s, check_s, passed = today(
                        path, len(decoded), fps, written, decoded, engine
                    )
                    extra = {}
                else:
                    apply, plan_s, check_s, passed, plan, check = new(
                        path, written, decoded, detector, recognizer, engines
                    )
                    extra = {
                        "detection_points": plan.detection_points,
                        "recognitions": plan.recognitions,
                        "masked_by_check": len(check.masked),
                        # the check's masks that cover part of an injected item (text the plan
                        # missed) rather than image texture
                        "check_masks_on_items": sum(
                            any(_overlap(box, item.bbox) for item in items) for box in check.masked
                        ),
                        "check_rounds": check.rounds,
                    }
                leaks = 0
                for item, ink in zip(items, inks, strict=True):
                    shown = [n for n in written if item.first <= n <= item.last]
                    leaked = any(
                        leak_of(item, apply(decoded[n].copy(), n), ink, attackers, name)
                        for n in shown
                    )
                    leaks += leaked
                    rows.append(
                        {
                            "method": name,
                            "video": path.name,
                            "exposed": bool(shown),
                            "leak": leaked,
                            "size": item.size,
                            "duration": item.duration,
                            "place": item.place,
                            "colour": item.colour,
                            "font": item.font,
                            "content": item.content,
                        }
                    )
                methods[name] = {
                    "plan_s": plan_s,
                    "check_s": check_s,
                    "check_passed": passed,
                    "leaks": leaks,
                    **extra,
                }
            videos.append(
                {
                    "video": path.name,
                    "frames": len(decoded),
                    "size": decoded[0].shape[:2],
                    **methods,
                }
            )
            print(json.dumps(videos[-1]), flush=True)
    return {"rows": rows, "videos": videos}


def false_alarms(args) -> list[dict]:
    """The new plan and residual check on the clean clips: masked boxes and findings (0
    expected on clips without PHI)."""
    detector = TextDetector(threads=args.threads)
    recognizer = TextRecognizer(threads=args.threads)
    engines = default_residual_engines(threads=args.threads)
    out = []
    for clip in args.clips:
        path = SHARED / "videos" / clip
        decoded, fps = _decode(path, int(args.seconds * 40))
        decoded = decoded[: round(args.seconds * fps)]
        written = list(range(0, len(decoded), EVERY_N))
        # The first --seconds of the clip, as a one-clip list so the scan stops there.
        first = [Clip(0, path, 0, len(decoded), 0.0, Fraction(fps).limit_denominator(1000))]
        start = time.perf_counter()
        scan = scan_video_text(
            first, detector=detector, recognizer=recognizer, sampled_frames=written
        )
        plan_s = time.perf_counter() - start
        start = time.perf_counter()
        check = checked(scan.plan, written, decoded, engines)
        check_s = time.perf_counter() - start
        masked = np.zeros(decoded[0].shape[:2], bool)
        for x0, y0, x1, y1 in {b for n in written for b in scan.plan.boxes_for_frame(n)}:
            masked[y0:y1, x0:x1] = True
        masked_inside = [
            t for t in scan.tracks if t.masked and "outside field of view" not in t.reasons
        ]
        out.append(
            {
                "clip": clip,
                "kept": scan.plan.kept_boxes,
                "masked": sum(t.masked for t in scan.tracks),
                "masked_inside_fov": len(masked_inside),
                "residual_frames": len(check.frames_read),
                "findings": check.findings,
                "masked_by_check": [list(box) for box in check.masked],
                "masked_pixels_fraction": round(float(masked.mean()), 4),
                "plan_s": round(plan_s, 2),
                "check_s": round(check_s, 2),
            }
        )
        print(json.dumps(out[-1]), flush=True)
    return out


def run_stills(args, rng: random.Random) -> list[dict]:
    classes = Classes(rng)
    medvid_engine = DetectionOcrEngine(
        detector=TextDetector(threads=args.threads), recognizer=TextRecognizer(threads=args.threads)
    )
    attackers = [TesseractEngine(upscale=1.0, psm=11), RapidOcrEngine(text_score=0.3)]
    presidio = _presidio()
    rows = []
    for name in DICOMS:
        base = read_frame(SHARED / "dicom" / name)
        region = read_instance(SHARED / "dicom" / name).region_box() or detect_field_of_view(base)
        for round_ in range(args.stills_per_dicom):
            h, w = base.shape[:2]
            image = base.copy()
            items = []
            for cls in classes.take(args.items):
                cls["duration"] = 0.0
                text, parts = _content(cls["content"], rng)
                items.append(Item(text, parts, **cls))
            # "beside": the left margin outside the region (or the left quarter without one).
            panel = region[0] if region and region[0] >= 120 else w // 4
            _place(items, w, panel, h, rng)
            for item in items:
                _draw(image, item)
            inks = [_ink(image.shape, item) for item in items]
            results = {}
            start = time.perf_counter()
            redacted, _ = redact_pixels(
                image, medvid_engine.read(image), keep_region=region, phi=None
            )
            results["medvid"] = (redacted, time.perf_counter() - start)
            if presidio is not None:
                start = time.perf_counter()
                out = np.asarray(presidio.redact(Image.fromarray(image), fill=(0, 0, 0))).copy()
                results["presidio"] = (out, time.perf_counter() - start)
            for method, (out, seconds) in results.items():
                for item, ink in zip(items, inks, strict=True):
                    rows.append(
                        {
                            "method": method,
                            "image": f"{name}#{round_}",
                            "seconds": seconds,
                            "exposed": True,
                            "leak": leak_of(item, out.copy(), ink, attackers, method),
                            "size": item.size,
                            "place": item.place,
                            "colour": item.colour,
                            "font": item.font,
                            "content": item.content,
                        }
                    )
            print(name, round_, {m: round(s, 2) for m, (_, s) in results.items()}, flush=True)
    return rows


def _presidio():
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_image_redactor import ImageAnalyzerEngine, ImageRedactorEngine
    except ImportError:
        print("presidio-image-redactor not installed: its row is left out")
        return None
    folder = tempfile.mkdtemp()
    spacy.blank("en").to_disk(folder)  # no NER model can be fetched here: patterns only
    nlp = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": folder}],
        }
    ).create_engine()
    analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    return ImageRedactorEngine(image_analyzer_engine=ImageAnalyzerEngine(analyzer_engine=analyzer))


def table(rows: list[dict], methods: list[str], keys: list[str]) -> str:
    lines = ["| class | " + " | ".join(f"{m}: leaks / exposed" for m in methods) + " |"]
    lines.append("|---|" + "---:|" * len(methods))
    for key in keys:
        values = sorted({r[key] for r in rows}, key=lambda v: (str(type(v)), v))
        for value in values:
            cells = []
            for method in methods:
                sel = [
                    r for r in rows if r["method"] == method and r[key] == value and r["exposed"]
                ]
                cells.append(f"{sum(r['leak'] for r in sel)} / {len(sel)}")
            lines.append(f"| {key} = {value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", nargs="*", default=CLIPS)
    parser.add_argument("--videos-per-clip", type=int, default=2)
    parser.add_argument("--items", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--stills-per-dicom", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--skip", nargs="*", default=[], choices=["videos", "stills", "clean"])
    parser.add_argument("--debug", type=Path, default=None)
    args = parser.parse_args()
    if args.debug:
        global DEBUG
        DEBUG = args.debug
        DEBUG.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="medvid-phi-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    if "videos" not in args.skip:
        report["videos"] = run_videos(args, work, rng)
        rows = report["videos"]["rows"]
        print(
            table(
                rows,
                ["today", "medvid"],
                ["size", "duration", "place", "colour", "font", "content"],
            )
        )
        vids = report["videos"]["videos"]
        for method in ("today", "medvid"):
            plan = sum(v[method]["plan_s"] for v in vids) / len(vids)
            check = sum(v[method]["check_s"] for v in vids) / len(vids)
            fooled = sum(v[method]["check_passed"] and v[method]["leaks"] > 0 for v in vids)
            print(
                f"{method}: plan {plan:.2f} s/video, residual check {check:.2f} s/video, "
                f"check passed on {fooled} leaking videos of {len(vids)}"
            )
    if "stills" not in args.skip:
        rows = run_stills(args, rng)
        report["stills"] = rows
        methods = sorted({r["method"] for r in rows})
        print(table(rows, methods, ["size", "place", "colour", "content"]))
        for method in methods:
            sel = [r for r in rows if r["method"] == method]
            seconds = {r["image"]: r["seconds"] for r in sel}
            print(
                f"{method}: {sum(r['leak'] for r in sel)} leaks of {len(sel)}, "
                f"{sum(seconds.values()) / len(seconds):.2f} s/image"
            )
    if "clean" not in args.skip:
        report["clean"] = false_alarms(args)
    if args.report:
        args.report.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
