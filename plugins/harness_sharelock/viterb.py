"""The ``viterb`` task kind: how well a language model's features let vision generalise to unseen classes.

ViTeRB (arXiv 2410.07173) trains a ShareLock head between a frozen image tower and the
frozen language model under test on controlled paired data, then measures zero-shot top-1
accuracy on classes whose names never occurred in training. Here:

1. the model under test is ``--model`` (a text encoder: ``lm:...``, ``hashbow:...``, or any
   encoder with text); the image tower is ``params.vision`` (a harness encoder name), so the
   spec, and its hash, fix the vision side and a leaderboard row is a language model;
2. pairs = rows of ``params.train_split`` whose ``caption`` column mentions no class name
   in ``params.unseen`` (whole words); image features from the vision tower, caption
   features from the model;
3. a head is trained with ``ShareLockConfig`` (reference defaults, overridden by
   ``params.sharelock``) seeded with the run's ``--seed``;
4. the task's split is classified zero-shot: class prototypes are the projected template
   embeddings (each normalised, averaged over templates, renormalised); rows of unseen
   classes among the unseen classes give ``logits``/``labels`` (the main outputs), rows of
   seen classes among the seen classes give ``seen_logits``/``seen_labels``.

The vision tower is loaded with ``ctx.encoder`` (the run's plugins, device, dtype and seed; its
weights fingerprint is recorded in the result's ``auxiliary_models``); its image features go
through the run's feature store under the tower's own key, so every language model after the
first reuses them (and so does ``harness run`` of the tower itself); caption and prompt features
are the model's, cached the same way.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from harness.dataset import subset_indices
from harness.errors import DataError, SpecError
from harness.schema import validate_against
from harness.taskkind import TaskContext, class_names

from .config import ShareLockConfig, config_schema
from .pairs import ClassSplit, clean_rows, unique_texts

log = logging.getLogger(__name__)
DEFAULT_TEMPLATES = ("a photo of a {c}.",)


def params_schema() -> dict[str, Any]:
    """JSON Schema of the kind's ``params`` (``sharelock`` takes any config field but ``seed``)."""
    sharelock = config_schema()
    sharelock["properties"] = {k: v for k, v in sharelock["properties"].items() if k != "seed"}
    return {
        "type": "object", "additionalProperties": False, "required": ["vision", "unseen"],
        "properties": {
            "vision": {"type": "string", "minLength": 1, "description": "harness name of the frozen image tower"},
            "unseen": {"type": "array", "minItems": 2, "uniqueItems": True, "items": {"type": "string", "minLength": 1},
                       "description": "class names held out of training captions; zero-shot is measured on them"},
            "train_split": {"type": "string", "minLength": 1, "default": "train"},
            "train_limit": {"type": "integer", "minimum": 2, "description": "train on a seeded subset of rows"},
            "sharelock": dict(sharelock, description="ShareLockConfig overrides (the head's seed is the run's --seed)"),
        },
    }


def _params(ctx: TaskContext) -> dict[str, Any]:
    params = dict(ctx.spec.params)
    problem = validate_against(params_schema(), params)
    if problem:
        raise SpecError(f"{ctx.spec.file}: params{problem[5:]}" if problem.startswith("<top>")
                        else f"{ctx.spec.file}: params.{problem}")
    if params.get("train_split", "train") == ctx.spec.dataset.split:
        raise SpecError(f"{ctx.spec.file}: params.train_split must differ from the evaluated split")
    return params


def prototypes(head: Any, language: Any, classes: tuple[str, ...], templates: tuple[str, ...], device: str) -> Any:
    """``(C, D)`` class prototypes in the shared space."""
    import torch

    prompts = [t.format(c=c) for c in classes for t in templates]
    with torch.no_grad():
        projected = head.language_projector(torch.as_tensor(unique_texts(language, prompts)).to(device))
        per_prompt = torch.nn.functional.normalize(projected, dim=-1).reshape(len(classes), len(templates), -1)
        return torch.nn.functional.normalize(per_prompt.mean(dim=1), dim=-1)


def _training_pairs(ctx: TaskContext, params: dict[str, Any], split: ClassSplit, vision: Any) -> tuple[np.ndarray, np.ndarray]:
    """(image features, caption features) of the train split's rows that name no unseen class."""
    image_col, caption_col = ctx.column("image"), ctx.column("caption")
    train_split = params.get("train_split", "train")
    where = f"{ctx.where}: train split {train_split!r}"
    pairs = ctx.load_split(train_split)
    if "train_limit" in params:
        pairs = pairs.select(subset_indices(len(pairs), params["train_limit"], ctx.seed))
    for column in (image_col, caption_col):
        if column not in pairs.column_names:
            raise DataError(f"{where}: no column {column!r}; columns are {pairs.column_names}")
    pairs = pairs.select(clean_rows([str(c) for c in pairs[caption_col]], split.unseen))
    if len(pairs) < 2:
        raise DataError(f"{where}: fewer than 2 rows left after removing captions that name unseen classes")
    images = np.asarray(vision.images(pairs, image_col, where=where), dtype=np.float32)
    return images, unique_texts(ctx.features, [str(c) for c in pairs[caption_col]])


class ViTeRB:
    """Task kind ``viterb`` (see the module docstring)."""

    def evaluate(self, ctx: TaskContext) -> dict[str, np.ndarray]:
        import torch

        from .trainer import train

        params = _params(ctx)
        split = ClassSplit.of(class_names(ctx), params["unseen"], str(ctx.spec.file))
        templates = tuple(ctx.spec.prompts.get("templates", DEFAULT_TEMPLATES))
        device = ctx.features.device
        vision = ctx.encoder(params["vision"], "image", role="image tower")
        images, captions = _training_pairs(ctx, params, split, vision)
        config = ShareLockConfig.from_dict({**params.get("sharelock", {}), "seed": ctx.seed},
                                           where=f"{ctx.spec.file}: params.sharelock")
        result = train(config, images, captions, device=device, progress=ctx.features.progress)
        log.info("%s: head trained on %d pairs (%d validation), %d steps in %.1f s", ctx.where, result.n_train,
                 result.n_val, result.steps, result.seconds)
        evaluated = getattr(ctx, "split", None) or ctx.data  # the evaluated rows, with their store identity
        test = np.asarray(vision.images(evaluated, ctx.column("image"), where=ctx.where), dtype=np.float32)
        labels = np.asarray(ctx.data[ctx.column("label")], dtype=np.int64)
        outputs: dict[str, np.ndarray] = {}
        with torch.no_grad():
            projected = result.model.vision_projector(torch.as_tensor(test).to(device))
            for prefix, classes in (("", split.unseen), ("seen_", split.seen)):
                rows, targets = split.select(labels, classes)
                protos = prototypes(result.model, ctx.features, classes, templates, device)
                logits = config.logit_scale * projected[torch.as_tensor(rows, dtype=torch.long)] @ protos.T
                outputs[f"{prefix}logits"] = logits.float().cpu().numpy()
                outputs[f"{prefix}labels"] = targets
        return outputs
