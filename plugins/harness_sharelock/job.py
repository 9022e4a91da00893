"""``harness train sharelock``: train a ShareLock head on image-caption pairs and save it.

    harness train sharelock --vision torchvision:mobilenet_v2 --language lm:all-MiniLM-L6-v2 \\
        --pairs scenes --pairs-config '{"n": 2000}' -o runs/sharelock-scenes \\
        --set max_steps=300 --set language_hidden_size=512
    harness run --model sharelock:runs/sharelock-scenes --task scenes_shapes_zeroshot

A trainer in the core (``TrainerSpec``): the core builds the command from :func:`config_schema`
(a ``--KEY`` option per top-level property, ``--config FILE``, ``--set KEY=VALUE``) plus the
execution options shared with ``harness run``, validates the config and fills in its defaults.

``--pairs`` is a task name or task YAML (its dataset, its ``image`` and ``caption`` columns),
a registered dataset builder (with ``--pairs-config``), or a local dataset path. Features of both
towers come through the feature store (``--batch-size`` is the extraction batch size), stay on the
device, and the head is trained with ``ShareLockConfig`` (reference defaults; every field is a
top-level config key). ``batch_size`` (the training micro-batch) has no ``--KEY`` option, since
``--batch-size`` is the extraction batch size (the core skips clashing options): set it with
``--set batch_size=N`` or ``--config``.

Seed: ``--seed`` (default 0) is the head's ``ShareLockConfig.seed`` (train/validation split,
initialisation, batch order), seeds the ``--limit`` subset, and is the seed towers load with (it
decides the weights of randomly initialised ones; recorded as ``load_seed``). There is no second
seed in the config; the official reference used 42 (``--seed 42``).

The output folder gets ``sharelock.safetensors`` and ``sharelock.json`` (see
:mod:`harness_sharelock.checkpoint`; ``sharelock:DIR`` loads it), with ``--lightning`` also
``sharelock.ckpt`` in the official Lightning format, and the core's ``harness-train.json`` (config,
seed, the towers' weights and code fingerprints); every file is written atomically.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from harness import TrainContext, TrainModel

#: Keys of the trainer's config that are not ``ShareLockConfig`` fields.
DATA_KEYS = ("vision", "language", "pairs", "split", "pairs_config", "image_column", "text_column", "limit", "lightning")


def config_schema() -> dict[str, Any]:
    """JSON Schema of the trainer's config (see the module docstring)."""
    from .config import field_schemas

    head = field_schemas(exclude=("seed",), defaults=True)
    name = {"type": "string", "minLength": 1}
    properties = {
        "vision": dict(name, description="image tower: a harness model with image_embed (e.g. torchvision:mobilenet_v2)"),
        "language": dict(name, description="text tower: a harness model with text_embed (e.g. lm:all-MiniLM-L6-v2)"),
        "pairs": dict(name, description="image-caption pairs: a task name or YAML, a dataset builder, or a local "
                                        "dataset path"),
        "split": dict(name, default="train", description="split of the pair source (default: train)"),
        "pairs_config": {"type": "object", "default": {},
                         "description": "config of a dataset builder, e.g. '{\"n\": 2000}'"},
        "image_column": dict(name, description="default: the task's image column, else 'image'"),
        "text_column": dict(name, description="default: the task's caption column, else 'caption'"),
        "limit": {"type": "integer", "minimum": 1, "description": "train on a seeded subset of N pairs (--seed)"},
        "lightning": {"type": "boolean", "default": False,
                      "description": "also write sharelock.ckpt in the official Lightning format"},
        **head,
    }
    return {"type": "object", "additionalProperties": False, "required": ["vision", "language", "pairs"],
            "properties": properties}


def head_config(config: Mapping[str, Any], seed: int) -> Any:
    """The ``ShareLockConfig`` of the trainer's config, seeded with the run's ``--seed``."""
    from .config import ShareLockConfig

    known = {f.name for f in fields(ShareLockConfig)}
    values = {key: value for key, value in config.items() if key in known and key != "seed"}
    return ShareLockConfig.from_dict({**values, "seed": seed}, where="harness train sharelock: config")


def describe(tower: TrainModel, seed: int) -> dict[str, Any]:
    """What identifies a tower in checkpoints: name, width, provenance, and the seed it was loaded
    with (randomly initialised towers depend on it)."""
    return {"name": tower.name, "embed_dim": tower.embed_dim, "load_seed": seed, **tower.model.provenance()}


class ShareLockTrainer:
    """The ``sharelock`` trainer (see the module docstring)."""

    def train(self, ctx: TrainContext) -> None:
        from . import checkpoint, lightning
        from .pairs import pair_features
        from .trainer import train

        config = dict(ctx.config)
        head = head_config(config, ctx.seed)
        data = ctx.data(config["pairs"], config["split"], config["pairs_config"])
        image_col = config.get("image_column") or data.columns.get("image", "image")
        text_col = config.get("text_column") or data.columns.get("caption", data.columns.get("text", "caption"))
        if config.get("limit"):
            data = data.subset(config["limit"], ctx.seed)
        vision = ctx.model(config["vision"], "image_embed", role="vision tower")
        language = ctx.model(config["language"], "text_embed", role="language tower")
        images, captions = pair_features(data, image_col, text_col, vision, language, f"--pairs {config['pairs']}")
        if not ctx.compute.main:  # every process extracts its share; the head is trained once
            return
        result = train(head, images, captions, device=ctx.compute.device, bar=ctx.bar)
        meta = {"vision": describe(vision, ctx.seed), "language": describe(language, ctx.seed),
                "pairs": {**data.identity, "image_column": image_col, "text_column": text_col, "n_pairs": len(data)},
                "training": result.summary()}
        files = checkpoint.files(result.model, meta)
        if config["lightning"]:
            files = {checkpoint.WEIGHTS: files[checkpoint.WEIGHTS],
                     "sharelock.ckpt": lightning.dumps(result.model, meta, global_step=result.steps),
                     checkpoint.META: files[checkpoint.META]}  # sharelock.json last: the folder is complete
        summary = {k: v for k, v in result.summary().items() if k != "history"}
        ctx.save(files, {"sharelock": {"pairs": meta["pairs"], "training": summary}})
        loss = f"best validation loss {result.best_val_loss:.4f} at step {result.best_step}" if result.n_val else \
            f"final training loss {result.final_train_loss:.4f}"
        print(f"sharelock: {result.n_train} pairs, {result.steps} steps in {result.seconds:.1f} s, {loss}", file=sys.stderr)
