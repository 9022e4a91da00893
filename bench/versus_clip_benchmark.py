"""Benchmark: harness's zero-shot classification against LAION CLIP_benchmark, side by side in one
process, on the same open_clip model and the same images, class names and templates.

    .venv/bin/python bench/versus_clip_benchmark.py [--arch ViT-B-32] [--n 500] [--size 64] [--batch-size 32]
        [--repeats 3] [--num-workers auto] [--task tasks/scenes_shapes_zeroshot.yaml]

Needs ``clip-benchmark==1.6.2`` (the ``bench`` extra; the script says how to install it and exits 2
without it).

Model: open_clip ``--arch`` with seeded random weights, written once as a checkpoint file by
``bench/extraction.py``'s ``random_weights``. harness loads it through its own spec
``openclip:ARCH/PATH.pt``; CLIP_benchmark through its own loader
(``clip_benchmark.models.load_clip("open_clip", ARCH, PATH)`` and ``model.eval()``, as its CLI
does), so the two loaders, transforms and tokenizers are compared too. Random weights classify
at chance; the point is agreement and cost.

Data: the task spec's dataset (default ``tasks/scenes_shapes_zeroshot.yaml``: the procedural
scenes, test split, label column ``shape``) with ``n`` (and ``image_size``) overridden; class
names are what the harness kind uses (``harness.taskkind.class_names``: the label's ClassLabel
names), templates the spec's ``prompts.templates``. CLIP_benchmark reads the same rows through a
torch ``DataLoader`` (its own open_clip transform, the same batch size and the same number of
worker processes as the harness), as its CLI builds one.

Timed, fp32 on CPU, after one untimed pass of each (CLIP_benchmark's ``evaluate``; the harness
with a fresh feature store, which fills it):

* CLIP_benchmark: ``zero_shot_classifier`` + ``run_classification`` with ``amp=False`` --
  everything ``evaluate`` computes before its metrics (on CPU ``amp=True``, its default, would
  run the towers in bfloat16 under autocast; off here for parity with harness's fp32);
* harness --no-cache: the ``zeroshot_classification`` kind's ``evaluate`` on a ``Features``
  without a store (prompt and image embeddings, prototypes, logits);
* harness warm cache: the same with the filled store (every image and text feature a hit).

Each time is the median of ``--repeats`` rounds; a ratio (harness / CLIP_benchmark) is the median
over rounds of the ratio of two measurements taken back to back in one round. Metrics (untimed)
are each side's own: CLIP_benchmark's ``accuracy`` and ``balanced_accuracy_score`` on its logits,
exactly as ``evaluate`` computes them (checked against the untimed ``evaluate`` call; its
``accuracy`` is replaced by the same arithmetic ending in ``.item()``, because the original fails
under recent NumPy (2.4.6 here): LAION-AI/CLIP_benchmark issue #147), and the
harness metrics the spec names. Agreement: top-1 of both, the fraction of identical argmax
predictions, and the largest absolute logit difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HARNESS_DISABLE_PLUGIN_AUTOLOAD", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # CLIP_benchmark's progress bars
PLUGINS = ["openclip", "scenes", "zeroshot", "metrics"]
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: the ``bench`` extra's pin, installed alone (``-e '.[bench]'`` also works but rebuilds harness,
#: which leaves a plugins/harness.egg-info behind)
INSTALL = "VIRTUAL_ENV=$PWD/.venv .venv/bin/uv pip install -c constraints-cpu.txt clip-benchmark==1.6.2"

from harness.torchcompat import ensure_torchvision  # noqa: E402

ensure_torchvision()  # clip_benchmark imports open_clip, which imports torchvision

try:
    from clip_benchmark.metrics import zeroshot_classification as cb  # noqa: E402
    from clip_benchmark.models import load_clip  # noqa: E402
except ModuleNotFoundError as exc:
    if exc.name != "clip_benchmark":
        raise
    print(f"clip_benchmark is not installed (the bench extra); from {ROOT}: {INSTALL}", file=sys.stderr)
    sys.exit(2)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import balanced_accuracy_score  # noqa: E402

from harness.dataset import load_dataset  # noqa: E402
from harness.execution import ExecutionConfig  # noqa: E402
from harness.features import Features  # noqa: E402
from harness.featurestore import FeatureStore  # noqa: E402
from harness.imageloader import auto_workers  # noqa: E402
from harness.pluginmanager import get_plugin_manager  # noqa: E402
from harness.registry import collect  # noqa: E402
from harness.scoring import score  # noqa: E402
from harness.models import LoadContext, build_model  # noqa: E402
from harness.specs import load_object  # noqa: E402
from harness.taskkind import Compute, TaskContext  # noqa: E402
from harness.taskspec import load_task_spec  # noqa: E402



def accuracy(output: torch.Tensor, target: torch.Tensor, topk: tuple[int, ...] = (1,)) -> list[float]:
    """CLIP_benchmark 1.6.2's ``accuracy``, the same arithmetic, but ``.item()`` for its
    ``float(array of shape (1,))``, which recent NumPy (2.4.6 here) refuses (TypeError: only 0-dimensional arrays
    can be converted to Python scalars; LAION-AI/CLIP_benchmark issue #147, open)."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [correct[:k].reshape(-1).float().sum().item() / len(target) for k in topk]


cb.accuracy = accuracy  # what evaluate() calls

from extraction import random_weights  # noqa: E402  (bench/extraction.py: this script's folder)


class Rows(torch.utils.data.Dataset):
    """The task's rows as CLIP_benchmark's datasets are: ``(transform(image), label)``, with ``classes``."""

    def __init__(self, data, image: str, label: str, transform, classes: list[str]) -> None:
        self.data, self.image, self.label = data.select_columns([image, label]), image, label
        self.transform, self.classes = transform, classes

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        row = self.data[index]
        return self.transform(row[self.image]), row[self.label]


def seconds(fn):
    """``(fn(), wall seconds)``."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (seeded random weights)")
    parser.add_argument("--task", default=str(ROOT / "tasks" / "scenes_shapes_zeroshot.yaml"))
    parser.add_argument("--n", type=int, default=500, help="images (the spec's dataset config n)")
    parser.add_argument("--size", type=int, default=None, help="scene image size (default: the spec's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-workers", default="auto", help="DataLoader workers of both (auto: harness's choice)")
    args = parser.parse_args()
    device = "cpu"

    registries = collect(get_plugin_manager(PLUGINS))
    spec = load_task_spec(Path(args.task), registries)
    config = {**spec.dataset.config, "n": args.n, **({"image_size": args.size} if args.size else {})}
    spec = dataclasses.replace(spec, dataset=dataclasses.replace(spec.dataset, config=config))
    split = load_dataset(spec.dataset, registries).split
    image, label = spec.columns["image"], spec.columns["label"]
    workers = auto_workers(len(split), device) if args.num_workers == "auto" else int(args.num_workers)

    name = random_weights(f"random:openclip:{args.arch}")
    encoder_spec, _ = registries.resolve_model(name)
    encoder = build_model(encoder_spec, LoadContext(ExecutionConfig(device=device)))
    kind = load_object(registries.task_kinds.get(spec.kind).factory)()

    def context(store: FeatureStore | None) -> TaskContext:
        features = Features(encoder, device=device, batch_size=args.batch_size, num_workers=workers, store=store,
                            encoder_key={"name": name, "fingerprint": "bench"})
        return TaskContext(name=spec.name, params=spec.params, columns=spec.columns, seed=0,
                           compute=Compute(device), split=spec.dataset.split, _evaluated=split, _load_split=lambda s: split, _features=features)

    classes = context(None).class_names()
    templates = list(spec.params["templates"])
    model, transform, tokenizer = load_clip("open_clip", args.arch, encoder_spec.args["pretrained"], None, device)
    model.eval()
    loader = torch.utils.data.DataLoader(Rows(split.data, image, label, transform, classes),
                                         batch_size=args.batch_size, shuffle=False, num_workers=workers)

    def clip_benchmark():
        classifier = cb.zero_shot_classifier(model, tokenizer, classes, templates, device, amp=False)
        return cb.run_classification(model, classifier, loader, device, amp=False)

    with tempfile.TemporaryDirectory() as tmp:
        store = FeatureStore(Path(tmp))
        # untimed first passes: CLIP_benchmark's own evaluate(), the harness filling the store
        reference = cb.evaluate(model, loader, tokenizer, classes, templates, device, amp=False)
        kind.evaluate(context(store))
        times: dict[str, list[float]] = {"CLIP_benchmark": [], "harness --no-cache": [], "harness warm cache": []}
        for _ in range(args.repeats):
            (logits, target), t = seconds(clip_benchmark)
            times["CLIP_benchmark"].append(t)
            outputs, t = seconds(lambda: kind.evaluate(context(None)))
            times["harness --no-cache"].append(t)
            warm, t = seconds(lambda: kind.evaluate(context(store)))
            times["harness warm cache"].append(t)

    # CLIP_benchmark's metrics as its evaluate() computes them, on the last timed round's logits
    acc1, acc5 = (cb.accuracy(logits, target, topk=(1, 5)) if len(classes) >= 5
                  else (*cb.accuracy(logits, target), math.nan))
    ours = {"acc1": acc1, "acc5": acc5, "mean_per_class_recall": balanced_accuracy_score(target, logits.argmax(1))}
    metrics = score(spec.kind, spec.metrics, registries.metrics, outputs, 0)
    cb_logits, h_logits = logits.numpy(), outputs["logits"]
    same = float(np.mean(cb_logits.argmax(1) == h_logits.argmax(1)))

    n = len(split)
    print(f"open_clip {args.arch} (seeded random weights) on {device} fp32, task {spec.name}: {n} images "
          f"({spec.dataset.builder} {config}), {len(classes)} classes x {len(templates)} templates, "
          f"batch {args.batch_size}, workers {workers}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cpus, {args.repeats} rounds, "
          f"load average {os.getloadavg()[0]:.2f}")
    for method, values in times.items():
        median = statistics.median(values)
        print(f"  {method:20s} {median:8.3f} s  {n / median:8.1f} img/s  "
              f"(rounds: {', '.join(f'{v:.3f}' for v in values)})")
    for method in ("harness --no-cache", "harness warm cache"):
        ratios = [h / c for h, c in zip(times[method], times["CLIP_benchmark"])]
        print(f"{method + ' / CLIP_benchmark':38s} {statistics.median(ratios):.4f}  "
              f"(rounds: {', '.join(f'{r:.3f}' for r in ratios)})")
    value = {k: (metrics[k]["value"] if k in metrics else math.nan)
             for k in ("accuracy", "top5_accuracy", "mean_per_class_recall")}
    print(f"CLIP_benchmark / harness: top-1 {acc1:.4f} / {value['accuracy']:.4f} "
          f"(evaluate(): {reference['acc1']:.4f}), "
          f"top-5 {acc5:.4f} / {value['top5_accuracy']:.4f}, mean per-class recall "
          f"{ours['mean_per_class_recall']:.4f} / {value['mean_per_class_recall']:.4f}")
    weights = model.state_dict()
    print(f"identical predictions: {same:.4f} ({int(round(same * n))}/{n}); max |logit difference| "
          f"{float(np.max(np.abs(cb_logits - h_logits))):.3g} (logits span {float(np.ptp(cb_logits)):.3g}); "
          f"labels identical: {bool(np.array_equal(target.numpy(), outputs['labels']))}; weights identical: "
          f"{all(torch.equal(v, weights[k]) for k, v in encoder.model.state_dict().items())}; "
          f"warm-cache logits == --no-cache: {bool(np.array_equal(warm['logits'], h_logits))}; "
          f"metrics as evaluate() computes them: "
          f"{all(math.isclose(ours[k], reference[k], abs_tol=1e-12) for k in ours if not math.isnan(ours[k]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
