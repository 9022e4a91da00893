"""``harness train sharelock``: train a ShareLock head on image-caption pairs and save it.

    harness train sharelock --vision torchvision:mobilenet_v2 --language lm:all-MiniLM-L6-v2 \\
        --pairs scenes --pairs-config '{"n": 2000}' -o runs/sharelock-scenes \\
        --set max_steps=300 --set language_hidden_size=512
    harness run --model sharelock:runs/sharelock-scenes --task scenes_shapes_zeroshot

``--pairs`` is a task name or task YAML (its dataset, its ``image`` and ``caption`` columns),
a registered dataset builder (with ``--pairs-config``), or a local dataset path. Features are
extracted with both towers through harness's feature extraction, kept on the device, and
the head is trained with ``ShareLockConfig`` (reference defaults; ``--config FILE`` and
``--set KEY=VALUE`` override). The output folder gets ``sharelock.safetensors`` and
``sharelock.json`` (see :mod:`harness_sharelock.checkpoint`); ``--lightning`` also writes
``sharelock.ckpt`` in the official Lightning format.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from harness.errors import UsageError

if TYPE_CHECKING:
    from harness.registry import Registries
    from harness.taskspec import DatasetSource


def add_commands(subparsers: Any, parents: list[Any]) -> None:
    """Add ``train`` (shared with other trainers) and its ``sharelock`` subcommand."""
    train = subparsers.choices.get("train")
    if train is None:
        train = subparsers.add_parser("train", help="train a light head on frozen features")
        train.set_defaults(handler=_no_trainer)
        train._harness_trainers = train.add_subparsers(dest="trainer", metavar="TRAINER")  # type: ignore[attr-defined]
    p = train._harness_trainers.add_parser("sharelock", parents=parents, help="ShareLock projection head (arXiv 2410.07173)")
    p.add_argument("--vision", required=True, help="image tower, a harness encoder name (e.g. torchvision:mobilenet_v2)")
    p.add_argument("--language", required=True, help="text tower, a harness encoder name (e.g. lm:all-MiniLM-L6-v2)")
    p.add_argument("--pairs", required=True, help="task name or YAML, dataset builder, or local dataset path")
    p.add_argument("--split", default="train", help="split of the pair source (default: train)")
    p.add_argument("--pairs-config", default="{}", help="JSON config of a dataset builder (e.g. '{\"n\": 2000}')")
    p.add_argument("--image-column", default=None, help="default: the task's image column, else 'image'")
    p.add_argument("--text-column", default=None, help="default: the task's caption column, else 'caption'")
    p.add_argument("--config", type=Path, default=None, help="YAML/JSON file of ShareLockConfig fields")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one ShareLockConfig field (repeatable)")
    p.add_argument("--limit", type=_positive_int, default=None, help="train on a seeded subset of N pairs")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="feature extraction precision")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="feature extraction batch size")
    p.add_argument("--lightning", action="store_true", help="also write sharelock.ckpt in the official format")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-cache", dest="cache", action="store_false", help="neither read nor write the feature store")
    p.add_argument("--cache-dir", type=Path, default=None, help="cache root (default $HARNESS_CACHE_DIR or ~/.cache/harness)")
    p.add_argument("-o", "--output", type=Path, required=True, help="checkpoint folder to write")
    p.set_defaults(handler=train_sharelock)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _no_trainer(args: argparse.Namespace, registries: Registries) -> int:
    raise UsageError("harness train: name a trainer, e.g. `harness train sharelock --help`")


def config_from_args(args: argparse.Namespace) -> Any:
    """``ShareLockConfig`` defaults, then ``--config FILE``, then each ``--set KEY=VALUE`` (YAML-typed)."""
    from .config import ShareLockConfig

    values: dict[str, Any] = {}
    if args.config is not None:
        try:
            loaded = yaml.safe_load(args.config.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"--config {args.config}: cannot read: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"--config {args.config}: expected a mapping of ShareLockConfig fields")
        values.update(loaded)
    for item in args.overrides:
        key, eq, text = item.partition("=")
        if not eq:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE")
        values[key.strip()] = yaml.safe_load(text)
    return ShareLockConfig.from_dict(values, where="--config/--set")


def pairs_source(args: argparse.Namespace, registries: Registries) -> tuple[DatasetSource, str, str]:
    """(dataset source, image column, text column) named by ``--pairs``."""
    from harness.taskspec import DatasetSource, load_task_spec

    name = args.pairs
    if name in registries.tasks or name.endswith((".yaml", ".yml")):
        spec = load_task_spec(registries.tasks.get(name) if name in registries.tasks else Path(name), registries)
        columns = dict(spec.columns)
        return (replace(spec.dataset, split=args.split), args.image_column or columns.get("image", "image"),
                args.text_column or columns.get("caption", columns.get("text", "caption")))
    image, text = args.image_column or "image", args.text_column or "caption"
    if name in registries.datasets:
        try:
            config = json.loads(args.pairs_config)
        except ValueError as exc:
            raise UsageError(f"--pairs-config: not JSON: {exc}") from None
        return DatasetSource(split=args.split, builder=name, config=config), image, text
    if Path(name).exists():
        return DatasetSource(split=args.split, path=Path(name).resolve()), image, text
    raise UsageError(f"--pairs {name!r}: not a task, task file, dataset builder ({', '.join(registries.datasets)}) "
                     "or local dataset path")


def train_sharelock(args: argparse.Namespace, registries: Registries) -> int:
    """Handler of ``harness train sharelock``."""
    from harness.dataset import load_dataset, subset_indices
    from harness.encoder import LoadOptions
    from harness.features import Features
    from harness.featurestore import FeatureStore
    from harness.hardware import resolve_device

    from . import checkpoint, lightning, towers
    from .pairs import pair_features
    from .trainer import train

    config = config_from_args(args)
    for name, modality in ((args.vision, "image"), (args.language, "text")):
        spec, _ = registries.resolve_encoder(name)
        if modality not in spec.modalities:
            raise UsageError(f"--{'vision' if modality == 'image' else 'language'} {name!r} cannot embed {modality}")
    source, image_col, text_col = pairs_source(args, registries)
    loaded = load_dataset(source, registries, progress=False)
    data = loaded.split
    if args.limit:
        data = data.select(subset_indices(len(data), args.limit, config.seed))
    device = resolve_device(args.device)
    options = LoadOptions(device=device, dtype=args.dtype, seed=config.seed, registries=registries)
    progress = not args.quiet and sys.stderr.isatty()
    vision, vision_key = towers.load_keyed(args.vision, options, "image")
    language, language_key = towers.load_keyed(args.language, options, "text")
    store = FeatureStore.default(args.cache_dir) if args.cache else None
    extract = {"device": device, "dtype": args.dtype, "batch_size": args.batch_size, "progress": progress, "store": store}
    images, captions = pair_features(data, image_col, text_col,
                                     Features(vision, encoder_key=vision_key if store else None, **extract),
                                     Features(language, encoder_key=language_key if store else None, **extract),
                                     f"--pairs {args.pairs}")
    result = train(config, images, captions, device=device, progress=progress)
    meta = {"vision": towers.describe(args.vision, vision, options.seed),
            "language": towers.describe(args.language, language, options.seed),
            "pairs": {**loaded.identity, "image_column": image_col, "text_column": text_col, "n_pairs": len(data)},
            "training": result.summary()}
    out = checkpoint.save(args.output, result.model, meta)
    if args.lightning:
        lightning.write(out / "sharelock.ckpt", result.model, meta, global_step=result.steps)
    loss = f"best validation loss {result.best_val_loss:.4f} at step {result.best_step}" if result.n_val else \
        f"final training loss {result.final_train_loss:.4f}"
    print(f"sharelock: {result.n_train} pairs, {result.steps} steps in {result.seconds:.1f} s, {loss}", file=sys.stderr)
    print(out)
    return 0
