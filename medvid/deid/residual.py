"""The independent residual check: read written frames the plan did not look at the same way.

The redaction plan (:mod:`medvid.deid.video_text`) detects text at scale 1 with rapidocr's
models. The residual check reads *written* (already redacted) frames again, differently:

- which frames: every written frame inside a span where the detector saw text
  (:attr:`VideoRedactionPlan.text_spans <medvid.deid.video_text.VideoRedactionPlan>`), plus
  ``random_frames`` seeded random written frames (text the detector missed everywhere);
- how: the whole frame read by every engine given, by default rapidocr's models with the
  detector input enlarged 2x (twice the plan's scale) and, when installed, tesseract on the
  frame enlarged 2x (a different detector and recogniser: its own page layout analysis, an LSTM
  trained on other data).

A *hit* is any text an engine reads (confidence at least 0.5, box at least 6 pixels tall) that
is PHI (:func:`medvid.deid.phi.phi_hits`: header values, dates, times, name/id fields, id-like
numbers), or that, read with confidence 0.7 or more, still holds a word of three or more letters
or a number of three or more digits once the allow-listed clinical constructs are removed
(:func:`medvid.ocr.parse.non_clinical_remainder`). Clinical annotations the plan keeps read as
nothing left; OCR noise on speckle reads as short fragments, tiny boxes or low confidence.
Findings name the frame, engine, reason and position, never the text.

When every hit of a reading is "readable text" only (no PHI pattern: the reader is unsure, e.g.
tesseract reading "lee" into the specular highlights of an endoscopy frame at confidence 0.7),
:func:`residual_check` masks the boxes read, grown by half their height, in *every* written
frame, writes the frames again and reads them again (around the masks, and fresh random frames
whole; at most ``repair_rounds`` times, at most ``max_masked_fraction`` of the frame). When
unsure whether text is PHI, mask it; a PHI hit, or text still read after the rounds, fails the
check (closed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from medvid.deid.phi import PhiValues, phi_hits
from medvid.deid.redaction_plan import Box
from medvid.deid.text_tracking import grow
from medvid.deid.video_text import VideoRedactionPlan
from medvid.frames.encode import Redaction
from medvid.ocr.detect import DetectionOcrEngine, Device, TextDetector, TextRecognizer
from medvid.ocr.engines import OcrBox, OcrEngine, OcrEngineUnavailableError, TesseractEngine
from medvid.ocr.parse import non_clinical_remainder

#: A word or number left after the allow-list that counts as readable text.
_WORD = re.compile(r"[A-Za-z]{3,}|\d{3,}")


def residual_check_frames(
    plan: VideoRedactionPlan,
    written_frames: Sequence[int],
    *,
    random_frames: int = 2,
    seed: int = 0,
    max_text_frames: int | None = 4,
) -> list[int]:
    """Frame numbers the residual check reads, sorted: every written frame in a text span of
    ``plan`` (at most ``max_text_frames`` of them when given: the first and last written frame
    of each span first, then evenly spaced ones, a bound on the check's cost), plus
    ``random_frames`` others drawn from the rest with ``random.Random(seed)``."""
    written = sorted(set(int(n) for n in written_frames))
    in_spans = [n for n in written if plan.in_text_span(n)]
    if max_text_frames is not None and len(in_spans) > max_text_frames:
        edges = []
        for first, last in plan.text_spans:
            inside = [n for n in in_spans if first <= n <= last]
            edges += [inside[0], inside[-1]] if inside else []
        chosen = list(dict.fromkeys(edges))[:max_text_frames]
        rest_of_spans = [n for n in in_spans if n not in chosen]
        room = max_text_frames - len(chosen)
        if room > 0 and rest_of_spans:
            picks = np.linspace(0, len(rest_of_spans) - 1, room).round().astype(int)
            chosen += [rest_of_spans[i] for i in sorted(set(picks.tolist()))]
    else:
        chosen = list(in_spans)
    rest = [n for n in written if not plan.in_text_span(n)]
    chosen += random.Random(seed).sample(rest, min(random_frames, len(rest)))
    return sorted(set(chosen))


def default_residual_engines(
    *,
    upscale: float = 2.0,
    max_side: int = 2048,
    device: Device = "cpu",
    threads: int = 0,
    detector: TextDetector | None = None,
    recognizer: TextRecognizer | None = None,
) -> list[OcrEngine]:
    """The check's readers, each enlarging ``upscale`` times (less when the long side would
    pass ``max_side`` pixels: 1.6x for a 1280-pixel screen; a bound on cost): rapidocr's models
    (:class:`medvid.ocr.detect.DetectionOcrEngine`, detector input enlarged, every box
    reported) and, when the binary is installed, tesseract (``psm`` 11, enlarged before
    reading). ``detector`` and ``recognizer``: models to share with the text scan (the check
    differs from it in scale and frames, not in weights; one pair of onnxruntime sessions is
    about 120 MiB resident); new ones on ``device`` when not given."""
    engines: list[OcrEngine] = [
        DetectionOcrEngine(
            detector=detector or TextDetector(device=device, threads=threads),
            recognizer=recognizer or TextRecognizer(device=device, threads=threads),
            scale=upscale,
            max_side=max_side,
        )
    ]
    with contextlib.suppress(OcrEngineUnavailableError):
        engines.append(TesseractEngine(upscale=upscale, min_confidence=0.5, max_side=max_side))
    return engines


#: Confidence a reading needs to count as "readable text" when it matches no PHI pattern:
#: tesseract reads short dictionary words into speckle ("all" at 0.53 on a clean lung clip).
READABLE_TEXT_CONFIDENCE = 0.7


def residual_hit(text: str, phi: PhiValues | None, confidence: float = 1.0) -> list[str]:
    """Why ``text`` read on a redacted frame is a leak (empty: it is not): PHI
    (:func:`medvid.deid.phi.phi_hits`), or, read with ``confidence`` of at least
    :data:`READABLE_TEXT_CONFIDENCE`, a word of 3+ letters or a number of 3+ digits left after
    the allow-list."""
    reasons = phi_hits(text, phi)
    if (
        not reasons
        and confidence >= READABLE_TEXT_CONFIDENCE
        and _WORD.search(non_clinical_remainder(text))
    ):
        reasons.append(READABLE_TEXT)
    return reasons


def _read(engine: OcrEngine, image: np.ndarray, upscale: float) -> list[OcrBox]:
    if upscale == 1.0:
        return engine.read(image)
    big = cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    return [
        OcrBox(
            int(b.x / upscale),
            int(b.y / upscale),
            round(b.w / upscale),
            round(b.h / upscale),
            b.text,
            b.confidence,
        )
        for b in engine.read(big)
    ]


#: The reason of a hit that matches no PHI pattern (:func:`residual_hit`).
READABLE_TEXT = "readable text"


@dataclass(frozen=True)
class ResidualHit:
    """One reading of the residual check that is a leak (:func:`residual_hit`): on written frame
    ``frame_number``, by engine ``engine``, for ``reasons``, in ``box`` (pixels of the frame; its
    text is never put in a finding)."""

    frame_number: int
    engine: str
    reasons: tuple[str, ...]
    box: OcrBox

    @property
    def finding(self) -> str:
        """E.g. ``"frame 57: tesseract: id-like number at x=60 y=128 w=110 h=14"``."""
        b = self.box
        return (
            f"frame {self.frame_number}: {self.engine}: {', '.join(self.reasons)} at "
            f"x={b.x} y={b.y} w={b.w} h={b.h}"
        )

    def moved(self, dx: int, dy: int) -> ResidualHit:
        """The same hit with its box moved by ``(dx, dy)`` pixels (from a crop to its frame)."""
        box = dataclasses.replace(self.box, x=self.box.x + dx, y=self.box.y + dy)
        return dataclasses.replace(self, box=box)

    @property
    def uncertain(self) -> bool:
        """True when the only reason is :data:`READABLE_TEXT`: a word read with no PHI pattern,
        possibly a misreading of image texture. :func:`residual_check` masks these."""
        return self.reasons == (READABLE_TEXT,)


def residual_text_hits(
    frames: Iterable[tuple[int, np.ndarray]],
    engines: Sequence[OcrEngine],
    *,
    phi: PhiValues | None = None,
    upscale: float = 1.0,
    min_confidence: float = 0.5,
    min_height_px: int = 6,
) -> list[ResidualHit]:
    """Read each ``(frame_number, (H, W, 3) uint8 RGB written frame)`` with every engine (the
    engines of :func:`default_residual_engines` enlarge 2x themselves; ``upscale`` enlarges the
    frame once more before any engine); one hit per reading that is a leak
    (:func:`residual_hit`), read with confidence ``min_confidence`` or more in a box at least
    ``min_height_px`` pixels tall (of the frame; smaller boxes are speckle read as letters).
    An empty list is the pass condition."""
    hits = []
    for frame_number, image in frames:
        for engine in engines:
            for box in _read(engine, image, upscale):
                if box.confidence < min_confidence or box.h < min_height_px:
                    continue
                if reasons := residual_hit(box.text, phi, box.confidence):
                    hits.append(ResidualHit(frame_number, engine.name, tuple(reasons), box))
    return hits


def residual_text_findings(
    frames: Iterable[tuple[int, np.ndarray]], engines: Sequence[OcrEngine], **options
) -> list[str]:
    """:func:`residual_text_hits` (same arguments) as finding lines, e.g. ``"frame 57:
    tesseract: id-like number at x=60 y=128 w=110 h=14"``. An empty list is the pass
    condition."""
    return [hit.finding for hit in residual_text_hits(frames, engines, **options)]


@dataclass(frozen=True)
class ResidualCheck:
    """The outcome of :func:`residual_check`.

    Attributes:
        findings: one line per hit of the last reading (:attr:`ResidualHit.finding`); empty is
            the pass condition.
        redaction: the redaction the written frames carry now (the one given plus
            ``masked``).
        masked: boxes the check added, ``(x0, y0, x1, y1)`` pixels of the frame, masked in
            every written frame.
        repaired: the findings that were masked, round by round (logged by ``video_frames``).
        frames_read: the written frames read (those of the first round plus
            ``random_frames`` fresh ones after each repair).
        rounds: readings done (1 without a repair).
    """

    findings: list[str]
    redaction: Redaction
    masked: tuple[Box, ...]
    repaired: list[str]
    frames_read: tuple[int, ...]
    rounds: int

    @property
    def passed(self) -> bool:
        return not self.findings


def _around(box: Box, width: int, height: int) -> Box:
    """The region read again around a new mask: grown by twice its height, at least 32
    pixels (the rest of a line, glyph edges), clipped to the frame."""
    return grow(box, max(32, 2 * (box[3] - box[1])), width, height)


def repair_boxes(
    hits: Sequence[ResidualHit],
    width: int,
    height: int,
    *,
    max_masked_fraction: float,
    masked: Sequence[Box] = (),
) -> list[Box] | None:
    """The new boxes that mask ``hits`` (each grown by half its height, at least 2 pixels,
    clipped to the ``width`` x ``height`` frame), or None when they may not be repaired: no
    hits, a hit with a PHI reason, or these boxes and those ``masked`` before add up to more
    than ``max_masked_fraction`` of the frame's area."""
    if not hits or not all(hit.uncertain for hit in hits):
        return None
    boxes: list[Box] = []
    for hit in hits:
        b = hit.box
        box = grow((b.x, b.y, b.x + b.w, b.y + b.h), max(2, b.h // 2), width, height)
        if box not in boxes and box not in masked:
            boxes.append(box)
    area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in [*masked, *boxes])
    return boxes if boxes and area <= max_masked_fraction * width * height else None


def residual_check(
    write: Callable[[Redaction], Sequence[int]],
    read: Callable[[int], np.ndarray],
    plan: VideoRedactionPlan,
    engines: Sequence[OcrEngine],
    *,
    redaction: Redaction,
    phi: PhiValues | None = None,
    random_frames: int = 2,
    seed: int = 0,
    max_text_frames: int | None = 4,
    repair_rounds: int = 2,
    max_masked_fraction: float = 0.05,
) -> ResidualCheck:
    """Write a video's frames with ``redaction`` and check them; mask what the check reads but
    cannot tell from PHI, and check again.

    ``write(redaction)`` writes every sampled frame with ``redaction`` (replacing earlier
    writes) and returns the written frame numbers; ``read(frame_number)`` gives a written frame
    back, ``(H, W, 3) uint8 RGB``. The frames read are :func:`residual_check_frames` (``plan``,
    ``random_frames``, ``seed``, ``max_text_frames``), by every engine (:func:`residual_text_hits`
    with ``phi``). When every hit is :attr:`ResidualHit.uncertain` and their boxes
    (:func:`repair_boxes`) cover at most ``max_masked_fraction`` of the frame, the boxes join
    ``redaction.boxes`` (masked in every frame: text the plan missed is not only where it was
    read), the frames are written again and read again: the frames read so far around each new
    mask (grown by twice its height, at least 32 pixels: what else they held was read already)
    and ``random_frames`` fresh ones whole, drawn with ``random.Random(seed + round)`` (text
    that moves or comes back elsewhere), at most ``repair_rounds`` times. A PHI hit is never
    repaired: the plan missed PHI, and the check fails closed with it. Without header or sheet
    values (``phi``) a name matches no PHI pattern, so a name the plan missed is masked like
    any other word.
    """
    written = write(redaction)
    picks = residual_check_frames(
        plan,
        written,
        random_frames=random_frames,
        seed=seed,
        max_text_frames=max_text_frames,
    )
    masked: list[Box] = []
    repaired: list[str] = []
    rounds = 0
    # what each round reads: frame number -> regions, None for the whole frame
    pending: dict[int, list[Box] | None] = {number: None for number in picks}
    while True:
        rounds += 1
        hits: list[ResidualHit] = []
        height = width = 0
        for number, regions in sorted(pending.items()):
            image = read(number)  # one frame in memory at a time
            height, width = image.shape[:2]
            if regions is None:
                hits += residual_text_hits([(number, image)], engines, phi=phi)
                continue
            for x0, y0, x1, y1 in regions:
                crop = np.ascontiguousarray(image[y0:y1, x0:x1])
                hits += [
                    hit.moved(x0, y0)
                    for hit in residual_text_hits([(number, crop)], engines, phi=phi)
                ]
        if not hits or rounds > repair_rounds:
            break
        boxes = repair_boxes(
            hits, width, height, max_masked_fraction=max_masked_fraction, masked=masked
        )
        if boxes is None:
            break
        masked += boxes
        repaired += [hit.finding for hit in hits]
        redaction = dataclasses.replace(redaction, boxes=tuple(redaction.boxes) + tuple(boxes))
        written = write(redaction)
        # Read again: around each new mask in the frames read so far (what the rest of their
        # pixels held was read and masked already), and fresh frames whole (text the plan
        # missed may move or come back elsewhere).
        regions = [_around(box, width, height) for box in boxes]
        unread = sorted(set(written) - set(picks))
        fresh = random.Random(seed + rounds).sample(unread, min(random_frames, len(unread)))
        pending = {number: regions for number in picks} | {number: None for number in fresh}
        picks = sorted(set(picks) | set(fresh))
    return ResidualCheck(
        findings=[hit.finding for hit in hits],
        redaction=redaction,
        masked=tuple(masked),
        repaired=repaired,
        frames_read=tuple(picks),
        rounds=rounds,
    )
