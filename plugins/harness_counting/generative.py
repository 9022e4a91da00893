"""Task kinds ``counting_qa`` and ``identification_qa``: GVTBench's object counting (OC) and
multi-class identification (MCI) protocol for generative models, and any counting or yes/no
question set in the same shape (TallyQA, CountBenchQA, the scenes).

For every evaluated row the kind formats ``params.prompt`` with the row's question (GVTBench: the
question alone), asks the model under test for a greedy answer of at most ``max_new_tokens`` tokens
(32 in GVT) with the row's image, and keeps the first sentence as GVT's ``postprocess`` does
(``params.first_sentence``; see :mod:`harness_counting.parsing`). Nothing is parsed here: the
metrics read the kept text, each with its parser (``count_exact`` strict, ``count_exact_gvt``
GVT's), so ``harness rescore`` can switch parsers from the records alone.

Outputs, all kept in the records: ``prompts`` (the exact prompt, before any chat template),
``responses`` (the raw generated text), ``predictions`` (what is scored: the first sentence, or
the raw text), ``targets`` (``counting_qa``: the true count, int; ``identification_qa``: the
target as written, e.g. ``"Yes."``, since GVT's test is case-sensitive on it), ``n_objects``
(objects in the image, GVTBench's ``n_obj_exist``; -1 when the data has none), and the breakdown
labels ``count_bin`` (``counting_qa``: GVT's bins by true count, ``0-2``, ``3-5``, ...) or
``objects_bin`` (``identification_qa``: ``<10``, ``10-19``, ``>=20`` objects in the image).

Column roles: ``image``, ``question`` and ``answer`` (counting: a non-negative integer or its
digits, e.g. GVTBench's ``"3"``; identification: text whose first word is yes or no); optional
``n_objects`` (mapped, else a column of that name). Requests are sent in chunks of
:data:`CHUNK_ROWS` rows (their images decoded per chunk); answers do not depend on the chunking.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from harness import IMAGE_PLACEHOLDER, DataError, GenerationRequest, SpecError, TaskContext, decode_image

from .parsing import count_bin, first_sentence, objects_bin, yesno_strict

CHUNK_ROWS = 256
_DIGITS = re.compile(r"\s*\d+\s*")


def _objects(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _first_bad(values: list[Any], ok: Any) -> tuple[int, int]:
    bad = [i for i, v in enumerate(values) if not ok(v)]
    return (bad[0], len(bad)) if bad else (-1, 0)


def _as_count(value: Any) -> int | None:
    """A non-negative integer count from an int, a whole float or a string of digits; else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value) if value >= 0 else None
    if isinstance(value, (float, np.floating)):
        return int(value) if np.isfinite(value) and float(value).is_integer() and value >= 0 else None
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    return None


class _QA:
    """What both kinds share; ``counting`` says which one."""

    counting = True

    def _rows(self, ctx: TaskContext) -> dict[str, Any]:
        """The questions, targets and object counts, checked (one-line SpecError/DataError)."""
        prompt = ctx.params["prompt"]
        if prompt.count(IMAGE_PLACEHOLDER) > 1:
            raise SpecError(f"{ctx.where}: params.prompt: {IMAGE_PLACEHOLDER} appears "
                            f"{prompt.count(IMAGE_PLACEHOLDER)} times; a question has one image")
        rows = ctx.rows()
        if len(rows) == 0:
            raise DataError(f"{ctx.where}: split {ctx.split!r} has no rows to evaluate")
        ctx.column("image")
        question_column, answer_column = ctx.column("question"), ctx.column("answer")
        questions, answers = list(rows[question_column]), list(rows[answer_column])
        i, n = _first_bad(questions, lambda q: isinstance(q, str) and q.strip() != "" and IMAGE_PLACEHOLDER not in q)
        if n:
            raise DataError(f"{ctx.where}: column {question_column!r}: row {i} has question {questions[i]!r}, not a "
                            f"non-empty string without {IMAGE_PLACEHOLDER} ({n} such rows)")
        where = f"{ctx.where}: column {answer_column!r}"
        if self.counting:
            i, n = _first_bad(answers, lambda a: _as_count(a) is not None)
            if n:
                raise DataError(f"{where}: row {i} has count {answers[i]!r}, not a non-negative integer "
                                f"({n} such rows)")
            targets: Any = np.asarray([_as_count(a) for a in answers], dtype=np.int64)
        else:
            i, n = _first_bad(answers, lambda a: isinstance(a, str) and yesno_strict(a) is not None)
            if n:
                raise DataError(f"{where}: row {i} has answer {answers[i]!r}, not yes or no ({n} such rows)")
            targets = _objects([str(a) for a in answers])
        column = ctx.columns.get("n_objects") or ("n_objects" if "n_objects" in rows.column_names else None)
        if column is None:
            n_objects = np.full(len(rows), -1, dtype=np.int64)
        else:
            values = list(rows[column])
            i, n = _first_bad(values, lambda v: _as_count(v) is not None and not isinstance(v, str))
            if n:
                raise DataError(f"{ctx.where}: column {column!r}: row {i} has {values[i]!r} objects, not a "
                                f"non-negative integer ({n} such rows)")
            n_objects = np.asarray([int(v) for v in values], dtype=np.int64)
        return {"questions": questions, "targets": targets, "n_objects": n_objects}

    def check(self, ctx: TaskContext) -> None:
        """Questions, targets, object counts and the prompt, before any model loads."""
        self._rows(ctx)

    def evaluate(self, ctx: TaskContext) -> dict[str, np.ndarray]:
        data = self._rows(ctx)
        params = ctx.params
        prompts = [params["prompt"].format(question=q) for q in data["questions"]]
        settings = {"max_new_tokens": int(params["max_new_tokens"]), "stop": tuple(params["stop"]),
                    "temperature": 0.0, "num_beams": 1}
        column = ctx.column("image")
        images = ctx.rows().select_columns([column])
        responses: list[str] = []
        for start in range(0, len(prompts), CHUNK_ROWS):
            stop = min(len(prompts), start + CHUNK_ROWS)
            chunk = [decode_image(value, ctx.where) for value in images[start:stop][column]]
            requests = [GenerationRequest(p, (image,), **settings) for p, image in zip(prompts[start:stop], chunk)]
            responses += [generation.text for generation in ctx.generate(requests)]
        predictions = [first_sentence(r) for r in responses] if params["first_sentence"] else list(responses)
        out = {"prompts": _objects(prompts), "responses": _objects(responses), "predictions": _objects(predictions),
               "targets": data["targets"], "n_objects": data["n_objects"]}
        if self.counting:
            out["count_bin"] = _objects([count_bin(t) for t in data["targets"]])
        else:
            out["objects_bin"] = _objects([objects_bin(n) for n in data["n_objects"]])
        return out


class CountingQA(_QA):
    """Task kind ``counting_qa`` (see the module docstring)."""

    counting = True


class IdentificationQA(_QA):
    """Task kind ``identification_qa`` (see the module docstring)."""

    counting = False
