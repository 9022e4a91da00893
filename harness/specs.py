"""Frozen spec objects returned by the ``harness_register_*`` hooks.

Specs are plain data and cheap to import. Implementations are named lazily as
``"module:attr"`` strings and imported only when a run needs them, so listing
what exists never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import PluginError

#: What a model may declare it can do; each is a small protocol in :mod:`harness.models`.
CAPABILITIES = frozenset({"image_embed", "text_embed", "image_tokens", "generate", "loglikelihood"})
INTERVALS = ("wilson", "bootstrap", "none")
UNITS = ("fraction", "raw")
REDUCTIONS = ("mean", "class_mean", "none")


def load_object(ref: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise PluginError(f"bad implementation reference {ref!r}: expected 'module:attr'")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # a missing module, or third-party code failing at import
        raise PluginError(f"cannot import {module_name!r} (referenced as {ref!r}): {type(exc).__name__}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginError(f"{module_name!r} has no attribute {attr!r} (referenced as {ref!r})") from None


def _check_capabilities(owner: str, capabilities: frozenset[str]) -> None:
    unknown = sorted(set(capabilities) - CAPABILITIES)
    if unknown:
        raise PluginError(f"{owner}: unknown capabilities {unknown}; known: {sorted(CAPABILITIES)}")


@dataclass(frozen=True)
class ModelSpec:
    """Anything ``--model`` names: an image/text encoder, a visual tokenizer, a generative model.

    ``factory(spec, ctx: LoadContext) -> model``; the built model must implement the protocol of
    every declared capability (checked at load). ``args`` carries what the factory needs
    (architecture, weights tag, local path, ...); ``revision`` pins hub weights. ``code_version``:
    a version the plugin bumps when its implementation changes what the model computes; without
    it the feature store keys the model by a hash of its plugin package's source files.
    ``sources``: optional ``"module:function"``, ``sources(spec) -> list of paths | None``: the files
    (or folders) whose bytes, with the spec, seed, code and library versions, determine the weights
    (``[]``: nothing else, e.g. random initialisation); cheap, without importing the model's library.
    With it, a warm run whose features are all cached does not build the model
    (:mod:`harness.modelcard`); None (or no function): always built.
    """

    name: str
    factory: str
    capabilities: frozenset[str]
    description: str = ""
    args: Mapping[str, Any] = field(default_factory=dict, compare=False)
    revision: str | None = None
    code_version: str | None = None
    sources: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "capabilities", frozenset(self.capabilities))
        _check_capabilities(f"model {self.name!r}", self.capabilities)


@dataclass(frozen=True)
class TaskKindSpec:
    """Code that evaluates one family of tasks (zero-shot classification, retrieval, ...).

    ``factory()`` returns an object with ``evaluate(ctx: TaskContext) -> dict[str, numpy.ndarray]``
    (per-sample arrays, first axis = samples). ``needs``: capabilities the model under test must
    have. ``outputs``: the array names ``evaluate`` returns. ``columns``: the column roles a spec
    must map. ``params_schema``: JSON Schema of the spec's ``params`` (defaults are filled in
    before the kind sees them; ``"x-template": ["c"]`` on a string checks its ``{...}`` fields).
    """

    name: str
    factory: str
    needs: frozenset[str]
    outputs: frozenset[str]
    columns: tuple[str, ...] = ()
    params_schema: Mapping[str, Any] = field(default_factory=dict, compare=False)
    description: str = ""
    records: tuple[str, ...] = ()
    """Outputs kept per sample in the result's records file (``fields``), e.g. the exact prompt, the
    raw output and the targets of a generative task, so a result can be inspected and re-scored
    (``harness rescore``) without the model. Values must be JSON (strings, numbers, lists)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs", frozenset(self.needs))
        object.__setattr__(self, "outputs", frozenset(self.outputs))
        object.__setattr__(self, "records", tuple(self.records))
        if not set(self.records) <= self.outputs:
            raise PluginError(f"task kind {self.name!r}: records {sorted(set(self.records) - self.outputs)} "
                              "are not among its outputs")
        _check_capabilities(f"task kind {self.name!r}", self.needs)


@dataclass(frozen=True)
class MetricSpec:
    """A metric over a task kind's per-sample outputs.

    ``fn(**arrays)`` receives the outputs named by ``inputs`` (argument -> output name; a tuple
    of names maps each to itself) and returns per-sample scores ``(N,)`` (``reduce="mean"``: the
    value is their mean; ``"class_mean"``: the mean over classes -- the values of input
    ``classes_from`` -- of per-class means), or, with ``reduce="none"``, the value itself.
    ``None`` means undefined (stored as null); NaN is a plugin error. Intervals resample samples
    (or groups, when the kind returns an output named ``groups``): ``"wilson"`` for a proportion
    of 0/1 scores without groups, ``"bootstrap"``, or ``"none"``. ``unit``: ``"fraction"``
    (rendered as a percentage) or ``"raw"``. ``breakdown``: see the field.
    """

    name: str
    fn: str
    inputs: Mapping[str, str] | tuple[str, ...]
    higher_is_better: bool = True
    interval: str = "bootstrap"
    unit: str = "fraction"
    reduce: str = "mean"
    classes_from: str | None = None
    description: str = ""
    breakdown: tuple[str, ...] = ()
    """Outputs (per-sample labels, e.g. ``answer_type``) over whose values the metric is also
    reported, each subset with its own interval (``breakdown`` in the result's metric entry)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "breakdown", tuple(self.breakdown))
        if self.breakdown and self.reduce == "none":
            raise PluginError(f"metric {self.name!r}: a breakdown needs per-sample scores (reduce 'mean' or 'class_mean')")
        inputs = self.inputs
        mapping = dict(inputs) if isinstance(inputs, Mapping) else {name: name for name in inputs}
        object.__setattr__(self, "inputs", tuple(sorted(mapping.items())))
        where = f"metric {self.name!r}"
        if self.interval not in INTERVALS or self.unit not in UNITS or self.reduce not in REDUCTIONS:
            raise PluginError(f"{where}: interval must be one of {INTERVALS}, unit one of {UNITS}, reduce one of "
                              f"{REDUCTIONS}")
        if (self.reduce == "class_mean") != (self.classes_from is not None) or (
                self.classes_from is not None and self.classes_from not in mapping):
            raise PluginError(f"{where}: reduce='class_mean' needs classes_from naming one of its arguments")

    @property
    def arguments(self) -> dict[str, str]:
        """Argument name -> output name."""
        return dict(self.inputs)

    @property
    def outputs(self) -> frozenset[str]:
        """The task-kind outputs this metric reads (breakdown labels included)."""
        return frozenset(output for _, output in self.inputs) | frozenset(self.breakdown)


@dataclass(frozen=True)
class TrainerSpec:
    """A trainer, run as ``harness train NAME``.

    ``factory()`` returns an object with ``train(ctx: TrainContext) -> None``; ``config_schema`` is
    the JSON Schema of its configuration (each top-level property also becomes a ``--NAME``
    option of ``harness train NAME``; ``--config FILE`` and ``--set KEY=VALUE`` set any).
    """

    name: str
    factory: str
    config_schema: Mapping[str, Any] = field(default_factory=dict, compare=False)
    description: str = ""


@dataclass(frozen=True)
class WriterSpec:
    """A result writer: ``factory(result: dict, output_dir: Path, records: str) -> Path`` writes one
    result (a validated copy) and its per-sample records (JSON lines, whose name and sha256
    ``result["records"]`` gives) and returns where. An ``OSError`` it raises keeps the result under
    the cache root (the run ends with one line saying where)."""

    name: str
    factory: str
    description: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset builder: ``factory(config: dict, split: str, execution: ExecutionConfig) -> datasets.Dataset``.

    For data generated or assembled in code (e.g. the procedural scenes); hub ids and local paths
    need no spec. ``version`` goes into the dataset identity of results. ``execution.root`` is the
    run's cache root (``--cache-dir``): a builder that caches keeps its files under it.
    """

    name: str
    factory: str
    version: str = "1"
    description: str = ""
