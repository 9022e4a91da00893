"""95% confidence intervals: Wilson for proportions, percentile bootstrap otherwise."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 1000


def wilson(successes: int, n: int) -> tuple[float, float] | None:
    """Wilson score interval of ``successes / n`` (None when n == 0)."""
    if n <= 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(ci.low), float(ci.high)


def bootstrap(
    statistic: Callable[..., float], arrays: Mapping[str, np.ndarray], seed: int
) -> tuple[float, float] | None:
    """Percentile bootstrap over samples (the first axis of every array), seeded."""
    n = len(next(iter(arrays.values())))
    if n < 2:
        return None
    from scipy.stats import bootstrap as scipy_bootstrap

    def resampled(index: np.ndarray) -> float:
        return statistic(**{key: value[index] for key, value in arrays.items()})

    result = scipy_bootstrap(
        (np.arange(n),),
        resampled,
        vectorized=False,
        n_resamples=N_RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):
        return None
    return float(low), float(high)
