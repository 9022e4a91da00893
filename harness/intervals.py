"""95% confidence intervals from per-sample scores: Wilson for proportions, percentile bootstrap otherwise.

The bootstrap resamples per-sample scores (or whole groups of samples, e.g. the keypoints of one
image pair) and recomputes only the reduction -- a mean, or a mean of per-class means -- never the
metric itself, so 1,000 resamples of 50,000 samples take well under a second. Resamples are drawn
in chunks so memory stays bounded.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 1000
#: Resampled index rows drawn at once (CHUNK x n int64 values live in memory).
_CHUNK_ELEMENTS = 4_000_000


def wilson(successes: int, n: int) -> tuple[float, float] | None:
    """Wilson score interval of ``successes / n`` (None when n == 0): the closed form, equal to scipy's
    ``binomtest(k, n).proportion_ci(method="wilson")`` (tested), without importing scipy.stats (0.45 s,
    most of a warm zero-shot run's metrics phase)."""
    if n <= 0:
        return None
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)
    p, z2 = successes / n, z * z
    denominator = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, center - half)  # exact at the ends, as scipy's
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def reduce_scores(scores: np.ndarray, classes: np.ndarray | None) -> float:
    """The mean of ``scores``, or (with ``classes``) the mean over classes of per-class means."""
    if classes is None:
        return float(np.mean(scores))
    _, inverse = np.unique(classes, return_inverse=True)
    sums = np.bincount(inverse, weights=scores)
    counts = np.bincount(inverse)
    return float(np.mean(sums / counts))


def _rows_statistic(scores: np.ndarray, classes: np.ndarray | None, n_classes: int, index: np.ndarray) -> np.ndarray:
    """The reduction of each row of resampled ``index`` ``(R, m)``."""
    if classes is None:
        return scores[index].mean(axis=1)
    rows = index.shape[0]
    flat = (np.arange(rows)[:, None] * n_classes + classes[index]).ravel()
    sums = np.bincount(flat, weights=scores[index].ravel(), minlength=rows * n_classes).reshape(rows, n_classes)
    counts = np.bincount(flat, minlength=rows * n_classes).reshape(rows, n_classes)
    present = counts > 0
    return np.where(present, sums / np.maximum(counts, 1), 0.0).sum(axis=1) / present.sum(axis=1)


def _percentiles(stats: np.ndarray) -> tuple[float, float] | None:
    low, high = np.percentile(stats, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    return (float(low), float(high)) if np.isfinite(low) and np.isfinite(high) else None


def bootstrap_scores(scores: np.ndarray, seed: int, classes: np.ndarray | None = None,
                     groups: np.ndarray | None = None, n_resamples: int = N_RESAMPLES) -> tuple[float, float] | None:
    """Percentile bootstrap interval of :func:`reduce_scores` over samples (or over ``groups``)."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if n < 2 or (groups is not None and len(np.unique(groups)) < 2):
        return None
    rng = np.random.default_rng(seed)
    n_classes = 0
    if classes is not None:
        uniques, classes = np.unique(classes, return_inverse=True)
        n_classes = len(uniques)
    if groups is None:
        chunk = max(1, _CHUNK_ELEMENTS // n)
        stats = np.concatenate([_rows_statistic(scores, classes, n_classes,
                                                rng.integers(0, n, size=(min(chunk, n_resamples - start), n)))
                                for start in range(0, n_resamples, chunk)])
        return _percentiles(stats)
    _, group_of = np.unique(groups, return_inverse=True)
    n_groups = int(group_of.max()) + 1
    if classes is None:  # a mean over resampled groups: weighted by how often each group is drawn
        sums, sizes = np.bincount(group_of, weights=scores), np.bincount(group_of)
        draws = rng.integers(0, n_groups, size=(n_resamples, n_groups))
        counts = np.stack([np.bincount(row, minlength=n_groups) for row in draws])
        return _percentiles((counts @ sums) / (counts @ sizes))
    members = np.split(np.argsort(group_of, kind="stable"), np.cumsum(np.bincount(group_of))[:-1])
    stats = [_rows_statistic(scores, classes, n_classes,
                             np.concatenate([members[g] for g in rng.integers(0, n_groups, n_groups)])[None])[0]
             for _ in range(n_resamples)]
    return _percentiles(np.asarray(stats))


def bootstrap_statistic(statistic: Callable[..., Any], arrays: Mapping[str, np.ndarray], seed: int,
                        groups: np.ndarray | None = None, n_resamples: int = N_RESAMPLES) -> tuple[float, float] | None:
    """Percentile bootstrap of a whole-set ``statistic(**arrays)`` (metrics with ``reduce="none"``, which
    cannot be written per sample): recomputed on each resample of samples (or groups)."""
    n = len(next(iter(arrays.values())))
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    members = None
    if groups is not None:
        _, group_of = np.unique(groups, return_inverse=True)
        members = np.split(np.argsort(group_of, kind="stable"), np.cumsum(np.bincount(group_of))[:-1])
    stats = []
    for _ in range(n_resamples):
        index = rng.integers(0, n, n) if members is None else \
            np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        value = statistic(**{key: value[index] for key, value in arrays.items()})
        stats.append(np.nan if value is None else float(value))
    stats_array = np.asarray(stats)
    return _percentiles(stats_array[np.isfinite(stats_array)]) if np.isfinite(stats_array).sum() > 1 else None
