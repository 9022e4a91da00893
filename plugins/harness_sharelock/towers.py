"""The frozen towers ShareLock sits on: image and text encoders loaded by harness name.

A ShareLock head is trained on features of other encoders (``torchvision:mobilenet_v2``,
``lm:all-MiniLM-L6-v2``, ...), resolved and loaded by :mod:`harness.auxiliary` exactly as
``harness run --model NAME`` would, once per process. Inside a run (and in ``harness train
sharelock``) names resolve with the run's plugins (``LoadOptions.registries``, so ``-p`` flags
apply); a ``sharelock:`` model loaded from Python outside a run resolves them with the
installed plugins, plus this distribution's when it is not installed as entry points.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from harness.auxiliary import load_encoder
from harness.encoder import LoadOptions

if TYPE_CHECKING:
    from harness.registry import Registries

#: Plugins this one relies on for tower names (``lm:``, ``hashbow:``) and for ``sharelock:``.
COMPANIONS = ("harness_lm", "harness_sharelock")


@lru_cache(maxsize=1)
def installed_registries() -> Registries:
    """Registries of the installed plugins (plus :data:`COMPANIONS` when not installed as entry points)."""
    from harness.pluginmanager import get_plugin_manager
    from harness.registry import collect

    pm = get_plugin_manager()
    for name in COMPANIONS:
        module = importlib.import_module(name)
        if not pm.is_registered(module) and not pm.is_blocked(name):
            pm.register_plugin(module, name)
    return collect(pm)


def load_keyed(name: str, options: LoadOptions, needs: str) -> tuple[Any, dict[str, Any]]:
    """(encoder, feature-store key) of tower ``name``, which must embed ``needs``; the key is the one
    ``harness run`` gives that model, so a tower shares cached features with runs of it."""
    encoder, key, _ = load_encoder(name, options, options.registries or installed_registries(), needs)
    return encoder, key


def describe(name: str, encoder: Any, seed: int) -> dict[str, Any]:
    """What identifies a tower in checkpoints: name, width, provenance, and the seed it was loaded
    with (randomly initialised towers depend on it)."""
    return {"name": name, "embed_dim": encoder.embed_dim, "load_seed": seed, **encoder.provenance()}
