"""The colour-histogram model (capability ``image_embed``; no text tower, so no ``encode_text``)."""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from harness import LoadContext, ModelSpec

SIZE = 64


class ColorHistogram:
    """Joint RGB histogram of a 64x64 resize: what colours an image contains, nothing else."""

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.embed_dim = bins**3

    def preprocess(self, image: Any) -> torch.Tensor:
        array = torch.frombuffer(bytearray(image.resize((SIZE, SIZE)).tobytes()), dtype=torch.uint8)
        return array.view(SIZE, SIZE, 3).permute(2, 0, 1).contiguous()

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        q = (pixels.long() * self.bins) // 256  # (N, 3, H, W) bin index per channel
        index = (q[:, 0] * self.bins + q[:, 1]) * self.bins + q[:, 2]
        counts = torch.zeros(len(pixels), self.embed_dim, device=pixels.device)
        counts.scatter_add_(1, index.flatten(1), torch.ones_like(index.flatten(1), dtype=counts.dtype))
        return counts / counts.sum(dim=1, keepdim=True)

    def provenance(self) -> dict[str, Any]:
        return {"revision": None, "fingerprint": hashlib.sha256(f"colorhist-{self.bins}-{SIZE}".encode()).hexdigest(),
                "n_parameters": 0}


def load(spec: ModelSpec, ctx: LoadContext) -> ColorHistogram:
    return ColorHistogram(int(spec.args["bins"]))
