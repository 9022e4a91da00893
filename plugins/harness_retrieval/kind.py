"""Zero-shot retrieval, as LAION CLIP_benchmark computes it (``metrics/zeroshot_retrieval.py``).

All images and all captions of the evaluated rows are embedded and L2-normalised; ``scores = texts @
images.T``. Each image query (image->text) and each caption query (text->image) is one sample; its
output ``rank`` is the 0-based rank of its best positive among all candidates (the number of
candidates scoring strictly higher), and ``direction`` is 0 for image->text, 1 for text->image.
``hit@k`` = rank < k: an image query counts if **any** of its captions is in the top k, a caption
query if its image is (CLIP_benchmark's ``(recall > 0).float().mean()``). Samples are image queries
first, in row order, then caption queries in row order, caption order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness import DataError, TaskContext

_CHUNK = 1024


def captions_of(ctx: TaskContext) -> list[list[str]]:
    """The captions of each evaluated row (a string column is one caption per row); every row needs one."""
    column = ctx.column("caption")
    out = []
    for i, value in enumerate(ctx.rows()[column]):
        caps = [value] if isinstance(value, str) else list(value or [])
        if not caps or not all(isinstance(c, str) and c for c in caps):
            raise DataError(f"{ctx.where}: column {column!r}: row {i} has no caption (or a non-string one)")
        out.append(caps)
    return out


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(min=1e-12)


def ranks(images: np.ndarray, texts: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image->text ranks ``(N,)``, text->image ranks ``(M,)``) for normalised embeddings; ``owner[j]``
    is the image of caption ``j``."""
    n, m = len(images), len(texts)
    i2t = np.empty(n, dtype=np.int64)
    for start in range(0, n, _CHUNK):
        block = images[start:start + _CHUNK] @ texts.T  # (b, M)
        rows = np.arange(start, start + len(block))
        positive = owner[None, :] == rows[:, None]
        best = np.where(positive, block, -np.inf).max(axis=1)
        i2t[start:start + len(block)] = (block > best[:, None]).sum(axis=1)
    t2i = np.empty(m, dtype=np.int64)
    for start in range(0, m, _CHUNK):
        block = texts[start:start + _CHUNK] @ images.T  # (b, N)
        own = block[np.arange(len(block)), owner[start:start + len(block)]]
        t2i[start:start + len(block)] = (block > own[:, None]).sum(axis=1)
    return i2t, t2i


class ZeroShotRetrieval:
    """Task kind ``zeroshot_retrieval``: returns ``rank`` and ``direction`` per query."""

    def check(self, ctx: TaskContext) -> None:
        captions_of(ctx)

    def evaluate(self, ctx: TaskContext) -> dict[str, Any]:
        captions = captions_of(ctx)
        owner = np.array([i for i, caps in enumerate(captions) for _ in caps], dtype=np.int64)
        template = ctx.params.get("template", "{c}")
        flat = [template.format(c=c) for caps in captions for c in caps]
        images = _normalize(ctx.images(ctx.column("image"), preprocess=ctx.params.get("preprocess")))
        texts = _normalize(ctx.texts(flat))
        i2t, t2i = ranks(images, texts, owner)
        direction = np.concatenate([np.zeros(len(i2t), np.int64), np.ones(len(t2i), np.int64)])
        return {"rank": np.concatenate([i2t, t2i]), "direction": direction}


def _hit(k: int, code: int):  # noqa: ANN202
    def fn(rank: np.ndarray, direction: np.ndarray) -> np.ma.MaskedArray:
        return np.ma.masked_array((np.asarray(rank) < k).astype(np.float64), mask=np.asarray(direction) != code)
    fn.__name__ = f"{'i2t' if code == 0 else 't2i'}_hit_at_{k}"
    return fn


i2t_hit_at_1, i2t_hit_at_5, i2t_hit_at_10 = _hit(1, 0), _hit(5, 0), _hit(10, 0)
t2i_hit_at_1, t2i_hit_at_5, t2i_hit_at_10 = _hit(1, 1), _hit(5, 1), _hit(10, 1)
