"""Counting and yes/no metrics over per-sample outputs ``predictions`` and ``targets``.

``predictions`` is either numbers (the ``count_probe`` kind: a regressed or classified count) or
text (the generative kinds: each answer's first sentence, see :mod:`harness_counting.parsing`).
Every count metric scores the *rounded* count (half up, at least 0) of a number, or the count a
parser reads from a text: ``count_*`` with the strict parser, ``count_*_gvt`` with GVT's (text only;
undefined for numeric predictions, which have nothing to parse).

Per sample: ``exact`` (1 if the count equals the target), ``within1`` (1 if it is at most one off),
``abs_error`` (MAE). RMSE is the square root of the *mean* squared error, not a mean of per-sample
values, so it is a whole-set statistic (``reduce="none"``) whose interval the core bootstraps by
recomputing it on resampled samples (the root of each resample's mean squared error: the
percentile interval of MSE, square-rooted, since the root is monotone). In strict mode an answer
that states no count is wrong for ``exact``/``within1``, left out of MAE and RMSE, and counted by
``count_answered``; GVT's parser always finds a count (0 when none), as the reference does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .parsing import count_gvt, count_strict, yesno_gvt_correct, yesno_strict

MODES = ("strict", "gvt_compat")


def _is_text(predictions: np.ndarray) -> bool:
    return np.asarray(predictions).dtype.kind not in "biuf"


def counts(predictions: Any, mode: str = "strict") -> tuple[np.ndarray, np.ndarray] | None:
    """``(count per sample as float, answered mask)``; None when ``mode`` cannot read these predictions
    (GVT's parser on numbers)."""
    predictions = np.asarray(predictions)
    if not _is_text(predictions):
        if mode != "strict":
            return None
        values = np.maximum(np.floor(predictions.astype(np.float64) + 0.5), 0.0)
        return values, np.ones(len(values), dtype=bool)
    parse = count_strict if mode == "strict" else count_gvt
    parsed = [parse(str(text)) for text in predictions.tolist()]
    answered = np.array([value is not None for value in parsed], dtype=bool)
    values = np.array([float(value) if value is not None else 0.0 for value in parsed], dtype=np.float64)
    return values, answered


def _targets(targets: Any) -> np.ndarray:
    return np.asarray([float(int(t)) for t in np.asarray(targets).tolist()], dtype=np.float64)


def _exact(predictions: Any, targets: Any, mode: str) -> np.ndarray | None:
    read = counts(predictions, mode)
    if read is None:
        return None
    values, answered = read
    return ((values == _targets(targets)) & answered).astype(np.float64)


def _within1(predictions: Any, targets: Any, mode: str) -> np.ndarray | None:
    read = counts(predictions, mode)
    if read is None:
        return None
    values, answered = read
    return ((np.abs(values - _targets(targets)) <= 1) & answered).astype(np.float64)


def _abs_error(predictions: Any, targets: Any, mode: str) -> np.ma.MaskedArray | None:
    read = counts(predictions, mode)
    if read is None:
        return None
    values, answered = read
    return np.ma.MaskedArray(np.abs(values - _targets(targets)), mask=~answered)


def _rmse(predictions: Any, targets: Any, mode: str) -> float | None:
    read = counts(predictions, mode)
    if read is None:
        return None
    values, answered = read
    if not answered.any():
        return None
    errors = values[answered] - _targets(targets)[answered]
    return float(np.sqrt(np.mean(errors * errors)))


def count_exact(predictions: Any, targets: Any) -> np.ndarray | None:
    return _exact(predictions, targets, "strict")


def count_exact_gvt(predictions: Any, targets: Any) -> np.ndarray | None:
    return _exact(predictions, targets, "gvt_compat")


def count_within1(predictions: Any, targets: Any) -> np.ndarray | None:
    return _within1(predictions, targets, "strict")


def count_within1_gvt(predictions: Any, targets: Any) -> np.ndarray | None:
    return _within1(predictions, targets, "gvt_compat")


def count_mae(predictions: Any, targets: Any) -> np.ma.MaskedArray | None:
    return _abs_error(predictions, targets, "strict")


def count_mae_gvt(predictions: Any, targets: Any) -> np.ma.MaskedArray | None:
    return _abs_error(predictions, targets, "gvt_compat")


def count_rmse(predictions: Any, targets: Any) -> float | None:
    return _rmse(predictions, targets, "strict")


def count_rmse_gvt(predictions: Any, targets: Any) -> float | None:
    return _rmse(predictions, targets, "gvt_compat")


def count_answered(predictions: Any) -> np.ndarray:
    """1 where the strict parser finds a count in the answer (always 1 for numeric predictions)."""
    read = counts(predictions, "strict")
    assert read is not None
    return read[1].astype(np.float64)


def yesno_accuracy(predictions: Any, targets: Any) -> np.ndarray:
    """1 where the answer's first word (yes/no) equals the target's."""
    return np.array([float(yesno_strict(str(p)) is not None and yesno_strict(str(p)) == yesno_strict(str(t)))
                     for p, t in zip(np.asarray(predictions).tolist(), np.asarray(targets).tolist())])


def yesno_accuracy_gvt(predictions: Any, targets: Any) -> np.ndarray:
    """GVT's substring test (see :func:`harness_counting.parsing.yesno_gvt_correct`)."""
    return np.array([float(yesno_gvt_correct(str(p), str(t)))
                     for p, t in zip(np.asarray(predictions).tolist(), np.asarray(targets).tolist())])
