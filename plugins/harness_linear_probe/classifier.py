"""The probe itself: standardised features -> scikit-learn logistic regression (L-BFGS).

Deterministic for a given seed: L-BFGS is deterministic, and the validation split that
chooses ``C`` is drawn with the seed.

Small probes run with one BLAS thread (:func:`blas_threads`). Their matrix products are tiny
(500 x 1280 features, 10 classes: a few million multiply-adds per loss evaluation), so extra BLAS
threads cannot help, and OpenBLAS's threads busy-wait for each other: with numpy's and scipy's own
OpenBLAS pools (and torch's threads) in one process, or any other process using the CPUs, every
product waits for a descheduled thread. On the 2-core development VM the default job's two probes
took 3 to 45 s each with the default threads and 0.3 s each with one; the fitted models are the
same up to float rounding (logits within 1e-12, same predictions and chosen C; bench/RESULTS.md).
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

log = logging.getLogger(__name__)

#: Logit given to classes the train split never shows: finite (outputs must be), yet far below any
#: decision value, so such classes are never predicted and rank last in a top-k (ties among them go to
#: the lower class index, as they did with -inf); representable in float32 too.
ABSENT_LOGIT = -1e30

#: Probes with fewer multiply-adds than this per loss evaluation (rows x features x classes) are
#: fitted with one BLAS thread (see the module docstring); larger ones keep the default threads.
SINGLE_THREAD_BELOW = 2**28


@contextmanager
def blas_threads(rows: int, features: int, classes: int) -> Iterator[None]:
    """One BLAS thread for numpy's and scipy's BLAS inside the block when the problem is small (see
    :data:`SINGLE_THREAD_BELOW`); the previous limits are restored afterwards."""
    if rows * features * max(classes, 2) >= SINGLE_THREAD_BELOW:
        yield
        return
    import scipy.optimize  # noqa: F401  loads scipy's own OpenBLAS, so that the limit reaches it too
    import sklearn.linear_model  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _validation_score(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(accuracy, negated mean log loss) of a fitted model; higher is better for both."""
    proba = model.predict_proba(x)
    column = np.searchsorted(model.classes_, y).clip(max=len(model.classes_) - 1)
    seen = model.classes_[column] == y  # a validation class the fit part lacks gets probability ~0
    p = np.where(seen, proba[np.arange(len(y)), column], 0.0)
    accuracy = float(np.mean(model.classes_[np.argmax(proba, axis=1)] == y))
    return accuracy, -float(np.mean(-np.log(np.clip(p, 1e-15, 1.0))))


@dataclass
class ProbeClassifier:
    """A linear classifier over ``num_classes`` classes fitted on frozen features."""

    num_classes: int
    max_iter: int = 1000
    seed: int = 0
    C: float | None = None
    notes: list[str] = field(default_factory=list)
    _scaler: Any = None
    _model: Any = None

    def _fit_once(self, x: np.ndarray, y: np.ndarray, C: float) -> Any:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=C, max_iter=self.max_iter, random_state=self.seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x, y)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            self.notes.append(f"L-BFGS did not converge in {self.max_iter} iterations (C={C:g})")
        return model

    def choose_C(self, x: np.ndarray, y: np.ndarray, grid: Sequence[float], val_fraction: float) -> float:
        """The grid value with the best accuracy on a seeded, stratified validation part of
        ``(x, y)``; ties go to the lower validation log loss, then to the smaller C. Falls
        back to ``C=1`` when the train split is too small to hold a validation part out."""
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler

        grid = sorted(float(c) for c in grid)
        if len(grid) == 1:
            return grid[0]
        try:
            fit_x, val_x, fit_y, val_y = train_test_split(
                x, y, test_size=val_fraction, random_state=self.seed, stratify=y)
        except ValueError:  # a class with one sample, or fewer validation rows than classes
            log.info("linear probe: train split too small for a validation part; using C=1")
            return 1.0
        if len(np.unique(fit_y)) < 2:
            return 1.0
        scaler = StandardScaler().fit(fit_x)
        fit_x, val_x = scaler.transform(fit_x), scaler.transform(val_x)
        scores = [_validation_score(self._fit_once(fit_x, fit_y, c), val_x, val_y) for c in grid]
        best = grid[max(range(len(grid)), key=lambda i: scores[i])]  # max keeps the first (smallest C) of ties
        log.info("linear probe: validation (accuracy, -log loss) %s -> C=%g",
                 ", ".join(f"C={c:g}: ({a:.4f}, {n:.4f})" for c, (a, n) in zip(grid, scores)), best)
        return best

    def fit(self, x: np.ndarray, y: np.ndarray, grid: Sequence[float], val_fraction: float) -> ProbeClassifier:
        """Standardise with train statistics and fit; choose C first unless it is fixed."""
        from sklearn.preprocessing import StandardScaler

        x = np.asarray(x, dtype=np.float64)
        with blas_threads(*x.shape, len(np.unique(y))):
            if self.C is None:
                self.C = self.choose_C(x, y, grid, val_fraction)
            self._scaler = StandardScaler().fit(x)
            self._model = self._fit_once(self._scaler.transform(x), y, self.C)
        return self

    def logits(self, x: np.ndarray) -> np.ndarray:
        """``(N, num_classes)`` decision values; classes absent from training get :data:`ABSENT_LOGIT`."""
        out = np.full((len(x), self.num_classes), ABSENT_LOGIT, dtype=np.float64)
        if len(x) == 0:
            return out
        x = np.asarray(x, dtype=np.float64)
        with blas_threads(len(x), x.shape[1] if x.ndim == 2 else 1, len(self._model.classes_)):
            scores = self._model.decision_function(self._scaler.transform(x))
        if scores.ndim == 1:  # binary: one log-odds column; split it symmetrically into two logits
            scores = np.stack([-scores / 2, scores / 2], axis=1)
        out[:, self._model.classes_] = scores
        return out
