"""What a task kind receives and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

import numpy as np

from .dataset import Split

if TYPE_CHECKING:
    import datasets

    from .auxiliary import Auxiliary
    from .features import Features
    from .taskspec import TaskSpec


@dataclass(frozen=True)
class TaskContext:
    """One task on one model: the spec, the (possibly ``--limit``-ed) rows, and feature extraction.

    ``data`` is the evaluated rows as a ``datasets.Dataset`` (labels, other columns); ``split``
    is the same rows with the identity the feature store keys them by: pass it to
    ``features.images``. ``load_split(name)`` returns another split of the same source (e.g.
    ``train`` for a linear probe) as a :class:`~harness.dataset.Split` (a bare Dataset from
    hand-built contexts works too, uncached). ``encoder(name, needs, role)`` loads another
    encoder the task needs (see :mod:`harness.auxiliary`).
    """

    spec: TaskSpec
    data: datasets.Dataset
    features: Features
    seed: int
    where: str
    load_split: Callable[[str], Split | datasets.Dataset]
    split: Split | None = None
    auxiliary: Auxiliary | None = None

    def __post_init__(self) -> None:
        if self.split is None:
            object.__setattr__(self, "split", Split(self.data))

    def column(self, role: str) -> str:
        """The dataset column the spec maps to ``role``."""
        return self.spec.columns[role]

    def encoder(self, name: str, needs: str, role: str) -> Features:
        """Features of encoder ``name`` (a harness name; it must embed ``needs``), e.g. a frozen tower:
        loaded with the run's plugins, device, dtype and seed, extracted like the model's features,
        and recorded in the result as an auxiliary model with ``role``."""
        if self.auxiliary is None:
            from .errors import UsageError

            raise UsageError(f"{self.where}: needs encoder {name!r}, but this context cannot load encoders "
                             "(it was built outside `harness run`)")
        return self.auxiliary.features(name, needs, self.features, role)

    def bar(self, iterable: Iterable[Any] | None = None, *, desc: str, total: int | None = None) -> Any:
        """A progress bar (tqdm) for a kind's own loops, e.g. training epochs; silent with
        ``--quiet``, when stderr is not a terminal, and on ranks other than 0."""
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, disable=not self.features.progress, leave=False)


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
