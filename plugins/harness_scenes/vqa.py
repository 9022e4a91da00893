"""``scenes_vqa``: visual questions about the procedural scenes, each with ten simulated human
answers that disagree the way VQA annotators do. Deterministic from the config; offline.

Registered as the dataset builder ``scenes_vqa``::

    dataset: {builder: scenes_vqa, config: {n: 200, max_objects: 4, seed: 0}, split: test}

Config: every key of the ``scenes`` builder (``n`` is the number of questions: one per scene),
with ``max_objects`` defaulting to 4 (at least ``min_objects``) so that counts vary.

One question per scene, of four families (question ``i`` depends only on the config without
``n``, the split and ``i``; a family that the scene cannot ask unambiguously gives way to the next):

=========  ==============================  ==================  ===========  ==============
family     question                        question_type       answer_type  answer
=========  ==============================  ==================  ===========  ==============
colour     What color is the star?         what color is the   other        ``red``
shape      What shape is the red object?   what shape is the   other        ``star``
count      How many stars are there?       how many            number       ``2``, ``0``
presence   Is there an orange star?        is there a          yes/no       ``yes``, ``no``
=========  ==============================  ==================  ===========  ==============

The colour question names a shape that occurs once; the shape question a colour that occurs once;
a quarter of the count questions ask about an absent shape (answer ``0``); half of the presence
questions ask about a colour-shape pair that is not there but whose shape is (a near miss).

Ten answers per question: 3 to 10 annotators (mostly 7 to 10) give the true answer, sometimes in
another surface form that the VQA normalisation maps back (``Red``, ``red.``, ``a star``, ``two``,
``none`` for 0, ``Yes``); the others give a near miss (a neighbouring colour or ``grey``/``gray``
for white, a similar shape or a synonym like ``round`` or ``plus``, a count off by one, the
opposite yes/no). The answers are shuffled.

Columns: ``id`` (``scenes-vqa-v1-<8 hex>-<split>-<index:06d>``), ``scene_id`` (the scenes row),
``image`` (PNG), ``question``, ``question_id`` (int64: the index), ``answers`` (10 str),
``answer_type``, ``question_type``, ``multiple_choice_answer`` (the most frequent answer, ties to
the true one), ``true_answer`` (the canonical truth). ``dataset._fingerprint`` is sha256 of this
builder's version and the scenes split's fingerprint.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .builder import build as build_scenes
from .config import digest, parse, with_max_objects
from .scene import pick
from .vocabulary import NUMBER_WORDS, article, plural

if TYPE_CHECKING:
    import datasets

    from harness import ExecutionConfig

VERSION = "1"
N_ANSWERS = 10
DEFAULT_MAX_OBJECTS = 4
FAMILIES = ("colour", "shape", "count", "presence")
FAMILY_WEIGHTS = (0.25, 0.2, 0.3, 0.25)
#: How many of the ten annotators give the true answer, and how likely each count is.
TRUE_COUNTS = (10, 9, 8, 7, 6, 5, 4, 3)
TRUE_WEIGHTS = (0.30, 0.22, 0.16, 0.12, 0.08, 0.05, 0.04, 0.03)
#: Chance that a correct annotator writes another surface form of the true answer.
VARIANT_P = 0.15

COLOR_MISSES: dict[str, tuple[str, ...]] = {
    "red": ("orange", "pink", "dark red"), "green": ("dark green", "lime", "teal"),
    "blue": ("dark blue", "purple", "navy"), "yellow": ("orange", "gold", "light yellow"),
    "purple": ("violet", "blue", "pink"), "orange": ("red", "yellow", "brown"),
    "white": ("gray", "grey", "silver"), "black": ("dark gray", "grey", "gray"),
    "pink": ("red", "purple", "magenta"), "brown": ("orange", "dark brown", "red"),
}
SHAPE_MISSES: dict[str, tuple[str, ...]] = {
    "circle": ("round", "oval", "ball"), "square": ("rectangle", "box", "diamond"),
    "triangle": ("pyramid", "arrow", "star"), "diamond": ("square", "rhombus", "kite"),
    "pentagon": ("hexagon", "house", "circle"), "hexagon": ("pentagon", "octagon", "circle"),
    "star": ("starfish", "flower", "triangle"), "cross": ("plus", "x", "plus sign"),
    "heart": ("love", "circle", "leaf"),
}


def _question(rng: np.random.Generator, objects: list[dict[str, Any]], shapes: tuple[str, ...],
              colors: tuple[str, ...]) -> dict[str, str]:
    """The family, question, types and canonical answer of one scene."""
    shape_count = Counter(o["shape"] for o in objects)
    color_count = Counter(o["color"] for o in objects)
    pairs = {(o["color"], o["shape"]) for o in objects}
    first = int(rng.choice(len(FAMILIES), p=FAMILY_WEIGHTS))
    for family in FAMILIES[first:] + FAMILIES[:first]:
        if family == "colour":
            single = [o for o in objects if shape_count[o["shape"]] == 1]
            if single:
                obj = pick(rng, single)
                return {"family": family, "question": f"What color is the {obj['shape']}?",
                        "question_type": "what color is the", "answer_type": "other", "answer": obj["color"]}
        elif family == "shape":
            single = [o for o in objects if color_count[o["color"]] == 1]
            if single:
                obj = pick(rng, single)
                return {"family": family, "question": f"What shape is the {obj['color']} object?",
                        "question_type": "what shape is the", "answer_type": "other", "answer": obj["shape"]}
        elif family == "count":
            absent = [s for s in shapes if s not in shape_count]
            shape = pick(rng, absent) if absent and rng.random() < 0.25 else pick(rng, sorted(shape_count))
            return {"family": family, "question": f"How many {plural(shape)} are there?",
                    "question_type": "how many", "answer_type": "number", "answer": str(shape_count[shape])}
        else:
            if rng.random() < 0.5:
                color, shape = pick(rng, sorted(pairs))
                answer = "yes"
            else:
                shape = pick(rng, sorted(shape_count))
                others = [c for c in colors if (c, shape) not in pairs]
                if not others:
                    continue
                color, answer = pick(rng, others), "no"
            return {"family": family, "question": f"Is there {article(color)} {color} {shape}?",
                    "question_type": "is there a", "answer_type": "yes/no", "answer": answer}
    raise AssertionError("unreachable: a count question can always be asked")


def _variant(family: str, answer: str, rng: np.random.Generator) -> str:
    """Another surface form of the true answer, which VQA normalisation maps back to it."""
    if family == "count":
        count = int(answer)
        if count == 0:
            return pick(rng, ("none", "zero"))
        return NUMBER_WORDS[count] if count <= 10 else answer
    if family == "shape":
        return pick(rng, (f"a {answer}", answer.capitalize(), f"{answer}."))
    return pick(rng, (answer.capitalize(), f"{answer}."))


def _miss(family: str, answer: str, rng: np.random.Generator) -> str:
    """A near miss: a plausible wrong answer."""
    if family == "colour":
        return pick(rng, COLOR_MISSES.get(answer, ("gray",)))
    if family == "shape":
        return pick(rng, SHAPE_MISSES.get(answer, ("circle",)))
    if family == "count":
        count = int(answer)
        options = [str(count + 1)] + ([str(count - 1)] if count > 0 else ["no"]) + (["many"] if count > 3 else [])
        return pick(rng, options)
    return "no" if answer == "yes" else "yes"


def answers_for(family: str, answer: str, rng: np.random.Generator) -> list[str]:
    """Ten shuffled human answers to a question whose canonical answer is ``answer``."""
    correct = int(rng.choice(TRUE_COUNTS, p=TRUE_WEIGHTS))
    out = [(_variant(family, answer, rng) if rng.random() < VARIANT_P else answer) for _ in range(correct)]
    out += [_miss(family, answer, rng) for _ in range(N_ANSWERS - correct)]
    return [out[i] for i in rng.permutation(N_ANSWERS)]


def _most_common(answers: list[str], truth: str) -> str:
    counts = Counter(answers)
    best = max(counts.values())
    tied = sorted(a for a, n in counts.items() if n == best)
    return truth if truth in tied else tied[0]


def build(config: Mapping[str, Any] | None, split: str, execution: ExecutionConfig | None = None) -> datasets.Dataset:
    """The questions of ``split`` (see the module docstring); the scenes come from the ``scenes``
    builder (and its cache). Raises ``ValueError`` (one line) for a bad config or split."""
    import datasets

    config = with_max_objects(config or {}, DEFAULT_MAX_OBJECTS)
    cfg = parse(config, split)
    scenes = build_scenes(config, split, execution)
    raw = scenes.cast_column("image", datasets.Image(decode=False))
    key = digest({"version": VERSION, "config": cfg.canonical(with_n=False)})[:8]
    columns: dict[str, list[Any]] = {name: [] for name in (
        "id", "scene_id", "image", "question", "question_id", "answers", "answer_type", "question_type",
        "multiple_choice_answer", "true_answer")}
    for index, (scene_id, image, objects) in enumerate(zip(raw["id"], raw["image"], raw["objects"])):
        rng = np.random.default_rng([cfg.split_seed, 7, index])
        q = _question(rng, objects, cfg.shapes, cfg.colors)
        answers = answers_for(q["family"], q["answer"], rng)
        columns["id"].append(f"scenes-vqa-v{VERSION}-{key}-{split}-{index:06d}")
        columns["scene_id"].append(scene_id)
        columns["image"].append({"bytes": image["bytes"], "path": None})
        columns["question"].append(q["question"])
        columns["question_id"].append(index)
        columns["answers"].append(answers)
        columns["answer_type"].append(q["answer_type"])
        columns["question_type"].append(q["question_type"])
        columns["multiple_choice_answer"].append(_most_common(answers, q["answer"]))
        columns["true_answer"].append(q["answer"])
    string = datasets.Value("string")
    features = datasets.Features({
        "id": string, "scene_id": string, "image": datasets.Image(), "question": string,
        "question_id": datasets.Value("int64"), "answers": datasets.List(string, length=N_ANSWERS),
        "answer_type": string, "question_type": string, "multiple_choice_answer": string, "true_answer": string,
    })
    info = datasets.DatasetInfo(features=features, dataset_name="scenes_vqa",
                                description=f"scenes VQA v{VERSION}, split {split}: {json.dumps(cfg.canonical())}")
    data = datasets.Dataset.from_dict(columns, features=features, info=info, split=split)
    data._fingerprint = digest({"version": VERSION, "scenes": cfg.fingerprint})[:32]
    return data
