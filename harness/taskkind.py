"""What a task kind (and a trainer) receives: a narrow context, never the engine.

A kind asks for rows, image features, text features, generated answers and log-likelihoods
(``generate``, ``loglikelihood``: the generation engine, :mod:`harness.generation`), other models
and a progress bar; it gets
its spec's params already validated with defaults filled in. Batching, devices, precision, the
feature store, data parallelism and caching all stay behind these methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol, Sequence, TypeVar

import numpy as np

from .dataset import Split
from .errors import DataError, PluginError, SpecError, UsageError
from .processgroup import ProcessGroup

if TYPE_CHECKING:
    import datasets

    from .features import Features
    from .generation import Generations
    from .models import Generation, GenerationRequest, Loglikelihood, LoglikelihoodRequest
    from .modelloader import ModelLoader

T = TypeVar("T")


@dataclass(frozen=True)
class Compute:
    """Where and how this process computes, for kinds and trainers that run their own torch code."""

    device: str = "cpu"
    dtype: str = "fp32"
    group: ProcessGroup = field(default_factory=ProcessGroup, repr=False)

    @property
    def main(self) -> bool:
        """True in the process that scores and writes (rank 0; always in a single process)."""
        return self.group.main

    @property
    def world_size(self) -> int:
        return self.group.world_size

    def autocast(self) -> Any:
        """The run's forward-pass precision (``--dtype``) as a context manager."""
        from .execution import autocast

        return autocast(self.device, self.dtype)

    def once(self, fn: Callable[[], T]) -> T:
        """``fn()`` computed on the main process only and its result given to every process: training
        in a kind happens once under torchrun, never once per rank."""
        return self.group.broadcast(fn() if self.main else None)


@dataclass(frozen=True)
class ModelFeatures:
    """Features of one model (the one under test, or one a kind asked for with ``ctx.model``)."""

    name: str
    model: Any
    _features: Features = field(repr=False)
    _context: TaskContext = field(repr=False)
    _generations: Generations | None = field(default=None, repr=False)

    @property
    def embed_dim(self) -> int | None:
        return getattr(self.model, "embed_dim", None)

    def images(self, column: str, split: str | None = None, output: str = "pooled",
               rows: Sequence[int] | None = None, *, preprocess: str | None = None) -> np.ndarray:
        """Image features of ``column`` of ``split`` (default: the evaluated rows), in row order:
        ``output="pooled"``: ``(N, D)``; ``"tokens@LAYER"``: ``(N, T, D)``. ``rows``: only these row
        positions (e.g. a seeded subset of a train split), in that order; the rest are not extracted.
        ``preprocess``: a named model-independent transform (``"grain"``, ``"gvt"``, ``"sharelock"``:
        :mod:`harness.preprocessing`) instead of the model's own (None or ``"model"``); cached apart."""
        data = self._context._split(split)
        if rows is not None:
            data = data.select(np.asarray(rows, dtype=np.int64))
        where = self._context.where if split is None else f"{self._context.where}: split {split!r}"
        return self._features.images(data, column, where=where, output=output, preprocess=preprocess)

    def texts(self, strings: Sequence[str]) -> np.ndarray:
        """``(N, D)`` text features, in order (cached per text)."""
        return self._features.texts(list(strings), where=self._context.where)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """The model's answer to each request, in order (batched, cached per request, resumable)."""
        return self._generations.generate(requests, where=self._context.where)

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """Per request: the sum of the continuation's token log-probabilities (<= 0), its token count,
        and whether it is the greedy continuation (cached per request)."""
        return self._generations.loglikelihood(requests, where=self._context.where)

    def choose(self, context: str, choices: Sequence[str], images: Sequence[Any] = ()) -> tuple[int, int]:
        """Multiple choice by log-likelihood: ``(index of the most likely choice, index of the most
        likely per token)`` -- raw sums favour short choices, length-normalised ones do not."""
        from .models import LoglikelihoodRequest

        scores = self.loglikelihood([LoglikelihoodRequest(context, choice, tuple(images)) for choice in choices])
        raw = max(range(len(scores)), key=lambda i: scores[i].logprob)
        per_token = max(range(len(scores)), key=lambda i: scores[i].logprob / max(1, scores[i].n_tokens))
        return raw, per_token


@dataclass(frozen=True)
class TaskContext:
    """One task on one model (see the module docstring). Built by the runner, or by
    :func:`harness.testing.task_context` over in-memory data."""

    name: str
    params: Mapping[str, Any]
    """The spec's ``params``: validated against the kind's schema, defaults filled in."""
    columns: Mapping[str, str]
    """Column role -> dataset column, as the spec maps them."""
    seed: int
    compute: Compute
    split: str
    """The name of the evaluated split (``dataset.split`` of the spec)."""
    _evaluated: Split = field(repr=False)
    _load_split: Callable[[str], Split] = field(repr=False)
    _features: Features | None = field(repr=False)
    """None while the kind's :meth:`TaskKind.check` runs: no model is loaded yet."""
    _loader: ModelLoader | None = field(default=None, repr=False)
    _progress: bool = field(default=False, repr=False)
    used_models: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """What :meth:`model` loaded (recorded in the result as ``auxiliary_models``)."""
    _generations: Generations | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        """How errors name this task."""
        return f"task {self.name}"

    def column(self, role: str) -> str:
        """The dataset column the spec maps to ``role``."""
        try:
            return self.columns[role]
        except KeyError:
            raise SpecError(f"{self.where}: columns: no column mapped to role {role!r}") from None

    def rows(self, split: str | None = None) -> datasets.Dataset:
        """The rows of ``split`` of the task's dataset (default: the evaluated rows, ``--limit`` applied)."""
        return self._split(split).data

    def images(self, column: str, split: str | None = None, output: str = "pooled",
               rows: Sequence[int] | None = None, *, preprocess: str | None = None) -> np.ndarray:
        """Image features of the model under test (see :meth:`ModelFeatures.images`)."""
        return self.features.images(column, split, output, rows, preprocess=preprocess)

    def texts(self, strings: Sequence[str]) -> np.ndarray:
        """Text features of the model under test (see :meth:`ModelFeatures.texts`)."""
        return self.features.texts(strings)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Answers of the model under test (see :meth:`ModelFeatures.generate`)."""
        return self.features.generate(requests)

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """Log-likelihoods under the model under test (see :meth:`ModelFeatures.loglikelihood`)."""
        return self.features.loglikelihood(requests)

    def choose(self, context: str, choices: Sequence[str], images: Sequence[Any] = ()) -> tuple[int, int]:
        """Multiple choice under the model under test (see :meth:`ModelFeatures.choose`)."""
        return self.features.choose(context, choices, images)

    @property
    def features(self) -> ModelFeatures:
        """The model under test."""
        self._need_model("the model under test (ctx.images, ctx.texts, ctx.generate, ctx.loglikelihood, ctx.features)")
        return ModelFeatures(self._features.name, self._features.encoder, self._features, self, self._generations)

    def _need_model(self, what: str) -> None:
        if self._features is None:
            raise PluginError(f"{self.where}: {what} are not available in check(): no model is loaded yet "
                              "(check may use rows, labels, class_names, params and columns)")

    def model(self, name: str, capability: str, role: str) -> ModelFeatures:
        """Another model the kind needs (e.g. a frozen image tower), by harness name; it must declare
        ``capability``. Loaded once per run with the run's plugins and execution config, extracted
        through the same feature store under its own key, recorded in the result with ``role``."""
        self._need_model(f"other models (ctx.model({name!r}, ...))")
        if self._loader is None:
            raise UsageError(f"{self.where}: needs model {name!r}, but this context cannot load models "
                             "(it was built without a loader)")
        loaded = self._loader.load(name, capability)
        record = loaded.record(role, self.compute.device)
        if record not in self.used_models:
            self.used_models.append(record)
        features = self._features.for_encoder(loaded.model, loaded.key(self._loader.registries),
                                               loaded.channels_last)
        execution = replace(self._loader.execution, cache=self._features.store is not None)
        generations = loaded.generations(execution, self._loader.registries, self.compute.group)
        return ModelFeatures(loaded.spec.name, loaded.model, features, self, generations)

    def class_names(self, role: str = "label") -> list[str]:
        """``params["classnames"]`` when the spec gives them (as many as the column's ClassLabel names,
        if it has some), else the ClassLabel names of the column mapped to ``role``."""
        column = self.column(role)
        labelled = getattr(self.rows().features.get(column), "names", None)
        given = self.params.get("classnames")
        if given:
            if labelled and len(labelled) != len(given):
                raise SpecError(f"{self.where}: params.classnames: {len(given)} names, but column {column!r} has "
                                f"{len(labelled)} classes")
            return list(given)
        if not labelled:
            raise SpecError(f"{self.where}: params.classnames: required, column {column!r} has no class names")
        return list(labelled)

    def labels(self, role: str = "label", split: str | None = None, n_classes: int | None = None) -> np.ndarray:
        """Integer class labels of the column mapped to ``role``, checked to lie in ``[0, n_classes)``.
        Integers, booleans and whole floats (``3.0``) are labels; fractions, NaN, strings and missing
        values are refused (never truncated)."""
        column, rows = self.column(role), self.rows(split)
        where = self.where if split is None else f"{self.where}: split {split!r}"
        values = list(rows[column])
        try:
            raw = np.asarray(values) if values else np.zeros(0, dtype=np.int64)
        except (TypeError, ValueError):  # ragged
            raw = np.asarray([None])
        integral = raw.dtype.kind == "f" and bool(np.isfinite(raw).all()) and bool((raw == np.round(raw)).all())
        if raw.ndim != 1 or not (raw.dtype.kind in "iub" or integral):
            bad = next((v for v in values if not _is_label(v)), values[0])
            raise DataError(f"{where}: column {column!r} must hold integer class labels (found {bad!r})")
        labels = raw.astype(np.int64)
        if n_classes is not None:
            bad = labels[(labels < 0) | (labels >= n_classes)]
            if len(bad):
                raise DataError(f"{where}: column {column!r}: label {int(bad[0])} outside [0, {n_classes}) "
                                f"({len(bad)} such rows)")
        return labels

    def class_labels(self, role: str = "label") -> tuple[list[str], np.ndarray]:
        """The class names and the evaluated labels of ``role``, checked against each other over the whole
        split (so a ``--limit`` subset is refused or accepted alike), one line each:

        * :meth:`class_names` gives exactly one name per ClassLabel class of the column, when it has some;
        * no label may reach past the last name (fewer names than classes);
        * without ClassLabel names, ``params.classnames`` may not name more classes than the labels reach
          (extra names would be extra distractor classes, silently changing the task);
        * the evaluated rows must include a labelled one. Negative labels (unlabelled rows) pass; the
          metrics leave them out.
        """
        names = self.class_names(role)
        column, given = self.column(role), "classnames" in self.params
        source = "params.classnames" if given else f"the class names of column {column!r}"
        labels = self.labels(role)
        whole = self.labels(role, split=self.split)
        beyond = whole[whole >= len(names)]  # the evaluated rows are some of these
        if len(beyond):
            raise DataError(f"{self.where}: column {column!r}: label {int(beyond[0])} outside [0, {len(names)}) "
                            f"of {source} ({len(beyond)} such rows in split {self.split!r}); give one name per class, "
                            "in label order")
        if not len(labels):
            raise DataError(f"{self.where}: split {self.split!r} has no rows to evaluate")
        if not (labels >= 0).any():
            raise DataError(f"{self.where}: column {column!r}: no evaluated row has a label "
                            f"(all {len(labels)} are negative)")
        labelled = getattr(self.rows().features.get(column), "names", None)
        top = int(whole.max())
        if given and not labelled and top + 1 < len(names):
            raise SpecError(f"{self.where}: params.classnames: {len(names)} names, but the labels of column "
                            f"{column!r} in split {self.split!r} only reach {top} ({top + 1} classes); give one "
                            "name per class, in label order")
        return names, labels

    def bar(self, iterable: Iterable[Any] | None = None, *, desc: str, total: int | None = None) -> Any:
        """A progress bar (tqdm) for a kind's own loops, e.g. training epochs; silent with
        ``--quiet``, when stderr is not a terminal, and on ranks other than 0."""
        return progress_bar(iterable, desc, total, self._progress and self.compute.main)

    def _split(self, split: str | None) -> Split:
        return self._evaluated if split is None else self._load_split(split)


def _is_label(value: Any) -> bool:
    """An integer, a boolean or a whole finite float."""
    if isinstance(value, (bool, int, np.integer, np.bool_)):
        return True
    return isinstance(value, (float, np.floating)) and bool(np.isfinite(value)) and float(value).is_integer()


def progress_bar(iterable: Iterable[Any] | None, desc: str, total: int | None, show: bool) -> Any:
    """A tqdm bar that is shown only when ``show`` (the run's progress setting, on the main process)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=not show, leave=False)


class TaskKind(Protocol):
    """Evaluates a task: returns per-sample arrays (first axis = samples) its metrics consume.

    ``evaluate(ctx)`` (required) computes the outputs.

    ``check(ctx) -> None`` (optional) refuses a task whose data or params cannot give a meaningful
    result, before any model loads: the core calls it once per task, after the task's data is
    loaded (``--limit`` applied) and before the model under test (or any other) loads, so a bad
    task ends the run in seconds, not after a model download and an extraction. ``ctx`` is a
    normal :class:`TaskContext` except that nothing needs a model: ``rows()``, ``labels()``,
    ``class_names()``, ``column()``, ``params``, ``columns``, ``split`` and ``seed`` work (other splits
    load on demand), while ``images``, ``texts``, ``features`` and ``model`` raise a
    :class:`~harness.errors.PluginError`. Raise :class:`~harness.errors.SpecError` (the spec is
    wrong: params, class names) or :class:`~harness.errors.DataError` (the data is wrong: labels out
    of range, an empty split), one line each; return None when the task can run. Keep it cheap
    (no feature extraction, no training) and let ``evaluate`` repeat whatever it relies on, since a
    kind may be evaluated without a check (e.g. through :func:`harness.testing.task_context`).
    """

    def evaluate(self, ctx: TaskContext) -> dict[str, np.ndarray]: ...

