"""Task kind ``vqa``: open-ended visual question answering with a generative model.

For every evaluated row the kind formats the spec's ``prompt`` template with the row's question
(``{question}``), asks the model under test for a greedy answer of at most ``max_new_tokens``
tokens with the row's image (``ctx.generate``: batched, cached and distributed by the core), and
returns per-sample outputs:

- ``predictions``: the raw model text (object array of str; scoring normalises, never the kind);
- ``answers``: each question's human answers (object array of lists of str), or None per row when
  the data has no annotations (a test split: the metrics are then undefined, stored as null);
- ``question_ids`` (int64; -1 when the data has no question ids), ``answer_type`` and
  ``question_type`` (object arrays of str; ``"unknown"`` when the data has none);
- ``prompts``: the exact prompt each request carried (before any chat template of the model);
- ``details``: the model's ``Generation.details`` per row (a dict of JSON values, e.g. a composite
  model's intermediate outputs such as LENS's tags and captions), or None where it gave none.

Column roles: ``image`` and ``question`` must be mapped; ``answers``, ``question_id``,
``answer_type`` and ``question_type`` are used when mapped, else when the dataset has a column of
exactly that name, else left out as above.

Requests carry decoded images, so the rows are sent to ``ctx.generate`` in chunks of
:data:`CHUNK_ROWS` (a whole VQAv2 split decoded at once would not fit in memory); the engine
batches and caches within each call, and the answers do not depend on the chunking.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import numpy as np

from harness import IMAGE_PLACEHOLDER, DataError, GenerationRequest, SpecError, TaskContext, decode_image

from .params import DEFAULT_MAX_NEW_TOKENS, DEFAULT_PROMPT, PARAMS_SCHEMA  # noqa: F401 (re-exported)

#: Rows sent to ``ctx.generate`` per call (their images are decoded for the call).
CHUNK_ROWS = 256
OPTIONAL_ROLES = ("answers", "question_id", "answer_type", "question_type")
UNKNOWN = "unknown"


def role_column(ctx: TaskContext, role: str) -> str | None:
    """The column of an optional role: the one the spec maps, else the column named like the role,
    else None."""
    if role in ctx.columns:
        return ctx.columns[role]
    return role if role in ctx.rows().column_names else None


def _first_bad(values: list[Any], ok: Any) -> tuple[int, int]:
    """(position of the first value failing ``ok``, how many fail), or (-1, 0)."""
    bad = [i for i, v in enumerate(values) if not ok(v)]
    return (bad[0], len(bad)) if bad else (-1, 0)


def checked_rows(ctx: TaskContext) -> dict[str, Any]:
    """The columns the kind reads, checked (one-line SpecError/DataError), as Python lists."""
    prompt = ctx.params["prompt"]
    if prompt.count(IMAGE_PLACEHOLDER) > 1:
        raise SpecError(f"{ctx.where}: params.prompt: {IMAGE_PLACEHOLDER} appears "
                        f"{prompt.count(IMAGE_PLACEHOLDER)} times; a question has one image")
    rows = ctx.rows()
    if len(rows) == 0:
        raise DataError(f"{ctx.where}: split {ctx.split!r} has no rows to evaluate")
    columns = {role: role_column(ctx, role) for role in OPTIONAL_ROLES}
    found = {role: list(rows[column]) for role, column in columns.items() if column is not None}
    question_column = ctx.column("question")
    questions = list(rows[question_column])
    ids = found.get("question_id")

    def name(i: int) -> str:
        return f"question_id {ids[i]}" if ids is not None else f"row {i}"

    where = f"{ctx.where}: column {question_column!r}"
    i, count = _first_bad(questions, lambda q: isinstance(q, str) and q.strip() != "")
    if count:
        raise DataError(f"{where}: {name(i)} has question {questions[i]!r}, not a non-empty string "
                        f"({count} such rows)")
    i, count = _first_bad(questions, lambda q: IMAGE_PLACEHOLDER not in q)
    if count:
        raise DataError(f"{where}: {name(i)}: the question contains the image placeholder {IMAGE_PLACEHOLDER} "
                        f"({count} such rows)")
    if ids is not None:
        where = f"{ctx.where}: column {columns['question_id']!r}"
        i, count = _first_bad(ids, lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool))
        if count:
            raise DataError(f"{where}: question id {ids[i]!r} in row {i} is not an integer ({count} such rows)")
        repeated = [v for v, n in Counter(ids).items() if n > 1]
        if repeated:
            raise DataError(f"{where}: question id {repeated[0]} appears more than once "
                            f"({len(repeated)} repeated ids); question ids must be unique")
    if "answers" in found:
        answers = found["answers"]
        where = f"{ctx.where}: column {columns['answers']!r}"
        i, count = _first_bad(answers, lambda a: isinstance(a, (list, tuple)))
        if count:
            raise DataError(f"{where}: {name(i)}: answers must be a list of strings, got "
                            f"{type(answers[i]).__name__} ({count} such rows)")
        i, count = _first_bad(answers, lambda a: len(a) > 0)
        if count:
            raise DataError(f"{where}: {name(i)} has an empty answer list ({count} such questions); every "
                            "question needs its human answers")
        i, count = _first_bad(answers, lambda a: all(isinstance(x, str) for x in a))
        if count:
            raise DataError(f"{where}: {name(i)}: answers must be strings, got {answers[i]!r} ({count} such rows)")
        i, count = _first_bad(answers, lambda a: len(a) > 1)
        if count:
            warnings.warn(f"{ctx.where}: {name(i)} has a single human answer ({count} such questions): "
                          "leave-one-out VQA accuracy is always 0 there", stacklevel=2)
    for role in ("answer_type", "question_type"):
        if role in found:
            i, count = _first_bad(found[role], lambda v: isinstance(v, str))
            if count:
                raise DataError(f"{ctx.where}: column {columns[role]!r}: {name(i)}: {found[role][i]!r} is not a "
                                f"string ({count} such rows)")
    return {"questions": questions, **found}


def _objects(values: list[Any]) -> np.ndarray:
    """A 1-D object array holding ``values`` as they are (lists stay lists)."""
    array = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        array[i] = value
    return array


class VQA:
    """Task kind ``vqa`` (see the module docstring)."""

    def check(self, ctx: TaskContext) -> None:
        """Questions, answers (none empty), question ids (unique integers), types and the prompt,
        before any model loads."""
        checked_rows(ctx)

    def evaluate(self, ctx: TaskContext) -> dict[str, np.ndarray]:
        data = checked_rows(ctx)
        n = len(data["questions"])
        template = ctx.params["prompt"]
        prompts = [template.format(question=question) for question in data["questions"]]
        settings = {"max_new_tokens": int(ctx.params["max_new_tokens"]), "stop": tuple(ctx.params["stop"]),
                    "temperature": 0.0, "num_beams": 1}
        images = ctx.rows().select_columns([ctx.column("image")])
        column = ctx.column("image")
        predictions: list[str] = []
        details: list[Any] = []
        for start in range(0, n, CHUNK_ROWS):
            stop = min(n, start + CHUNK_ROWS)
            chunk = [decode_image(value, ctx.where) for value in images[start:stop][column]]
            requests = [GenerationRequest(prompt, (image,), **settings)
                        for prompt, image in zip(prompts[start:stop], chunk)]
            generations = ctx.generate(requests)
            predictions += [generation.text for generation in generations]
            details += [dict(g.details) if g.details is not None else None for g in generations]
        answers = data.get("answers")
        return {
            "predictions": _objects(predictions),
            "answers": _objects([list(a) for a in answers] if answers is not None else [None] * n),
            "question_ids": np.asarray(data["question_id"] if "question_id" in data else [-1] * n, dtype=np.int64),
            "answer_type": _objects(data.get("answer_type", [UNKNOWN] * n)),
            "question_type": _objects(data.get("question_type", [UNKNOWN] * n)),
            "prompts": _objects(prompts),
            "details": _objects(details),
        }
