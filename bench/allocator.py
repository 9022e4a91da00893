"""glibc malloc tuning (``harness/allocator.py``): a pure CPU forward pass, a naive single-process loop
and ``harness run --no-cache``, with and without it, as whole processes side by side, on the same model
and the same images.

    .venv/bin/python bench/allocator.py [--batch-size 32] [--pairs 2]

Model: ``torchvision:mobilenet_v2`` (the real ImageNet weights), built through harness (the same
weights, transform and embedding in every line). Images: the default job's shapes probe
(``scenes_shapes_linear_probe``: 500 train + 300 test scenes, 800 PNGs), read through harness's
dataset loading before timing. Each line is a fresh process, with the allocator settings (what
harness does at start-up) or without (``HARNESS_MALLOC_TUNING=0``), alternating ``--pairs`` times:

1. pure forward: every image decoded and preprocessed before timing; timed: ``encode_image`` over all
   of them in batches (``inference_mode``);
2. naive loop: timed: decode the PNG bytes, the model's preprocessing, stack, ``encode_image``, batch
   by batch, in one process (what a hand-written evaluation loop does);
3. ``harness run --no-cache`` of that task: the result's ``cost.images_per_s`` (decoding,
   preprocessing and forward inside ``ctx.images``) and the process's wall time.

Prints images/s of each line, tuned / default ratios, and the harness's time per image over each
loop's (issue 14's goals: the fastest loop >= 2x today's untuned one; harness within 1.10x of the
fastest loop).
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
LOOP = """
import io, sys, time
from dataclasses import replace
import harness.allocator as allocator
allocator.tune()
import PIL.Image, torch, datasets
from harness.dataset import load_dataset
from harness.execution import ExecutionConfig
from harness.models import LoadContext, build_model
from harness.pluginmanager import get_plugin_manager
from harness.registry import collect
from harness.runner import find_task

mode, size = sys.argv[1], int(sys.argv[2])
registries = collect(get_plugin_manager())
spec, _ = find_task("scenes_shapes_linear_probe", registries)
blobs = []
for split in ("train", "test"):
    data = load_dataset(replace(spec.dataset, split=split), registries).split.data
    data = data.cast_column("image", datasets.Image(decode=False))
    blobs += [row["bytes"] for row in data["image"]]
model_spec, _ = registries.resolve_model("torchvision:mobilenet_v2")
encoder = build_model(model_spec, LoadContext(ExecutionConfig(device="cpu")))
decode = lambda blob: PIL.Image.open(io.BytesIO(blob)).convert("RGB")
with torch.inference_mode():
    encoder.encode_image(torch.stack([encoder.preprocess(decode(b)) for b in blobs[:size]]))  # warm-up
    if mode == "forward":
        pixels = [torch.stack([encoder.preprocess(decode(b)) for b in blobs[i:i + size]])
                  for i in range(0, len(blobs), size)]
        start = time.perf_counter()
        for batch in pixels:
            encoder.encode_image(batch)
    else:
        start = time.perf_counter()
        for i in range(0, len(blobs), size):
            encoder.encode_image(torch.stack([encoder.preprocess(decode(b)) for b in blobs[i:i + size]]))
    print(len(blobs) / (time.perf_counter() - start), allocator.state())
"""


def loop(mode: str, tuned: bool, size: int) -> tuple[float, str]:
    """images/s of the pure forward (``mode="forward"``) or the naive loop (``"naive"``), and the allocator state."""
    env = {**os.environ, "HARNESS_MALLOC_TUNING": "1" if tuned else "0", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", LOOP, mode, str(size)], env=env, capture_output=True,
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
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()
    lines = ("forward", "naive", "harness")
    rates: dict[tuple[str, str], list[float]] = {}
    walls: dict[str, list[float]] = {"default": [], "tuned": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            for tuned in (False, True):
                name = "tuned" if tuned else "default"
                for line in lines:
                    if line == "harness":
                        rate, wall = harness_run(tuned, Path(tmp) / f"{name}{i}")
                        walls[name].append(wall)
                        extra = f"process {wall:5.1f} s"
                    else:
                        rate, extra = loop(line, tuned, args.batch_size)
                    rates.setdefault((line, name), []).append(rate)
                    print(f"pair {i + 1}: {line:8s} {name:7s} {rate:7.1f} img/s  ({extra})", flush=True)
    best = {key: max(values) for key, values in rates.items()}
    print(f"best of {args.pairs}, images/s (default -> tuned):")
    for line in lines:
        print(f"  {line:8s} {best[(line, 'default')]:7.1f} -> {best[(line, 'tuned')]:7.1f}  "
              f"({best[(line, 'tuned')] / best[(line, 'default')]:.2f}x)")
    fastest = max(best[(line, "tuned")] for line in ("forward", "naive"))
    untuned = max(best[(line, "default")] for line in ("forward", "naive"))
    print(f"fastest loop (tuned) / fastest loop untuned: {fastest / untuned:.2f} (goal >= 2)")
    for line, what in (("naive", "the naive loop (the same work)"), ("forward", "the pure forward (no decoding)")):
        print(f"harness run --no-cache time per image / {what}: {best[(line, 'tuned')] / best[('harness', 'tuned')]:.2f} "
              "(goal <= 1.10 against the fastest loop)")
    print(f"harness run --no-cache process time tuned / default: {min(walls['tuned']) / min(walls['default']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
