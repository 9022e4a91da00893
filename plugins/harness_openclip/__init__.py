"""open_clip models: pretrained tags, local checkpoints, hub and local-dir models.

Names are parsed in :mod:`harness_openclip.names` without importing torch or open_clip;
the model is built by :func:`harness_openclip.encoder.load` only when a run needs it.
"""

from __future__ import annotations

from harness import ModelSpec, hookimpl

from .names import parse, well_known


@hookimpl
def harness_register_models() -> list[ModelSpec]:
    """A few well-known open_clip models (static data; weights are fetched at load time)."""
    return well_known()


@hookimpl
def harness_resolve_model(name: str) -> ModelSpec | None:
    """Any ``openclip:`` name (see :mod:`harness_openclip.names`); None for other prefixes."""
    return parse(name)
