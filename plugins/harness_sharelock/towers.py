"""The frozen towers ShareLock sits on: image and text encoders loaded by harness name.

A ShareLock head is trained on features of other encoders (``torchvision:mobilenet_v2``,
``lm:all-MiniLM-L6-v2``, ...), which are resolved and loaded through the harness registries
exactly as ``harness run --model NAME`` would. Loaded towers are kept per process (keyed by
name, device, dtype and seed), so several runs in one process load each tower once.

Two stopgaps live here until the core offers them (see the plugin's README notes):
``registries()`` builds its own plugin manager, adding this distribution's plugins when
they are not installed as entry points yet; ``features_for`` builds a feature extractor for
a second encoder like the run's (device, precision, batch size, feature store), keyed in the
store the way ``harness run`` keys a model, so tower features are cached across runs.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any

from harness.encoder import LoadOptions
from harness.errors import HarnessError, IncompatibleError, ModelLoadError
from harness.specs import load_object

if TYPE_CHECKING:
    from harness.registry import Registries

#: Plugins this one relies on for tower names (``lm:``, ``hashbow:``) and for ``sharelock:``.
COMPANIONS = ("harness_lm", "harness_sharelock")
_LOADED: dict[tuple[str, str, str, int], Any] = {}
_REGISTRIES: list[Registries] = []


def registries() -> Registries:
    """Registries of the installed plugins (plus :data:`COMPANIONS` when not installed as entry points)."""
    if _REGISTRIES:
        return _REGISTRIES[0]
    from harness.pluginmanager import get_plugin_manager
    from harness.registry import collect

    pm = get_plugin_manager()
    for name in COMPANIONS:
        module = importlib.import_module(name)
        if not pm.is_registered(module) and not pm.is_blocked(name):
            pm.register_plugin(module, name)
    _REGISTRIES.append(collect(pm))
    return _REGISTRIES[0]


def use_registries(found: Registries | None) -> None:
    """Resolve tower names with ``found`` from now on (None: build them again on next use)."""
    _REGISTRIES.clear()
    if found is not None:
        _REGISTRIES.append(found)


def load(name: str, options: LoadOptions, needs: str, found: Registries | None = None) -> Any:
    """Load encoder ``name`` (cached per process); it must have modality ``needs``."""
    return load_keyed(name, options, needs, found)[0]


def load_keyed(name: str, options: LoadOptions, needs: str,
               found: Registries | None = None) -> tuple[Any, dict[str, Any]]:
    """(encoder, feature-store key) of tower ``name``: the key names the spec, its plugin and weights,
    as ``harness run`` keys its model, so a tower shares cached features with runs of that model."""
    found = found or registries()
    spec, plugin = found.resolve_encoder(name)
    if needs not in spec.modalities:
        raise IncompatibleError(f"{needs} tower {name!r} has modalities {sorted(spec.modalities)}; it must embed {needs}")
    cache_key = (spec.name, options.device, options.dtype, options.seed)
    if cache_key not in _LOADED:
        try:
            _LOADED[cache_key] = load_object(spec.factory)(spec, options)
        except HarnessError:
            raise
        except (OSError, RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelLoadError(f"cannot load {needs} tower {name!r}: {first}") from None
    encoder = _LOADED[cache_key]
    info = found.pm.provenance.get(plugin)
    provenance = encoder.provenance()
    key = {"name": spec.name, "plugin": plugin, "plugin_version": info.version if info else None,
           "fingerprint": provenance["fingerprint"], "revision": provenance.get("revision")}
    return encoder, key


def describe(name: str, encoder: Any, seed: int) -> dict[str, Any]:
    """What identifies a tower in checkpoints: name, width, provenance, and the seed it was loaded
    with (randomly initialised towers depend on it)."""
    return {"name": name, "embed_dim": encoder.embed_dim, "load_seed": seed, **encoder.provenance()}


def features_for(template: Any, encoder: Any, key: dict[str, Any] | None = None) -> Any:
    """A feature extractor like ``template`` (the run's: device, dtype, batch size, store, workers,
    cost counters) for another ``encoder``, keyed in the store by ``key``; a plain one without a template."""
    from harness.features import Features

    if template is None or not dataclasses.is_dataclass(template):
        return Features(encoder)
    names = {f.name for f in dataclasses.fields(template)}
    changes: dict[str, Any] = {"encoder": encoder}
    if "encoder_key" in names:  # never reuse the run model's key for another encoder
        changes["encoder_key"] = key if getattr(template, "store", None) is not None else None
    if "_resolved_batch" in names:
        changes["_resolved_batch"] = None
    return dataclasses.replace(template, **changes)
