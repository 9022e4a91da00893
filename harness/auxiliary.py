"""Encoders a task needs besides the model under test: ShareLock's frozen image tower, a judge.

They are resolved with the run's plugins (so ``-p`` flags apply), loaded with the run's device,
dtype and seed, kept per process (a run over several models, or several tasks, loads each
once), extracted through the run's feature store under their own key (the key ``harness run``
gives them as a model, so cached features are shared both ways), and recorded in the task's
result (``auxiliary_models``) with their weights fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .encoder import build_encoder
from .errors import IncompatibleError

if TYPE_CHECKING:
    from .encoder import LoadOptions
    from .features import Features
    from .registry import Registries

_LOADED: dict[tuple[str, str, str, int], Any] = {}


def encoder_key(name: str, plugin: str, registries: Registries, encoder: Any) -> dict[str, Any]:
    """What names an encoder in feature-store keys: spec name, plugin and its version, weights."""
    info = registries.pm.provenance.get(plugin)
    provenance = encoder.provenance()
    return {"name": name, "plugin": plugin, "plugin_version": info.version if info else None,
            "fingerprint": provenance["fingerprint"], "revision": provenance.get("revision")}


def load_encoder(name: str, options: LoadOptions, registries: Registries,
                 needs: str | None = None) -> tuple[Any, dict[str, Any], str]:
    """(encoder, feature-store key, plugin) of encoder ``name``, loaded once per process; it must
    have modality ``needs`` when given."""
    spec, plugin = registries.resolve_encoder(name)
    if needs is not None and needs not in spec.modalities:
        raise IncompatibleError(f"encoder {name!r} has modalities {sorted(spec.modalities)}; it must embed {needs}")
    cached = (repr(spec), options.device, options.dtype, options.seed)  # the whole spec: -p may change it
    if cached not in _LOADED:
        _LOADED[cached] = build_encoder(spec, replace(options, registries=registries))
    encoder = _LOADED[cached]
    return encoder, encoder_key(spec.name, plugin, registries, encoder), plugin


@dataclass
class Auxiliary:
    """One task's loader of other encoders (see the module docstring); ``used`` is what it loaded."""

    registries: Registries
    options: LoadOptions
    used: list[dict[str, Any]] = field(default_factory=list)

    def features(self, name: str, needs: str, like: Features, role: str) -> Features:
        """A feature extractor for encoder ``name`` configured like ``like`` (the run's)."""
        encoder, key, plugin = load_encoder(name, self.options, self.registries, needs)
        provenance = encoder.provenance()
        record = {"name": key["name"], "plugin": plugin, "role": role, "revision": provenance.get("revision"),
                  "fingerprint": provenance["fingerprint"], "n_parameters": int(provenance["n_parameters"])}
        if record not in self.used:
            self.used.append(record)
        return like.for_encoder(encoder, key)
