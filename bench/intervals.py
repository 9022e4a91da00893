"""Confidence intervals for ImageNet-shaped outputs: per-sample resampling vs recomputing the metric.

    .venv/bin/python bench/intervals.py [--n 50000] [--classes 1000] [--resamples 1000] [--legacy-resamples 20]

Scores seeded random logits (``--n`` samples x ``--classes`` classes, ~70% top-1) with the built-in
``accuracy``, ``top5_accuracy`` and ``mean_per_class_recall`` metrics through ``harness.scoring``
(the path every result takes), timing each metric's value and 95% interval. For comparison it
times the previous design -- a percentile bootstrap that recomputes the full metric on each
resample -- for ``--legacy-resamples`` resamples and extrapolates to ``--resamples`` (measuring
all 1,000 would take minutes). Both are printed side by side, with their ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _logits(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.standard_normal((n, classes)).astype(np.float32)
    logits[np.arange(n), labels] += 3.0  # a model that is right about 70% of the time
    return logits, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--legacy-resamples", type=int, default=20)
    args = parser.parse_args()

    from harness import intervals
    from harness.pluginmanager import get_plugin_manager
    from harness.registry import collect
    from harness.scoring import score
    from harness.specs import load_object

    intervals.N_RESAMPLES = args.resamples
    metrics = collect(get_plugin_manager(["metrics"])).metrics
    names = ("accuracy", "top5_accuracy", "mean_per_class_recall")
    logits, labels = _logits(args.n, args.classes, seed=0)
    outputs = {"logits": logits, "labels": labels}

    start = time.perf_counter()
    scored = score("bench", names, metrics, outputs, seed=0)
    total = time.perf_counter() - start
    print(f"{args.n} samples x {args.classes} classes, {args.resamples} resamples")
    per_metric = {}
    for name in names:
        start = time.perf_counter()
        score("bench", (name,), metrics, outputs, seed=0)
        per_metric[name] = time.perf_counter() - start
        entry = scored[name]
        print(f"  {name:24s} {entry['value']:.4f} [{entry['ci95'][0]:.4f}, {entry['ci95'][1]:.4f}] "
              f"({entry['interval']})  {per_metric[name]:.2f} s")
    print(f"harness: all three metrics with intervals  {total:.2f} s   (target <= 5 s)")

    # the previous design: the whole metric recomputed on every bootstrap resample
    spec = metrics.get("mean_per_class_recall")
    fn = load_object(spec.fn)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(args.legacy_resamples):
        index = rng.integers(0, args.n, args.n)
        fn(logits=logits[index], labels=labels[index])
    legacy = (time.perf_counter() - start) / args.legacy_resamples * args.resamples
    print(f"recompute-per-resample (previous design), mean_per_class_recall alone: {legacy:.1f} s "
          f"(extrapolated from {args.legacy_resamples} resamples)")
    print(f"ratio previous / harness for that metric: {legacy / per_metric['mean_per_class_recall']:.0f}x")


if __name__ == "__main__":
    main()
