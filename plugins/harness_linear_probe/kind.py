"""Linear-probe evaluation: fit a linear classifier on frozen train-split embeddings, then
classify the task's split.

Follows LAION CLIP_benchmark's linear probe in spirit (frozen encoder features, a
linear classifier fitted on the train split, accuracy measured on the test split), with
these differences:

* the classifier is scikit-learn's multinomial logistic regression fitted to
  convergence with L-BFGS, not a torch linear layer trained with AdamW and a cosine
  schedule for a fixed number of epochs -- the optimum is unique and deterministic;
* features are standardised with train-split statistics (mean 0, variance 1 per
  dimension) before fitting;
* the regularisation strength ``C`` is chosen from ``C_grid`` by accuracy on a seeded,
  stratified ``val_fraction`` of the train split (CLIP_benchmark searches weight decay
  on its own validation part), then the classifier is refitted on the whole train split;
* the task's ``--limit`` subsamples only the evaluated split; ``params.train_limit``
  caps the train split separately;
* ``logits`` covers every class of the label column; classes absent from the train
  split get a very low finite logit (:data:`~harness_linear_probe.classifier.ABSENT_LOGIT`)
  and are never predicted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from harness import DataError, SpecError, TaskContext, subset_indices

from .classifier import ProbeClassifier

log = logging.getLogger(__name__)


def _check_not_evaluated(ctx: TaskContext, train_split: str) -> None:
    """A probe must not be fitted on the split it is scored on."""
    if train_split == ctx.split:
        raise SpecError(f"{ctx.where}: params.train_split: {train_split!r} is the evaluated split; "
                        "a probe must be fitted on a different split")


def _class_names(ctx: TaskContext, column: str, train_split: str) -> list[str]:
    """The classes of the label column (``ctx.class_names``), which must be the same in the train split."""
    names = ctx.class_names()
    labelled = getattr(ctx.rows().features.get(column), "names", None)
    train_names = getattr(ctx.rows(train_split).features.get(column), "names", None)
    if labelled and train_names and list(train_names) != list(labelled):
        raise DataError(f"{ctx.where}: train split {train_split!r}: class names of column {column!r} differ from "
                        "the evaluated split's")
    return names


@dataclass(frozen=True)
class _Prepared:
    """What ``evaluate`` needs that can be checked without a model."""

    train_split: str
    num_classes: int
    train_y: np.ndarray
    eval_y: np.ndarray
    index: np.ndarray | None
    """Positions of the ``train_limit`` subset of the train split; None: all of it."""


def _prepare(ctx: TaskContext) -> _Prepared:
    """Splits, class names and labels, checked: a train split other than the evaluated one, the same
    class names in both, integer labels in range, a non-empty evaluated split, and at least two
    classes among the (``train_limit``) train rows."""
    params = ctx.params
    split = params["train_split"]
    _check_not_evaluated(ctx, split)
    label_col = ctx.column("label")
    ctx.column("image")  # mapped (evaluate reads it)
    num_classes = len(_class_names(ctx, label_col, split))
    train_where = f"{ctx.where}: train split {split!r}"
    train_y = ctx.labels("label", split=split, n_classes=num_classes)
    eval_y = ctx.labels("label", n_classes=num_classes)
    if not len(eval_y):
        raise DataError(f"{ctx.where}: split {ctx.split!r} has no rows to evaluate")
    index = None
    if params.get("train_limit") is not None and params["train_limit"] < len(train_y):
        index = subset_indices(len(train_y), params["train_limit"], ctx.seed)
        train_y = train_y[index]
    if len(np.unique(train_y)) < 2:
        raise DataError(f"{train_where}: a linear probe needs at least 2 classes; found {len(np.unique(train_y))} "
                        f"in {len(train_y)} rows")
    return _Prepared(split, num_classes, train_y, eval_y, index)


class LinearProbe:
    """The ``linear_probe`` task kind: returns ``logits (N, C)`` and ``labels (N,)``."""

    def check(self, ctx: TaskContext) -> None:
        """Splits, class names and labels, before any model loads (see :func:`_prepare`)."""
        _prepare(ctx)

    def evaluate(self, ctx: TaskContext) -> dict[str, np.ndarray]:
        params = ctx.params
        prepared = _prepare(ctx)
        image_col = ctx.column("image")
        train_x = ctx.images(image_col, split=prepared.train_split, rows=prepared.index)  # only the subset's rows
        eval_x = ctx.images(image_col)

        def fit_and_score() -> dict[str, np.ndarray]:
            probe = ProbeClassifier(num_classes=prepared.num_classes, max_iter=params["max_iter"],
                                    seed=ctx.seed, C=params.get("C"))
            probe.fit(train_x, prepared.train_y, params["C_grid"], params["val_fraction"])
            for note in probe.notes:
                log.warning("%s: linear probe: %s", ctx.where, note)
            return {"logits": probe.logits(eval_x), "labels": prepared.eval_y}

        return ctx.compute.once(fit_and_score)  # fitted once, on the main process under torchrun
