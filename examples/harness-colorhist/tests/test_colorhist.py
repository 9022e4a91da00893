"""The example plugin, tested the way a third party tests theirs: with ``harness.testing``."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
from PIL import Image

import harness_colorhist as plugin
from harness import DataError, SpecError
from harness.testing import check_model, check_task_kind, task_context
from harness_colorhist.centroid import reciprocal_rank
from harness_colorhist.encoder import ColorHistogram

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
NAMES = list(COLOURS)


def _rows(labels: list[int], shade: int = 0) -> datasets.Dataset:
    images = [Image.new("RGB", (24, 24), tuple(max(0, c - shade * i) for c in COLOURS[NAMES[y]]))
              for i, y in enumerate(labels)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)})
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


def _context(train: list[int], test: list[int], **params: object):  # noqa: ANN202
    [kind] = plugin.harness_register_task_kinds()
    ctx = task_context(_rows(test, shade=2), columns={"image": "image", "label": "label"},
                       params={"train_split": "train", **params}, model=ColorHistogram(4),
                       splits={"train": _rows(train, shade=3)}, kind=kind)
    return kind, ctx


def test_the_model_keeps_the_contract() -> None:
    [spec] = plugin.harness_register_models()
    model = check_model(spec)
    assert not hasattr(model, "encode_text")  # image-only: declares and implements image_embed alone
    assert plugin.harness_resolve_model(name="colorhist:rgb-8").args == {"bins": 8}
    assert plugin.harness_resolve_model(name="colorhist:rgb-99") is None


def test_reciprocal_rank_by_hand() -> None:
    logits = np.array([[3.0, 1.0, 2.0], [3.0, 1.0, 2.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(reciprocal_rank(logits, np.array([0, 1, 0])), [1.0, 1 / 3, 1 / 2])


def test_nearest_centroid_keeps_the_contract_and_separates_colours() -> None:
    kind, ctx = _context(train=[0, 0, 1, 1, 2, 2], test=[0, 1, 2, 2, 1, 0])
    assert ctx.params == {"train_split": "train", "normalize": True}  # defaults filled in, as in a run
    [metric] = plugin.harness_register_metrics()
    checked = check_task_kind(kind, ctx, metrics=[metric])
    assert checked["outputs"]["logits"].shape == (6, 3)
    assert checked["metrics"]["reciprocal_rank"]["value"] == 1.0


def test_a_class_missing_from_train_is_never_predicted() -> None:
    kind, ctx = _context(train=[0, 0, 1, 1], test=[0, 1, 2])
    logits = check_task_kind(kind, ctx)["outputs"]["logits"]
    assert np.isfinite(logits).all() and (logits.argmax(axis=1) != 2).all()


def test_one_train_class_and_bad_params_are_one_line_errors() -> None:
    kind, ctx = _context(train=[1, 1], test=[0, 1])
    with pytest.raises(DataError, match="at least 2 classes"):
        check_task_kind(kind, ctx)
    with pytest.raises(SpecError, match="params.normalize"):
        _context(train=[0, 1], test=[0], normalize="yes")
