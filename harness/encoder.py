"""The narrow runtime protocol every encoder implements. Encoders never see tasks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

from .errors import IncompatibleError, ModelLoadError
from .hub import first_line
from .specs import load_object

if TYPE_CHECKING:
    import PIL.Image
    import torch

    from .specs import EncoderSpec


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


def build_encoder(spec: EncoderSpec, options: LoadOptions) -> Any:
    """The encoder ``spec`` names, made by its factory; what a factory raises for missing, corrupt
    or unreachable weights (OSError, RuntimeError, ValueError) becomes a one-line ModelLoadError."""
    factory = load_object(spec.factory)
    try:
        return factory(spec, options)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"cannot load model {spec.name!r}: {first_line(exc)}") from None


def load_state_strict(module: Any, state: dict[str, Any], where: str, fits: str) -> None:
    """``module.load_state_dict(state, strict=True)``, a mismatch summarised on one line:
    ``{where}: state dict does not fit {fits}: missing N (e.g. 'key'); unexpected ...; wrong shape ...``."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{label} {len(keys)} (e.g. {keys[0]!r})" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise ModelLoadError(f"{where}: state dict does not fit {fits}: {'; '.join(parts)}")
    module.load_state_dict(state, strict=True)


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


def layer_index(layer: int, count: int, what: str) -> int:
    """``layer`` (negative from the end) as an index into ``count`` hidden states or stages, for
    ``encode_image_tokens``; out of range is a one-line IncompatibleError starting with ``what``."""
    if not -count <= layer < count:
        raise IncompatibleError(f"{what}: layer must be None or in {-count}..{count - 1}, got {layer}")
    return layer % count
