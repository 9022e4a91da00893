"""``scenes_counting``: counting and identification questions about the procedural scenes, in
GVTBench's shape (a question, a short answer, the number of objects in the image), so generative
counting runs offline end to end. Deterministic from the config.

Registered as the dataset builder ``scenes_counting``::

    dataset: {builder: scenes_counting, config: {n: 200, max_objects: 10, seed: 0}, split: test}

Config: every key of the ``scenes`` builder (``n`` is the number of questions: one per scene), with
``max_objects`` defaulting to 10 (at least ``min_objects``) so that counts vary, and ``task``:

- ``count`` (default): how many objects of a class. The class is a shape (half the questions), a
  colour (a fifth) or every object (the rest); three times in four it is one the scene shows,
  else any class of the config, so absent classes (count 0) occur. The answer is the count's digits
  (``"3"``), as in GVTBench.
- ``identify``: whether a shape is there; half the questions ask about a shape the scene shows
  (``"Yes."``), half about one it does not (``"No."``), as in GVTBench's MCI.

Questions are phrased in several ways (``How many stars are there in the image?``, ``Count the red
objects in the image.``, ``how many shapes?``, ``Does star exist in the image?``, ``Are there any
crosses in the picture?``, ...); question ``i`` depends only on the config without ``n``, the split
and ``i``.

Columns: ``id`` (``scenes-counting-v1-<8 hex>-<split>-<index:06d>``), ``scene_id`` (the scenes row),
``image`` (PNG), ``question``, ``answer`` (text, as GVTBench's ``text_out``), ``count`` (int: the
number of objects of the class asked about), ``n_objects`` (every object in the scene, GVTBench's
``n_obj_exist``), ``family`` (``shape``, ``color`` or ``total``) and ``target`` (the class asked
about: a shape, a colour or ``objects``). ``dataset._fingerprint`` is sha256 of this builder's
version, the task and the scenes split's fingerprint.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .builder import build as build_scenes
from .config import digest, parse, with_max_objects
from .scene import pick
from .vocabulary import article, plural

if TYPE_CHECKING:
    import datasets

    from harness import ExecutionConfig

VERSION = "1"
TASKS = ("count", "identify")
DEFAULT_MAX_OBJECTS = 10
FAMILIES = ("shape", "color", "total")
FAMILY_WEIGHTS = (0.5, 0.2, 0.3)
#: Chance that a count question asks about a class the scene shows.
PRESENT_P = 0.75
#: ``{n}``: the plural noun phrase (``stars``, ``red objects``, ``objects``).
COUNT_TEMPLATES = (
    "How many {n} are there in the image?",
    "How many {n} are there?",
    "How many {n} can you see?",
    "How many {n} are in the picture?",
    "Count the {n} in the image.",
    "What is the number of {n} in this image?",
    "How many {n} does the image show?",
    "how many {n}?",
)
TOTAL_NOUNS = ("objects", "shapes")
#: ``{s}``: a shape; ``{a}``: its article; ``{p}``: its plural.
IDENTIFY_TEMPLATES = (
    "Does {s} exist in the image?",
    "Is there {a} {s} in the image?",
    "Are there any {p} in the picture?",
    "Can you see {a} {s}?",
    "Is there at least one {s}?",
)


def _config(config: Mapping[str, Any] | None) -> tuple[dict[str, Any], str]:
    config = with_max_objects(config or {}, DEFAULT_MAX_OBJECTS)
    task = config.pop("task", "count")
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return config, task


def count_question(rng: np.random.Generator, objects: list[dict[str, Any]], shapes: tuple[str, ...],
                   colors: tuple[str, ...]) -> dict[str, Any]:
    """A counting question about one scene: family, target class, question, count."""
    family = FAMILIES[int(rng.choice(len(FAMILIES), p=FAMILY_WEIGHTS))]
    if family == "total":
        noun = pick(rng, TOTAL_NOUNS)
        return {"family": family, "target": "objects", "question": pick(rng, COUNT_TEMPLATES).format(n=noun),
                "count": len(objects)}
    key, classes = ("shape", shapes) if family == "shape" else ("color", colors)
    present = sorted({o[key] for o in objects})
    target = pick(rng, present) if rng.random() < PRESENT_P else pick(rng, classes)
    noun = plural(target) if family == "shape" else f"{target} {pick(rng, ('objects', 'shapes'))}"
    return {"family": family, "target": target, "question": pick(rng, COUNT_TEMPLATES).format(n=noun),
            "count": sum(o[key] == target for o in objects)}


def identify_question(rng: np.random.Generator, objects: list[dict[str, Any]],
                      shapes: tuple[str, ...]) -> dict[str, Any]:
    """A yes/no question whether a shape is in one scene (half yes, when an absent shape exists)."""
    counts = Counter(o["shape"] for o in objects)
    absent = [s for s in shapes if s not in counts]
    shape = pick(rng, absent) if absent and rng.random() < 0.5 else pick(rng, sorted(counts))
    question = pick(rng, IDENTIFY_TEMPLATES).format(s=shape, a=article(shape), p=plural(shape))
    return {"family": "shape", "target": shape, "question": question, "count": counts[shape]}


def build(config: Mapping[str, Any] | None, split: str, execution: ExecutionConfig | None = None) -> datasets.Dataset:
    """The questions of ``split`` (see the module docstring); the scenes come from the ``scenes``
    builder (and its cache). Raises ``ValueError`` (one line) for a bad config or split."""
    import datasets

    config, task = _config(config)
    cfg = parse(config, split)
    scenes = build_scenes(config, split, execution)
    raw = scenes.cast_column("image", datasets.Image(decode=False))
    key = digest({"version": VERSION, "task": task, "config": cfg.canonical(with_n=False)})[:8]
    columns: dict[str, list[Any]] = {name: [] for name in (
        "id", "scene_id", "image", "question", "answer", "count", "n_objects", "family", "target")}
    for index, (scene_id, image, objects) in enumerate(zip(raw["id"], raw["image"], raw["objects"])):
        rng = np.random.default_rng([cfg.split_seed, 11 if task == "count" else 12, index])
        if task == "count":
            q = count_question(rng, objects, cfg.shapes, cfg.colors)
            answer = str(q["count"])
        else:
            q = identify_question(rng, objects, cfg.shapes)
            answer = "Yes." if q["count"] else "No."
        columns["id"].append(f"scenes-counting-v{VERSION}-{key}-{split}-{index:06d}")
        columns["scene_id"].append(scene_id)
        columns["image"].append({"bytes": image["bytes"], "path": None})
        columns["question"].append(q["question"])
        columns["answer"].append(answer)
        columns["count"].append(q["count"])
        columns["n_objects"].append(len(objects))
        columns["family"].append(q["family"])
        columns["target"].append(q["target"])
    string = datasets.Value("string")
    features = datasets.Features({
        "id": string, "scene_id": string, "image": datasets.Image(), "question": string, "answer": string,
        "count": datasets.Value("int64"), "n_objects": datasets.Value("int64"), "family": string, "target": string,
    })
    info = datasets.DatasetInfo(features=features, dataset_name="scenes_counting",
                                description=f"scenes counting v{VERSION} ({task}), split {split}: "
                                f"{json.dumps(cfg.canonical())}")
    data = datasets.Dataset.from_dict(columns, features=features, info=info, split=split)
    data._fingerprint = digest({"version": VERSION, "task": task, "scenes": cfg.fingerprint})[:32]
    return data
