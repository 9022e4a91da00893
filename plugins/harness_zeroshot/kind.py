"""Zero-shot classification, as LAION CLIP_benchmark computes it.

For each class, every template is formatted with the class name and encoded; each
prompt embedding is L2-normalised, the prompts are averaged, and the mean is
renormalised (``zero_shot_classifier``). Image embeddings are L2-normalised and
``logits = logit_scale * image @ W`` with ``logit_scale`` 100 by default.
"""

from __future__ import annotations

import numpy as np

from harness.taskkind import TaskContext, class_names

DEFAULT_TEMPLATES = ("a photo of a {c}.",)


def normalize(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows (float64 for stable sums)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(min=1e-12)


def class_prototypes(text_embeddings: np.ndarray, n_classes: int, n_templates: int) -> np.ndarray:
    """``(C, D)`` prototypes from ``(C * T, D)`` prompt embeddings grouped by class."""
    per_prompt = normalize(text_embeddings).reshape(n_classes, n_templates, -1)
    return normalize(per_prompt.mean(axis=1))


class ZeroShotClassification:
    """Task kind ``zeroshot_classification``."""

    def evaluate(self, ctx: TaskContext) -> dict[str, np.ndarray]:
        names = class_names(ctx)
        templates = list(ctx.spec.prompts.get("templates", DEFAULT_TEMPLATES))
        prompts = [template.format(c=name) for name in names for template in templates]
        prototypes = class_prototypes(ctx.features.texts(prompts), len(names), len(templates))
        images = normalize(ctx.features.images(ctx.split, ctx.column("image"), where=ctx.where))
        scale = float(ctx.spec.params.get("logit_scale", 100.0))
        labels = np.asarray(ctx.data[ctx.column("label")], dtype=np.int64)
        return {"logits": (scale * images @ prototypes.T).astype(np.float32), "labels": labels}
