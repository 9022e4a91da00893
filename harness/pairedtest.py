"""The leaderboard's significance test: is a model worse than the best on the same samples?

A one-sided paired sign-flip test of the mean per-sample difference (per-sample records, aligned
by sample id, on the samples both results scored), weighted as the metric reduces its scores
(class-mean metrics: each class weighs the same), the samples of one group flipping together.
See :func:`sign_flip_p_value` for how the p-value is computed (exactly where it can be).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

#: Random sign flips when there are more than EXACT_UP_TO non-zero contributions.
N_PERMUTATIONS = 10_000
EXACT_UP_TO = 16
#: Largest Berry-Esseen bound on the normal approximation's error at which it replaces permutations.
NORMAL_MAX_ERROR = 0.01
PERMUTATION_SEED = 0
_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True, eq=False)
class Cell:
    """A (model, column) cell's per-sample scores over its seeds, and its dataset."""

    ids: dict[str, int]
    scores: np.ndarray
    classes: list[Any] | None
    groups: list[Any] | None
    dataset: str


def cell_samples(docs: Sequence[Mapping[str, Any]]) -> Cell | None:
    """Each sample's score averaged over the seeds that scored it; None when a seed has no records
    or the seeds were scored on different datasets."""
    samples = [getattr(doc, "samples", None) for doc in docs]
    datasets = {json.dumps(doc["dataset"], sort_keys=True) for doc in docs}
    if any(s is None for s in samples) or len(datasets) != 1:
        return None
    if len(samples) == 1:  # one seed: the scored samples as they are
        only = samples[0]
        kept = np.flatnonzero(~np.isnan(only.scores)).tolist()
        return Cell({only.ids[k]: i for i, k in enumerate(kept)}, only.scores[kept],
                     [only.classes[k] for k in kept] if only.classes is not None else None,
                     [only.groups[k] for k in kept] if only.groups is not None else None, datasets.pop())
    sums: dict[str, list[float]] = {}
    labels: dict[str, tuple[Any, Any]] = {}
    for sample_set in samples:
        for k, sample in enumerate(sample_set.ids):
            score = sample_set.scores[k]
            if math.isnan(score):
                continue
            total = sums.setdefault(sample, [0.0, 0])
            total[0] += float(score)
            total[1] += 1
            labels.setdefault(sample, (sample_set.classes[k] if sample_set.classes is not None else None,
                                       sample_set.groups[k] if sample_set.groups is not None else None))
    ids = sorted(sums)
    has_classes = all(s.classes is not None for s in samples)
    has_groups = all(s.groups is not None for s in samples)
    return Cell({sample: i for i, sample in enumerate(ids)},
                 np.array([sums[i][0] / sums[i][1] for i in ids], dtype=np.float64),
                 [labels[i][0] for i in ids] if has_classes else None,
                 [labels[i][1] for i in ids] if has_groups else None,
                 datasets.pop())


def _codes(values: Sequence[Any]) -> np.ndarray:
    codes: dict[tuple[str, Any], int] = {}
    return np.array([codes.setdefault((type(v).__name__, v), len(codes)) for v in values], dtype=np.int64)


def sign_flip_p_value(contributions: np.ndarray) -> tuple[float, str]:
    """One-sided p-value of ``sum(contributions) > 0`` under random sign flips of each
    contribution (the paired test's null: each pair's two scores are exchangeable), and how it
    was computed. Zero contributions are dropped; none left: p = 1. Then, in order:

    - ``"sign test"``: all contributions of one magnitude (0/1 scores without classes or groups):
      exact, ``P(Binomial(m, 1/2) >= positives)`` -- the exact McNemar test for 0/1 scores;
    - ``"exact"``: at most :data:`EXACT_UP_TO` contributions: every sign pattern enumerated;
    - ``"normal"``: the Berry-Esseen bound on the normal approximation's error (constant 0.56) is at
      most :data:`NORMAL_MAX_ERROR`: ``1 - Phi(sum / sqrt(sum of squares))``;
    - ``"permutation"``: :data:`N_PERMUTATIONS` sign patterns drawn with a fixed seed,
      ``(1 + hits) / (1 + N)``.
    """
    values = np.asarray(contributions, dtype=np.float64)
    values = values[values != 0]
    if values.size == 0:
        return 1.0, "no differences"
    from scipy.stats import binom, norm

    observed = float(values.sum())
    magnitudes = np.abs(values)
    tolerance = 1e-9 * float(magnitudes.sum())
    n = values.size
    if np.ptp(magnitudes) <= 1e-9 * magnitudes.max():
        positives = int(np.count_nonzero(values > 0))
        return float(binom.sf(positives - 1, n, 0.5)), "sign test"
    if n <= EXACT_UP_TO:
        signs = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1) * 2.0 - 1.0
        return float(np.mean(signs @ values >= observed - tolerance)), "exact"
    variance = float(np.sum(magnitudes ** 2))
    if 0.56 * float(np.sum(magnitudes ** 3)) / variance ** 1.5 <= NORMAL_MAX_ERROR:
        return float(norm.sf(observed / math.sqrt(variance))), "normal"
    rng = np.random.default_rng(PERMUTATION_SEED)
    hits, done = 0, 0
    chunk = max(1, _CHUNK_ELEMENTS // n)
    while done < N_PERMUTATIONS:
        rows = min(chunk, N_PERMUTATIONS - done)
        bits = rng.integers(0, 2, size=(rows, n), dtype=np.int8).astype(np.float64)
        hits += int(np.count_nonzero(2.0 * (bits @ values) - observed >= observed - tolerance))
        done += rows
    return (1 + hits) / (1 + N_PERMUTATIONS), "permutation"


def paired_p_value(best: Cell, other: Cell, higher_is_better: bool) -> float | None:
    """p-value of "``other`` is worse than ``best``" on the samples both scored (None when they
    share none or were scored on different datasets): the per-sample differences, weighted as the
    metric reduces them (class-mean: 1 / (classes x samples of the class); else 1 / samples),
    summed per group when the task has groups, go to :func:`sign_flip_p_value`."""
    if best.dataset != other.dataset:
        return None
    common = [(k, other.ids[sample]) for sample, k in best.ids.items() if sample in other.ids]
    if not common:
        return None
    mine, theirs = (np.array(side, dtype=np.int64) for side in zip(*common))
    differences = best.scores[mine] - other.scores[theirs]
    if not higher_is_better:
        differences = -differences
    if best.classes is not None:
        classes = _codes([best.classes[k] for k in mine])
        counts = np.bincount(classes)
        weights = 1.0 / (np.count_nonzero(counts) * counts[classes])
    else:
        weights = np.full(len(mine), 1.0 / len(mine))
    contributions = weights * differences
    if best.groups is not None:
        contributions = np.bincount(_codes([best.groups[k] for k in mine]), weights=contributions)
    return sign_flip_p_value(contributions)[0]
