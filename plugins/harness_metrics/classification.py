"""Per-sample classification metrics over ``logits (N, C)`` and integer ``labels (N,)``.

Each function returns one score per sample (1.0 correct, 0.0 wrong) as a masked array: rows whose
label is negative (ignored rows) are masked and left out. The core reduces the scores (a mean, or
the mean over classes of per-class means) and resamples them for intervals.

Conventions follow LAION CLIP_benchmark: ties between logits go to the lower class index; top-5 is
undefined (``None``, stored as null) with fewer than 5 classes; mean per-class recall (scikit-learn's
balanced accuracy: recall averaged over the classes present in ``labels``) is the top-1 correctness
reduced per class (``reduce="class_mean"``).
"""

from __future__ import annotations

import numpy as np


def top_k_per_sample(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ma.MaskedArray | None:
    """1.0 where the label is among the ``k`` largest logits of its row (ties broken by the lower class
    index), else 0.0; rows with a negative label are masked. None when there are fewer than ``k`` classes."""
    logits, labels = np.asarray(logits), np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or labels.shape != (len(logits),):
        raise ValueError(f"expected logits (N, C) and labels (N,), got {logits.shape} and {labels.shape}")
    if logits.shape[1] < k:
        return None
    if k == 1:
        hit = np.argmax(logits, axis=1) == labels  # the first maximum: the lower index wins a tie
    else:  # the label's rank: classes scored above it, plus equal ones at a lower index (a stable sort)
        true = logits[np.arange(len(labels)), labels.clip(min=0)][:, None]
        lower = np.arange(logits.shape[1])[None, :] < labels[:, None]
        hit = ((logits > true) | ((logits == true) & lower)).sum(axis=1) < k
    return np.ma.masked_array(hit.astype(np.float64), mask=labels < 0)


def accuracy_per_sample(logits: np.ndarray, labels: np.ndarray) -> np.ma.MaskedArray | None:
    """Top-1 correctness per sample (``accuracy``; reduced per class: ``mean_per_class_recall``)."""
    return top_k_per_sample(logits, labels, 1)


def top5_per_sample(logits: np.ndarray, labels: np.ndarray) -> np.ma.MaskedArray | None:
    """Top-5 correctness per sample; None (undefined) with fewer than 5 classes."""
    return top_k_per_sample(logits, labels, 5)
