"""Registries of named specs, collected once from the ``harness_register_*`` hooks."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Iterator, TypeVar

from .errors import DuplicateNameError, PluginError, UnknownNameError, blamed
from .pluginmanager import PluginManager
from .specs import DatasetSpec, MetricSpec, ModelSpec, TaskKindSpec, TrainerSpec, WriterSpec

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered item and the plugin that provided it."""

    item: T
    plugin: str


class Registry(Generic[T]):
    """Names -> items. Duplicates and unknown names are errors, never silent."""

    def __init__(self, kind: str, list_command: str) -> None:
        self.kind = kind
        self.list_command = list_command
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, item: T, plugin: str, describe: str = "") -> None:
        """Add ``item``; a second provider of the same name is an error naming both."""
        if name in self._entries:
            old = self._entries[name]
            raise DuplicateNameError(
                f"{self.kind} {name!r} is provided twice: by plugin {old.plugin!r} and by plugin {plugin!r}"
                f"{describe}; block one with -p no:PLUGIN"
            )
        self._entries[name] = Entry(item, plugin)

    def get(self, name: str) -> T:
        """Return the item named ``name`` or raise with close matches."""
        return self.entry(name).item

    def entry(self, name: str) -> Entry[T]:
        """Return the entry (item and provider) named ``name`` or raise with close matches."""
        try:
            return self._entries[name]
        except KeyError:
            raise self.unknown(name) from None

    def unknown(self, name: str) -> UnknownNameError:
        """The error for a name that is not here, with suggestions and the listing command."""
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return UnknownNameError(f"unknown {self.kind} {name!r}{hint} (see `{self.list_command}`)")

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, Entry[T]]]:
        """Sorted (name, entry) pairs."""
        return sorted(self._entries.items())


@dataclass(frozen=True)
class Registries:
    """Everything the loaded plugins provide, frozen for one run."""

    models: Registry[ModelSpec]
    task_kinds: Registry[TaskKindSpec]
    tasks: Registry[Path]
    metrics: Registry[MetricSpec]
    writers: Registry[WriterSpec]
    datasets: Registry[DatasetSpec]
    trainers: Registry[TrainerSpec]
    pm: PluginManager

    def resolve_model(self, name: str) -> tuple[ModelSpec, str]:
        """(spec, providing plugin): a registered model, else the first plugin resolving the name."""
        if name in self.models:
            entry = self.models.entry(name)
            return entry.item, entry.plugin
        return self._resolve("harness_resolve_model", name, self.models, ModelSpec)

    def _resolve(self, hook: str, name: str, registry: Registry[Any], cls: type) -> tuple[Any, str]:
        # pluggy's firstresult order (last registered first), attributing the answer to its plugin.
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            with blamed(f"plugin {impl.plugin_name!r} resolving {name!r}"):
                spec = impl.function(name=name)
            if spec is not None:
                if not isinstance(spec, cls):
                    raise PluginError(f"plugin {impl.plugin_name!r}: {hook} returned {type(spec).__name__}")
                return spec, impl.plugin_name
        raise registry.unknown(name)


def _call_each(pm: PluginManager, hook_name: str) -> Iterator[tuple[str, Any]]:
    """Call every implementation of a no-argument register hook, attributing results."""
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        with blamed(f"plugin {impl.plugin_name!r}: {hook_name}"):
            items = impl.function()
        if items is None:
            continue
        if not isinstance(items, (list, tuple)):
            raise PluginError(f"plugin {impl.plugin_name!r}: {hook_name} returned {type(items).__name__}, expected a list")
        for item in items:
            yield impl.plugin_name, item


def _collect(pm: PluginManager, hook: str, kind: str, command: str, cls: type) -> Registry[Any]:
    registry: Registry[Any] = Registry(kind, command)
    for plugin, spec in _call_each(pm, hook):
        if not isinstance(spec, cls):
            raise PluginError(f"plugin {plugin!r}: {hook} returned {type(spec).__name__}, expected {cls.__name__}")
        registry.add(spec.name, spec, plugin, describe=f" (factory {getattr(spec, 'factory', getattr(spec, 'fn', ''))})")
    return registry


def _collect_tasks(pm: PluginManager) -> Registry[Path]:
    registry: Registry[Path] = Registry("task", "harness list tasks")
    for plugin, directory in _call_each(pm, "harness_register_task_dirs"):
        if not isinstance(directory, (str, os.PathLike)) or not Path(directory).is_dir():
            raise PluginError(f"plugin {plugin!r}: harness_register_task_dirs returned {directory!r}, "
                              "expected paths of existing folders")
        for path in sorted(Path(directory).rglob("*.yaml")):
            other = registry._entries.get(path.stem)
            registry.add(path.stem, path, plugin, describe=f" ({other.item if other else ''} and {path})")
    return registry


def collect(pm: PluginManager) -> Registries:
    """Build every registry from the plugins loaded into ``pm``."""
    return Registries(
        models=_collect(pm, "harness_register_models", "model", "harness list models", ModelSpec),
        task_kinds=_collect(pm, "harness_register_task_kinds", "task kind", "harness list kinds", TaskKindSpec),
        tasks=_collect_tasks(pm),
        metrics=_collect(pm, "harness_register_metrics", "metric", "harness list metrics", MetricSpec),
        writers=_collect(pm, "harness_register_writers", "writer", "harness list writers", WriterSpec),
        datasets=_collect(pm, "harness_register_datasets", "dataset builder", "harness list datasets", DatasetSpec),
        trainers=_collect(pm, "harness_register_trainers", "trainer", "harness list trainers", TrainerSpec),
        pm=pm,
    )


__all__ = ["Entry", "Registries", "Registry", "collect"]
