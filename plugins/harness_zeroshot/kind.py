"""Zero-shot classification, as LAION CLIP_benchmark computes it, or as GRAIN does.

For each class, every template is formatted with the class name and encoded; each
prompt embedding is L2-normalised, the prompts are averaged, and the mean is
renormalised (``zero_shot_classifier``). Image embeddings are L2-normalised and
``logits = logit_scale * image @ W`` with ``logit_scale`` 100 by default.

GRAIN's protocol (``evaluate.py`` of arXiv 2412.04429, ``--use_desc``), through params:

* ``descriptors`` ({classname: [descriptor, ...]}, Menon & Vondrick's format): each class's texts
  are ``template.format(c) + descriptor_sentence(d)`` for every descriptor ``d`` and every template
  (descriptor-major, as the reference orders them). The JSON's key order must equal the class
  order (checked in :meth:`ZeroShotClassification.check`, before any model loads).
* ``grain_slash_rule: true``: a class name with ``/`` prompted without descriptors is split as
  GRAIN's ``evaluate.py`` does (``'.../<group>/<name>'``): every template is formatted with
  ``<name>`` and ``" of a <group>"`` is appended (see :func:`slash_texts`).
* ``renormalize: false``: the prototype is the mean of the normalised text embeddings, **not**
  renormalised, as GRAIN does (classes whose texts agree more get longer prototypes, which can
  change the argmax). ``true`` (the default) is CLIP_benchmark's rule.
* ``preprocess: grain``: images squash-resized to 224x224 (bicubic, no crop) and normalised with
  ImageNet mean/std, as GRAIN's ``_transform``, whatever the model (harness's named preprocessing;
  features cached apart from the model's own). ``model`` (the default) is CLIP_benchmark's rule.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from harness import SpecError, TaskContext

#: Descriptors starting with these words get " which " (GRAIN / Menon & Vondrick).
WHICH_WORDS = ("has", "often", "typically", "may", "can")


def descriptor_sentence(descriptor: str) -> str:
    """GRAIN's ``make_descriptor_sentence`` with its leading space: ``" which is "`` when the
    descriptor starts with the letter ``a`` (so "antlers" too: a prefix test, not a word test) or with
    ``used``; ``" which "`` when it starts with has/often/typically/may/can; else ``" which has "``.
    Case-sensitive, as the reference (``str.startswith``)."""
    if descriptor.startswith("a") or descriptor.startswith("used"):
        return f" which is {descriptor}"
    if descriptor.startswith(WHICH_WORDS):
        return f" which {descriptor}"
    return f" which has {descriptor}"


def normalize(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows (float64 for stable sums)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(min=1e-12)


def class_prototypes(text_embeddings: np.ndarray, n_classes: int, n_templates: int) -> np.ndarray:
    """``(C, D)`` prototypes from ``(C * T, D)`` prompt embeddings grouped by class (renormalised)."""
    per_prompt = normalize(text_embeddings).reshape(n_classes, n_templates, -1)
    return normalize(per_prompt.mean(axis=1))


def grouped_prototypes(text_embeddings: np.ndarray, counts: Sequence[int], renormalize: bool = True) -> np.ndarray:
    """``(C, D)`` prototypes from prompt embeddings laid out class by class, ``counts[c]`` rows for
    class ``c``: the mean of the L2-normalised rows, renormalised only if ``renormalize``."""
    per_prompt = normalize(text_embeddings)
    ends = np.cumsum(counts)
    means = np.stack([per_prompt[end - n:end].mean(axis=0) for n, end in zip(counts, ends)])
    return normalize(means) if renormalize else means


def slash_texts(name: str, templates: Sequence[str]) -> list[str]:
    """GRAIN's prompts for a class name containing ``/`` (``evaluate.py`` without descriptions): the
    name splits on ``/``; the last part is the class, the one before it the group, and each text is
    ``template.format(class) + " of a " + group`` (so ``"a/abbey"``-style SUN and Places names, whose
    one-letter group is an index letter, and ``"bakery/shop"``, give ``"... shop, of a bakery"``).
    A group of one character (or none: a leading ``/``) adds nothing and the texts are the templates
    with the last part -- the reference leaves that case undefined (it reuses the previous class's
    templates, or fails on the first class)."""
    parts = name.split("/")
    group, last = parts[-2], parts[-1]
    suffix = f" of a {group}" if len(group) > 1 else ""
    return [t.format(c=last) + suffix for t in templates]


def class_texts(names: Sequence[str], templates: Sequence[str],
                descriptors: Mapping[str, Sequence[str]] | None,
                slash_rule: bool = False) -> tuple[list[str], list[int]]:
    """Every prompt, class by class, and the number per class. Without descriptors: each template
    with the class name (with ``slash_rule``, a name containing ``/`` as :func:`slash_texts`). With
    them (GRAIN): ``[t.format(c) + descriptor_sentence(d) for d in descs for t in templates]``, the
    full name in the template; a class with an empty descriptor list falls back to the bare templates."""
    texts: list[str] = []
    counts: list[int] = []
    for name in names:
        descs = list(descriptors.get(name, ())) if descriptors is not None else []
        if descs:
            mine = [t.format(c=name) + descriptor_sentence(d) for d in descs for t in templates]
        elif slash_rule and "/" in name:
            mine = slash_texts(name, templates)
        else:
            mine = [t.format(c=name) for t in templates]
        texts += mine
        counts.append(len(mine))
    return texts, counts


def checked_descriptors(ctx: TaskContext, names: Sequence[str]) -> Mapping[str, Sequence[str]] | None:
    """``params.descriptors`` checked against the class names: same classes, same order (the JSON's
    key order is the class order, as in GRAIN). A mismatch is one line naming the first difference."""
    descriptors = ctx.params.get("descriptors")
    if descriptors is None:
        return None
    keys = list(descriptors)
    for i, (key, name) in enumerate(zip(keys, names)):
        if key != name:
            where = "in another position" if key in names else "not a class of the dataset"
            raise SpecError(f"{ctx.where}: params.descriptors: class {i} is {key!r} ({where}) but the dataset's "
                            f"class {i} is {name!r}; the descriptor keys must be the class names in label order")
    if len(keys) != len(names):
        if len(keys) < len(names):
            raise SpecError(f"{ctx.where}: params.descriptors: {len(keys)} classes, the dataset has {len(names)}; "
                            f"first missing: class {len(keys)} {names[len(keys)]!r}")
        raise SpecError(f"{ctx.where}: params.descriptors: {len(keys)} classes, the dataset has {len(names)}; "
                        f"first extra: {keys[len(names)]!r}")
    return descriptors


class ZeroShotClassification:
    """Task kind ``zeroshot_classification``: returns ``logits (N, C)`` and ``labels (N,)``."""

    def check(self, ctx: TaskContext) -> None:
        """Class names against labels, and descriptors against class names, before any model loads."""
        names, _ = ctx.class_labels()
        checked_descriptors(ctx, names)

    def evaluate(self, ctx: TaskContext) -> dict[str, Any]:
        names, labels = ctx.class_labels()
        descriptors = checked_descriptors(ctx, names)
        texts, counts = class_texts(names, list(ctx.params["templates"]), descriptors,
                                    bool(ctx.params.get("grain_slash_rule", False)))
        prototypes = grouped_prototypes(ctx.texts(texts), counts, bool(ctx.params.get("renormalize", True)))
        images = normalize(ctx.images(ctx.column("image"), preprocess=ctx.params.get("preprocess")))
        scale = float(ctx.params["logit_scale"])
        return {"logits": (scale * images @ prototypes.T).astype(np.float32), "labels": labels}
