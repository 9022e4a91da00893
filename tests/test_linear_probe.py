"""The linear_probe task kind: on hand-built contexts with a mean-colour encoder, and end
to end through the runner with the real MobileNetV2."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

from harness.errors import DataError, SpecError
from harness.features import Features
from harness.pluginmanager import AUTOLOAD_ENV, get_plugin_manager
from harness.registry import collect
from harness.taskkind import TaskContext
from harness.taskspec import DatasetSource, TaskSpec
from harness_linear_probe import PARAMS_SCHEMA
from harness_linear_probe.kind import LinearProbe
from harness_metrics.classification import accuracy, mean_per_class_recall

datasets = pytest.importorskip("datasets")
torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

NAMES = ["red", "green", "blue", "grey"]  # "grey" never appears in any split
COLOURS = {0: (200, 30, 30), 1: (30, 200, 30), 2: (30, 30, 200)}


class MeanColour:
    """A 3-d image encoder: the mean RGB value."""

    modalities = frozenset({"image"})
    embed_dim = 3

    def preprocess(self, image: Any) -> Any:
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)

    def encode_image(self, pixels: Any) -> Any:
        return pixels.mean(dim=(2, 3))

    def encode_text(self, texts: Sequence[str]) -> Any:
        raise NotImplementedError

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


def _context(splits: dict[str, Any], params: dict[str, Any], seed: int = 0, split: str = "test",
             prompts: dict[str, Any] | None = None) -> TaskContext:
    spec = TaskSpec(name="probe", version=1, kind="linear_probe", dataset=DatasetSource(split=split, path=Path("x")),
                    metrics=("accuracy",), main_score="accuracy", file=Path("probe.yaml"), sha256="0" * 64,
                    columns={"image": "img", "label": "y"}, prompts=prompts or {}, params=params)
    return TaskContext(spec=spec, data=splits[split], features=Features(MeanColour(), batch_size=8), seed=seed,
                       where="task probe", load_split=lambda name: splits[name])


@pytest.mark.parametrize("params", [{"train_split": "train"}, {"train_split": "train", "C": 0.5, "max_iter": 50}])
def test_separable_colours_are_classified_perfectly(splits, params) -> None:
    ctx = _context(splits, params)
    out = LinearProbe().evaluate(ctx)
    assert set(out) == {"logits", "labels"}
    assert out["logits"].shape == (9, 4) and out["labels"].dtype == np.int64
    assert out["labels"].tolist() == [2, 1, 0, 0, 1, 2, 1, 0, 2]
    assert np.all(np.isneginf(out["logits"][:, 3])) and np.all(np.isfinite(out["logits"][:, :3]))
    assert accuracy(out["logits"], out["labels"]) == 1.0
    assert mean_per_class_recall(out["logits"], out["labels"]) == 1.0
    assert ctx.features.counters.images == 24 + 9


def test_deterministic(splits) -> None:
    first = LinearProbe().evaluate(_context(splits, {"train_split": "train"}, seed=3))
    again = LinearProbe().evaluate(_context(splits, {"train_split": "train"}, seed=3))
    assert np.array_equal(first["logits"], again["logits"]) and np.array_equal(first["labels"], again["labels"])


def test_two_classes_give_two_logit_columns() -> None:
    two = datasets.ClassLabel(names=["red", "green"])
    splits = {"train": _rows([0, 1] * 6, 1, two), "test": _rows([1, 0, 1], 2, two)}
    out = LinearProbe().evaluate(_context(splits, {"train_split": "train", "C_grid": [1.0]}))
    assert out["logits"].shape == (3, 2) and accuracy(out["logits"], out["labels"]) == 1.0


def test_non_convergence_is_logged(splits, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="harness_linear_probe"):
        LinearProbe().evaluate(_context(splits, {"train_split": "train", "C": 1000.0, "max_iter": 1}))
    assert "L-BFGS did not converge in 1 iterations (C=1000)" in caplog.text


def test_train_limit_subsamples_the_train_split(splits) -> None:
    ctx = _context(splits, {"train_split": "train", "train_limit": 12})
    out = LinearProbe().evaluate(ctx)
    assert ctx.features.counters.images == 12 + 9 and out["logits"].shape == (9, 4)


@pytest.mark.parametrize("params, match", [
    ({}, "params: 'train_split' is a required property"),
    ({"train_split": "train", "lr": 0.1}, "allowed keys: C, C_grid"),
    ({"train_split": "train", "C": 0}, "params.C: 0 is less than or equal to the minimum"),
    ({"train_split": "test"}, "is the evaluated split"),
])
def test_bad_params_are_spec_errors(splits, params, match) -> None:
    with pytest.raises(SpecError, match=match):
        LinearProbe().evaluate(_context(splits, params))


def test_data_problems_are_data_errors(splits) -> None:
    one_class = {"train": _rows([0, 0, 0], 1), "test": splits["test"]}
    with pytest.raises(DataError, match="at least 2 classes"):
        LinearProbe().evaluate(_context(one_class, {"train_split": "train"}))
    plain = datasets.Value("int64")
    out_of_range = {"train": _rows([0, 1, 2], 1, plain), "test": _rows([0, 1], 2, plain)}
    with pytest.raises(DataError, match=r"label 2 outside \[0, 2\)"):
        LinearProbe().evaluate(_context(out_of_range, {"train_split": "train"}, prompts={"classnames": ["a", "b"]}))
    renamed = {"train": _rows([0, 1], 1, datasets.ClassLabel(names=["a", "b", "c", "d"])), "test": splits["test"]}
    with pytest.raises(DataError, match="class names"):
        LinearProbe().evaluate(_context(renamed, {"train_split": "train"}))


def test_end_to_end_with_real_mobilenet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task spec file, the plugin registries, the runner and the real MobileNetV2 features."""
    data = pytest.importorskip("skimage.data")
    from harness.result import validate_result
    from harness.runner import RunConfig, evaluate_task, plan

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
    registries = collect(get_plugin_manager(["torchvision", "linear_probe", "metrics"]))
    assert registries.task_kinds.get("linear_probe").params_schema == PARAMS_SCHEMA
    config = RunConfig(model="torchvision:mobilenet_v2", tasks=(str(tmp_path / "cat_or_coffee.yaml"),),
                       device="cpu", batch_size=8, writers=())
    the_plan = plan(config, registries)
    from harness_torchvision.network import load
    from harness.encoder import LoadOptions

    encoder = load(the_plan.encoder, LoadOptions())
    doc = evaluate_task(config, the_plan, registries, encoder, "cpu", the_plan.tasks[0], 0.0)
    validate_result(doc, "linear probe result")
    assert doc["main_score"] == {"name": "accuracy", "value": 1.0}
    assert doc["model"]["embed_dim"] == 1280 and doc["cost"]["phases_s"]["extract"] > 0

    (tmp_path / "cat_or_coffee.yaml").write_text(
        (tmp_path / "cat_or_coffee.yaml").read_text().replace("{train_split: train, C: 1.0}", "{C: 1.0}"))
    with pytest.raises(SpecError, match="params: 'train_split' is a required property"):
        plan(config, registries)
