"""glibc malloc tuning (``harness/allocator.py``): a pure CPU forward pass, and ``harness run --no-cache``,
with and without it, as whole processes side by side.

    .venv/bin/python bench/allocator.py [--batches 6] [--batch-size 32] [--pairs 2]

1. pure forward: torchvision MobileNetV2 (random weights), random 224 px batches, ``inference_mode``,
   in a fresh process that calls :func:`harness.allocator.tune` (or not: ``HARNESS_MALLOC_TUNING=0``);
2. ``harness run --no-cache`` of the default job's shapes probe (``torchvision:mobilenet_v2``, 800
   images): the run's ``cost.images_per_s`` and the process's wall time.

Prints images/s for each, tuned / default ratios, alternating the two settings ``--pairs`` times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORWARD = """
import sys, time
import harness.allocator as allocator
allocator.tune()
import torch
from harness import ensure_torchvision
ensure_torchvision()
import torchvision
model = torchvision.models.mobilenet_v2().eval()
batches, size = int(sys.argv[1]), int(sys.argv[2])
with torch.inference_mode():
    model(torch.randn(size, 3, 224, 224))
    start = time.perf_counter()
    for _ in range(batches):
        model(torch.randn(size, 3, 224, 224))
    print(batches * size / (time.perf_counter() - start), allocator.state())
"""


def forward(tuned: bool, batches: int, size: int) -> tuple[float, str]:
    env = {**os.environ, "HARNESS_MALLOC_TUNING": "1" if tuned else "0"}
    out = subprocess.run([sys.executable, "-c", FORWARD, str(batches), str(size)], env=env, capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout.split(maxsplit=1)
    return float(out[0]), out[1].strip()


def harness_run(tuned: bool, out: Path) -> tuple[float, float]:
    env = {**os.environ, "HARNESS_MALLOC_TUNING": "1" if tuned else "0", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--quiet", "--no-cache", "--model",
                           "torchvision:mobilenet_v2", "--task", "scenes_shapes_linear_probe", "--output-dir", str(out)],
                          env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    doc = json.loads(Path(done.stdout.split()[-1]).read_text())
    return doc["cost"]["images_per_s"], wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, ...]]] = {"forward default": [], "forward tuned": [], "run default": [],
                                                "run tuned": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            for tuned in (False, True):
                name = "tuned" if tuned else "default"
                rate, state = forward(tuned, args.batches, args.batch_size)
                rows[f"forward {name}"].append((rate,))
                print(f"pair {i + 1}: forward {name:7s} {rate:7.1f} img/s  ({state})", flush=True)
                rate, wall = harness_run(tuned, Path(tmp) / f"{name}{i}")
                rows[f"run {name}"].append((rate, wall))
                print(f"pair {i + 1}: harness run --no-cache {name:7s} {rate:7.1f} img/s, process {wall:6.1f} s", flush=True)
    best = {k: max(v) for k, v in rows.items()}
    print(f"pure forward: tuned / default images/s = {best['forward tuned'][0] / best['forward default'][0]:.2f}")
    print(f"harness run --no-cache: tuned / default images/s = {best['run tuned'][0] / best['run default'][0]:.2f}; "
          f"process time tuned / default = {min(r[1] for r in rows['run tuned']) / min(r[1] for r in rows['run default']):.2f}")
    print(f"harness run (tuned) / pure forward (tuned), images/s = {best['run tuned'][0] / best['forward tuned'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
