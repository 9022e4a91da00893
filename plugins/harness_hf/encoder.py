"""transformers image and image+text encoders behind harness's model capabilities.

Vision backbones (:class:`HfEncoder`) are ``image_embed`` and ``image_tokens``; dual encoders
(:class:`HfDualEncoder`) are also ``text_embed``.

Which output is the embedding:

- Dual encoders (CLIP, SigLIP, ALIGN, ...: anything with ``get_image_features`` and
  ``get_text_features``): those two methods, i.e. the projected, unnormalised embeddings the
  model was trained to compare. Text is tokenised by the repo's own tokenizer, truncated to
  the text tower's positions; SigLIP pads to that maximum length, as it was trained (its text
  pooler reads the last position), other models pad to the longest text in the batch.
- Vision-only models: the final-norm CLS token. ViT-style models (``CLS_TYPES``) take
  ``last_hidden_state[:, 0]``, because their ``pooler_output`` is an extra dense+tanh layer
  that most checkpoints never trained; every other model takes ``pooler_output`` flattened,
  which is the layer-normed CLS token for DINOv2, the (normed) patch mean for BEiT and Swin,
  and the globally pooled features for conv nets (ConvNeXt, ResNet, ...). A model without a
  pooler falls back to the first token (or the spatial mean of a feature map).

Token-level outputs (``encode_image_tokens``) come from the vision model itself, or the vision
tower (``model.vision_model``) of a dual encoder, as ``(N, T, D)``: transformers' sequence
(CLS and any register or distillation tokens first, then patches), or a conv net's feature map
with its ``H*W`` positions as tokens. ``layer=None`` is ``last_hidden_state``: the last block's
output, through the final norm for models that norm the whole sequence (ViT, DeiT, DINOv2,
SigLIP, Swin) and un-normed for those that norm only what they pool (CLIP's
``post_layernorm``, mean-pooling BEiT, conv nets). An int indexes ``hidden_states``: 0 the
embeddings, ``k`` the output of block (conv nets: stage) ``k``, negative from the end; these
precede any final norm, so ``-1`` differs from ``None`` for models that norm the sequence.

Preprocessing is the repo's own image processor. Weights load with ``trust_remote_code=False``
(transformers reads ``.bin`` files with ``weights_only=True``); hub ids pass their revision to
every ``from_pretrained`` call.
"""

from __future__ import annotations

import inspect
import os
import warnings
from typing import TYPE_CHECKING, Any, Sequence

from harness import (IncompatibleError, LoadContext, ModelLoadError, ModelSpec, cached_commit, ensure_torchvision,
                     first_line, hub_failure, layer_index, n_parameters, state_fingerprint)

from .names import capabilities_of, kind

if TYPE_CHECKING:
    import PIL.Image
    import torch

CLS_TYPES = frozenset({"vit", "deit", "vit_msn", "vit_hybrid"})
MAX_LENGTH_PADDING = frozenset({"siglip"})


class HfEncoder:
    """A transformers vision backbone with its image processor (``image_embed``, ``image_tokens``)."""

    def __init__(self, model: Any, image_processor: Any, revision: str | None, device: str) -> None:
        self.model, self.image_processor = model, image_processor
        self.model_type = str(getattr(model.config, "model_type", ""))
        self.revision, self.device = revision, device
        self.embed_dim: int | None = None
        self._fingerprint: str | None = None

    def preprocess(self, image: PIL.Image.Image) -> torch.Tensor:
        """The repo's image processor on one RGB image: ``(C, H, W)``."""
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` on the model's device -> ``(N, D)`` unnormalised (see module docstring)."""
        outputs = self.model(pixel_values=pixels)
        hidden, pooled = outputs.last_hidden_state, getattr(outputs, "pooler_output", None)
        if self.model_type in CLS_TYPES or pooled is None:
            return hidden[:, 0] if hidden.ndim == 3 else hidden.flatten(2).mean(-1)
        return pooled.flatten(1)

    def encode_image_tokens(self, pixels: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, T, D)`` tokens of the vision tower at ``layer`` (see module docstring)."""
        tower = self._vision_tower()
        outputs = tower(pixel_values=pixels, output_hidden_states=layer is not None)
        if layer is None:
            hidden = outputs.last_hidden_state
        else:
            count = len(outputs.hidden_states)
            hidden = outputs.hidden_states[layer_index(layer, count, f"{self.model_type!r} has {count} hidden "
                                                                      "states (0 is the embeddings)")]
        return hidden.flatten(2).transpose(1, 2) if hidden.ndim == 4 else hidden

    def _vision_tower(self) -> Any:
        return self.model

    def provenance(self) -> dict[str, Any]:
        """Hub commit (None for local directories), state fingerprint, parameter count."""
        if self._fingerprint is None:
            self._fingerprint = state_fingerprint(self.model)
        return {"revision": self.revision, "fingerprint": self._fingerprint,
                "n_parameters": n_parameters(self.model)}


class HfDualEncoder(HfEncoder):
    """A CLIP-style dual encoder with its tokenizer: also ``text_embed``, in the image embedding space."""

    def __init__(self, model: Any, image_processor: Any, tokenizer: Any, revision: str | None, device: str) -> None:
        super().__init__(model, image_processor, revision, device)
        self.tokenizer = tokenizer

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, D)`` projected, unnormalised (``get_image_features``)."""
        return _tensor(self.model.get_image_features(pixel_values=pixels))

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Tokenise with the repo's tokenizer -> ``(N, D)`` unnormalised."""
        max_length = _text_positions(self.model.config)
        padding = "max_length" if self.model_type in MAX_LENGTH_PADDING else True
        batch = self.tokenizer(list(texts), padding=padding, truncation=True, max_length=max_length,
                               return_tensors="pt")
        accepted = inspect.signature(self.model.get_text_features).parameters
        inputs = {key: value.to(self.device) for key, value in batch.items() if key in accepted}
        return _tensor(self.model.get_text_features(**inputs))

    def _vision_tower(self) -> Any:
        tower = getattr(self.model, "vision_model", None)
        if tower is None:
            raise IncompatibleError(f"{type(self.model).__name__} has no vision_model to take image tokens from")
        return tower


def load(spec: ModelSpec, ctx: LoadContext) -> HfEncoder:
    """Factory named by the ``hf:`` specs: model, image processor and (dual) tokenizer, float32 weights."""
    ensure_torchvision()
    import torch
    import transformers

    path, hub = spec.args["path"], spec.args.get("hub", False)
    if not hub and not os.path.isdir(path):
        raise ModelLoadError(f"cannot load model {spec.name!r}: directory not found: {path}")
    kwargs: dict[str, Any] = {"trust_remote_code": False}
    if hub and spec.revision:
        kwargs["revision"] = spec.revision
    torch.manual_seed(ctx.seed)
    try:
        config = transformers.AutoConfig.from_pretrained(path, **kwargs)
        capabilities = capabilities_of(config.to_dict(), spec.name)
        _check_capabilities(spec, capabilities)
        dual = "text_embed" in capabilities
        model, info = transformers.AutoModel.from_pretrained(
            path, output_loading_info=True, dtype=torch.float32, **kwargs)
        _check_model(spec, model, dual, info)
        image_processor = transformers.AutoImageProcessor.from_pretrained(path, **kwargs)
        model.to(ctx.device).eval()
        revision = (cached_commit(path, "config.json", spec.revision) or spec.revision) if hub else None
        if dual:
            tokenizer = transformers.AutoTokenizer.from_pretrained(path, **kwargs)
            encoder: HfEncoder = HfDualEncoder(model, image_processor, tokenizer, revision, ctx.device)
        else:
            encoder = HfEncoder(model, image_processor, revision, ctx.device)
        encoder.embed_dim = _probe_dim(encoder)
    except ModelLoadError:
        raise
    except Exception as exc:  # OSError (missing/unreachable), ValueError (unknown type), safetensors errors
        raise ModelLoadError((hub and hub_failure(spec.name, exc))
                             or f"cannot load model {spec.name!r}: {type(exc).__name__}: {first_line(exc)}") from exc
    return encoder


def _check_capabilities(spec: ModelSpec, actual: frozenset[str]) -> None:
    """The capabilities planned at resolve time (maybe guessed from the name) must be the real ones."""
    if actual == spec.capabilities:
        return
    guessed = spec.args.get("guessed")
    how = "guessed from its name because its config.json was not cached" if guessed else "resolved"
    raise ModelLoadError(
        f"cannot load model {spec.name!r}: it was {how} as {kind(spec.capabilities)} but is {kind(actual)}"
        + ("; run again (its config.json is cached now)" if guessed else ""))


def _check_model(spec: ModelSpec, model: Any, dual: bool, info: dict[str, Any]) -> None:
    """The loaded class must offer what the capabilities promise; missing weights are announced."""
    has_both = hasattr(model, "get_image_features") and hasattr(model, "get_text_features")
    if dual and not has_both:
        raise ModelLoadError(f"cannot load model {spec.name!r}: {type(model).__name__} has no get_text_features")
    if not has_both and getattr(model, "main_input_name", "") != "pixel_values":
        raise ModelLoadError(f"cannot load model {spec.name!r}: {type(model).__name__} does not take images")
    missing = [key for key in info.get("missing_keys", ()) if not key.startswith("pooler.")]
    if missing:
        warnings.warn(f"{spec.name}: {len(missing)} weights missing from the checkpoint and randomly "
                      f"initialised (seeded), e.g. {', '.join(sorted(missing)[:3])}", stacklevel=2)


def _probe_dim(encoder: HfEncoder) -> int:
    """Embedding width, read off one tiny forward pass (configs name it differently per family)."""
    import PIL.Image
    import torch

    with torch.inference_mode():
        if isinstance(encoder, HfDualEncoder):
            return int(encoder.encode_text(["a"]).shape[-1])
        pixels = encoder.preprocess(PIL.Image.new("RGB", (64, 64)))[None].to(encoder.device)
        return int(encoder.encode_image(pixels).shape[-1])


def _text_positions(config: Any) -> int | None:
    text = getattr(config, "text_config", config)
    return getattr(text, "max_position_embeddings", None)


def _tensor(output: Any) -> torch.Tensor:
    """transformers 5 returns a ModelOutput whose pooler_output is the embedding; 4.x a tensor."""
    return output if hasattr(output, "ndim") else output.pooler_output
