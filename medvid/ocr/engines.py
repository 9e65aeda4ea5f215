"""OCR engines behind one small interface: ``engine.read(rgb) -> list[OcrBox]``.

- :class:`RapidOcrEngine` (default): rapidocr with onnxruntime. Its detection, orientation and
  recognition models ship inside the wheel (``rapidocr/models/*.onnx``); the engine points
  rapidocr at that folder explicitly and refuses to start if a model file is missing, so it never
  downloads anything.
- :class:`TesseractEngine`: the ``tesseract`` command line (tesseract-ocr 4/5) with TSV output;
  words are grouped into lines (block, paragraph, line) so boxes are comparable with rapidocr.
- :class:`EasyOcrEngine`: easyocr with weights from a local ``model_storage_directory`` and
  ``download_enabled=False``; the package is imported lazily and missing weights raise
  :class:`OcrEngineUnavailableError` before easyocr is asked to fetch them.

An unavailable engine is an environment problem, not bad input, so
:class:`OcrEngineUnavailableError` is *not* a ``MedvidInputError``.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np


class OcrEngineUnavailableError(RuntimeError):
    """The OCR engine cannot run here (package, binary or model weights missing)."""


@dataclass(frozen=True)
class OcrBox:
    """One piece of text found in an image.

    ``x``, ``y`` top-left corner, ``w``, ``h`` size, all in pixels of the image given to the
    engine (axis-aligned box around the detected quadrilateral); ``confidence`` in 0..1.
    """

    x: int
    y: int
    w: int
    h: int
    text: str
    confidence: float

    @property
    def x1(self) -> int:
        return self.x + self.w

    @property
    def y1(self) -> int:
        return self.y + self.h

    def as_dict(self) -> dict[str, Any]:
        return {
            "x": self.x,
            "y": self.y,
            "w": self.w,
            "h": self.h,
            "text": self.text,
            "confidence": self.confidence,
        }


@runtime_checkable
class OcrEngine(Protocol):
    """Reads text from an ``(H, W, 3) uint8 RGB`` image."""

    name: str

    def read(self, image: np.ndarray) -> list[OcrBox]: ...


def _check_rgb(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")


def _box_from_points(points: Sequence[Sequence[float]], width: int, height: int) -> tuple:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x0 = int(np.floor(max(pts[:, 0].min(), 0)))
    y0 = int(np.floor(max(pts[:, 1].min(), 0)))
    x1 = int(np.ceil(min(pts[:, 0].max(), width)))
    y1 = int(np.ceil(min(pts[:, 1].max(), height)))
    return x0, y0, max(x1 - x0, 0), max(y1 - y0, 0)


class RapidOcrEngine:
    """rapidocr (PP-OCR models on onnxruntime, CPU) with the models bundled in the wheel.

    Args:
        text_score: minimum recognition score (0..1) for a box to be returned; rapidocr's
            default is 0.5.
        threads: onnxruntime intra-op threads (-1: onnxruntime decides).
        angle_classifier: run the text-angle classifier on every box. Screen overlays are
            always upright, so it is off by default (it costs time and, on short clinical
            tokens, sometimes flips a box the wrong way).
        device: ``"cpu"`` (default), ``"cuda"`` or ``"auto"``: onnxruntime's CUDA provider when
            this onnxruntime build has it and a GPU is present, CPU otherwise
            (:func:`medvid.ocr.detect.execution_providers`); :attr:`provider` says which runs.
    """

    name = "rapidocr"

    def __init__(
        self,
        *,
        text_score: float = 0.5,
        threads: int = -1,
        angle_classifier: bool = False,
        device: str = "cpu",
    ) -> None:
        from medvid.ocr.detect import CUDA_PROVIDER, execution_providers

        try:
            import rapidocr
            from rapidocr import RapidOCR
        except ImportError as exc:  # pragma: no cover - rapidocr is a core dependency
            raise OcrEngineUnavailableError("rapidocr is not installed") from exc
        model_dir = Path(rapidocr.__file__).parent / "models"
        models = {p.name for p in model_dir.glob("*.onnx")}
        det = [m for m in models if "_det" in m]
        rec = [m for m in models if "_rec" in m]
        cls = [m for m in models if "_cls" in m]
        if not (det and rec and cls):
            raise OcrEngineUnavailableError(
                f"rapidocr models missing in {model_dir} (found {sorted(models)}); "
                "medvid never downloads models"
            )
        self.provider = execution_providers(device)[0]  # type: ignore[arg-type]
        use_cuda = self.provider == CUDA_PROVIDER
        params = {
            "Global.log_level": "error",
            "Global.text_score": text_score,
            "Global.use_cls": angle_classifier,
            "Global.model_root_dir": str(model_dir),
            "Det.model_path": str(model_dir / sorted(det)[0]),
            "Rec.model_path": str(model_dir / sorted(rec)[0]),
            "Cls.model_path": str(model_dir / sorted(cls)[0]),
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.use_cuda": use_cuda,
        }
        self._ocr = RapidOCR(params=params)
        self.model_files = tuple(sorted(models))

    def read(self, image: np.ndarray) -> list[OcrBox]:
        """Text boxes of an ``(H, W, 3) uint8 RGB`` image, in rapidocr's reading order."""
        _check_rgb(image)
        # rapidocr's loader treats ndarrays as OpenCV BGR.
        result = self._ocr(np.ascontiguousarray(image[:, :, ::-1]))
        if result.boxes is None or result.txts is None:
            return []
        height, width = image.shape[:2]
        boxes = []
        for points, text, score in zip(result.boxes, result.txts, result.scores, strict=True):
            x, y, w, h = _box_from_points(points, width, height)
            boxes.append(OcrBox(x, y, w, h, str(text), float(score)))
        return boxes


class TesseractEngine:
    """The ``tesseract`` CLI with TSV output (pytesseract is not needed).

    The image is sent as PNG on stdin; light-on-dark screens (mean gray < 128, typical of
    ultrasound and endoscopy overlays) are inverted first because tesseract is trained on dark
    text on light paper. Words are grouped into lines; a line's confidence is the mean of its
    words' confidences / 100.

    Args:
        binary: the tesseract executable (looked up on PATH).
        lang: tesseract language(s), e.g. "eng" or "eng+deu" (must be installed).
        psm: page segmentation mode; 11 ("sparse text") suits scattered screen annotations.
        upscale: resize factor before OCR (small screen fonts read better at 2x).
        max_side: enlarge no further than this long side, pixels (never below 1x); None: no
            limit.
        timeout_s: seconds before the subprocess is killed.
    """

    name = "tesseract"

    def __init__(
        self,
        *,
        binary: str = "tesseract",
        lang: str = "eng",
        psm: int = 11,
        upscale: float = 2.0,
        min_confidence: float = 0.3,
        timeout_s: float = 60.0,
        max_side: int | None = None,
    ) -> None:
        resolved = shutil.which(binary)
        if resolved is None:
            raise OcrEngineUnavailableError(f"tesseract executable {binary!r} not found on PATH")
        self.binary = resolved
        self.lang, self.psm, self.upscale = lang, psm, upscale
        self.min_confidence, self.timeout_s = min_confidence, timeout_s
        self.max_side = max_side

    def read(self, image: np.ndarray) -> list[OcrBox]:
        """Text lines of an ``(H, W, 3) uint8 RGB`` image."""
        _check_rgb(image)
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if gray.mean() < 128:
            gray = 255 - gray
        factor = self.upscale
        if self.max_side:
            factor = min(factor, max(1.0, self.max_side / max(gray.shape)))
        if factor != 1.0:
            gray = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        ok, png = cv2.imencode(".png", gray)
        if not ok:
            raise ValueError("PNG encoding failed")
        cmd = [self.binary, "stdin", "stdout", "-l", self.lang, "--psm", str(self.psm), "tsv"]
        try:
            proc = subprocess.run(
                cmd, input=png.tobytes(), capture_output=True, timeout=self.timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise OcrEngineUnavailableError(f"tesseract timed out after {self.timeout_s}s") from exc
        if proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace")[:300]
            raise OcrEngineUnavailableError(f"tesseract failed ({proc.returncode}): {stderr}")
        return self._parse_tsv(proc.stdout.decode("utf-8", errors="replace"), factor)

    def _parse_tsv(self, tsv: str, factor: float | None = None) -> list[OcrBox]:
        lines: dict[tuple[str, str, str, str], list[dict[str, str]]] = {}
        for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
            if row.get("level") != "5" or not (row.get("text") or "").strip():
                continue
            if float(row["conf"]) < 0:
                continue
            key = (row["page_num"], row["block_num"], row["par_num"], row["line_num"])
            lines.setdefault(key, []).append(row)
        boxes = []
        s = self.upscale if factor is None else factor
        for words in lines.values():
            x0 = min(int(w["left"]) for w in words)
            y0 = min(int(w["top"]) for w in words)
            x1 = max(int(w["left"]) + int(w["width"]) for w in words)
            y1 = max(int(w["top"]) + int(w["height"]) for w in words)
            conf = sum(float(w["conf"]) for w in words) / len(words) / 100.0
            if conf < self.min_confidence:
                continue
            text = " ".join(w["text"].strip() for w in words)
            boxes.append(
                OcrBox(
                    int(x0 / s), int(y0 / s), round((x1 - x0) / s), round((y1 - y0) / s), text, conf
                )
            )
        return boxes


#: Weight files easyocr needs for English with its default detector (CRAFT) and the
#: generation-2 Latin recognizer; see easyocr's ``config.py`` (detection_models, recognition
#: models ``english_g2``).
EASYOCR_REQUIRED_WEIGHTS = ("craft_mg.pth", "english_g2.pth")


class EasyOcrEngine:
    """easyocr with weights loaded from ``model_storage_directory``; never downloads.

    Args:
        model_storage_directory: folder holding easyocr's ``.pth`` weights
            (:data:`EASYOCR_REQUIRED_WEIGHTS` for English).
        lang_list: easyocr language codes.
        gpu: let easyocr use CUDA if available.

    Raises:
        OcrEngineUnavailableError: easyocr is not installed, or a weight file is missing.
    """

    name = "easyocr"

    def __init__(
        self,
        model_storage_directory: str | Path,
        *,
        lang_list: Sequence[str] = ("en",),
        gpu: bool = False,
        required_weights: Sequence[str] = EASYOCR_REQUIRED_WEIGHTS,
    ) -> None:
        folder = Path(model_storage_directory)
        missing = [name for name in required_weights if not (folder / name).is_file()]
        if missing:
            raise OcrEngineUnavailableError(
                f"easyocr weights missing in {folder}: {', '.join(missing)} "
                "(copy them there; medvid does not download weights)"
            )
        try:
            import easyocr
        except ImportError as exc:
            raise OcrEngineUnavailableError(
                "easyocr is not installed (pip install easyocr)"
            ) from exc
        self._reader = easyocr.Reader(
            list(lang_list),
            gpu=gpu,
            model_storage_directory=str(folder),
            download_enabled=False,
            verbose=False,
        )

    def read(self, image: np.ndarray) -> list[OcrBox]:
        """Text boxes of an ``(H, W, 3) uint8 RGB`` image (easyocr ``readtext`` lines)."""
        _check_rgb(image)
        height, width = image.shape[:2]
        boxes = []
        for points, text, conf in self._reader.readtext(image):
            x, y, w, h = _box_from_points(points, width, height)
            boxes.append(OcrBox(x, y, w, h, str(text), float(conf)))
        return boxes


def make_engine(name: str, **kwargs: Any) -> OcrEngine:
    """Engine by name: "rapidocr" (default), "tesseract" or "easyocr" (kwargs passed on)."""
    engines: dict[str, type] = {
        "rapidocr": RapidOcrEngine,
        "tesseract": TesseractEngine,
        "easyocr": EasyOcrEngine,
    }
    if name not in engines:
        raise ValueError(f"unknown OCR engine {name!r}; choose from {sorted(engines)}")
    return engines[name](**kwargs)
