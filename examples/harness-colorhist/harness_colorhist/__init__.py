"""Example harness plugin: a colour-histogram model, a nearest-centroid task kind, a reciprocal-rank
metric and two task specs.

Everything here is the public plugin API of ``harness`` (``from harness import ...``):
``register_*`` hooks return specs (plain data, no torch import), and ``resolve_model`` handles
open-ended names. ``tests/`` checks the plugin with ``harness.testing``.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness import MetricSpec, ModelSpec, TaskKindSpec, hookimpl

_NAME = re.compile(r"^colorhist:rgb-(\d+)$")


def _spec(bins: int) -> ModelSpec:
    return ModelSpec(
        name=f"colorhist:rgb-{bins}",
        factory="harness_colorhist.encoder:load",
        capabilities=frozenset({"image_embed"}),
        description=f"joint RGB histogram, {bins} bins per channel ({bins ** 3}-d), L1-normalised",
        args={"bins": bins},
    )


@hookimpl
def harness_register_models() -> list[ModelSpec]:
    return [_spec(4)]


@hookimpl
def harness_resolve_model(name: str) -> ModelSpec | None:
    match = _NAME.match(name)
    if match and 2 <= int(match.group(1)) <= 16:
        return _spec(int(match.group(1)))
    return None


@hookimpl
def harness_register_task_kinds() -> list[TaskKindSpec]:
    from .centroid import PARAMS_SCHEMA

    return [TaskKindSpec(
        name="nearest_centroid",
        factory="harness_colorhist.centroid:NearestCentroid",
        needs=frozenset({"image_embed"}),
        outputs=frozenset({"logits", "labels"}),
        columns=("image", "label"),
        params_schema=PARAMS_SCHEMA,
        description="few-shot protocol: class centroids of a train split's features, logits = -distance to each",
    )]


@hookimpl
def harness_register_metrics() -> list[MetricSpec]:
    return [MetricSpec("reciprocal_rank", "harness_colorhist.centroid:reciprocal_rank", ("logits", "labels"),
                       interval="bootstrap", unit="raw",
                       description="mean over samples of 1 / (rank of the true class among the logits)")]


@hookimpl
def harness_register_task_dirs() -> list[Path]:
    return [Path(__file__).resolve().parent / "tasks"]
