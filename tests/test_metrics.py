"""Metrics and intervals on hand-computed arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.intervals import bootstrap, wilson
from harness.registry import Registry
from harness.scoring import score
from harness.specs import MetricSpec
from harness_metrics.classification import accuracy, mean_per_class_recall, top5_accuracy, top_k_accuracy

# 6 samples, 6 classes. Row-wise ranking of the logits is written next to each row.
LOGITS = np.array(
    [
        [9, 8, 7, 6, 5, 4],  # ranks 0,1,2,3,4,5; label 0 -> top1 hit
        [9, 8, 7, 6, 5, 4],  # label 1 -> top1 miss, top5 hit
        [1, 2, 3, 4, 5, 6],  # ranks 5,4,3,2,1,0; label 0 -> top5 miss (rank 6)
        [0, 0, 9, 0, 0, 0],  # label 2 -> top1 hit
        [5, 4, 3, 2, 1, 0],  # label 5 -> top5 miss
        [0, 1, 0, 0, 0, 0],  # label 1 -> top1 hit
    ],
    dtype=np.float32,
)
LABELS = np.array([0, 1, 0, 2, 5, 1])


def test_top1_top5_hand_computed() -> None:
    assert accuracy(LOGITS, LABELS) == pytest.approx(3 / 6)
    assert top5_accuracy(LOGITS, LABELS) == pytest.approx(4 / 6)
    assert top_k_accuracy(LOGITS, LABELS, 6) == 1.0


def test_top5_undefined_below_five_classes() -> None:
    assert math.isnan(top5_accuracy(LOGITS[:, :4], np.array([0, 1, 0, 2, 3, 1])))


def test_ties_go_to_the_lower_class_index() -> None:
    logits = np.zeros((2, 3))
    assert accuracy(logits, np.array([0, 1])) == 0.5


def test_mean_per_class_recall_hand_computed() -> None:
    # predictions: [0, 0, 5, 2, 0, 1]; per class recall: 0 -> 1/2, 1 -> 1/2, 2 -> 1/1, 5 -> 0/1.
    assert mean_per_class_recall(LOGITS, LABELS) == pytest.approx((0.5 + 0.5 + 1 + 0) / 4)


def test_wilson_matches_closed_form() -> None:
    k, n, z = 30, 50, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = wilson(k, n)
    assert low == pytest.approx(centre - half, abs=1e-9)
    assert high == pytest.approx(centre + half, abs=1e-9)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(0, 0) is None


def test_bootstrap_is_seeded_and_brackets_the_value() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) + 2.0 * np.eye(4)[labels]
    arrays = {"logits": logits, "labels": labels}
    first = bootstrap(mean_per_class_recall, arrays, seed=3)
    assert first == bootstrap(mean_per_class_recall, arrays, seed=3)
    assert first[0] < mean_per_class_recall(logits, labels) < first[1]
    assert bootstrap(mean_per_class_recall, {"logits": logits[:1], "labels": labels[:1]}, seed=0) is None


def test_score_builds_result_entries() -> None:
    registry: Registry[MetricSpec] = Registry("metric", "harness list metrics")
    import harness_metrics

    for spec in harness_metrics.harness_register_metrics():
        registry.add(spec.name, spec, "metrics")
    entries = score(("accuracy", "top5_accuracy", "mean_per_class_recall"), registry,
                    {"logits": LOGITS[:, :4], "labels": np.array([0, 1, 0, 2, 3, 1])}, seed=0)
    assert entries["accuracy"]["interval"] == "wilson"
    assert entries["accuracy"]["ci95"] == pytest.approx(list(wilson(3, 6)))
    assert entries["top5_accuracy"] == {"value": None, "ci95": None, "interval": "none",
                                        "higher_is_better": True, "unit": "fraction"}
    assert entries["mean_per_class_recall"]["interval"] == "bootstrap"
