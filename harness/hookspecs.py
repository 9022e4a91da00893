"""Every extension point of harness, in one place (the public plugin API).

Plugins implement these with ``harness.hookimpl`` (or their own
``pluggy.HookimplMarker("harness")``) and declare themselves in the ``harness``
entry-point group. Hooks are called with keyword arguments; an implementation
may accept fewer arguments than its spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .specs import DatasetSpec, MetricSpec, ModelSpec, TaskKindSpec, TrainerSpec, WriterSpec

hookspec = pluggy.HookspecMarker("harness")


@hookspec
def harness_register_models() -> list[ModelSpec]:
    """Return the models (encoders, visual tokenizers, generative models) this plugin names up front,
    each declaring its capabilities. Must not import torch."""


@hookspec
def harness_register_task_kinds() -> list[TaskKindSpec]:
    """Return task kinds (code), referenced by the ``kind`` field of task specs."""


@hookspec
def harness_register_task_dirs() -> list[Path]:
    """Return directories of ``*.yaml`` task specs (data). The file stem is the task name."""


@hookspec
def harness_register_metrics() -> list[MetricSpec]:
    """Return metrics: per-sample scores over a kind's outputs, with reduction, direction and interval."""


@hookspec
def harness_register_trainers() -> list[TrainerSpec]:
    """Return trainers, run as ``harness train NAME`` on the same engine as ``harness run``."""


@hookspec
def harness_register_writers() -> list[WriterSpec]:
    """Return result writers, selected with ``harness run --writer NAME``."""


@hookspec
def harness_register_datasets() -> list[DatasetSpec]:
    """Return dataset builders, referenced by ``dataset: {builder: NAME}`` in task specs."""


@hookspec(firstresult=True)
def harness_resolve_model(name: str) -> ModelSpec | None:
    """Turn an open-ended model name (``hf:org/repo``, a local path, ...) into a spec.

    Called only for names no plugin registered. Stops at the first non-None result.
    """


@hookspec
def harness_add_commands(subparsers: Any, parents: list[Any]) -> None:
    """Add ``harness`` subcommands (e.g. ``train``) with ``subparsers.add_parser(..., parents=parents)``.

    Each parser must ``set_defaults(handler=fn)`` where ``fn(args, registries) -> int`` is the
    exit code; raise ``harness.HarnessError`` subclasses for user errors. (Trainers need no command:
    ``harness_register_trainers`` gives them ``harness train NAME``.)
    """


@hookspec
def harness_run_started(run: Any) -> None:
    """Observer: names are resolved and checked; no weights are loaded yet.

    ``run`` is the frozen ``harness.RunConfig``.
    """


@hookspec
def harness_task_finished(run: Any, result: dict[str, Any]) -> None:
    """Observer: one task finished and its result validated. Must not mutate ``result``."""
