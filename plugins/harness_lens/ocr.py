"""The optional OCR module: RapidOCR (``rapidocr-onnxruntime``: PP-OCR models in ONNX, shipped in
the wheel, CPU, offline). Lines are returned in the engine's reading order (top to bottom, left
to right), each stripped; lines scored below :data:`MIN_SCORE` are dropped."""

from __future__ import annotations

from typing import Any

MIN_SCORE = 0.5


class RapidOCRModule:
    """``read(image) -> list[str]`` with one engine per LENS model."""

    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self.engine = RapidOCR()

    @staticmethod
    def version() -> str:
        from importlib.metadata import version

        return f"rapidocr-onnxruntime=={version('rapidocr-onnxruntime')}"

    def read(self, image: Any) -> list[str]:
        import numpy as np

        result, _ = self.engine(np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1]))  # BGR, as cv2
        lines = [str(text).strip() for _, text, score in (result or []) if float(score) >= MIN_SCORE]
        return [line for line in lines if line]
