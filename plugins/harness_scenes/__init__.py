"""Procedural scenes: a deterministic, offline dataset of coloured shapes on textured backgrounds.

Registered as the dataset builder ``scenes``; a task spec names it as::

    dataset: {builder: scenes, config: {n: 500, max_objects: 4}, split: test}

Config keys (all optional):

- ``n`` (200): rows in the split; or a mapping per split, e.g. ``{train: 1000, test: 200}``.
  Rows are prefix-stable: the first 100 rows do not depend on ``n``.
- ``image_size`` (64): side of the square RGB images, 32 to 512 pixels.
- ``min_objects`` (1) / ``max_objects`` (``min_objects``): objects per scene, drawn uniformly,
  at most 12. Object sizes depend on ``max_objects`` only, never on a scene's own count.
- ``shapes`` (all): a list from circle, square, triangle, diamond, pentagon, hexagon, star,
  cross, heart. Its order is the class order of ``shape``, ``counts`` and ``present``.
- ``colors`` (all): a list from red, green, blue, yellow, purple, orange, white, black, pink,
  brown. Its order is the class order of ``color``.
- ``backgrounds`` (all): a list from grey, light grey, dark grey, beige, striped grey,
  checkered grey.
- ``seed`` (0): each split draws from a seed derived from (``seed``, split name).

Splits: ``train``, ``validation``, ``test``. Unknown keys, bad values or another split raise
``ValueError`` naming the allowed keys.

Columns (``datasets.Features``; the *primary* object is the largest, ``objects[0]``):

- ``id`` string: ``scenes-v1-<8 hex of the config without n>-<split>-<index:06d>``.
- ``image`` Image: RGB, ``image_size`` square, PNG.
- ``label`` ClassLabel ``"{color} {shape}"`` of the primary object; names ordered shape-major
  (``red circle``, ``green circle``, ...); index = shape index * len(colors) + colour index.
  Within each block of len(shapes) * len(colors) rows every combination occurs once.
- ``shape`` ClassLabel over ``shapes``: the primary object's shape.
- ``color`` ClassLabel over ``colors``: the primary object's colour.
- ``background`` ClassLabel over ``backgrounds``.
- ``caption`` string: every object with number words, groups of equal (colour, shape) in order
  of size, e.g. ``"a red circle, two blue squares and an orange star on a grey background"``.
- ``n_objects`` int32.
- ``counts`` list of int32, one per shape class: how many objects of that shape.
- ``present`` list of bool, one per shape class: ``counts > 0``.
- ``objects`` list of ``{shape: str, color: str, bbox: [x0, y0, x1, y1] int32, center: [x, y]
  int32}``, largest first; ``bbox`` in pixels with x1, y1 exclusive; ``center`` is the pixel
  the outline is drawn around, always inside the object (keypoints for correspondence).

Objects never overlap (a gap of at least 2 px); shapes are tilted up to 15 degrees, colours
jittered up to 8 per channel; backgrounds are lit by a linear ramp and every pixel gets
Gaussian noise (std 3). ``dataset._fingerprint`` is sha256(version, canonical config,
split), the same in every process. A built split is cached under the run's cache root
(``--cache-dir``): ``<root>/scenes/<fingerprint>``. ``harness_scenes.builder.export`` writes a
split as an image folder or a ``save_to_disk`` folder.

The builder ``scenes_vqa`` (:mod:`harness_scenes.vqa`) asks one question per scene (colour, shape,
count, presence) with ten simulated human answers, in the columns the VQA task kind reads.
The builder ``scenes_counting`` (:mod:`harness_scenes.counting`) asks counting or yes/no
identification questions in GVTBench's shape, for the counting task kinds.
"""

from __future__ import annotations

from harness import DatasetSpec, hookimpl


@hookimpl
def harness_register_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            "scenes",
            "harness_scenes.builder:build",
            version="1",
            description="procedural coloured shapes on textured backgrounds: classification, counting, "
            "identification, captions, keypoints (offline, deterministic)",
        ),
        DatasetSpec(
            "scenes_vqa",
            "harness_scenes.vqa:build",
            version="1",
            description="questions about the scenes (colour, shape, count, presence), ten simulated human "
            "answers each, in VQA format (offline, deterministic)",
        ),
        DatasetSpec(
            "scenes_counting",
            "harness_scenes.counting:build",
            version="1",
            description="counting (config task: count) or yes/no identification (task: identify) questions about "
            "the scenes in GVTBench's shape, varied phrasing (offline, deterministic)",
        ),
    ]
