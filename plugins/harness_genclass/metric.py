"""Per-sample scores of the ``generative_classification`` kind (rows with a negative label masked)."""

from __future__ import annotations

import numpy as np


def correct(predictions: np.ndarray, labels: np.ndarray) -> np.ma.MaskedArray:
    """1.0 where the predicted class is the label, else 0.0."""
    predictions, labels = np.asarray(predictions, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    return np.ma.masked_array((predictions == labels).astype(np.float64), mask=labels < 0)


def matched(decided: np.ndarray, labels: np.ndarray) -> np.ma.MaskedArray:
    """1.0 where the answer named the class (``decided == "matched"``), 0.0 where it was ranked."""
    labels = np.asarray(labels, dtype=np.int64)
    hit = np.asarray([d == "matched" for d in decided], dtype=np.float64)
    return np.ma.masked_array(hit, mask=labels < 0)
