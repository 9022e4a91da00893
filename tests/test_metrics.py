"""Per-sample metrics, the scoring contract and intervals on hand-computed arrays."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest

from harness.errors import PluginError
from harness.intervals import bootstrap_scores, reduce_scores, wilson
from harness.registry import Registry
from harness.scoring import score
from harness.specs import MetricSpec
from harness_metrics.classification import accuracy_per_sample, top5_per_sample, top_k_per_sample

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
TOP1 = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
TOP5 = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]


@pytest.fixture
def metrics() -> Registry[MetricSpec]:
    import harness_metrics

    registry: Registry[MetricSpec] = Registry("metric", "harness list metrics")
    for spec in harness_metrics.harness_register_metrics():
        registry.add(spec.name, spec, "metrics")
    return registry


def _fake_metric(monkeypatch: pytest.MonkeyPatch, registry: Registry[MetricSpec], fn, **spec_args) -> str:
    """Register ``fn`` as metric ``fake`` (importable as ``fake_metrics:fn``)."""
    module = types.ModuleType("fake_metrics")
    module.fn = fn
    monkeypatch.setitem(sys.modules, "fake_metrics", module)
    registry.add("fake", MetricSpec("fake", "fake_metrics:fn", **spec_args), "test")
    return "fake"


def test_top1_top5_per_sample_hand_computed() -> None:
    top1, top5 = accuracy_per_sample(LOGITS, LABELS), top5_per_sample(LOGITS, LABELS)
    assert isinstance(top1, np.ma.MaskedArray) and top1.dtype == np.float64
    assert top1.tolist() == TOP1 and not top1.mask.any()
    assert top5.tolist() == TOP5 and not top5.mask.any()
    assert top_k_per_sample(LOGITS, LABELS, 6).tolist() == [1.0] * 6


def test_top_k_equals_a_stable_sort_with_ties() -> None:
    rng = np.random.default_rng(0)
    logits = rng.integers(0, 4, size=(300, 12)).astype(np.float64)  # many ties
    labels = rng.integers(0, 12, 300)
    for k in (2, 5, 11):
        top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        expected = np.any(top == labels[:, None], axis=1).astype(float)
        np.testing.assert_array_equal(np.ma.getdata(top_k_per_sample(logits, labels, k)), expected)


def test_top5_undefined_below_five_classes() -> None:
    assert top5_per_sample(LOGITS[:, :4], np.array([0, 1, 0, 2, 3, 1])) is None
    assert top5_per_sample(LOGITS[:, :5], np.array([0, 1, 0, 2, 3, 1])) is not None


def test_ties_go_to_the_lower_class_index() -> None:
    logits = np.zeros((2, 3))
    assert accuracy_per_sample(logits, np.array([0, 1])).tolist() == [1.0, 0.0]
    # top-5 of 6 tied logits holds classes 0..4, not 5
    assert top5_per_sample(np.zeros((2, 6)), np.array([4, 5])).tolist() == [1.0, 0.0]


def test_negative_labels_are_masked() -> None:
    labels = np.array([0, -1, 0, 2, -1, 1])
    top1 = accuracy_per_sample(LOGITS, labels)
    assert top1.mask.tolist() == [False, True, False, False, True, False]
    assert top1.compressed().tolist() == [1.0, 0.0, 1.0, 1.0]
    assert top5_per_sample(LOGITS, labels).mask.tolist() == top1.mask.tolist()


def test_registered_specs(metrics: Registry[MetricSpec]) -> None:
    accuracy, top5, recall = (metrics.get(name) for name in ("accuracy", "top5_accuracy", "mean_per_class_recall"))
    assert accuracy.arguments == top5.arguments == recall.arguments == {"logits": "logits", "labels": "labels"}
    assert (accuracy.interval, accuracy.reduce) == ("wilson", "mean")
    assert (top5.interval, top5.reduce) == ("wilson", "mean")
    assert (recall.interval, recall.reduce, recall.classes_from) == ("bootstrap", "class_mean", "labels")
    assert recall.fn == accuracy.fn  # the same correctness, reduced per class


def test_values_hand_computed(metrics: Registry[MetricSpec]) -> None:
    entries = score("k", ("accuracy", "top5_accuracy", "mean_per_class_recall"), metrics,
                    {"logits": LOGITS, "labels": LABELS}, seed=0)
    assert entries["accuracy"]["value"] == 3 / 6
    assert entries["top5_accuracy"]["value"] == 4 / 6
    # predictions: [0, 0, 5, 2, 0, 1]; per class recall: 0 -> 1/2, 1 -> 1/2, 2 -> 1/1, 5 -> 0/1.
    assert entries["mean_per_class_recall"]["value"] == pytest.approx((0.5 + 0.5 + 1 + 0) / 4, abs=1e-15)


def test_ignored_rows_leave_every_metric(metrics: Registry[MetricSpec]) -> None:
    labels = np.array([0, -1, 0, 2, -1, 1])
    entries = score("k", ("accuracy", "top5_accuracy", "mean_per_class_recall"), metrics,
                    {"logits": LOGITS, "labels": labels}, seed=0)
    assert entries["accuracy"]["value"] == 3 / 4
    assert entries["accuracy"]["ci95"] == pytest.approx(list(wilson(3, 4)))
    assert entries["top5_accuracy"]["value"] == 3 / 4
    # classes 0 -> 1/2, 1 -> 1/1, 2 -> 1/1 (class -1 is not a class)
    assert entries["mean_per_class_recall"]["value"] == pytest.approx((0.5 + 1 + 1) / 3, abs=1e-15)
    every_row_ignored = score("k", ("accuracy",), metrics, {"logits": LOGITS, "labels": np.full(6, -1)}, seed=0)
    assert every_row_ignored["accuracy"]["value"] is None and every_row_ignored["accuracy"]["ci95"] is None


def test_values_equal_the_whole_set_definitions(metrics: Registry[MetricSpec]) -> None:
    """accuracy = mean of argmax == label; mean per-class recall = scikit-learn's balanced accuracy."""
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 500)
    logits = rng.normal(size=(500, 9)) + 1.5 * np.eye(9)[labels]  # classes 7 and 8 are predicted, never labels
    entries = score("k", ("accuracy", "top5_accuracy", "mean_per_class_recall"), metrics,
                    {"logits": logits, "labels": labels}, seed=0)
    predictions = np.argmax(logits, axis=1)
    assert entries["accuracy"]["value"] == float(np.mean(predictions == labels))
    top5 = np.argsort(-logits, axis=1, kind="stable")[:, :5]
    assert entries["top5_accuracy"]["value"] == float(np.mean(np.any(top5 == labels[:, None], axis=1)))
    with np.errstate(all="ignore"), pytest.warns(UserWarning):  # sklearn warns about classes 7, 8
        balanced = balanced_accuracy_score(labels, predictions)
    assert entries["mean_per_class_recall"]["value"] == pytest.approx(balanced, rel=1e-15, abs=0)


def test_score_builds_result_entries(metrics: Registry[MetricSpec]) -> None:
    entries = score("k", ("accuracy", "top5_accuracy", "mean_per_class_recall"), metrics,
                    {"logits": LOGITS[:, :4], "labels": np.array([0, 1, 0, 2, 3, 1])}, seed=0)
    assert entries["accuracy"]["value"] == 3 / 6
    assert entries["accuracy"]["interval"] == "wilson"
    assert entries["accuracy"]["ci95"] == pytest.approx(list(wilson(3, 6)))
    assert entries["top5_accuracy"] == {"value": None, "ci95": None, "interval": "none",
                                        "higher_is_better": True, "unit": "fraction"}
    assert entries["mean_per_class_recall"]["interval"] == "bootstrap"
    low, high = entries["mean_per_class_recall"]["ci95"]
    assert low <= entries["mean_per_class_recall"]["value"] <= high


def test_a_metric_input_maps_to_another_output(metrics: Registry[MetricSpec]) -> None:
    metrics.add("seen_accuracy", MetricSpec("seen_accuracy", "harness_metrics.classification:accuracy_per_sample",
                                            {"logits": "seen_logits", "labels": "seen_labels"}), "test")
    entries = score("k", ("seen_accuracy",), metrics, {"seen_logits": LOGITS, "seen_labels": LABELS}, seed=0)
    assert entries["seen_accuracy"]["value"] == 3 / 6


@pytest.mark.parametrize(("outputs", "match"), [
    ({"logits": LOGITS, "labels": LABELS[:5]},
     r"task kind 'bad_kind': outputs have different numbers of samples: labels=5, logits=6"),
    ({"logits": np.where(np.eye(6, dtype=bool), np.nan, LOGITS), "labels": LABELS},
     r"task kind 'bad_kind': output 'logits' has NaN or inf values in 6 sample\(s\)"),
    ({"logits": LOGITS, "labels": 3}, r"task kind 'bad_kind': output 'labels' is a scalar"),
    ({"logits": LOGITS}, r"task kind 'bad_kind' did not return output\(s\) \['labels'\]"),
])
def test_a_kind_breaking_the_contract_is_a_plugin_error(metrics: Registry[MetricSpec], outputs: dict,
                                                        match: str) -> None:
    with pytest.raises(PluginError, match=match) as info:
        score("bad_kind", ("accuracy",), metrics, outputs, seed=0)
    assert "\n" not in str(info.value)


def test_a_metric_returning_nan_is_a_plugin_error(metrics: Registry[MetricSpec], monkeypatch) -> None:
    name = _fake_metric(monkeypatch, metrics, lambda labels: np.where(labels == 2, np.nan, 1.0), inputs=("labels",))
    with pytest.raises(PluginError, match=r"metric 'fake' returned NaN or inf per-sample scores"):
        score("k", (name,), metrics, {"labels": LABELS}, seed=0)


def test_nan_in_masked_rows_is_allowed_and_wrong_shapes_are_errors(metrics: Registry[MetricSpec], monkeypatch) -> None:
    name = _fake_metric(monkeypatch, metrics, lambda labels: np.ma.masked_invalid(np.where(labels == 2, np.nan, 1.0)),
                        inputs=("labels",))
    assert score("k", (name,), metrics, {"labels": LABELS}, seed=0)[name]["value"] == 1.0
    monkeypatch.setattr(sys.modules["fake_metrics"], "fn", lambda labels: np.ones(len(labels) + 1))
    with pytest.raises(PluginError, match=r"metric 'fake' returned shape \(7,\); per-sample scores must be \(6,\)"):
        score("k", (name,), metrics, {"labels": LABELS}, seed=0)


def test_a_whole_set_metric_returning_nan_is_a_plugin_error(metrics: Registry[MetricSpec], monkeypatch) -> None:
    name = _fake_metric(monkeypatch, metrics, lambda labels: float("nan"), inputs=("labels",), reduce="none")
    with pytest.raises(PluginError, match=r"metric 'fake' returned nan; return None for an undefined value"):
        score("k", (name,), metrics, {"labels": LABELS}, seed=0)


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
    from scipy.stats import binomtest  # harness computes it without importing scipy.stats

    for n in (1, 2, 7, 50, 300, 50_000):
        for k in sorted({0, 1, n // 3, n - 1, n}):
            expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
            assert wilson(k, n) == pytest.approx((expected.low, expected.high), abs=1e-12), (k, n)


def test_bootstrap_is_seeded_and_brackets_the_value() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) + 2.0 * np.eye(4)[labels]
    scores = accuracy_per_sample(logits, labels).filled(np.nan)
    first = bootstrap_scores(scores, seed=3, classes=labels)
    assert first == bootstrap_scores(scores, seed=3, classes=labels)
    assert first != bootstrap_scores(scores, seed=4, classes=labels)
    assert first[0] < reduce_scores(scores, labels) < first[1]
    assert bootstrap_scores(scores[:1], seed=0, classes=labels[:1]) is None


def test_intervals_resample_whole_groups(metrics: Registry[MetricSpec]) -> None:
    # two groups of three samples: every sample of group 0 is right, every sample of group 1 wrong
    logits = np.array([[1.0, 0.0]] * 6)
    labels = np.array([0, 0, 0, 1, 1, 1])
    grouped = score("k", ("accuracy", "mean_per_class_recall"), metrics,
                    {"logits": logits, "labels": labels, "groups": np.array([7, 7, 7, 3, 3, 3])}, seed=0)
    plain = score("k", ("accuracy",), metrics, {"logits": logits, "labels": labels}, seed=0)
    assert grouped["accuracy"]["value"] == plain["accuracy"]["value"] == 0.5
    # a resample of 2 groups has mean 0, 1/2 or 1 (probabilities 1/4, 1/2, 1/4): the 95% interval is [0, 1]
    assert grouped["accuracy"]["interval"] == "bootstrap" and grouped["accuracy"]["ci95"] == [0.0, 1.0]
    assert plain["accuracy"]["interval"] == "wilson" and plain["accuracy"]["ci95"] == pytest.approx(list(wilson(3, 6)))
    low, high = bootstrap_scores(np.array([1.0, 1, 1, 0, 0, 0]), seed=0)  # samples, not groups: narrower
    assert 0.0 < low < high < 1.0
    # per class: a resample holds class 0 (recall 1), class 1 (recall 0) or both (1/2)
    assert grouped["mean_per_class_recall"]["value"] == 0.5
    assert grouped["mean_per_class_recall"]["ci95"] == [0.0, 1.0]
    one_group = score("k", ("accuracy",), metrics, {"logits": logits, "labels": labels, "groups": np.zeros(6)}, seed=0)
    assert one_group["accuracy"]["ci95"] is None and one_group["accuracy"]["interval"] == "none"

