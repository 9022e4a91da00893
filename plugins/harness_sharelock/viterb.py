"""The ``viterb`` task kind: how well a language model's features let vision generalise to unseen classes.

ViTeRB (arXiv 2410.07173) trains a ShareLock head between a frozen image tower and the
frozen language model under test on controlled paired data, then measures zero-shot top-1
accuracy on classes whose names never occurred in training. Here:

1. the model under test is ``--model`` (any model with ``text_embed``: ``lm:...``, ``hashbow:...``,
   a CLIP model); the image tower is ``params.vision`` (a harness model name with ``image_embed``),
   so the spec, and its hash, fix the vision side and a leaderboard row is a language model;
2. pairs = rows of ``params.train_split`` (optionally a seeded subset of ``params.train_limit``)
   whose ``caption`` column mentions no class name in ``params.unseen`` (whole words); image
   features from the vision tower, caption features from the model;
3. a head is trained with ``ShareLockConfig`` (reference defaults, overridden by
   ``params.sharelock``) seeded with the run's ``--seed``, once (on the main process under
   torchrun: ``ctx.compute.once``);
4. the task's rows are classified zero-shot: class prototypes are the projected embeddings of
   ``params.templates`` (each normalised, averaged over templates, renormalised), class names
   ``params.classnames`` or the label column's names. Every evaluated row gets ``logits`` over the
   unseen classes and ``seen_logits`` over the seen ones; ``labels`` is the row's index among the
   unseen classes (-1 for rows of seen classes) and ``seen_labels`` its index among the seen classes
   (-1 for rows of unseen classes), so ``accuracy_per_sample`` scores each side on its own rows
   (metrics ``unseen_accuracy`` and ``seen_accuracy``).

The vision tower is loaded with ``ctx.model`` (the run's plugins, device, dtype and seed; its
weights fingerprint is recorded in the result's ``auxiliary_models``); its image features go
through the run's feature store under the tower's own key, so every language model after the
first reuses them (and so does ``harness run`` of the tower itself); caption and prompt features
are the model's, cached the same way.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from harness import DataError, SpecError, TaskContext, subset_indices

from .config import ShareLockConfig, config_schema
from .pairs import ClassSplit, clean_rows, unique_texts

log = logging.getLogger(__name__)
DEFAULT_TEMPLATES = ("a photo of a {c}.",)
#: Output prefix -> which classes it scores.
SIDES = ("", "seen_")


def params_schema() -> dict[str, Any]:
    """JSON Schema of the kind's ``params`` (``sharelock`` takes any config field but ``seed``)."""
    names = {"type": "array", "minItems": 2, "uniqueItems": True, "items": {"type": "string", "minLength": 1}}
    return {
        "type": "object", "additionalProperties": False, "required": ["vision", "unseen"],
        "properties": {
            "vision": {"type": "string", "minLength": 1, "description": "harness name of the frozen image tower"},
            "unseen": dict(names, description="class names held out of training captions; zero-shot is measured on them"),
            "train_split": {"type": "string", "minLength": 1, "default": "train",
                            "description": "split the head trains on (not the evaluated one)"},
            "train_limit": {"type": "integer", "minimum": 2, "description": "train on a seeded subset of rows"},
            "templates": {"type": "array", "minItems": 1, "items": {"type": "string", "x-template": ["c"]},
                          "default": list(DEFAULT_TEMPLATES),
                          "description": "prompt templates of the class prototypes ({c}: the class name)"},
            "classnames": dict(names, description="class names in label order (default: the label column's names)"),
            "sharelock": dict(config_schema(), description="ShareLockConfig overrides (the head's seed is the run's --seed)"),
        },
    }


def _training_pairs(ctx: TaskContext, params: dict[str, Any], split: ClassSplit, vision: Any) -> tuple[np.ndarray, np.ndarray]:
    """(image features, caption features) of the train split's rows that name no unseen class."""
    image_col, caption_col = ctx.column("image"), ctx.column("caption")
    train_split = params["train_split"]
    rows = ctx.rows(train_split)
    index = np.arange(len(rows), dtype=np.int64)
    if "train_limit" in params:
        index = subset_indices(len(rows), params["train_limit"], ctx.seed)
    column = rows[caption_col]
    captions = [str(column[i]) for i in index]
    keep = clean_rows(captions, split.unseen)
    if len(keep) < 2:
        raise DataError(f"{ctx.where}: train split {train_split!r}: fewer than 2 rows left after removing captions "
                        "that name unseen classes")
    images = np.asarray(vision.images(image_col, train_split, rows=index[keep]), dtype=np.float32)
    return images, unique_texts(ctx, [captions[i] for i in keep])


def prototypes(head: Any, prompts: np.ndarray, n_classes: int, n_templates: int, device: str) -> Any:
    """``(C, D)`` class prototypes in the shared space from ``(C * T, Dl)`` prompt features (class-major)."""
    import torch

    with torch.no_grad():
        projected = head.language_projector(torch.as_tensor(prompts).to(device))
        per_prompt = torch.nn.functional.normalize(projected, dim=-1).reshape(n_classes, n_templates, -1)
        return torch.nn.functional.normalize(per_prompt.mean(dim=1), dim=-1)


def fit_and_classify(config: ShareLockConfig, pairs: tuple[np.ndarray, np.ndarray], test: np.ndarray,
                     labels: np.ndarray, split: ClassSplit, prompts: dict[str, np.ndarray], n_templates: int,
                     device: str, bar: Callable[..., Any] | None = None, where: str = "viterb") -> dict[str, np.ndarray]:
    """Train the head on ``pairs`` and classify the ``test`` image features zero-shot (the outputs of
    :class:`ViTeRB`, see the module docstring)."""
    import torch

    from .trainer import train

    result = train(config, *pairs, device=device, bar=bar)
    log.info("%s: head trained on %d pairs (%d validation), %d steps in %.1f s", where, result.n_train,
             result.n_val, result.steps, result.seconds)
    outputs: dict[str, np.ndarray] = {}
    with torch.no_grad():
        projected = result.model.vision_projector(torch.as_tensor(test).to(device))
        for prefix, classes in zip(SIDES, (split.unseen, split.seen)):
            rows, targets = split.select(labels, classes)
            protos = prototypes(result.model, prompts[prefix], len(classes), n_templates, device)
            outputs[f"{prefix}logits"] = (config.logit_scale * projected @ protos.T).float().cpu().numpy()
            side = np.full(len(labels), -1, dtype=np.int64)
            side[rows] = targets
            outputs[f"{prefix}labels"] = side
    return outputs


class ViTeRB:
    """Task kind ``viterb`` (see the module docstring)."""

    def evaluate(self, ctx: TaskContext) -> dict[str, np.ndarray]:
        params = dict(ctx.params)
        if params["train_split"] == ctx.split:
            raise SpecError(f"{ctx.where}: params.train_split: {ctx.split!r} is the evaluated split; the head must "
                            "be trained on a different split")
        split = ClassSplit.of(ctx.class_names(), params["unseen"], ctx.where)
        templates = tuple(params["templates"])
        config = ShareLockConfig.from_dict({**params.get("sharelock", {}), "seed": ctx.seed},
                                           where=f"{ctx.where}: params.sharelock")
        # every process extracts (the core shares the work); only the main one trains
        vision = ctx.model(params["vision"], "image_embed", role="image tower")
        pairs = _training_pairs(ctx, params, split, vision)
        test = np.asarray(vision.images(ctx.column("image")), dtype=np.float32)
        labels = ctx.labels("label", n_classes=len(split.names))
        prompts = {prefix: unique_texts(ctx, [t.format(c=c) for c in classes for t in templates])
                   for prefix, classes in zip(SIDES, (split.unseen, split.seen))}
        device = ctx.compute.device
        return ctx.compute.once(lambda: fit_and_classify(config, pairs, test, labels, split, prompts, len(templates),
                                                         device, ctx.bar, ctx.where))
