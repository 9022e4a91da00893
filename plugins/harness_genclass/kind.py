"""Task kind ``generative_classification``: classify images with a generative model.

For every evaluated row the model answers ``params.prompt`` (``{classes}``: the class names joined
with ``class_separator``, in label order) about the row's image, greedily, at most
``max_new_tokens`` tokens, cut at the first ``stop`` string. The answer becomes a class by this rule:

1. **Match.** The answer and every class name are normalised by :func:`normalize`: lower-case,
   every character that is not a letter, digit or space replaced by a space, the words ``a``,
   ``an`` and ``the`` dropped, whitespace collapsed. The answer names class ``c`` when its
   normalised form equals the normalised name of ``c``, or equals it with a trailing ``s`` /
   ``es`` added or removed (English plural tolerance, the only one: "circles" names "circle",
   "boxes" names "box"; "mice" does not name "mouse"). When the answer names exactly one class,
   that is the prediction (``decided = "matched"``).
2. **Rank.** Otherwise (no class, or more than one through plural tolerance) every class is scored
   with the model's log-likelihood of ``continuation.format(c=name)`` after the same prompt and
   image (``ctx.loglikelihood``), and the prediction is the best class by ``params.rank``:
   ``per_token`` (log-likelihood / continuation tokens; the default) or ``sum`` (the raw sum, as
   ``ctx.choose``'s first index). Ties go to the lower class index (``decided = "ranked"``).

Two class names that normalise alike (with plural tolerance) would make rule 1 ambiguous:
:meth:`GenerativeClassification.check` refuses them, with the class names against the labels,
before any model loads.

Outputs per row: ``predictions`` (int64 class index), ``labels`` (int64), ``decided``
(``"matched"`` / ``"ranked"``), ``answers`` (the raw generated text), ``prompts`` and ``details``
(the model's ``Generation.details``, e.g. LENS's module outputs; None where it gives none), all
kept in the records file.
"""

from __future__ import annotations

import re
import string
from typing import Any, Sequence

import numpy as np

from harness import (IMAGE_PLACEHOLDER, GenerationRequest, LoglikelihoodRequest, SpecError, TaskContext,
                     decode_image)

#: Rows whose images are decoded and sent to the model per call.
CHUNK_ROWS = 64
ARTICLES = frozenset({"a", "an", "the"})
_NOT_WORD = re.compile(r"[^0-9a-z\s]")


def normalize(text: str) -> str:
    """Lower-case, non-alphanumerics to spaces, articles dropped, whitespace collapsed."""
    words = _NOT_WORD.sub(" ", str(text).lower()).split()
    return " ".join(w for w in words if w not in ARTICLES)


def variants(name: str) -> set[str]:
    """The normalised forms an answer may take to name ``name``: itself, plus/minus ``s``/``es``."""
    base = normalize(name)
    if not base:
        return set()
    out = {base, base + "s", base + "es"}
    for suffix in ("es", "s"):
        if base.endswith(suffix) and len(base) > len(suffix):
            out.add(base[: -len(suffix)])
    return out


def match(answer: str, names: Sequence[str]) -> int | None:
    """The class the answer names (rule 1 of the module docstring), or None."""
    key = normalize(answer)
    hits = [i for i, name in enumerate(names) if key and key in variants(name)]
    return hits[0] if len(hits) == 1 else None


def best(scores: Sequence[Any], rank: str) -> int:
    """Index of the best log-likelihood (``sum`` or ``per_token``); the lower index wins a tie."""
    values = [s.logprob if rank == "sum" else s.logprob / max(1, s.n_tokens) for s in scores]
    return int(np.argmax(values))


def _objects(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        array[i] = value
    return array


def checked(ctx: TaskContext) -> tuple[list[str], np.ndarray, str]:
    """Class names, evaluated labels and the formatted prompt, checked (one-line errors)."""
    names, labels = ctx.class_labels()
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        forms = variants(name)
        if not forms:
            raise SpecError(f"{ctx.where}: class {i} {name!r} is empty after normalisation (an answer cannot name it)")
        for form in forms:
            if form in seen and seen[form] != i:
                raise SpecError(f"{ctx.where}: classes {seen[form]} {names[seen[form]]!r} and {i} {name!r} normalise "
                                f"alike ({form!r}, plural-tolerant); an answer could not tell them apart")
            seen[form] = i
    template = ctx.params["prompt"]
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    if not fields <= {"classes"}:
        raise SpecError(f"{ctx.where}: params.prompt: unknown field(s) {sorted(fields - {'classes'})}; only "
                        "{classes} is filled")
    if template.count(IMAGE_PLACEHOLDER) > 1:
        raise SpecError(f"{ctx.where}: params.prompt: {IMAGE_PLACEHOLDER} appears more than once")
    prompt = template.format(classes=ctx.params["class_separator"].join(names))
    return names, labels, prompt


class GenerativeClassification:
    """Task kind ``generative_classification`` (see the module docstring)."""

    def check(self, ctx: TaskContext) -> None:
        """Class names (against the labels, distinct after normalisation) and the prompt."""
        checked(ctx)

    def evaluate(self, ctx: TaskContext) -> dict[str, np.ndarray]:
        names, labels, prompt = checked(ctx)
        rank = str(ctx.params["rank"])
        continuations = [ctx.params["continuation"].format(c=name) for name in names]
        settings = {"max_new_tokens": int(ctx.params["max_new_tokens"]), "stop": tuple(ctx.params["stop"]),
                    "temperature": 0.0, "num_beams": 1}
        column = ctx.column("image")
        images = ctx.rows().select_columns([column])
        n = len(labels)
        answers: list[str] = []
        details: list[Any] = []
        predictions = np.zeros(n, dtype=np.int64)
        decided: list[str] = []
        for start in range(0, n, CHUNK_ROWS):
            chunk = [decode_image(value, ctx.where) for value in images[start:min(n, start + CHUNK_ROWS)][column]]
            generations = ctx.generate([GenerationRequest(prompt, (image,), **settings) for image in chunk])
            ranked = []
            for j, generation in enumerate(generations):
                text = generation.text
                for stop in settings["stop"]:  # engines cut at stop strings; cut again for any that do not
                    text = text.split(stop)[0]
                answers.append(generation.text)
                details.append(dict(generation.details) if generation.details is not None else None)
                found = match(text, names)
                if found is None:
                    ranked.append(j)
                    decided.append("ranked")
                else:
                    predictions[start + j] = found
                    decided.append("matched")
            if ranked:
                requests = [LoglikelihoodRequest(prompt, continuation, (chunk[j],))
                            for j in ranked for continuation in continuations]
                scores = ctx.loglikelihood(requests)
                c = len(names)
                for k, j in enumerate(ranked):
                    predictions[start + j] = best(scores[k * c:(k + 1) * c], rank)
        return {"predictions": predictions, "labels": labels, "decided": _objects(decided),
                "answers": _objects(answers), "prompts": _objects([prompt] * n), "details": _objects(details)}
