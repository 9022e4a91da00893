"""Zero-shot classification, as LAION CLIP_benchmark computes it.

For each class, every template is formatted with the class name and encoded; each
prompt embedding is L2-normalised, the prompts are averaged, and the mean is
renormalised (``zero_shot_classifier``). Image embeddings are L2-normalised and
``logits = logit_scale * image @ W`` with ``logit_scale`` 100 by default.
"""

from __future__ import annotations

import numpy as np

from harness import DataError, SpecError, TaskContext


def normalize(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows (float64 for stable sums)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(min=1e-12)


def class_prototypes(text_embeddings: np.ndarray, n_classes: int, n_templates: int) -> np.ndarray:
    """``(C, D)`` prototypes from ``(C * T, D)`` prompt embeddings grouped by class."""
    per_prompt = normalize(text_embeddings).reshape(n_classes, n_templates, -1)
    return normalize(per_prompt.mean(axis=1))


def checked_classes(ctx: TaskContext) -> tuple[list[str], np.ndarray]:
    """The class names and the evaluated labels, checked against each other over the whole split (so a
    ``--limit`` subset is refused or accepted alike):

    * ``ctx.class_names`` gives exactly one name per ClassLabel class of the column, when it has some;
    * no label may reach past the last name (fewer names than classes);
    * without ClassLabel names, ``params.classnames`` may not name more classes than the labels reach
      (extra names would be extra distractor classes, silently changing the task);
    * the evaluated rows must include a labelled one. Negative labels (unlabelled rows) pass; the
      metrics leave them out.
    """
    names = ctx.class_names()
    column, given = ctx.column("label"), "classnames" in ctx.params
    source = "params.classnames" if given else f"the class names of column {column!r}"
    labels = ctx.labels()
    whole = ctx.labels(split=ctx.split)
    beyond = whole[whole >= len(names)]  # the evaluated rows are some of these
    if len(beyond):
        raise DataError(f"{ctx.where}: column {column!r}: label {int(beyond[0])} outside [0, {len(names)}) "
                        f"of {source} ({len(beyond)} such rows in split {ctx.split!r}); give one name per class, "
                        "in label order")
    if not len(labels):
        raise DataError(f"{ctx.where}: split {ctx.split!r} has no rows to evaluate")
    if not (labels >= 0).any():
        raise DataError(f"{ctx.where}: column {column!r}: no evaluated row has a label "
                        f"(all {len(labels)} are negative)")
    labelled = getattr(ctx.rows().features.get(column), "names", None)
    top = int(whole.max())
    if given and not labelled and top + 1 < len(names):
        raise SpecError(f"{ctx.where}: params.classnames: {len(names)} names, but the labels of column {column!r} "
                        f"in split {ctx.split!r} only reach {top} ({top + 1} classes); give one name per class, "
                        "in label order")
    return names, labels


class ZeroShotClassification:
    """Task kind ``zeroshot_classification``: returns ``logits (N, C)`` and ``labels (N,)``."""

    def check(self, ctx: TaskContext) -> None:
        """Class names against labels, before any model loads (see :func:`checked_classes`)."""
        checked_classes(ctx)

    def evaluate(self, ctx: TaskContext) -> dict[str, np.ndarray]:
        names, labels = checked_classes(ctx)
        templates = list(ctx.params["templates"])
        prompts = [template.format(c=name) for name in names for template in templates]
        prototypes = class_prototypes(ctx.texts(prompts), len(names), len(templates))
        images = normalize(ctx.images(ctx.column("image")))
        scale = float(ctx.params["logit_scale"])
        return {"logits": (scale * images @ prototypes.T).astype(np.float32), "labels": labels}
