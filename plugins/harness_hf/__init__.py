"""transformers models: CLIP-style dual encoders and vision backbones, from the hub or local dirs.

Names are parsed in :mod:`harness_hf.names` without importing torch or transformers; the
model is built by :func:`harness_hf.encoder.load` only when a run needs it.
"""

from __future__ import annotations

from harness import ModelSpec, hookimpl

from . import names


@hookimpl
def harness_register_models() -> list[ModelSpec]:
    """A few well-known hub models; any other ``hf:`` name resolves (see :mod:`harness_hf.names`)."""
    return names.well_known()


@hookimpl
def harness_resolve_model(name: str) -> ModelSpec | None:
    """Any ``hf:`` name; None for other prefixes."""
    return names.parse(name)
