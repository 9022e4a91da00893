"""Classification metrics over ``logits (N, C)`` and integer ``labels (N,)``.

Conventions follow LAION CLIP_benchmark: top-5 is undefined (NaN, stored as null)
with fewer than 5 classes; mean per-class recall is scikit-learn's balanced accuracy.
"""

from __future__ import annotations

import numpy as np


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` largest logits (ties broken by index)."""
    if logits.shape[1] < k:
        return float("nan")
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy."""
    return top_k_accuracy(logits, labels, 1)


def top5_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-5 accuracy (NaN with fewer than 5 classes)."""
    return top_k_accuracy(logits, labels, 5)


def mean_per_class_recall(logits: np.ndarray, labels: np.ndarray) -> float:
    """Recall of each class present in ``labels``, averaged (balanced accuracy)."""
    from sklearn.metrics import balanced_accuracy_score

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns when predictions name classes absent from labels
        return float(balanced_accuracy_score(labels, np.argmax(logits, axis=1)))
