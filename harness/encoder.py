"""The narrow runtime protocol every encoder implements. Encoders never see tasks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    import PIL.Image
    import torch


@dataclass(frozen=True)
class LoadOptions:
    """What an encoder factory needs to know about the run."""

    device: str = "cpu"
    dtype: str = "fp32"
    seed: int = 0
    registries: Any = field(default=None, compare=False, repr=False)
    """The run's :class:`~harness.registry.Registries` (None outside a run): an encoder built on
    other encoders (e.g. ``sharelock:``) resolves them with it, so ``-p`` flags apply to them too."""


@runtime_checkable
class Encoder(Protocol):
    """An image and/or text encoder, as task kinds see it.

    ``encode_image`` takes a batch stacked from ``preprocess`` outputs and returns
    ``(N, D)`` unnormalised embeddings; ``encode_text`` takes strings. Both may be
    absent from ``modalities``; task kinds check that before calling them.
    """

    modalities: frozenset[str]
    embed_dim: int | None

    def preprocess(self, image: PIL.Image.Image) -> torch.Tensor: ...

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor: ...

    def provenance(self) -> dict[str, Any]:
        """``{"revision": str | None, "fingerprint": str, "n_parameters": int}``."""
        ...


def state_fingerprint(module: Any) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes and bytes), in key order."""
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.view(torch.int16)
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def n_parameters(module: Any) -> int:
    """Number of parameters of a torch module."""
    return int(sum(p.numel() for p in module.parameters()))
