"""Zero-shot classification, as LAION CLIP_benchmark computes it.

For each class, every template is formatted with the class name and encoded; each
prompt embedding is L2-normalised, the prompts are averaged, and the mean is
renormalised (``zero_shot_classifier``). Image embeddings are L2-normalised and
``logits = logit_scale * image @ W`` with ``logit_scale`` 100 by default.
"""

from __future__ import annotations

import numpy as np

from harness import DataError, TaskContext


def normalize(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows (float64 for stable sums)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(min=1e-12)


def class_prototypes(text_embeddings: np.ndarray, n_classes: int, n_templates: int) -> np.ndarray:
    """``(C, D)`` prototypes from ``(C * T, D)`` prompt embeddings grouped by class."""
    per_prompt = normalize(text_embeddings).reshape(n_classes, n_templates, -1)
    return normalize(per_prompt.mean(axis=1))


def _labels(ctx: TaskContext, names: list[str]) -> np.ndarray:
    """The evaluated labels, checked against the class names (``ctx.class_names`` checks their number):
    no label may reach past the last name. Negative labels (unlabelled rows) pass; the metrics leave
    them out."""
    column, given = ctx.column("label"), "classnames" in ctx.params
    labels = ctx.labels()
    beyond = labels[labels >= len(names)]
    if len(beyond):
        source = "params.classnames" if given else f"the class names of column {column!r}"
        raise DataError(f"{ctx.where}: column {column!r}: label {int(beyond[0])} outside [0, {len(names)}) "
                        f"of {source} ({len(beyond)} such rows)")
    return labels


class ZeroShotClassification:
    """Task kind ``zeroshot_classification``: returns ``logits (N, C)`` and ``labels (N,)``."""

    def evaluate(self, ctx: TaskContext) -> dict[str, np.ndarray]:
        names = ctx.class_names()
        labels = _labels(ctx, names)
        templates = list(ctx.params["templates"])
        prompts = [template.format(c=name) for name in names for template in templates]
        prototypes = class_prototypes(ctx.texts(prompts), len(names), len(templates))
        images = normalize(ctx.images(ctx.column("image")))
        scale = float(ctx.params["logit_scale"])
        return {"logits": (scale * images @ prototypes.T).astype(np.float32), "labels": labels}
