"""The OCR engines as a resource: what reads burned-in text, configured once per deployment.

- ``detector()`` / ``recognizer()``: rapidocr's text detection and recognition models (inside
  its wheel, nothing downloaded) run through onnxruntime, on CUDA when ``device`` allows it and
  onnxruntime-gpu is installed, else on the CPU. The video text scan and the still-image engine
  use them.
- ``still_engine()``: every text line of a still image, unreadable ones too (DICOM images).
- ``residual_engines()``: the independent residual check's readers (rapidocr's models enlarged
  2x, the same sessions as ``detector()`` and ``recognizer()``, and tesseract when installed).
- ``engine()``: the configured general-purpose engine (``rapidocr``, ``tesseract`` or
  ``easyocr`` with local weights), for on-demand OCR of frames.

OCR text can hold PHI: assets keep it in the protected zone (tables, never exports).
"""

from typing import Literal

import dagster as dg
from pydantic import Field

from medvid.ocr import OcrEngine, make_engine


class OcrEngineResource(dg.ConfigurableResource):
    """Which OCR engines to use and where they run; models load once per process."""

    engine_name: Literal["rapidocr", "tesseract", "easyocr"] = Field(
        default="rapidocr", description="rapidocr (default, offline), tesseract or easyocr."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="cpu",
        description="Where rapidocr's models run: cpu (default), cuda (needs onnxruntime-gpu)"
        " or auto (cuda when onnxruntime has it).",
    )
    threads: int = Field(default=0, description="onnxruntime intra-op threads; 0: its default.")
    easyocr_model_dir: str | None = Field(
        default=None, description="Folder with easyocr's detector and recognizer weights."
    )
    tesseract_lang: str = Field(
        default="eng", description="tesseract language pack(s), e.g. eng+deu."
    )
    easyocr_languages: list[str] = Field(default=["en"], description="easyocr language codes.")

    def _cached(self, name: str, build):
        key = (name, self.engine_name, self.device, self.threads, self.easyocr_model_dir)
        if key not in _ENGINES:  # model loading takes seconds: once per process
            _ENGINES[key] = build()
        return _ENGINES[key]

    def engine(self) -> OcrEngine:
        def build():
            kwargs: dict = {}
            if self.engine_name == "easyocr":
                kwargs = {
                    "model_storage_directory": self.easyocr_model_dir or "",
                    "lang_list": self.easyocr_languages,
                }
            elif self.engine_name == "tesseract":
                kwargs = {"lang": self.tesseract_lang}
            return make_engine(self.engine_name, **kwargs)

        return self._cached("engine", build)

    def detector(self):
        from medvid.ocr.detect import TextDetector

        return self._cached(
            "detector", lambda: TextDetector(device=self.device, threads=self.threads)
        )

    def recognizer(self):
        from medvid.ocr.detect import TextRecognizer

        return self._cached(
            "recognizer", lambda: TextRecognizer(device=self.device, threads=self.threads)
        )

    def still_engine(self) -> OcrEngine:
        from medvid.ocr.detect import DetectionOcrEngine

        return self._cached(
            "still",
            lambda: DetectionOcrEngine(detector=self.detector(), recognizer=self.recognizer()),
        )

    def residual_engines(self) -> list[OcrEngine]:
        from medvid.deid.residual import default_residual_engines

        return self._cached(
            "residual",
            lambda: default_residual_engines(
                detector=self.detector(), recognizer=self.recognizer()
            ),
        )


_ENGINES: dict[tuple, object] = {}
