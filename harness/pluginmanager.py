"""Build the plugin manager: entry points, ``-p`` flags, blocking, provenance."""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
from dataclasses import dataclass
from typing import Iterable

import pluggy

from . import hookspecs
from .errors import PluginError

ENTRY_POINT_GROUP = "harness"
#: Set to any non-empty value to load only plugins named with ``-p NAME``.
AUTOLOAD_ENV = "HARNESS_DISABLE_PLUGIN_AUTOLOAD"


@dataclass(frozen=True)
class PluginInfo:
    """Where a loaded plugin came from (recorded in every result)."""

    name: str
    module: str
    distribution: str | None
    version: str | None


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers the distribution of each loaded plugin."""

    def __init__(self) -> None:
        super().__init__("harness")
        self.add_hookspecs(hookspecs)
        self.provenance: dict[str, PluginInfo] = {}

    def register_plugin(self, plugin: object, name: str, dist: metadata.Distribution | None = None) -> None:
        """Register ``plugin`` under ``name``, wrapping pluggy's validation errors."""
        try:
            self.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(f"plugin {name!r} breaks the plugin contract: {exc}") from None
        module = getattr(plugin, "__name__", type(plugin).__module__)
        self.provenance[name] = PluginInfo(
            name=name,
            module=module,
            distribution=dist.metadata["Name"] if dist else None,
            version=dist.version if dist else None,
        )

    def plugins_info(self) -> list[PluginInfo]:
        """Loaded plugins, sorted by name."""
        return sorted(self.provenance.values(), key=lambda p: p.name)


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _load_entry_point(pm: PluginManager, ep: metadata.EntryPoint) -> None:
    try:
        plugin = ep.load()
    except Exception as exc:  # any import-time failure of third-party code
        dist = ep.dist.metadata["Name"] if ep.dist else "?"
        raise PluginError(
            f"plugin {ep.name!r} ({ep.value}, from distribution {dist!r}) failed to load: "
            f"{type(exc).__name__}: {exc}; block it with -p no:{ep.name}"
        ) from None
    pm.register_plugin(plugin, ep.name, ep.dist)


def get_plugin_manager(plugin_flags: Iterable[str] = ()) -> PluginManager:
    """Return a fresh manager with entry-point plugins loaded.

    ``plugin_flags`` are ``-p`` values: ``no:NAME`` blocks a plugin, ``NAME`` loads an
    entry-point plugin by name (useful with autoload disabled) or imports a module.
    """
    pm = PluginManager()
    flags = list(plugin_flags)
    for flag in flags:
        if flag.startswith("no:"):
            pm.set_blocked(flag[3:])
    eps = {ep.name: ep for ep in _entry_points()}
    autoload = not os.environ.get(AUTOLOAD_ENV)
    wanted = [f for f in flags if not f.startswith("no:")]
    for name, ep in eps.items():
        if (autoload or name in wanted) and not pm.is_blocked(name) and not pm.has_plugin(name):
            _load_entry_point(pm, ep)
    for name in wanted:
        if name in eps or pm.has_plugin(name) or pm.is_blocked(name):
            continue
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise PluginError(f"-p {name}: no entry-point plugin or importable module of that name ({exc})") from None
        if not pm.is_registered(module):  # e.g. ``-p harness_lm`` when entry point ``lm`` loaded it
            pm.register_plugin(module, name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from None
    return pm
