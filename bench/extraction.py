"""Benchmark: harness feature extraction against a raw model-forward loop, and a warm feature
cache against a cold one -- measured side by side in one process, on the same model and data.

    .venv/bin/python bench/extraction.py [--model torchvision:mobilenet_v2] [--n 500] [--size 64]
        [--batch-size 32] [--repeats 5] [--num-workers auto] [--device cpu|cuda] [--dtype fp32|bf16|fp16]
        [--data IMAGE_FOLDER] [--whole-run]

Prints one table and the two ratios the execution engine is held to:

* harness / raw:  ``Features.images`` on a fresh feature store (decode in DataLoader workers,
  forward, shard writes with checksums) divided by a loop that only runs the model's forward
  pass over tensors preprocessed beforehand (the pure-forward ceiling). Target <= 1.10 on CPU.
* warm / cold:    the same extraction again, every feature now a cache hit, divided by the
  cold extraction. Target <= 0.05.

Also shown: a naive hand-written loop (decode + preprocess + forward in one thread) and the
harness without a store (``--no-cache``). Each time is the median of ``--repeats`` rounds, and
a ratio is the median over rounds of the ratio of two measurements taken back to back in one
round, because load from other processes drifts more between rounds than within one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# only the plugins a benchmark needs (an unrelated broken plugin must not stop it)
os.environ.setdefault("HARNESS_DISABLE_PLUGIN_AUTOLOAD", "1")
PLUGINS = ["torchvision", "openclip", "hf", "scenes", "linear_probe", "metrics", "writers"]

from harness.torchcompat import ensure_torchvision  # noqa: E402

ensure_torchvision()

import torch  # noqa: E402

from harness.dataset import Split  # noqa: E402
from harness.encoder import LoadOptions  # noqa: E402
from harness.features import Features  # noqa: E402
from harness.featurestore import FeatureStore  # noqa: E402
from harness.pluginmanager import get_plugin_manager  # noqa: E402
from harness.registry import collect  # noqa: E402
from harness.specs import load_object  # noqa: E402


DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def load(args: argparse.Namespace) -> tuple[object, Split]:
    """The encoder on ``args.device``, and the images: ``--data DIR`` (an image folder) or the scenes."""
    registries = collect(get_plugin_manager(PLUGINS))
    spec, _ = registries.resolve_encoder(args.model)
    encoder = load_object(spec.factory)(spec, LoadOptions(device=args.device, dtype=args.dtype))
    if args.data:
        import datasets

        data = datasets.load_dataset("imagefolder", data_dir=args.data, split="train")
        data = data.select(range(min(args.n, len(data))))
        return encoder, Split(data, {"source": "path", "id": args.data, "revision": None,
                                     "fingerprint": data._fingerprint, "split": "train"})
    builder = load_object(registries.datasets.get("scenes").factory)
    config = {"n": args.n, "image_size": args.size, "seed": 0}
    data = builder(config, "test")
    identity = {"source": "builder", "id": "scenes", "revision": "bench", "fingerprint": data._fingerprint,
                "split": "test", "config": config}
    return encoder, Split(data, identity)


@contextmanager
def timed(device: str, dtype: str) -> Iterator[list[float]]:
    """Inference mode and autocast as the harness uses them; yields ``[seconds]`` (CUDA synchronised)."""
    box: list[float] = []
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    with torch.inference_mode(), torch.autocast(device.split(":")[0], DTYPES[dtype] or torch.float32,
                                                enabled=dtype != "fp32"):
        yield box
    sync()
    box.append(time.perf_counter() - start)


def raw_forward(encoder: object, pixels: list[torch.Tensor], args: argparse.Namespace) -> float:
    """The pure-forward ceiling: batches already preprocessed and on the device."""
    with timed(args.device, args.dtype) as seconds:
        for batch in pixels:
            encoder.encode_image(batch)
    return seconds[0]


def naive_loop(encoder: object, split: Split, args: argparse.Namespace) -> float:
    with timed(args.device, args.dtype) as seconds:
        for i in range(0, len(split), args.batch_size):
            images = split.data[i:i + args.batch_size]["image"]
            batch = torch.stack([encoder.preprocess(im.convert("RGB")) for im in images])
            encoder.encode_image(batch.to(args.device))
    return seconds[0]


def harness(encoder: object, split: Split, args: argparse.Namespace, store: FeatureStore | None) -> float:
    workers = None if args.num_workers == "auto" else int(args.num_workers)
    features = Features(encoder, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                        num_workers=workers, store=store, encoder_key={"name": "bench", "fingerprint": "bench"})
    with timed(args.device, "fp32") as seconds:  # Features applies its own autocast
        features.images(split, "image")
    return seconds[0]


def whole_runs(args: argparse.Namespace, cache: Path) -> tuple[dict, dict]:
    """``harness run`` (in-process) of a linear probe on the scenes, cold then warm: both results."""
    import json

    from harness.runner import RunConfig, run

    task = cache / "bench_scenes_probe.yaml"
    task.write_text(json.dumps({
        "name": "bench_scenes_probe", "version": 1, "kind": "linear_probe",
        "dataset": {"builder": "scenes",
                    "config": {"n": {"train": args.n, "test": args.n // 2}, "image_size": args.size, "seed": 0},
                    "split": "test"},
        "columns": {"image": "image", "label": "shape"}, "params": {"train_split": "train", "C": 1.0},
        "metrics": ["accuracy"], "main_score": "accuracy"}))
    registries = collect(get_plugin_manager(PLUGINS))
    docs = []
    for attempt in ("cold", "warm"):
        config = RunConfig(model=args.model, tasks=(str(task),), device=args.device, dtype=args.dtype,
                           batch_size=args.batch_size, output_dir=cache / attempt, cache_dir=cache)
        [path] = run(config, registries)
        docs.append(json.loads(Path(path).read_text()))
    return docs[0], docs[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torchvision:mobilenet_v2")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--size", type=int, default=64, help="scene image size (the model's transform resizes)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-workers", default="auto")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--data", default=None, help="an image folder to use instead of the scenes (first --n images)")
    parser.add_argument("--whole-run", action="store_true",
                        help="also time a repeated `harness run` (linear probe on n train + n/2 test scenes)")
    args = parser.parse_args()
    encoder, split = load(args)
    rows = [split.data[i:i + args.batch_size]["image"] for i in range(0, len(split), args.batch_size)]
    pixels = [torch.stack([encoder.preprocess(im.convert("RGB")) for im in batch]).to(args.device) for batch in rows]
    raw_forward(encoder, pixels, args)  # warm-up, untimed (the first full pass ran 2-4x slower in every run)
    harness(encoder, split, args, None)
    methods = ("raw forward", "naive loop", "harness --no-cache", "harness cold cache", "harness warm cache")
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            store = FeatureStore(Path(tmp))
            times["raw forward"].append(raw_forward(encoder, pixels, args))
            times["harness cold cache"].append(harness(encoder, split, args, store))
            times["harness warm cache"].append(harness(encoder, split, args, store))
            times["harness --no-cache"].append(harness(encoder, split, args, None))
            times["naive loop"].append(naive_loop(encoder, split, args))
    median = {name: statistics.median(values) for name, values in times.items()}
    # ratios of measurements taken back to back in the same round, then the median over rounds:
    # load from other processes drifts between rounds far more than within one
    paired = {
        "harness cold / raw forward": [c / r for c, r in zip(times["harness cold cache"], times["raw forward"])],
        "harness --no-cache / raw forward": [c / r for c, r in zip(times["harness --no-cache"], times["raw forward"])],
        "warm cache / cold cache": [w / c for w, c in zip(times["harness warm cache"], times["harness cold cache"])],
    }
    source = args.data or f"scenes at {args.size}px"
    print(f"model {args.model} on {args.device} ({args.dtype}), {len(split)} images ({source}) -> "
          f"{tuple(pixels[0].shape[1:])}, batch {args.batch_size}, workers {args.num_workers}, "
          f"torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} cpus, {args.repeats} rounds, load average {os.getloadavg()[0]:.2f}")
    for name, value in median.items():
        print(f"  {name:20s} {value:8.3f} s  {len(split) / value:8.1f} img/s  "
              f"(rounds: {', '.join(f'{v:.3f}' for v in times[name])})")
    targets = {"harness cold / raw forward": 1.10, "warm cache / cold cache": 0.05}
    for name, ratios in paired.items():
        target = f"   target <= {targets[name]}" if name in targets else ""
        print(f"{name:34s} {statistics.median(ratios):.4f}  (rounds: {', '.join(f'{r:.3f}' for r in ratios)}){target}")
    if args.whole_run:
        with tempfile.TemporaryDirectory() as tmp:
            cold, warm = whole_runs(args, Path(tmp))
        print(f"repeated `harness run` (linear probe, {args.n} + {args.n // 2} scenes): "
              f"cold {cold['cost']['wall_time_s']:.2f} s {cold['cost']['phases_s']}, "
              f"warm {warm['cost']['wall_time_s']:.2f} s {warm['cost']['phases_s']}")
        print(f"{'warm / cold whole run':34s} {warm['cost']['wall_time_s'] / cold['cost']['wall_time_s']:.4f}"
              f"  (cache hits {warm['cache']['image_hits']}/{warm['cache']['image_hits'] + warm['cache']['image_misses']};"
              f" metrics identical: {warm['metrics'] == cold['metrics']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
