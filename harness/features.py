"""Feature extraction for task kinds: batching, device, precision and image decoding errors.

Task kinds ask for embeddings here rather than calling the encoder in loops of their
own, so speed-ups (workers, caching, data parallelism) land in one place.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from .errors import DataError

if TYPE_CHECKING:
    import datasets

    from .encoder import Encoder

_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass
class Counters:
    """What extraction cost: images embedded and seconds spent."""

    images: int = 0
    texts: int = 0
    seconds: float = 0.0


class _ImageRows:
    """Map-style torch dataset: decode one row's image with PIL and preprocess it."""

    def __init__(self, data: datasets.Dataset, column: str, encoder: Encoder, where: str) -> None:
        self.data, self.column, self.encoder, self.where = data, column, encoder, where

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Any:
        try:
            image = self.data[index][self.column]
            if isinstance(image, dict) and image.get("path"):
                import PIL.Image

                image = PIL.Image.open(image["path"])
            image = image.convert("RGB")
        except Exception as exc:
            raise DataError(f"{self.where}: row {index}: cannot decode image in column {self.column!r}: {exc}") from None
        return self.encoder.preprocess(image)


@dataclass
class Features:
    """Embeds images and texts with one encoder on one device."""

    encoder: Encoder
    device: str = "cpu"
    dtype: str = "fp32"
    batch_size: int = 32
    progress: bool = False
    counters: Counters = field(default_factory=Counters)

    @contextmanager
    def _forward(self) -> Iterator[None]:
        import torch

        start = time.perf_counter()
        with torch.inference_mode():
            if self.dtype == "fp32":
                yield
            else:
                device_type = self.device.split(":")[0]
                with torch.autocast(device_type=device_type, dtype=getattr(torch, _DTYPES[self.dtype])):
                    yield
        self.counters.seconds += time.perf_counter() - start

    def images(self, data: datasets.Dataset, column: str, where: str = "dataset") -> np.ndarray:
        """``(N, D)`` float32 image embeddings of ``data[column]``, in row order."""
        if column not in data.column_names:
            raise DataError(f"{where}: no column {column!r}; columns are {data.column_names}")
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        loader = DataLoader(_ImageRows(data, column, self.encoder, where), batch_size=self.batch_size, shuffle=False)
        chunks = []
        for pixels in tqdm(loader, desc="images", disable=not self.progress, leave=False):
            with self._forward():
                out = self.encoder.encode_image(pixels.to(self.device))
            chunks.append(out.float().cpu().numpy())
            self.counters.images += len(pixels)
        return np.concatenate(chunks) if chunks else np.zeros((0, self.encoder.embed_dim or 0), np.float32)

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, D)`` float32 text embeddings, in order."""
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            with self._forward():
                out = self.encoder.encode_text(batch)
            chunks.append(out.float().cpu().numpy())
            self.counters.texts += len(batch)
        return np.concatenate(chunks)
