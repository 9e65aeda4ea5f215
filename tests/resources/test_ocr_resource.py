"""The OCR resource: one pair of onnxruntime sessions per process, shared by the video text
scan, the still-image engine and the residual check."""

from medvid_resources.ocr import OcrEngineResource


def test_the_residual_check_reads_with_the_text_scans_sessions() -> None:
    ocr = OcrEngineResource()
    rapidocr = ocr.residual_engines()[0]
    assert rapidocr.detector is ocr.detector()
    assert rapidocr.recognizer is ocr.recognizer()
    assert ocr.still_engine().detector is ocr.detector()
    assert rapidocr.scales == (2.0,)
