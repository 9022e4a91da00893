"""Issue #13: parity with LAION CLIP_benchmark 1.6.2, in process, on the tiny open_clip checkpoint.

The harness runs its ``zeroshot_classification`` and ``zeroshot_retrieval`` kinds through the CLI; the
reference is CLIP_benchmark's own ``zeroshot_classification.evaluate`` and ``zeroshot_retrieval.evaluate``
on the same rows, with its own loader (``clip_benchmark.models.load_clip``), transform and tokenizer.
Top-1, top-5, mean per-class recall and hit@{1,5} both ways must agree to 1e-6.

CLIP_benchmark 1.6.2's ``accuracy`` calls ``float()`` on a shape-(1,) array, which NumPy 2 refuses
(LAION-AI/CLIP_benchmark issue #147); the test monkeypatches that one function with the same
arithmetic (``.item()``), as ``bench/versus_clip_benchmark.py`` does. Its files are not patched.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TQDM_DISABLE", "1")
cb_cls = pytest.importorskip("clip_benchmark.metrics.zeroshot_classification")
cb_ret = pytest.importorskip("clip_benchmark.metrics.zeroshot_retrieval")
cb_models = pytest.importorskip("clip_benchmark.models")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))  # harness_retrieval, until pyproject declares it

from harness.cli import main  # noqa: E402
from harness.result import read_result  # noqa: E402

COLOURS = ["red", "green", "blue", "yellow", "purple", "cyan", "white"]
PER_CLASS = 3
TEMPLATES = ["a photo of a {c}.", "a {c} square."]
CAPTIONS = ["a {c} square", "a picture of {c} noise", "something {c}"]
TOL = 1e-6


def _accuracy(output, target, topk=(1,)):  # noqa: ANN001, ANN202
    """CLIP_benchmark 1.6.2's ``accuracy``, the same arithmetic, with ``.item()`` (NumPy 2)."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    n = len(target)
    return [float(correct[:k].reshape(-1).float().sum(0, keepdim=True).cpu().numpy().item()) / n for k in topk]


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """Seeded noisy colour images in 7 classes, with a label and one caption each, saved as a dataset."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30),
           "purple": (140, 30, 160), "cyan": (30, 210, 220), "white": (240, 240, 240)}
    images, labels, captions = [], [], []
    for label, name in enumerate(COLOURS):
        for i in range(PER_CLASS):
            noise = rng.integers(-60, 60, size=(36, 44, 3))
            pixels = np.clip(np.array(rgb[name]) + noise, 0, 255).astype(np.uint8)
            images.append(Image.fromarray(pixels))
            labels.append(label)
            captions.append(CAPTIONS[i].format(c=name))
    data = datasets.Dataset.from_dict(
        {"image": images, "label": labels, "caption": captions},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=COLOURS),
                                    "caption": datasets.Value("string")}))
    path = tmp_path_factory.mktemp("parity") / "rows"
    data.save_to_disk(str(path))
    return path, datasets.load_from_disk(str(path))


@pytest.fixture(scope="module")
def harness_metrics(rows: tuple[Path, object], tiny_openclip: dict,
                    tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    import yaml

    path, _ = rows
    root = tmp_path_factory.mktemp("parity-run")
    common = {"version": 1, "dataset": {"path": str(path), "split": "test"}}
    specs = {
        "parity_zeroshot": {**common, "kind": "zeroshot_classification",
                            "columns": {"image": "image", "label": "label"},
                            "params": {"templates": TEMPLATES},
                            "metrics": ["accuracy", "top5_accuracy", "mean_per_class_recall"],
                            "main_score": "accuracy"},
        "parity_retrieval": {**common, "kind": "zeroshot_retrieval",
                             "columns": {"image": "image", "caption": "caption"},
                             "metrics": ["i2t_hit_at_1", "i2t_hit_at_5", "t2i_hit_at_1", "t2i_hit_at_5"],
                             "main_score": "t2i_hit_at_5"},
    }
    argv = ["-p", "harness_retrieval", "run", "--quiet", "--model", tiny_openclip["name"],
            "--output-dir", str(root / "out"), "--cache-dir", str(root / "cache")]
    for name, spec in specs.items():
        file = root / f"{name}.yaml"
        file.write_text(yaml.safe_dump({"name": name, **spec}))
        argv += ["--task", str(file)]
    assert main(argv) == 0
    docs = [read_result(p) for p in (root / "out").rglob("*.json")]
    return {doc["task"]["name"]: {k: v["value"] for k, v in doc["metrics"].items()} for doc in docs}


class _Rows:
    """The saved rows as CLIP_benchmark's datasets are: ``(transform(image), target)``, with ``classes``."""

    def __init__(self, data, transform, target: str) -> None:  # noqa: ANN001
        self.data, self.transform, self.target, self.classes = data, transform, target, COLOURS

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):  # noqa: ANN204
        row = self.data[i]
        target = row["label"] if self.target == "label" else [row["caption"]]
        return self.transform(row["image"].convert("RGB")), target


@pytest.fixture(scope="module")
def reference(rows: tuple[Path, object], tiny_openclip: dict) -> dict[str, float]:
    import torch
    from torch.utils.data import DataLoader

    _, data = rows
    model, transform, tokenizer = cb_models.load_clip("open_clip", tiny_openclip["arch"],
                                                      str(tiny_openclip["checkpoint"]), None, "cpu")
    model.eval()
    patch = pytest.MonkeyPatch()
    patch.setattr(cb_cls, "accuracy", _accuracy)
    try:
        with torch.no_grad():
            loader = DataLoader(_Rows(data, transform, "label"), batch_size=8)
            # CLIP_benchmark formats templates with str.format(c=...), as the harness's {c}
            out = cb_cls.evaluate(model, loader, tokenizer, COLOURS, TEMPLATES, "cpu", amp=False)
            loader = DataLoader(_Rows(data, transform, "caption"), batch_size=8,
                                collate_fn=lambda batch: (torch.stack([b[0] for b in batch]), [b[1] for b in batch]))
            out.update(cb_ret.evaluate(model, loader, tokenizer, "cpu", amp=False, recall_k_list=[1, 5]))
    finally:
        patch.undo()
    return out


def test_zeroshot_classification_equals_clip_benchmark(harness_metrics: dict, reference: dict) -> None:
    mine = harness_metrics["parity_zeroshot"]
    assert mine["accuracy"] == pytest.approx(reference["acc1"], abs=TOL)
    assert mine["top5_accuracy"] == pytest.approx(reference["acc5"], abs=TOL)
    assert mine["mean_per_class_recall"] == pytest.approx(reference["mean_per_class_recall"], abs=TOL)
    assert 0 < reference["acc5"] < 1 or 0 < reference["acc1"] < 1  # not a degenerate comparison


def test_zeroshot_retrieval_equals_clip_benchmark(harness_metrics: dict, reference: dict) -> None:
    mine = harness_metrics["parity_retrieval"]
    for k in (1, 5):  # CLIP_benchmark: text_retrieval = image->text queries, image_retrieval = text->image
        assert mine[f"i2t_hit_at_{k}"] == pytest.approx(reference[f"text_retrieval_recall@{k}"], abs=TOL)
        assert mine[f"t2i_hit_at_{k}"] == pytest.approx(reference[f"image_retrieval_recall@{k}"], abs=TOL)
