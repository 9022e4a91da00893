"""Turn a task kind's output arrays into metric entries with 95% confidence intervals."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .errors import PluginError
from .intervals import bootstrap, wilson
from .registry import Registry
from .result import finite_or_none
from .specs import MetricSpec, load_object


def score_metric(spec: MetricSpec, outputs: Mapping[str, np.ndarray], seed: int) -> dict[str, Any]:
    """Value and interval of one metric, as stored in a result."""
    try:
        arrays = {name: np.asarray(outputs[name]) for name in spec.inputs}
    except KeyError as exc:
        raise PluginError(f"metric {spec.name!r} needs output {exc.args[0]!r}, which the task kind did not return") from None
    fn = load_object(spec.fn)
    value = finite_or_none(fn(**arrays))
    ci = None
    if value is not None and spec.interval == "wilson":
        n = len(next(iter(arrays.values())))
        ci = wilson(round(value * n), n)
    elif value is not None and spec.interval == "bootstrap":
        ci = bootstrap(fn, arrays, seed)
    return {
        "value": value,
        "ci95": list(ci) if ci else None,
        "interval": spec.interval if ci else "none",
        "higher_is_better": spec.higher_is_better,
        "unit": spec.unit,
    }


def score(names: tuple[str, ...], metrics: Registry[MetricSpec], outputs: Mapping[str, np.ndarray], seed: int) -> dict[str, Any]:
    """Every named metric over ``outputs``."""
    return {name: score_metric(metrics.get(name), outputs, seed) for name in names}
