"""Turn a task kind's per-sample outputs into metric entries with 95% confidence intervals.

The contract, checked here with one-line errors naming the kind or the metric: a kind returns a
mapping of output name -> array whose first axis is the sample (all the same length, numbers
finite); an optional ``groups`` output gives each sample's group (intervals then resample whole
groups). A metric returns per-sample scores (a masked array leaves samples out, e.g. rows whose
label is outside the subset it scores), or for ``reduce="none"`` one value; NaN is an error and
``None`` means undefined.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .errors import PluginError, blamed
from .intervals import bootstrap_scores, bootstrap_statistic, reduce_scores, wilson
from .registry import Registry
from .result import finite_or_none
from .specs import MetricSpec, load_object

GROUPS = "groups"


def check_outputs(kind: str, outputs: Any, needed: set[str]) -> dict[str, np.ndarray]:
    """The kind's outputs as arrays, after the contract checks (see the module docstring)."""
    if not isinstance(outputs, Mapping):
        raise PluginError(f"task kind {kind!r} returned {type(outputs).__name__}, expected a mapping of arrays")
    missing = sorted(needed - set(outputs))
    if missing:
        raise PluginError(f"task kind {kind!r} did not return output(s) {missing} (it returned {sorted(outputs)})")
    arrays, lengths = {}, {}
    for name, value in outputs.items():
        array = np.asarray(value)
        if array.ndim == 0:
            raise PluginError(f"task kind {kind!r}: output {name!r} is a scalar; outputs are per-sample arrays")
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).reshape(len(array), -1).any(axis=1).sum())
            raise PluginError(f"task kind {kind!r}: output {name!r} has NaN or inf values in {bad} sample(s)")
        arrays[name], lengths[name] = array, len(array)
    if len(set(lengths.values())) > 1:
        raise PluginError(f"task kind {kind!r}: outputs have different numbers of samples: "
                          f"{', '.join(f'{k}={v}' for k, v in sorted(lengths.items()))}")
    return arrays


def _per_sample(spec: MetricSpec, value: Any, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(scores, kept mask) from a per-sample metric's return value; None when undefined."""
    if value is None:
        return None
    mask = np.ma.getmaskarray(value) if np.ma.isMaskedArray(value) else None
    scores = np.asarray(np.ma.getdata(value), dtype=np.float64)
    if scores.shape != (n,):
        raise PluginError(f"metric {spec.name!r} returned shape {scores.shape}; per-sample scores must be ({n},)")
    kept = np.ones(n, dtype=bool) if mask is None else ~mask
    if not np.isfinite(scores[kept]).all():
        raise PluginError(f"metric {spec.name!r} returned NaN or inf per-sample scores")
    return scores, kept


@dataclass(frozen=True)
class SampleScores:
    """One metric's per-sample scores (masked where a sample is left out) and, for a class-mean
    metric, each sample's class: what the per-sample records keep for paired comparisons."""

    scores: np.ma.MaskedArray
    classes: np.ndarray | None = None


def score_metric(spec: MetricSpec, outputs: Mapping[str, np.ndarray], seed: int) -> dict[str, Any]:
    """Value and interval of one metric, as stored in a result."""
    return _score_metric(spec, outputs, seed)[0]


def _score_metric(spec: MetricSpec, outputs: Mapping[str, np.ndarray],
                  seed: int) -> tuple[dict[str, Any], SampleScores | None]:
    arrays = {argument: outputs[output] for argument, output in spec.arguments.items()}
    groups = outputs.get(GROUPS)
    fn = load_object(spec.fn)
    value, ci, method, samples = None, None, "bootstrap", None
    with blamed(f"metric {spec.name!r} ({spec.fn})"):
        raw = fn(**arrays)
    if spec.reduce == "none":
        if raw is not None and not np.isfinite(float(raw)):
            raise PluginError(f"metric {spec.name!r} returned {raw}; return None for an undefined value")
        value = finite_or_none(raw)
        if value is not None and spec.interval != "none":
            with blamed(f"metric {spec.name!r} ({spec.fn})"):
                ci = bootstrap_statistic(fn, arrays, seed, groups)
    else:
        n = len(next(iter(arrays.values())))
        per_sample = _per_sample(spec, raw, n)
        if per_sample is not None:
            all_classes = np.asarray(arrays[spec.classes_from]) if spec.classes_from else None
            samples = SampleScores(np.ma.MaskedArray(per_sample[0], mask=~per_sample[1]), all_classes)
        if per_sample is not None and per_sample[1].any():
            value, ci, method = _reduce(spec, per_sample[0], per_sample[1], all_classes, groups, seed)
    entry = {
        "value": value,
        "ci95": list(ci) if ci else None,
        "interval": method if ci else "none",
        "higher_is_better": spec.higher_is_better,
        "unit": spec.unit,
    }
    if spec.breakdown:
        entry["breakdown"] = _breakdown(spec, outputs, samples, groups, seed)
    return entry, samples


def _reduce(spec: MetricSpec, scores: np.ndarray, kept: np.ndarray, classes: np.ndarray | None,
            groups: Any, seed: int) -> tuple[float, Any, str]:
    """(value, interval, method) of the kept per-sample scores."""
    scores = scores[kept]
    classes = classes[kept] if classes is not None else None
    kept_groups = np.asarray(groups)[kept] if groups is not None else None
    value = reduce_scores(scores, classes)
    binary = classes is None and kept_groups is None and np.isin(scores, (0.0, 1.0)).all()
    if spec.interval == "wilson" and binary:
        return value, wilson(int(scores.sum()), len(scores)), "wilson"
    if spec.interval != "none":
        return value, bootstrap_scores(scores, seed, classes, kept_groups), "bootstrap"
    return value, None, "none"


#: Most distinct values a breakdown output may have (more is a plugin error, not a huge result).
MAX_BREAKDOWN_VALUES = 1000


def _breakdown(spec: MetricSpec, outputs: Mapping[str, np.ndarray], samples: SampleScores | None, groups: Any,
               seed: int) -> dict[str, dict[str, Any]]:
    """Output name -> its value (as text) -> ``{value, ci95, n}`` of the metric on those samples."""
    out: dict[str, dict[str, Any]] = {}
    for name in spec.breakdown:
        labels = np.array([str(v) for v in np.asarray(outputs[name]).tolist()], dtype=object)
        values = sorted(set(labels.tolist()))
        if len(values) > MAX_BREAKDOWN_VALUES:
            raise PluginError(f"metric {spec.name!r}: breakdown output {name!r} has {len(values)} distinct values "
                              f"(at most {MAX_BREAKDOWN_VALUES})")
        table = {}
        for label in values:
            kept = (labels == label) & (~np.ma.getmaskarray(samples.scores) if samples is not None else False)
            if samples is None or not kept.any():
                table[label] = {"value": None, "ci95": None, "n": int(kept.sum()) if samples is not None else 0}
                continue
            value, ci, _ = _reduce(spec, np.ma.getdata(samples.scores), kept, samples.classes, groups, seed)
            table[label] = {"value": value, "ci95": list(ci) if ci else None, "n": int(kept.sum())}
        out[name] = table
    return out


def score(kind: str, names: tuple[str, ...], metrics: Registry[MetricSpec], outputs: Any, seed: int) -> dict[str, Any]:
    """Every named metric over the kind's ``outputs`` (checked first)."""
    return score_samples(kind, names, metrics, outputs, seed)[0]


def score_samples(kind: str, names: tuple[str, ...], metrics: Registry[MetricSpec], outputs: Any,
                  seed: int) -> tuple[dict[str, Any], dict[str, SampleScores], dict[str, np.ndarray]]:
    """:func:`score`, plus each per-sample metric's :class:`SampleScores` and the kind's outputs as
    checked arrays: the material of the result's per-sample records."""
    specs = [metrics.get(name) for name in names]
    arrays = check_outputs(kind, outputs, {o for spec in specs for o in spec.outputs})
    entries, samples = {}, {}
    for spec in specs:
        entries[spec.name], per_sample = _score_metric(spec, arrays, seed)
        if per_sample is not None:
            samples[spec.name] = per_sample
    return entries, samples, arrays
