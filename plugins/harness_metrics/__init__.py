"""Built-in metrics for classification-style outputs (``logits``/``labels`` arrays).

Each metric is a per-sample function (see :mod:`harness_metrics.classification`); the core
reduces the scores and computes the intervals.
"""

from __future__ import annotations

from harness import MetricSpec, hookimpl

_HERE = "harness_metrics.classification"
#: Argument -> kind output: the classification kinds return ``logits`` and ``labels``.
_INPUTS = {"logits": "logits", "labels": "labels"}


@hookimpl
def harness_register_metrics() -> list[MetricSpec]:
    return [
        MetricSpec("accuracy", f"{_HERE}:accuracy_per_sample", _INPUTS, interval="wilson",
                   description="top-1 accuracy: argmax of logits equals the label (rows with label < 0 ignored)"),
        MetricSpec("top5_accuracy", f"{_HERE}:top5_per_sample", _INPUTS, interval="wilson",
                   description="label among the 5 highest logits (undefined with fewer than 5 classes)"),
        MetricSpec("mean_per_class_recall", f"{_HERE}:accuracy_per_sample", _INPUTS, interval="bootstrap",
                   reduce="class_mean", classes_from="labels",
                   description="balanced accuracy: recall averaged over the classes present"),
    ]
