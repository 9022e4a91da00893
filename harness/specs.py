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

MODALITIES = frozenset({"image", "text"})


def load_object(ref: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise PluginError(f"bad implementation reference {ref!r}: expected 'module:attr'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginError(f"{module_name!r} has no attribute {attr!r} (referenced as {ref!r})") from None


@dataclass(frozen=True)
class EncoderSpec:
    """An image and/or text encoder.

    ``factory(spec, options) -> Encoder``; ``args`` carries what the factory needs
    (architecture, weights tag, local path, ...); ``revision`` pins hub weights.
    """

    name: str
    factory: str
    modalities: frozenset[str]
    description: str = ""
    args: Mapping[str, Any] = field(default_factory=dict, compare=False)
    revision: str | None = None


@dataclass(frozen=True)
class TokenizerSpec:
    """A visual tokenizer: turns an image into a sequence of tokens an LLM can read.

    ``factory(spec, options) -> Encoder`` whose ``encode_tokens`` returns ``(N, T, D)``.
    """

    name: str
    factory: str
    description: str = ""
    args: Mapping[str, Any] = field(default_factory=dict, compare=False)
    revision: str | None = None


@dataclass(frozen=True)
class TaskKindSpec:
    """Code that evaluates one family of tasks (zero-shot classification, retrieval, ...).

    ``factory()`` returns an object with ``evaluate(ctx) -> dict[str, numpy.ndarray]``.
    ``requires``: modalities the encoder must have. ``outputs``: the array names
    ``evaluate`` returns (metrics consume them). ``columns``: the column roles a spec
    must map. ``params_schema``: JSON Schema of the spec's ``params`` mapping.
    """

    name: str
    factory: str
    requires: frozenset[str]
    outputs: frozenset[str]
    columns: tuple[str, ...] = ()
    params_schema: Mapping[str, Any] = field(default_factory=dict, compare=False)
    description: str = ""


@dataclass(frozen=True)
class MetricSpec:
    """A metric: a pure function of arrays.

    ``fn(**arrays) -> float`` receives the ``inputs`` arrays (first axis = samples).
    ``interval``: ``"wilson"`` for a proportion of per-sample successes (the value
    times n is the success count), ``"bootstrap"`` to resample samples, ``"none"``.
    ``unit``: ``"fraction"`` (rendered as a percentage) or ``"raw"``.
    """

    name: str
    fn: str
    inputs: tuple[str, ...]
    higher_is_better: bool = True
    interval: str = "bootstrap"
    unit: str = "fraction"
    description: str = ""


@dataclass(frozen=True)
class WriterSpec:
    """A result writer: ``factory()(result: dict, path: Path) -> Path`` writes one result."""

    name: str
    factory: str
    description: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset builder: ``factory(config: dict, split: str) -> datasets.Dataset``.

    For data generated or assembled in code (e.g. the procedural scenes); hub ids and
    local paths need no spec. ``version`` goes into the dataset identity of results.
    """

    name: str
    factory: str
    version: str = "1"
    description: str = ""
