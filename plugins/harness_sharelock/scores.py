"""ViTeRB metrics: top-1 accuracy on the unseen classes (``logits``) and on the seen ones (``seen_logits``)."""

from __future__ import annotations

import numpy as np


def _top1(logits: np.ndarray, labels: np.ndarray) -> float:
    if len(labels) == 0:
        return float("nan")
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def unseen_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 over rows of unseen classes, among the unseen classes only (chance = 1 / #unseen)."""
    return _top1(logits, labels)


def seen_accuracy(seen_logits: np.ndarray, seen_labels: np.ndarray) -> float:
    """Top-1 over rows of seen classes, among the seen classes only."""
    return _top1(seen_logits, seen_labels)
