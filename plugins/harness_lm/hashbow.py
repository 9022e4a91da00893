"""``hashbow:DIM``: a hashed bag of words, the no-semantics text baseline.

A text is lower-cased and split into words (``[a-z0-9]+``); each word adds ``+1`` or ``-1``
(a second hash bit) to bucket ``blake2b(word) mod DIM``; the vector is L2-normalised. Two
texts are close only if they share words, so a word never seen in training carries no
information about what it means: whatever a head learns on top of it cannot generalise to
unseen class names except by chance. Deterministic across processes; no weights, no training.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Sequence

from harness import LoadContext, ModelSpec

VERSION = "1"
_WORD = re.compile(r"[a-z0-9]+")


def bucket(word: str, dim: int) -> tuple[int, float]:
    """(bucket index, sign) of one word."""
    digest = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
    return digest % dim, 1.0 if (digest >> 63) & 1 else -1.0


class HashedBagOfWords:
    """Text encoder (``text_embed``): ``encode_text(texts) -> (N, DIM)`` float32, rows L2-normalised."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.embed_dim: int | None = dim

    def encode_text(self, texts: Sequence[str]) -> Any:
        import torch

        out = torch.zeros((len(texts), self.dim), dtype=torch.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                index, sign = bucket(word, self.dim)
                out[row, index] += sign
        return torch.nn.functional.normalize(out, dim=-1)

    def provenance(self) -> dict[str, Any]:
        fingerprint = hashlib.sha256(f"hashbow-v{VERSION}:{self.dim}".encode()).hexdigest()
        return {"revision": f"v{VERSION}", "fingerprint": fingerprint, "n_parameters": 0}


def load(spec: ModelSpec, ctx: LoadContext) -> HashedBagOfWords:
    """Factory named by the ``hashbow:`` specs."""
    return HashedBagOfWords(int(spec.args["dim"]))
