"""rapidocr's text detection and recognition models, run directly through onnxruntime.

The video text scan (:mod:`medvid.deid.video_text`) needs what :class:`RapidOcrEngine.read
<medvid.ocr.engines.RapidOcrEngine>` does not offer: detection alone (no recognition), batched
over many crops, at a chosen scale, and recognition of a few chosen crops, both on the execution
provider of the caller's choice (CUDA when present, CPU by default).

The models are the ones inside the rapidocr wheel (PP-OCRv6 small detector and recogniser;
``rapidocr/models/*.onnx``), nothing is downloaded. Pre- and post-processing follow rapidocr's
(its ``DBPostProcess`` and ``CTCLabelDecode`` are used as they are), so a box found here at scale
1 is the box rapidocr finds on the same pixels; what differs is that the image is not first
enlarged to a 736-pixel short side (the scan picks the scale from the smallest text it must find)
and that crops of one shape run as one batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from medvid.ocr.engines import OcrEngineUnavailableError

Device = Literal["cpu", "cuda", "auto"]

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


def execution_providers(device: Device = "cpu") -> list[str]:
    """onnxruntime execution providers for ``device``, best first.

    ``"cpu"``: CPU only. ``"cuda"`` and ``"auto"``: CUDA first when this onnxruntime build has the
    CUDA provider (the ``onnxruntime-gpu`` package) and a GPU, then CPU; otherwise CPU alone, so a
    pipeline configured for a GPU still runs on a machine without one.

    Raises:
        ValueError: an unknown device name.
    """
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    import onnxruntime as ort

    if device != "cpu" and CUDA_PROVIDER in ort.get_available_providers():
        return [CUDA_PROVIDER, CPU_PROVIDER]
    return [CPU_PROVIDER]


def bundled_model(kind: Literal["det", "rec", "cls"]) -> Path:
    """Path of rapidocr's bundled ONNX model of ``kind`` (``*_det*.onnx`` etc.).

    Raises:
        OcrEngineUnavailableError: rapidocr is not installed or the model file is missing
            (medvid never downloads models).
    """
    try:
        import rapidocr
    except ImportError as exc:  # pragma: no cover - rapidocr is a core dependency
        raise OcrEngineUnavailableError("rapidocr is not installed") from exc
    folder = Path(rapidocr.__file__).parent / "models"
    found = sorted(folder.glob(f"*_{kind}*.onnx"))
    if not found:
        raise OcrEngineUnavailableError(
            f"rapidocr {kind} model missing in {folder}; medvid never downloads models"
        )
    return found[0]


def onnx_session(model: Path, device: Device, threads: int, *, memory_arena: bool = True):
    """An onnxruntime ``InferenceSession`` of the ONNX file ``model`` on :func:`execution_providers`
    of ``device``, ``threads`` intra-op threads (0: onnxruntime's default), all graph
    optimisations, and onnxruntime's CPU memory arena only with ``memory_arena``.

    Raises:
        ValueError: an unknown device name.
        onnxruntime's errors: the file is missing or not a model it can run."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # onnxruntime's CPU arena keeps the largest activations ever allocated for the life of the
    # session; the detector's vary with the frame size, so it goes without it.
    options.enable_cpu_mem_arena = memory_arena
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        str(model), sess_options=options, providers=execution_providers(device)
    )
    return session


@dataclass(frozen=True)
class DetectedText:
    """One text line found by the detector: ``(x0, y0, x1, y1)`` in pixels of the image given
    (x1/y1 exclusive, axis-aligned around the detected quadrilateral) and the mean text
    probability inside it (0..1)."""

    x0: int
    y0: int
    x1: int
    y1: int
    score: float

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x0, self.y0, self.x1, self.y1

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def shifted(self, dx: int, dy: int) -> DetectedText:
        return DetectedText(self.x0 + dx, self.y0 + dy, self.x1 + dx, self.y1 + dy, self.score)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _check_rgb(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")


class TextDetector:
    """rapidocr's DB text detector (PP-OCRv6 small), batched, on a chosen provider.

    Args:
        device: ``"cpu"`` (default), ``"cuda"`` or ``"auto"`` (see :func:`execution_providers`);
            :attr:`provider` says which one runs.
        threads: onnxruntime intra-op threads (0: onnxruntime decides).
        batch_size: crops of one shape run together, at most this many per call.
        max_batch_pixels: and at most this many network-input pixels per call (at least one
            image): the network's activations grow with the pixels of a call; sixteen 1280x960
            frames at scale 1.5 peaked at 6.9 GiB in batches of eight, 0.85 GiB one at a time
            without the arena (process peak RSS, onnxruntime CPU).
        thresh, box_thresh, unclip_ratio: rapidocr's DB post-processing settings (its defaults:
            pixel probability 0.3, mean box probability 0.5, box growth 1.6).

    Raises:
        OcrEngineUnavailableError: the model file is missing.
    """

    def __init__(
        self,
        *,
        device: Device = "cpu",
        threads: int = 0,
        batch_size: int = 8,
        max_batch_pixels: int = 2_000_000,
        thresh: float = 0.3,
        box_thresh: float = 0.5,
        unclip_ratio: float = 1.6,
    ) -> None:
        from rapidocr.ch_ppocr_det.utils import DBPostProcess

        self.model_path = bundled_model("det")
        self._session = onnx_session(self.model_path, device, threads, memory_arena=False)
        self._input = self._session.get_inputs()[0].name
        self.provider = self._session.get_providers()[0]
        self.batch_size = max(1, batch_size)
        self.max_batch_pixels = max(1, max_batch_pixels)
        self._post = DBPostProcess(
            thresh=thresh,
            box_thresh=box_thresh,
            unclip_ratio=unclip_ratio,
            use_dilation=True,
            score_mode="fast",
        )

    def detect(
        self, images: Sequence[np.ndarray], *, scale: float = 1.0
    ) -> list[list[DetectedText]]:
        """Text lines of each ``(H, W, 3) uint8 RGB`` image, in pixels of that image.

        Each image is resized by ``scale`` (rounded to a multiple of 32 per side, as the network
        requires) before detection; images that end up the same size run as one batch.
        """
        for image in images:
            _check_rgb(image)
        inputs: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            h, w = image.shape[:2]
            shape = (max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32))
            inputs.setdefault(shape, []).append(index)
        results: list[list[DetectedText]] = [[] for _ in images]
        for (height, width), indices in inputs.items():
            per_call = max(1, min(self.batch_size, self.max_batch_pixels // (height * width)))
            for start in range(0, len(indices), per_call):
                chunk = indices[start : start + per_call]
                batch = np.stack([self._prepare(images[i], width, height) for i in chunk])
                probabilities = self._session.run(None, {self._input: batch})[0]
                for row, index in enumerate(chunk):
                    results[index] = self._boxes(probabilities[row : row + 1], images[index])
        return results

    @staticmethod
    def _prepare(image: np.ndarray, width: int, height: int) -> np.ndarray:
        h, w = image.shape[:2]
        interpolation = cv2.INTER_CUBIC if width > w else cv2.INTER_AREA
        resized = cv2.resize(image, (width, height), interpolation=interpolation)
        # rapidocr's DetPreProcess: mean 0.5, std 0.5 on 0..1, channels first. Its models were
        # trained on OpenCV BGR input.
        chw = resized[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)
        return (chw * (2.0 / 255.0) - 1.0).astype(np.float32)

    def _boxes(self, probability: np.ndarray, image: np.ndarray) -> list[DetectedText]:
        h, w = image.shape[:2]
        quads, scores = self._post(probability, (h, w))
        found = []
        for quad, score in zip(quads, scores, strict=True):
            xs, ys = quad[:, 0], quad[:, 1]
            x0, y0 = int(max(xs.min(), 0)), int(max(ys.min(), 0))
            x1, y1 = int(min(xs.max(), w)), int(min(ys.max(), h))
            if x1 > x0 and y1 > y0:
                found.append(DetectedText(x0, y0, x1, y1, float(score)))
        return sorted(found, key=lambda d: (d.y0, d.x0))


class TextRecognizer:
    """rapidocr's CTC text recogniser (PP-OCRv6 small), batched, on a chosen provider.

    Crops are scaled to rapidocr's 48-pixel input height (bicubic when enlarging, so 8-pixel
    text is enlarged smoothly) and padded to the widest crop of their batch, as rapidocr does.

    Args:
        device, threads: as for :class:`TextDetector`.
        batch_size: crops per call (rapidocr uses 6).
        max_batch_pixels: and at most this many network-input pixels per call (48 x the padded
            width x the crops; at least one crop): the activations grow with them, about 1 GiB
            per million input pixels (process peak RSS, onnxruntime CPU: one 48x960 input
            +27 MiB, eight +376 MiB, two 48x3840 +392 MiB). The session goes without
            onnxruntime's memory arena, which kept the largest call's activations resident for
            the session's lifetime (1.0 GiB after four calls of eight crops up to 48x3840).

    Raises:
        OcrEngineUnavailableError: the model file is missing.
    """

    input_height = 48
    min_width_ratio = 320 / 48

    def __init__(
        self,
        *,
        device: Device = "cpu",
        threads: int = 0,
        batch_size: int = 8,
        max_batch_pixels: int = 200_000,
    ) -> None:
        from rapidocr.ch_ppocr_rec.utils import CTCLabelDecode

        self.model_path = bundled_model("rec")
        self._session = onnx_session(self.model_path, device, threads, memory_arena=False)
        self._input = self._session.get_inputs()[0].name
        self.provider = self._session.get_providers()[0]
        self.batch_size = max(1, batch_size)
        self.max_batch_pixels = max(1, max_batch_pixels)
        meta = self._session.get_modelmeta().custom_metadata_map
        if "character" not in meta:
            raise OcrEngineUnavailableError(f"{self.model_path.name} has no character list")
        self._decode = CTCLabelDecode(character=meta["character"].splitlines())

    def recognize(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """``(text, confidence 0..1)`` of each ``(h, w, 3) uint8 RGB`` crop holding one line."""
        for crop in crops:
            _check_rgb(crop)
        order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1] / crops[i].shape[0])
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for chunk in self._chunks([crops[i].shape[1] / crops[i].shape[0] for i in order]):
            chunk = [order[i] for i in chunk]
            ratio = max(
                [self.min_width_ratio] + [crops[i].shape[1] / crops[i].shape[0] for i in chunk]
            )
            width = int(self.input_height * ratio)
            batch = np.stack([self._prepare(crops[i], width) for i in chunk])
            predictions = self._session.run(None, {self._input: batch})[0]
            lines, _ = self._decode(predictions, False)
            for index, (text, score) in zip(chunk, lines, strict=True):
                results[index] = (str(text), float(score))
        return results

    def _chunks(self, ratios: Sequence[float]) -> list[list[int]]:
        """Consecutive positions of ``ratios`` (width / height of each crop, ascending) grouped
        into calls of at most :attr:`batch_size` crops and :attr:`max_batch_pixels` input
        pixels (every crop padded to the widest of its call); each call has one crop at least."""
        chunks: list[list[int]] = []
        for position, ratio in enumerate(ratios):
            width = int(self.input_height * max(self.min_width_ratio, ratio))
            if chunks and (
                len(chunks[-1]) < self.batch_size
                and (len(chunks[-1]) + 1) * self.input_height * width <= self.max_batch_pixels
            ):
                chunks[-1].append(position)
            else:
                chunks.append([position])
        return chunks

    def _prepare(self, crop: np.ndarray, width: int) -> np.ndarray:
        h, w = crop.shape[:2]
        target = min(width, math.ceil(self.input_height * w / h))
        interpolation = cv2.INTER_CUBIC if self.input_height > h else cv2.INTER_AREA
        resized = cv2.resize(
            crop[:, :, ::-1], (target, self.input_height), interpolation=interpolation
        )
        out = np.zeros((3, self.input_height, width), np.float32)
        out[:, :, :target] = resized.astype(np.float32).transpose(2, 0, 1) * (2.0 / 255.0) - 1.0
        return out


class DetectionOcrEngine:
    """An :class:`~medvid.ocr.engines.OcrEngine` on :class:`TextDetector` +
    :class:`TextRecognizer` that reports *every* detected line, however unsure the reading
    (rapidocr's own pipeline drops boxes scored below ``text_score``, so text it cannot read
    would be neither masked nor kept). For still images: the detector input is enlarged so text
    of ``min_text_height_px`` reaches ``detector_text_px`` (the height the detector finds
    reliably) and, as the detector misses some lines at one scale that it finds at the other,
    it also runs at scale 1; lines found at both are merged (union of the boxes). Detections
    taller than twice ``max_text_height_px`` (texture, not a line) are dropped.

    Args:
        detector, recognizer: the models (created on ``device`` when not given).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        scale: the one detector input enlargement to use, instead of the two derived from the
            text heights.
        max_side: enlarge no further than this long side, pixels (never below scale 1).
    """

    name = "rapidocr-det"

    def __init__(
        self,
        *,
        detector: TextDetector | None = None,
        recognizer: TextRecognizer | None = None,
        device: Device = "cpu",
        min_text_height_px: float = 8.0,
        detector_text_px: float = 12.0,
        max_text_height_px: float = 64.0,
        scale: float | None = None,
        max_side: int | None = None,
    ) -> None:
        self.max_side = max_side
        self.detector = detector or TextDetector(device=device)
        self.recognizer = recognizer or TextRecognizer(device=device)
        small = detector_text_px / min_text_height_px
        self.scales = (scale,) if scale else ((1.0, small) if small > 1.0 else (1.0,))
        self.tallest = 2 * max_text_height_px

    def read(self, image: np.ndarray) -> list:
        """Every text line of an ``(H, W, 3) uint8 RGB`` image as
        :class:`~medvid.ocr.engines.OcrBox` (confidence 0 and empty text when unreadable)."""
        from medvid.ocr.engines import OcrBox

        _check_rgb(image)
        height, width = image.shape[:2]
        found: list[DetectedText] = []
        limit = max(1.0, self.max_side / max(height, width)) if self.max_side else math.inf
        for scale in sorted({min(s, limit) for s in self.scales}):
            for d in self.detector.detect([image], scale=scale)[0]:
                if d.height > self.tallest:
                    continue
                same = next((i for i, f in enumerate(found) if _iou(f.box, d.box) >= 0.5), None)
                if same is None:
                    found.append(d)
                else:
                    f = found[same]
                    found[same] = DetectedText(
                        min(f.x0, d.x0), min(f.y0, d.y0), max(f.x1, d.x1), max(f.y1, d.y1), f.score
                    )
        crops = []
        for d in found:
            margin = max(2, d.height // 4)
            crops.append(
                image[
                    max(d.y0 - margin, 0) : min(d.y1 + margin, height),
                    max(d.x0 - margin, 0) : min(d.x1 + margin, width),
                ]
            )
        readings = self.recognizer.recognize(crops) if crops else []
        return [
            OcrBox(d.x0, d.y0, d.x1 - d.x0, d.y1 - d.y0, text, confidence)
            for d, (text, confidence) in zip(found, readings, strict=True)
        ]
