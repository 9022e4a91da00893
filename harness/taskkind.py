"""What a task kind receives and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

if TYPE_CHECKING:
    import datasets

    from .features import Features
    from .taskspec import TaskSpec


@dataclass(frozen=True)
class TaskContext:
    """One task on one model: the spec, the (possibly ``--limit``-ed) rows, and feature extraction."""

    spec: TaskSpec
    data: datasets.Dataset
    features: Features
    seed: int
    where: str
    load_split: Callable[[str], datasets.Dataset]

    """``load_split(name)``: another split of the same source (e.g. ``train`` for a linear probe)."""

    def column(self, role: str) -> str:
        """The dataset column the spec maps to ``role``."""
        return self.spec.columns[role]


class TaskKind(Protocol):
    """Evaluates a task: returns the named arrays (first axis = samples) its metrics consume."""

    def evaluate(self, ctx: TaskContext) -> dict[str, np.ndarray]: ...


def class_names(ctx: TaskContext, role: str = "label") -> list[str]:
    """Class names from the spec's ``prompts.classnames``, else the label column's ClassLabel names."""
    names: Any = ctx.spec.prompts.get("classnames")
    if names:
        return list(names)
    from .errors import SpecError

    feature = ctx.data.features.get(ctx.column(role))
    names = getattr(feature, "names", None)
    if not names:
        raise SpecError(f"{ctx.spec.file}: prompts.classnames: required, column {ctx.column(role)!r} has no class names")
    return list(names)
