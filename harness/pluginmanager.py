"""Build the plugin manager: entry points, ``-p`` flags, blocking, provenance."""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import re
from dataclasses import dataclass
from typing import Iterable

import pluggy

from . import hookspecs
from .errors import PluginError, blamed

ENTRY_POINT_GROUP = "harness"
#: Set to any non-empty value to load only plugins named with ``-p NAME``.
AUTOLOAD_ENV = "HARNESS_DISABLE_PLUGIN_AUTOLOAD"
#: What ``-p NAME`` may import: a dotted module name (no paths, no relative imports).
MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


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

    def notify(self, hook_name: str, **kwargs: object) -> None:
        """Call every implementation of ``hook_name`` in turn; what one raises becomes one line naming
        its plugin (:class:`blamed`)."""
        for impl in reversed(getattr(self.hook, hook_name).get_hookimpls()):
            with blamed(f"plugin {impl.plugin_name!r}: {hook_name}"):
                impl.function(**{name: kwargs[name] for name in impl.argnames})

    def plugins_info(self) -> list[PluginInfo]:
        """Loaded plugins, sorted by name."""
        return sorted(self.provenance.values(), key=lambda p: p.name)


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _load_entry_point(pm: PluginManager, ep: metadata.EntryPoint) -> None:
    try:
        plugin = ep.load()
    except (Exception, SystemExit) as exc:  # any import-time failure of third-party code, or an exit
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
    eps = {ep.name: ep for ep in _entry_points()}
    wanted = [f for f in flags if not f.startswith("no:")]
    for flag in flags:
        if flag.startswith("no:"):
            name = flag[3:]
            if name not in eps and name not in wanted:
                known = ", ".join(sorted(eps)) or "none"
                raise PluginError(f"-p {flag}: no plugin named {name!r} to block (entry-point plugins: {known})")
            pm.set_blocked(name)
    autoload = not os.environ.get(AUTOLOAD_ENV)
    for name, ep in eps.items():
        if (autoload or name in wanted) and not pm.is_blocked(name) and not pm.has_plugin(name):
            _load_entry_point(pm, ep)
    for name in wanted:
        if name in eps or pm.has_plugin(name) or pm.is_blocked(name):
            continue
        if not MODULE_NAME.fullmatch(name):
            raise PluginError(f"-p {name!r}: not an entry-point plugin or a module name (dotted identifiers)")
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise PluginError(f"-p {name}: no entry-point plugin or importable module of that name ({exc})") from None
        except (Exception, SystemExit) as exc:  # the module's own code failed (or exited) at import
            raise PluginError(f"-p {name}: importing the module failed: {type(exc).__name__}: {exc}") from None
        if not pm.is_registered(module):  # e.g. ``-p harness_lm`` when entry point ``lm`` loaded it
            pm.register_plugin(module, name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from None
    return pm
