"""The linear_probe task kind: on contexts built with ``harness.testing`` around a mean-colour
encoder, and end to end through the runner with the real MobileNetV2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness import subset_indices
from harness.errors import DataError, SpecError
from harness.pluginmanager import AUTOLOAD_ENV, get_plugin_manager
from harness.registry import collect
from harness.taskkind import TaskContext
from harness.testing import check_task_kind, task_context
from harness_linear_probe import PARAMS_SCHEMA, harness_register_task_kinds
from harness_linear_probe.classifier import ABSENT_LOGIT
from harness_linear_probe.kind import LinearProbe
from harness_metrics import harness_register_metrics
from harness_metrics.classification import accuracy_per_sample

datasets = pytest.importorskip("datasets")
torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

NAMES = ["red", "green", "blue", "grey"]  # "grey" never appears in any split
COLOURS = {0: (200, 30, 30), 1: (30, 200, 30), 2: (30, 30, 200)}
KIND = harness_register_task_kinds()[0]


class MeanColour:
    """A 3-d image encoder (capability ``image_embed``): the mean RGB value."""

    embed_dim = 3

    def preprocess(self, image: Any) -> Any:
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)

    def encode_image(self, pixels: Any) -> Any:
        return pixels.mean(dim=(2, 3))

    def provenance(self) -> dict[str, Any]:
        return {"revision": None, "fingerprint": "mean-colour", "n_parameters": 0}


def _rows(labels: list[int], seed: int, label_feature: Any = None) -> Any:
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(np.clip(np.array(COLOURS[y]) + rng.integers(-25, 26, (6, 6, 3)), 0, 255).astype(np.uint8))
              for y in labels]
    features = datasets.Features({"img": datasets.Image(), "y": label_feature or datasets.ClassLabel(names=NAMES)})
    return datasets.Dataset.from_dict({"img": images, "y": labels}, features=features)


@pytest.fixture(scope="module")
def splits() -> dict[str, Any]:
    return {"train": _rows([0, 1, 2] * 8, seed=1), "test": _rows([2, 1, 0, 0, 1, 2, 1, 0, 2], seed=2)}


def _context(splits: dict[str, Any], params: dict[str, Any], seed: int = 0, split: str = "test") -> TaskContext:
    """The runner's context: ``split`` evaluated, every split loadable by name, params checked against
    the kind's schema with defaults filled in."""
    return task_context(splits[split], columns={"image": "img", "label": "y"}, params=params, model=MeanColour(),
                        splits=splits, seed=seed, name="probe", kind=KIND, batch_size=8)


def _images_extracted(ctx: TaskContext) -> int:
    return ctx._features.counters.images


def test_registered_spec() -> None:
    assert KIND.name == "linear_probe" and KIND.needs == frozenset({"image_embed"})
    assert KIND.outputs == frozenset({"logits", "labels"}) and KIND.params_schema == PARAMS_SCHEMA


@pytest.mark.parametrize("params", [{"train_split": "train"}, {"train_split": "train", "C": 0.5, "max_iter": 50}])
def test_separable_colours_are_classified_perfectly(splits, params) -> None:
    ctx = _context(splits, params)
    checked = check_task_kind(KIND, ctx, [m for m in harness_register_metrics() if m.name != "top5_accuracy"])
    out = checked["outputs"]
    assert set(out) == {"logits", "labels"}
    assert out["logits"].shape == (9, 4) and out["labels"].dtype == np.int64
    assert out["labels"].tolist() == [2, 1, 0, 0, 1, 2, 1, 0, 2]
    # "grey" is absent from train: a finite logit below every other, never predicted
    assert np.all(out["logits"][:, 3] == ABSENT_LOGIT) and np.all(np.isfinite(out["logits"]))
    assert np.all(out["logits"][:, :3] > ABSENT_LOGIT)
    assert checked["metrics"]["accuracy"]["value"] == 1.0
    assert checked["metrics"]["mean_per_class_recall"]["value"] == 1.0
    assert _images_extracted(ctx) == 24 + 9


def test_absent_classes_rank_last_in_top_k(splits) -> None:
    out = LinearProbe().evaluate(_context(splits, {"train_split": "train"}))
    order = np.argsort(-out["logits"], axis=1, kind="stable")
    assert np.all(order[:, -1] == 3)  # as with -inf: the absent class is last
    assert accuracy_per_sample(out["logits"], out["labels"]).tolist() == [1.0] * 9


def test_deterministic(splits) -> None:
    first = LinearProbe().evaluate(_context(splits, {"train_split": "train"}, seed=3))
    again = LinearProbe().evaluate(_context(splits, {"train_split": "train"}, seed=3))
    assert np.array_equal(first["logits"], again["logits"]) and np.array_equal(first["labels"], again["labels"])


def test_two_classes_give_two_logit_columns() -> None:
    two = datasets.ClassLabel(names=["red", "green"])
    splits = {"train": _rows([0, 1] * 6, 1, two), "test": _rows([1, 0, 1], 2, two)}
    out = LinearProbe().evaluate(_context(splits, {"train_split": "train", "C_grid": [1.0]}))
    assert out["logits"].shape == (3, 2) and accuracy_per_sample(out["logits"], out["labels"]).all()


def test_non_convergence_is_logged(splits, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="harness_linear_probe"):
        LinearProbe().evaluate(_context(splits, {"train_split": "train", "C": 1000.0, "max_iter": 1}))
    assert "L-BFGS did not converge in 1 iterations (C=1000)" in caplog.text


def test_train_limit_fits_on_the_seeded_subset(splits) -> None:
    ctx = _context(splits, {"train_split": "train", "train_limit": 12}, seed=5)
    out = LinearProbe().evaluate(ctx)
    assert out["logits"].shape == (9, 4)
    # only the subset's train rows are extracted ...
    assert _images_extracted(ctx) == 12 + 9
    # ... and fits exactly what a train split of only those rows gives
    index = subset_indices(24, 12, 5)
    subset = {"train": splits["train"].select(index), "test": splits["test"]}
    by_hand = LinearProbe().evaluate(_context(subset, {"train_split": "train"}, seed=5))
    assert np.array_equal(out["logits"], by_hand["logits"])
    unlimited = LinearProbe().evaluate(_context(splits, {"train_split": "train", "train_limit": 24}, seed=5))
    assert np.array_equal(unlimited["logits"], LinearProbe().evaluate(_context(splits, {"train_split": "train"},
                                                                                seed=5))["logits"])


@pytest.mark.parametrize("params, match", [
    ({}, r"task probe: params: 'train_split' is a required property"),
    ({"train_split": "train", "lr": 0.1}, "allowed keys: C, C_grid"),
    ({"train_split": "train", "C": 0}, r"params.C: 0 is less than or equal to the minimum"),
    ({"train_split": "test"}, r"params.train_split: 'test' is the evaluated split"),
])
def test_bad_params_are_spec_errors(splits, params, match) -> None:
    with pytest.raises(SpecError, match=match):
        LinearProbe().evaluate(_context(splits, params))


def test_training_on_the_evaluated_split_is_refused_also_under_a_limit(splits) -> None:
    limited = splits["test"].select([0, 2, 3, 7])  # --limit: a row selection of the evaluated split "whole"
    ctx = task_context(limited, columns={"image": "img", "label": "y"}, params={"train_split": "whole"},
                       model=MeanColour(), splits={"train": splits["train"]}, kind=KIND, split="whole")
    with pytest.raises(SpecError, match="'whole' is the evaluated split"):
        LinearProbe().evaluate(ctx)


@pytest.mark.parametrize("train_rows, test_rows", [
    (range(0, 12), range(12, 21)),  # contiguous blocks of one table: slices over the same Arrow buffers
    (range(0, 21, 2), range(1, 21, 2)),  # interleaved: two index mappings over one table
], ids=["slices", "index-mappings"])
def test_distinct_splits_of_one_table_are_not_refused(train_rows, test_rows) -> None:
    full = _rows([0, 1, 2] * 7, seed=4)
    splits = {"train": full.select(train_rows), "test": full.select(test_rows)}
    out = LinearProbe().evaluate(_context(splits, {"train_split": "train"}))
    assert len(out["labels"]) == len(test_rows)


def test_data_problems_are_data_errors(splits) -> None:
    one_class = {"train": _rows([0, 0, 0], 1), "test": splits["test"]}
    with pytest.raises(DataError, match="at least 2 classes"):
        LinearProbe().evaluate(_context(one_class, {"train_split": "train"}))
    plain = datasets.Value("int64")
    out_of_range = {"train": _rows([0, 1, 2], 1, plain), "test": _rows([0, 1], 2, plain)}
    with pytest.raises(DataError, match=r"split 'train'.*label 2 outside \[0, 2\)"):
        LinearProbe().evaluate(_context(out_of_range, {"train_split": "train", "classnames": ["a", "b"]}))
    with pytest.raises(SpecError, match="params.classnames: required"):
        LinearProbe().evaluate(_context(out_of_range, {"train_split": "train"}))
    with pytest.raises(SpecError, match="params.classnames: 2 names, but column 'y' has 4 classes"):
        LinearProbe().evaluate(_context(splits, {"train_split": "train", "classnames": ["a", "b"]}))
    renamed = {"train": _rows([0, 1], 1, datasets.ClassLabel(names=["a", "b", "c", "d"])), "test": splits["test"]}
    with pytest.raises(DataError, match="class names"):
        LinearProbe().evaluate(_context(renamed, {"train_split": "train"}))


def test_end_to_end_with_real_mobilenet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task spec file, the plugin registries, the runner and the real MobileNetV2 features."""
    data = pytest.importorskip("skimage.data")
    from harness.execution import ExecutionConfig
    from harness.result import read_result
    from harness.runner import RunConfig, plan, run

    rng = np.random.default_rng(0)
    photos = [data.chelsea(), data.coffee()]

    def crops(labels: list[int]) -> Any:
        images = []
        for y in labels:
            top, left = rng.integers(0, 100, 2)
            images.append(Image.fromarray(photos[y][top:top + 200, left:left + 200]))
        features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "coffee"])})
        return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)

    datasets.DatasetDict({"train": crops([0, 1] * 5), "test": crops([1, 0, 0, 1])}).save_to_disk(str(tmp_path / "data"))
    (tmp_path / "cat_or_coffee.yaml").write_text(
        "name: cat_or_coffee\nversion: 1\nkind: linear_probe\ndataset: {path: data, split: test}\n"
        "columns: {image: image, label: label}\nparams: {train_split: train, C: 1.0}\n"
        "metrics: [accuracy, mean_per_class_recall]\nmain_score: accuracy\n")
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    registries = collect(get_plugin_manager(["torchvision", "linear_probe", "metrics", "writers"]))
    assert registries.task_kinds.get("linear_probe").params_schema == PARAMS_SCHEMA
    config = RunConfig(model="torchvision:mobilenet_v2", tasks=(str(tmp_path / "cat_or_coffee.yaml"),),
                       execution=ExecutionConfig(device="cpu", batch_size=8, cache_dir=tmp_path / "cache"),
                       output_dir=tmp_path / "results")
    [written] = run(config, registries)
    doc = read_result(written)
    assert doc["main_score"] == {"name": "accuracy", "value": 1.0}
    assert doc["model"]["embed_dim"] == 1280 and doc["cost"]["phases_s"]["extract"] > 0
    assert doc["n_samples"]["evaluated"] == 4 and doc["cache"]["image_misses"] == 10 + 4

    (tmp_path / "cat_or_coffee.yaml").write_text(
        (tmp_path / "cat_or_coffee.yaml").read_text().replace("{train_split: train, C: 1.0}", "{C: 1.0}"))
    with pytest.raises(SpecError, match="params: 'train_split' is a required property"):
        plan(config, registries)


def test_the_probe_is_fitted_once_under_torchrun(splits, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a rank other than 0 the kind extracts its share of features but fits nothing: it takes the
    main process's outputs (``ctx.compute.once``)."""
    import dataclasses

    from harness.processgroup import ProcessGroup
    from harness.taskkind import Compute

    class Follower(ProcessGroup):
        def broadcast(self, value):  # noqa: ANN001, ANN201 - what rank 0 computed
            assert value is None
            return {"from": "rank 0"}

    ctx = _context(splits, {"train_split": "train", "C": 1.0})
    follower = dataclasses.replace(ctx, compute=Compute(group=Follower(rank=1, world_size=2)))
    monkeypatch.setattr("harness_linear_probe.classifier.ProbeClassifier.fit",
                        lambda *a, **k: pytest.fail("a follower rank fitted the probe"))
    assert LinearProbe().evaluate(follower) == {"from": "rank 0"}


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_small_probes_use_one_blas_thread_and_restore_the_limit() -> None:
    """Every BLAS pool (numpy's and scipy's, which load separately) is limited inside the block,
    only for small problems, and the previous limits come back after it."""
    from harness_linear_probe.classifier import SINGLE_THREAD_BELOW, blas_threads
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        with blas_threads(500, 1280, 10):
            inside = _blas_threads()
        assert _blas_threads() == before and before
        assert inside == [1] * len(inside) and len(inside) >= len(before)
        with blas_threads(SINGLE_THREAD_BELOW, 1, 1):  # a large probe keeps the default threads
            assert _blas_threads() == before


def test_one_blas_thread_fits_the_same_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The single-thread speed-up changes nothing but float rounding: the same C, predictions and
    (to 1e-9) logits as a fit with the default threads."""
    import harness_linear_probe.classifier as classifier

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 64))
    y = rng.integers(0, 5, 300)
    x = centres[y] + rng.normal(scale=2.0, size=(300, 64))
    test_x = centres[y[:100]] + rng.normal(scale=2.0, size=(100, 64))

    def fit() -> tuple[float, np.ndarray]:
        probe = classifier.ProbeClassifier(num_classes=5).fit(x, y, [0.001, 0.01, 0.1, 1.0, 10.0, 100.0], 0.2)
        return probe.C, probe.logits(test_x)

    single_c, single = fit()
    monkeypatch.setattr(classifier, "SINGLE_THREAD_BELOW", 0)  # never limited
    default_c, default = fit()
    assert single_c == default_c
    np.testing.assert_array_equal(single.argmax(1), default.argmax(1))
    np.testing.assert_allclose(single, default, rtol=0, atol=1e-9)
