"""Benchmark: harness feature extraction against a raw model-forward loop, and a warm feature
cache against a cold one -- measured side by side in one process, on the same model and data.

    .venv/bin/python bench/extraction.py [--model torchvision:mobilenet_v2] [--n N] [--size 64]
        [--batch-size 32|auto] [--repeats 5] [--num-workers auto] [--device cpu|cuda] [--dtype fp32|bf16|fp16]
        [--data IMAGE_FOLDER | --jpegs N] [--skip naive,nocache,...] [--whole-run]

Prints one table and the ratios the execution engine is held to:

* harness / raw:  ``Features.images`` on a fresh feature store (decode in DataLoader workers,
  forward, shard writes with checksums) divided by a loop that only runs the model's forward
  pass over tensors preprocessed beforehand and already on the device (the pure-forward
  ceiling; it cycles over at most max(batch, 512) distinct images). Target <= 1.10 on CPU; on
  GPU the same figure as a throughput fraction, ceiling / harness, target >= 0.7.
* warm / cold:    the same extraction again, every feature now a cache hit, divided by the
  cold extraction. Target <= 0.05.

Also shown: a naive hand-written loop (decode + preprocess + forward in one thread) and the
harness without a store (``--no-cache``); ``--skip`` leaves methods out (names: raw, naive,
nocache, cold, warm). Each time is the median of ``--repeats`` rounds, and a ratio is the
median over rounds of the ratio of two measurements taken back to back in one round, because
load from other processes drifts more between rounds than within one.

Data: the procedurally generated scenes (``--size`` px, default 500 of them), an image folder
(``--data``, all of it unless ``--n``), or ``--jpegs N``: N reproducible JPEGs at ImageNet-like
sizes (about 500x375, quality 90) generated once into ``<harness cache>/bench`` and reused.
``--batch-size auto`` is resolved by the harness (largest batch that fits on CUDA, remembered;
32 on CPU) and the raw loop uses the batch it found; the header prints it.

Models: any harness model name, or a real architecture with seeded random weights,
``random:openclip:ARCH`` (e.g. ``ViT-B-16``, ``ViT-L-14``) or ``random:dinov2:ViT-S-14|ViT-B-14|ViT-L-14``:
the weights are written once under ``<harness cache>/bench`` as a checkpoint file
(``openclip:ARCH/FILE.pt``) or a ``save_pretrained`` directory with DINOv2's image processor
config (``hf:DIR``), so the plugin's own loader, preprocessing and encoder are what is timed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# only the plugins a benchmark needs (an unrelated broken plugin must not stop it)
os.environ.setdefault("HARNESS_DISABLE_PLUGIN_AUTOLOAD", "1")
PLUGINS = ["torchvision", "openclip", "hf", "scenes", "linear_probe", "metrics", "writers"]

from harness.torchcompat import ensure_torchvision  # noqa: E402

ensure_torchvision()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from harness.dataset import Split  # noqa: E402
from harness.execution import ExecutionConfig, cache_root  # noqa: E402
from harness.features import Features  # noqa: E402
from harness.featurestore import FeatureStore  # noqa: E402
from harness.hardware import attention_kernel, use_channels_last  # noqa: E402
from harness.imageloader import auto_workers  # noqa: E402
from harness.pluginmanager import get_plugin_manager  # noqa: E402
from harness.registry import collect  # noqa: E402
from harness.models import LoadContext, build_model  # noqa: E402
from harness.specs import load_object  # noqa: E402


DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
METHODS = {"raw": "raw forward", "naive": "naive loop", "nocache": "harness --no-cache",
           "cold": "harness cold cache", "warm": "harness warm cache"}
#: ImageNet-like (width, height): most ImageNet photos are 500 px on the long side, 4:3 or 3:2.
JPEG_SIZES = ((500, 375), (375, 500), (500, 333), (333, 500), (500, 500), (500, 400), (400, 300), (640, 480))
#: facebook/dinov2-{small,base,large} architectures (patch 14, 518 px position grid, layer scale).
DINOV2 = {"ViT-S-14": (384, 12, 6), "ViT-B-14": (768, 12, 12), "ViT-L-14": (1024, 24, 16)}
#: facebook/dinov2-*'s preprocessor_config.json (resize the short side to 256 bicubic, crop 224).
DINOV2_PREPROCESSOR = {
    "image_processor_type": "BitImageProcessor", "do_convert_rgb": True, "do_resize": True,
    "size": {"shortest_edge": 256}, "resample": 3, "do_center_crop": True, "crop_size": {"height": 224, "width": 224},
    "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}


def write_jpeg(index: int, folder: Path, seed: int) -> None:
    """One photo-like JPEG: a smooth colour field, a few filled shapes, pixel noise; quality 90."""
    import PIL.Image
    import PIL.ImageDraw

    rng = np.random.default_rng([seed, index])
    width, height = JPEG_SIZES[rng.integers(len(JPEG_SIZES))]
    field = rng.integers(0, 256, (int(rng.integers(2, 7)), int(rng.integers(2, 7)), 3), dtype=np.uint8)
    image = PIL.Image.fromarray(field).resize((width, height), PIL.Image.BICUBIC)
    draw = PIL.ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):
        x0, x1 = sorted(int(v) for v in rng.integers(0, width, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, height, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = rng.integers(3)
        if shape == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.polygon([(int(rng.integers(width)), int(rng.integers(height))) for _ in range(3)], fill=colour)
    noise = rng.integers(-24, 25, (height, width, 3), dtype=np.int16)
    pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    PIL.Image.fromarray(pixels).save(folder / f"{index:06d}.jpg", quality=90)


def make_jpegs(n: int, seed: int) -> Path:
    """``n`` reproducible JPEGs in ``<cache>/bench/jpegs-n{n}-seed{seed}``, generated once (all CPUs)."""
    folder = cache_root() / "bench" / f"jpegs-n{n}-seed{seed}"
    done = folder / ".complete"
    if not done.exists():
        start = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:  # before any CUDA use
            pool.map(partial(write_jpeg, folder=folder, seed=seed), range(n), chunksize=64)
        done.write_text(f"{n}\n")
        print(f"generated {n} JPEGs in {folder} in {time.perf_counter() - start:.1f} s", flush=True)
    return folder


def random_weights(name: str) -> str:
    """The harness model name for ``random:openclip:ARCH`` or ``random:dinov2:ARCH``: the architecture
    with seeded random weights, written once under ``<cache>/bench`` where the plugin's loader reads it."""
    _, family, arch = name.split(":", 2)
    folder = cache_root() / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if family == "openclip":
        import open_clip

        path = folder / f"openclip-{arch}-random.pt"
        if not path.exists():
            torch.save(open_clip.create_model(arch, pretrained=None).state_dict(), f"{path}.tmp")
            os.replace(f"{path}.tmp", path)
        return f"openclip:{arch}/{path}"
    if family == "dinov2" and arch in DINOV2:
        import transformers

        path = folder / f"dinov2-{arch}-random"
        if not (path / "preprocessor_config.json").exists():
            hidden, layers, heads = DINOV2[arch]
            config = transformers.Dinov2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                               mlp_ratio=4, patch_size=14, image_size=518, layerscale_value=1.0)
            transformers.Dinov2Model(config).save_pretrained(path)
            (path / "preprocessor_config.json").write_text(json.dumps(DINOV2_PREPROCESSOR, indent=1))
        return f"hf:{path}"
    sys.exit(f"unknown random model {name!r}: expected random:openclip:ARCH or random:dinov2:{'|'.join(DINOV2)}")


def load(args: argparse.Namespace) -> tuple[object, Split]:
    """The encoder on ``args.device``, and the images: ``--data DIR`` (an image folder) or the scenes."""
    registries = collect(get_plugin_manager(PLUGINS))
    name = random_weights(args.model) if args.model.startswith("random:") else args.model
    spec, _ = registries.resolve_model(name)
    encoder = build_model(spec, LoadContext(ExecutionConfig(device=args.device, dtype=args.dtype)))
    if args.data:
        import datasets

        data = datasets.load_dataset("imagefolder", data_dir=str(args.data), split="train")
        data = data.select(range(min(args.n or len(data), len(data))))
        return encoder, Split(data, {"source": "path", "id": str(args.data), "revision": None,
                                     "fingerprint": data._fingerprint, "split": "train"})
    builder = load_object(registries.datasets.get("scenes").factory)
    config = {"n": args.n or 500, "image_size": args.size, "seed": 0}
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


def raw_forward(encoder: object, pixels: list[torch.Tensor], n: int, batch: int, args: argparse.Namespace) -> float:
    """The pure-forward ceiling: ``n`` images in batches of ``batch``, cycling over batches already
    preprocessed and on the device."""
    with timed(args.device, args.dtype) as seconds:
        for i in range(0, n, batch):
            encoder.encode_image(pixels[(i // batch) % len(pixels)][:n - i])
    return seconds[0]


def naive_loop(encoder: object, split: Split, batch: int, args: argparse.Namespace) -> float:
    """Decode, preprocess and forward in one thread, batch after batch."""
    with timed(args.device, args.dtype) as seconds:
        for i in range(0, len(split), batch):
            images = split.data[i:i + batch]["image"]
            pixels = torch.stack([encoder.preprocess(im.convert("RGB")) for im in images])
            encoder.encode_image(pixels.to(args.device))
    return seconds[0]


def features(encoder: object, args: argparse.Namespace, store: FeatureStore | None) -> Features:
    """``Features`` as ``harness run`` builds it (channels_last on CUDA for convolutional modules)."""
    workers = None if args.num_workers == "auto" else int(args.num_workers)
    return Features(encoder, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                    num_workers=workers, store=store, encoder_key={"name": args.model, "fingerprint": "bench"},
                    channels_last=use_channels_last(encoder, args.device))


def harness(encoder: object, split: Split, args: argparse.Namespace, store: FeatureStore | None) -> float:
    with timed(args.device, "fp32") as seconds:  # Features applies its own autocast
        features(encoder, args, store).images(split, "image")
    return seconds[0]


def whole_runs(args: argparse.Namespace, cache: Path) -> tuple[dict, dict]:
    """``harness run`` (in-process) of a linear probe on the scenes, cold then warm: both results."""
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
        execution = ExecutionConfig(device=args.device, dtype=args.dtype, batch_size=args.batch_size, cache_dir=cache)
        config = RunConfig(model=args.model, tasks=(str(task),), execution=execution, output_dir=cache / attempt)
        [path] = run(config, registries)
        docs.append(json.loads(Path(path).read_text()))
    return docs[0], docs[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torchvision:mobilenet_v2",
                        help="a harness model name, random:openclip:ARCH or random:dinov2:ARCH")
    parser.add_argument("--n", type=int, default=None, help="images (default: 500 scenes, or all of the folder)")
    parser.add_argument("--size", type=int, default=64, help="scene image size (the model's transform resizes)")
    parser.add_argument("--batch-size", type=lambda v: v if v == "auto" else int(v), default=32, help="N or auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-workers", default="auto")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--data", default=None, help="an image folder to use instead of the scenes")
    parser.add_argument("--jpegs", type=int, default=None, help="N generated JPEGs (cached) as --data")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --jpegs images")
    parser.add_argument("--skip", default="", help=f"methods to leave out, comma-separated: {','.join(METHODS)}")
    parser.add_argument("--whole-run", action="store_true",
                        help="also time a repeated `harness run` (linear probe on n train + n/2 test scenes)")
    args = parser.parse_args()
    args.skip = {m for m in args.skip.split(",") if m}
    if args.skip - set(METHODS):
        parser.error(f"--skip: unknown method(s) {sorted(args.skip - set(METHODS))}; known: {','.join(METHODS)}")
    if args.jpegs:
        args.data = make_jpegs(args.jpegs, args.seed)
    return args


def main() -> int:
    args = parse_args()
    encoder, split = load(args)
    n = args.n = len(split)
    # warm-up, untimed (the first full pass ran 2-4x slower in every run); resolves --batch-size auto
    warm = features(encoder, args, None)
    warm.images(Split(split.data.select(range(min(n, 2048)))), "image")
    batch = warm.batch_size_used
    ceiling = min(n, max(batch, 512))
    rows = [split.data[i:i + batch]["image"] for i in range(0, ceiling, batch)]
    memory = torch.channels_last if warm.channels_last else torch.contiguous_format
    pixels = [torch.stack([encoder.preprocess(im.convert("RGB")) for im in images]).to(args.device)
              .contiguous(memory_format=memory) for images in rows]
    raw_forward(encoder, pixels, min(n, 2048), batch, args)
    runs = {key: name for key, name in METHODS.items() if key not in args.skip}
    times: dict[str, list[float]] = {name: [] for name in runs.values()}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            store = FeatureStore(Path(tmp))
            if "raw" in runs:
                times["raw forward"].append(raw_forward(encoder, pixels, n, batch, args))
            if "cold" in runs or "warm" in runs:
                cold = harness(encoder, split, args, store)
                if "cold" in runs:
                    times["harness cold cache"].append(cold)
            if "warm" in runs:
                times["harness warm cache"].append(harness(encoder, split, args, store))
            if "nocache" in runs:
                times["harness --no-cache"].append(harness(encoder, split, args, None))
            if "naive" in runs:
                times["naive loop"].append(naive_loop(encoder, split, batch, args))
    median = {name: statistics.median(values) for name, values in times.items()}
    workers = auto_workers(n, args.device) if args.num_workers == "auto" else args.num_workers
    gpu = f" ({torch.cuda.get_device_name(args.device)})" if args.device.startswith("cuda") else ""
    source = args.data or f"scenes at {args.size}px"
    print(f"model {args.model} on {args.device}{gpu} ({args.dtype}), {n} images ({source}) -> "
          f"{tuple(pixels[0].shape[1:])}, batch {batch}{' (auto)' if args.batch_size == 'auto' else ''}, "
          f"workers {args.num_workers} ({workers}), attention {attention_kernel(encoder, args.device)}, "
          f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} cpus, {args.repeats} rounds, load average {os.getloadavg()[0]:.2f}")
    for name, value in median.items():
        print(f"  {name:20s} {value:8.3f} s  {n / value:8.1f} img/s  "
              f"(rounds: {', '.join(f'{v:.3f}' for v in times[name])})")
    # ratios of measurements taken back to back in the same round, then the median over rounds:
    # load from other processes drifts between rounds far more than within one
    pairs = {"harness cold / raw forward": ("harness cold cache", "raw forward", "target <= 1.1 (CPU)"),
             "harness --no-cache / raw forward": ("harness --no-cache", "raw forward", ""),
             "warm cache / cold cache": ("harness warm cache", "harness cold cache", "target <= 0.05"),
             "harness cold img/s / ceiling img/s": ("raw forward", "harness cold cache", "target >= 0.7 (GPU)")}
    for label, (top, bottom, target) in pairs.items():
        if top in times and bottom in times:
            ratios = [t / b for t, b in zip(times[top], times[bottom])]
            print(f"{label:34s} {statistics.median(ratios):.4f}  (rounds: {', '.join(f'{r:.3f}' for r in ratios)})"
                  f"{'   ' + target if target else ''}")
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
