"""Task kind ``count_probe``: how many objects an image holds, read from frozen image features.

A probe is fitted on the spec's ``params.train_split`` and scored on the task's split:

* ``method: ridge`` (default): ridge regression of the count on standardised features (train-split
  statistics); the strength is chosen from ``alpha_grid`` by the mean squared error on a seeded
  ``val_fraction`` of the train split, then the probe is refitted on the whole train split. The
  prediction is the regressed (real) count; the metrics round it (half up, at least 0).
* ``method: logistic``: multinomial logistic regression (L-BFGS) over the count values the train
  split shows, ``C`` chosen from ``C_grid`` by validation accuracy; the prediction is the most
  likely count value (a value the train split never shows is never predicted).

Outputs (all kept in the records, so ``harness rescore`` works on probe results too):
``predictions`` (float), ``targets`` (int), ``count_bin`` (GVT's bins by true count: ``0-2``,
``3-5``, ...; the count metrics' breakdown).

Column roles: ``image``, and ``count``: a column of non-negative integers, or of lists of them with
``params.class_index`` choosing the position (the scenes' ``counts`` per shape). Fitted once, on
the main process (``ctx.compute.once``).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from harness import DataError, SpecError, TaskContext, subset_indices

from .parsing import count_bin

log = logging.getLogger(__name__)
#: Fewest train rows a probe is fitted on.
MIN_TRAIN = 4
#: Fits of at most this many (rows x features) values run with one BLAS/OpenMP thread: threading costs
#: more than it saves on problems this small, and on a loaded machine it makes an L-BFGS fit ~40x slower.
SINGLE_THREAD_VALUES = 20_000_000


def _is_count(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return value >= 0
    return isinstance(value, (float, np.floating)) and bool(np.isfinite(value)) and float(value).is_integer() \
        and value >= 0


def count_targets(ctx: TaskContext, split: str | None = None) -> np.ndarray:
    """The count of every row of ``split`` (default: the evaluated rows), checked: non-negative
    integers (or whole floats), or the ``class_index`` position of a list per row."""
    column = ctx.column("count")
    where = f"{ctx.where}: column {column!r}" + ("" if split is None else f" of split {split!r}")
    values = list(ctx.rows(split)[column])
    index = ctx.params.get("class_index")
    lists = [isinstance(v, (list, tuple, np.ndarray)) for v in values]
    if any(lists):
        if not all(lists):
            raise DataError(f"{where}: mixes lists and single values")
        if index is None:
            raise SpecError(f"{where} holds a list per row (e.g. counts per class): set params.class_index to the "
                            "position to count")
        short = [i for i, v in enumerate(values) if len(v) <= index]
        if short:
            raise SpecError(f"{where}: params.class_index {index} is past the end of row {short[0]}'s list "
                            f"({len(values[short[0]])} values)")
        values = [v[index] for v in values]
    elif index is not None and values:
        raise SpecError(f"{ctx.where}: params.class_index is set, but column {column!r} holds single counts, "
                        "not lists")
    bad = [i for i, v in enumerate(values) if not _is_count(v)]
    if bad:
        raise DataError(f"{where}: row {bad[0]} has count {values[bad[0]]!r}, not a non-negative integer "
                        f"({len(bad)} such rows)")
    return np.asarray([int(v) for v in values], dtype=np.int64)


@dataclass(frozen=True)
class _Prepared:
    train_split: str
    train_y: np.ndarray
    eval_y: np.ndarray
    index: np.ndarray | None


def _prepare(ctx: TaskContext) -> _Prepared:
    params = ctx.params
    split = params["train_split"]
    if split == ctx.split:
        raise SpecError(f"{ctx.where}: params.train_split: {split!r} is the evaluated split; a probe must be "
                        "fitted on a different split")
    ctx.column("image")
    eval_y = count_targets(ctx)
    if not len(eval_y):
        raise DataError(f"{ctx.where}: split {ctx.split!r} has no rows to evaluate")
    train_y = count_targets(ctx, split)
    index = None
    if params.get("train_limit") is not None and params["train_limit"] < len(train_y):
        index = subset_indices(len(train_y), params["train_limit"], ctx.seed)
        train_y = train_y[index]
    if len(train_y) < MIN_TRAIN or len(np.unique(train_y)) < 2:
        raise DataError(f"{ctx.where}: train split {split!r}: a count probe needs at least {MIN_TRAIN} rows and 2 "
                        f"different counts; found {len(train_y)} rows, {len(np.unique(train_y))} count(s)")
    return _Prepared(split, train_y, eval_y, index)


def _split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool) -> Any:
    from sklearn.model_selection import train_test_split

    if stratify:
        try:
            return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y)
        except ValueError:  # a count seen once, or fewer validation rows than counts
            pass
    return train_test_split(x, y, test_size=fraction, random_state=seed)


class CountProbe:
    """A ridge or logistic probe from features to a count (see the module docstring)."""

    def __init__(self, method: str, grid: Sequence[float], val_fraction: float, seed: int, max_iter: int) -> None:
        self.method, self.grid, self.val_fraction = method, sorted(float(g) for g in grid), val_fraction
        self.seed, self.max_iter = seed, max_iter
        self.strength: float | None = None
        self.notes: list[str] = []
        self._scaler: Any = None
        self._model: Any = None

    def _fit_once(self, x: np.ndarray, y: np.ndarray, strength: float) -> Any:
        if self.method == "ridge":
            from sklearn.linear_model import Ridge

            return Ridge(alpha=strength).fit(x, y.astype(np.float64))
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=strength, max_iter=self.max_iter, random_state=self.seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x, y)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            self.notes.append(f"L-BFGS did not converge in {self.max_iter} iterations (C={strength:g})")
        return model

    def _score(self, model: Any, x: np.ndarray, y: np.ndarray) -> float:
        """Higher is better: -MSE (ridge) or accuracy (logistic)."""
        predicted = model.predict(x)
        if self.method == "ridge":
            return -float(np.mean((predicted - y) ** 2))
        return float(np.mean(predicted == y))

    def choose(self, x: np.ndarray, y: np.ndarray) -> float:
        """The grid value that scores best on a seeded validation part of the train split (ties go to
        the smaller value); the middle of the grid when the train split is too small to hold a part out."""
        from sklearn.preprocessing import StandardScaler

        if len(self.grid) == 1:
            return self.grid[0]
        fit_x, val_x, fit_y, val_y = _split(x, y, self.val_fraction, self.seed, self.method == "logistic")
        if len(val_y) == 0 or len(np.unique(fit_y)) < 2:
            return self.grid[len(self.grid) // 2]
        scaler = StandardScaler().fit(fit_x)
        fit_x, val_x = scaler.transform(fit_x), scaler.transform(val_x)
        scores = [self._score(self._fit_once(fit_x, fit_y, g), val_x, val_y) for g in self.grid]
        best = self.grid[max(range(len(self.grid)), key=lambda i: scores[i])]
        log.info("count probe (%s): validation %s -> %g", self.method,
                 ", ".join(f"{g:g}: {s:.4f}" for g, s in zip(self.grid, scores)), best)
        return best

    def fit(self, x: np.ndarray, y: np.ndarray) -> CountProbe:
        from sklearn.preprocessing import StandardScaler
        from threadpoolctl import threadpool_limits

        x = np.asarray(x, dtype=np.float64)
        with threadpool_limits(1 if x.size <= SINGLE_THREAD_VALUES else None):
            self.strength = self.choose(x, y)
            self._scaler = StandardScaler().fit(x)
            self._model = self._fit_once(self._scaler.transform(x), y, self.strength)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros(0, dtype=np.float64)
        return np.asarray(self._model.predict(self._scaler.transform(np.asarray(x, dtype=np.float64))),
                          dtype=np.float64)


class CountProbeKind:
    """Task kind ``count_probe`` (see the module docstring)."""

    def check(self, ctx: TaskContext) -> None:
        """Splits and counts, before any model loads."""
        _prepare(ctx)

    def evaluate(self, ctx: TaskContext) -> dict[str, np.ndarray]:
        params = ctx.params
        prepared = _prepare(ctx)
        column = ctx.column("image")
        train_x = ctx.images(column, split=prepared.train_split, rows=prepared.index)
        eval_x = ctx.images(column)
        method = params["method"]
        grid = params["alpha_grid"] if method == "ridge" else params["C_grid"]

        def fit_and_predict() -> dict[str, np.ndarray]:
            probe = CountProbe(method, grid, params["val_fraction"], ctx.seed, params["max_iter"])
            probe.fit(train_x, prepared.train_y)
            for note in probe.notes:
                log.warning("%s: count probe: %s", ctx.where, note)
            bins = np.empty(len(prepared.eval_y), dtype=object)
            bins[:] = [count_bin(c) for c in prepared.eval_y]
            return {"predictions": probe.predict(eval_x), "targets": prepared.eval_y, "count_bin": bins}

        return ctx.compute.once(fit_and_predict)
