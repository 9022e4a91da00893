"""The ``nearest_centroid`` task kind and the ``reciprocal_rank`` metric.

Nearest-centroid classification is the classic few-shot protocol: each class is the mean of its
train-split features (L2-normalised first with ``normalize: true``), and a sample's logit for a
class is minus its Euclidean distance to that class's centroid. Classes with no train rows get the
lowest logit and are never predicted.
"""

from __future__ import annotations

import numpy as np

from harness import DataError, TaskContext

PARAMS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["train_split"],
    "properties": {
        "train_split": {"type": "string", "minLength": 1, "description": "split the centroids are computed on"},
        "normalize": {"type": "boolean", "default": True, "description": "L2-normalise features first"},
    },
}


def _normalized(x: np.ndarray, on: bool) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12) if on else x


class NearestCentroid:
    """Task kind ``nearest_centroid``: ``logits (N, C)``, ``labels (N,)``."""

    def evaluate(self, ctx: TaskContext) -> dict[str, np.ndarray]:
        split, normalize = ctx.params["train_split"], ctx.params["normalize"]
        n_classes = len(ctx.class_names())
        train_y = ctx.labels(split=split, n_classes=n_classes)
        if len(np.unique(train_y)) < 2:
            raise DataError(f"{ctx.where}: split {split!r} needs rows of at least 2 classes")
        train_x = _normalized(ctx.images(ctx.column("image"), split=split), normalize)
        test_x = _normalized(ctx.images(ctx.column("image")), normalize)
        distances = np.full((len(test_x), n_classes), np.nan)
        for c in np.unique(train_y):
            distances[:, c] = np.linalg.norm(test_x - train_x[train_y == c].mean(axis=0), axis=1)
        lowest = -(np.nanmax(distances) + 1.0)  # absent classes: below every real logit, finite
        return {"logits": np.where(np.isnan(distances), lowest, -distances), "labels": ctx.labels(n_classes=n_classes)}


def reciprocal_rank(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per sample: 1 / (1 + number of classes scored strictly above the true one)."""
    true = logits[np.arange(len(labels)), labels]
    return 1.0 / (1.0 + (logits > true[:, None]).sum(axis=1))
