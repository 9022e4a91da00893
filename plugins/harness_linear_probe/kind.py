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
  split get ``-inf`` and are never predicted.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from harness.dataset import subset_indices
from harness.errors import DataError, SpecError
from harness.schema import validate_against
from harness.taskkind import TaskContext, class_names

from . import DEFAULT_C_GRID, DEFAULT_MAX_ITER, DEFAULT_VAL_FRACTION, PARAMS_SCHEMA
from .classifier import ProbeClassifier

log = logging.getLogger(__name__)


def _params(ctx: TaskContext) -> dict[str, Any]:
    """The spec's params, validated against the kind's schema (also when a context is built by hand)."""
    params = dict(ctx.spec.params)
    problem = validate_against(PARAMS_SCHEMA, params)
    if problem:
        raise SpecError(f"{ctx.spec.file}: params{problem[5:]}" if problem.startswith("<top>")
                        else f"{ctx.spec.file}: params.{problem}")
    if params["train_split"] == ctx.spec.dataset.split:
        raise SpecError(f"{ctx.spec.file}: params.train_split: {params['train_split']!r} is the evaluated split; "
                        "a probe must be fitted on a different split")
    return params


def _num_classes(ctx: TaskContext, column: str) -> tuple[int, list[str] | None]:
    """Class count (and ClassLabel names) of the evaluated split's label column."""
    feature = ctx.data.features.get(column) if ctx.data.features else None
    names = getattr(feature, "names", None)
    if names:
        return len(names), list(names)
    return len(class_names(ctx, "label")), None


def _labels(data: Any, column: str, num_classes: int, where: str) -> np.ndarray:
    """Integer labels of ``data[column]``, checked to lie in ``[0, num_classes)``."""
    if column not in data.column_names:
        raise DataError(f"{where}: no column {column!r}; columns are {data.column_names}")
    try:
        labels = np.asarray(list(data[column]), dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: column {column!r} must hold integer class labels") from None
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise DataError(f"{where}: column {column!r}: label {int(bad[0])} outside [0, {num_classes}) "
                        f"({len(bad)} such rows)")
    return labels


class LinearProbe:
    """The ``linear_probe`` task kind: returns ``logits (N, C)`` and ``labels (N,)``."""

    def evaluate(self, ctx: TaskContext) -> dict[str, np.ndarray]:
        params = _params(ctx)
        image_col, label_col = ctx.column("image"), ctx.column("label")
        num_classes, names = _num_classes(ctx, label_col)
        split = params["train_split"]
        train_where = f"{ctx.where}: train split {split!r}"
        train = ctx.load_split(split)
        train_names = getattr(train.features.get(label_col), "names", None) if train.features else None
        if names and train_names and list(train_names) != names:
            raise DataError(f"{train_where}: class names of column {label_col!r} differ from the evaluated split's")
        if "train_limit" in params:
            index = subset_indices(len(train), params["train_limit"], ctx.seed)
            train = train if len(index) == len(train) else train.select(index)
        train_y = _labels(train, label_col, num_classes, train_where)
        eval_y = _labels(ctx.data, label_col, num_classes, ctx.where)
        if len(np.unique(train_y)) < 2:
            raise DataError(f"{train_where}: a linear probe needs at least 2 classes; found {len(np.unique(train_y))} "
                            f"in {len(train_y)} rows")
        train_x = ctx.features.images(train, image_col, where=train_where)
        eval_x = ctx.features.images(ctx.split, image_col, where=ctx.where)
        probe = ProbeClassifier(num_classes=num_classes, max_iter=params.get("max_iter", DEFAULT_MAX_ITER),
                                seed=ctx.seed, C=params.get("C"))
        probe.fit(train_x, train_y, params.get("C_grid", DEFAULT_C_GRID),
                  params.get("val_fraction", DEFAULT_VAL_FRACTION))
        for note in probe.notes:
            log.warning("%s: linear probe: %s", ctx.where, note)
        return {"logits": probe.logits(eval_x), "labels": eval_y}
