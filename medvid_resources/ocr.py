"""The OCR engine as a resource: which engine reads burned-in text, configured once.

``rapidocr`` (default) ships its ONNX models inside its wheel; ``tesseract`` needs the Debian
``tesseract-ocr`` package; ``easyocr`` loads weights from ``easyocr_model_dir`` and never
downloads. OCR text can hold PHI: assets keep it in the protected zone (tables, never exports).
"""

from typing import Literal

import dagster as dg
from pydantic import Field

from medvid.ocr import OcrEngine, make_engine


class OcrEngineResource(dg.ConfigurableResource):
    """Which OCR engine to use; :meth:`engine` builds it once per process."""

    engine_name: Literal["rapidocr", "tesseract", "easyocr"] = Field(
        default="rapidocr", description="rapidocr (default, offline), tesseract or easyocr."
    )
    easyocr_model_dir: str | None = Field(
        default=None, description="Folder with easyocr's detector and recognizer weights."
    )
    tesseract_lang: str = Field(
        default="eng", description="tesseract language pack(s), e.g. eng+deu."
    )
    easyocr_languages: list[str] = Field(default=["en"], description="easyocr language codes.")

    def engine(self) -> OcrEngine:
        key = (
            self.engine_name,
            self.easyocr_model_dir,
            self.tesseract_lang,
            tuple(self.easyocr_languages),
        )
        if key not in _ENGINES:  # model loading takes seconds: once per process
            kwargs: dict = {}
            if self.engine_name == "easyocr":
                kwargs = {
                    "model_storage_directory": self.easyocr_model_dir or "",
                    "lang_list": self.easyocr_languages,
                }
            elif self.engine_name == "tesseract":
                kwargs = {"lang": self.tesseract_lang}
            _ENGINES[key] = make_engine(self.engine_name, **kwargs)
        return _ENGINES[key]


_ENGINES: dict[tuple, OcrEngine] = {}
