"""Built-in metrics for classification-style outputs (``logits``/``labels`` arrays)."""

from __future__ import annotations

from harness import hookimpl
from harness.specs import MetricSpec

_HERE = "harness_metrics.classification"


@hookimpl
def harness_register_metrics() -> list[MetricSpec]:
    return [
        MetricSpec("accuracy", f"{_HERE}:accuracy", ("logits", "labels"), interval="wilson",
                   description="top-1 accuracy: argmax of logits equals the label"),
        MetricSpec("top5_accuracy", f"{_HERE}:top5_accuracy", ("logits", "labels"), interval="wilson",
                   description="label among the 5 highest logits (undefined with fewer than 5 classes)"),
        MetricSpec("mean_per_class_recall", f"{_HERE}:mean_per_class_recall", ("logits", "labels"),
                   interval="bootstrap", description="balanced accuracy: recall averaged over the classes present"),
    ]
