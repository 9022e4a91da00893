"""Build an open_clip model, its eval transform and its tokenizer behind harness's model capabilities.

Weights are loaded by open_clip itself (``create_model_from_pretrained``, which refuses to
return a randomly initialised model) with ``weights_only=True``. A pretrained tag trained with
QuickGELU gets it forced on (open_clip 3 would only warn); for a checkpoint file, name the
``-quickgelu`` architecture yourself. The tokenizer is always
``open_clip.get_tokenizer`` of the same model name; an architecture open_clip does not know
is an error before that call, so its silent fallback to the default tokenizer never happens.
Embeddings are returned unnormalised, in float32 weights (the core applies autocast).

Token-level outputs (``encode_image_tokens``) need a ViT image tower (open_clip's
``VisionTransformer``; not ModifiedResNet or timm towers) and come from its
``forward_intermediates``: ``(N, 1 + patches, width)``, the class token first, then the patch
tokens in row-major order, never projected. ``layer=None`` is the last block's output through
``ln_post`` (the norm the pooled embedding goes through, so for class-token pooling
``encode_image == tokens[:, 0] @ visual.proj``; towers with attentional pooling, whose
``ln_post`` follows the pooler, give the raw output); ``k`` is the raw output of block ``k``
(1-based, negative from the end, as transformers' ``hidden_states``; the embeddings, 0, are
not offered).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from harness import (IncompatibleError, LoadContext, ModelLoadError, ModelSpec, cached_commit, ensure_torchvision,
                     first_line, hub_failure, n_parameters, state_fingerprint)

if TYPE_CHECKING:
    import PIL.Image
    import torch

WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.pth")  # what open_clip looks for in a local-dir


class OpenClipEncoder:
    """An open_clip CLIP-style model: image and text towers in one embedding space (``image_embed``,
    ``text_embed``; ``image_tokens`` for ViT image towers)."""

    def __init__(self, model: Any, transform: Callable, tokenizer: Callable, embed_dim: int,
                 revision: str | None, device: str) -> None:
        self.model, self.transform, self.tokenizer = model, transform, tokenizer
        self.embed_dim, self.revision, self.device = embed_dim, revision, device
        self._fingerprint: str | None = None

    def preprocess(self, image: PIL.Image.Image) -> torch.Tensor:
        """open_clip's eval transform (resize, centre crop, normalise): ``(C, H, W)``."""
        return self.transform(image)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` on the model's device -> ``(N, D)`` unnormalised."""
        return self.model.encode_image(pixels)

    def encode_image_tokens(self, pixels: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, 1 + patches, width)``: class then patch tokens (see module docstring)."""
        import torch
        from open_clip.transformer import VisionTransformer

        visual = self.model.visual
        if not isinstance(visual, VisionTransformer) or not hasattr(visual, "forward_intermediates"):
            raise IncompatibleError(f"open_clip {type(visual).__name__} image towers have no token-level outputs "
                                    "(only ViT towers, with open_clip's forward_intermediates)")
        blocks = len(visual.transformer.resblocks)
        if layer is not None and not (1 <= layer <= blocks or -blocks <= layer <= -1):
            raise IncompatibleError(f"this open_clip ViT has {blocks} blocks: layer must be None, "
                                    f"1..{blocks} or -{blocks}..-1, got {layer}")
        index = -1 if layer is None else layer - 1 if layer > 0 else layer
        out = visual.forward_intermediates(pixels, indices=[index], stop_early=True, intermediates_only=True,
                                           normalize_intermediates=layer is None and visual.attn_pool is None,
                                           output_fmt="NLC", output_extra_tokens=True)
        return torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], dim=1)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Tokenise with the model's own tokenizer -> ``(N, D)`` unnormalised."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        return self.model.encode_text(tokens)

    def provenance(self) -> dict[str, Any]:
        """Weights revision (the pretrained tag, or the hub commit), fingerprint, parameter count."""
        if self._fingerprint is None:
            self._fingerprint = state_fingerprint(self.model)
        return {"revision": self.revision, "fingerprint": self._fingerprint,
                "n_parameters": n_parameters(self.model)}


def load(spec: ModelSpec, ctx: LoadContext) -> OpenClipEncoder:
    """Factory named by the ``openclip:`` specs: load weights, transform and tokenizer."""
    ensure_torchvision()
    import open_clip
    import torch

    _check_source(spec, open_clip)
    model_name, pretrained = spec.args["model_name"], spec.args.get("pretrained")
    # open_clip 3 only warns when a tag was trained with QuickGELU and the arch config lacks it
    # (e.g. ViT-L-14/openai); the activation has no weights, so the mismatch would go unnoticed.
    tag = open_clip.get_pretrained_cfg(model_name, pretrained) if spec.args["source"] == "tag" else {}
    quick_gelu = bool(tag.get("quick_gelu", False))
    torch.manual_seed(ctx.seed)
    try:
        with _quiet_logging():
            model, transform = open_clip.create_model_from_pretrained(
                model_name, pretrained=pretrained, device=ctx.device, weights_only=True,
                force_quick_gelu=quick_gelu)
            tokenizer = open_clip.get_tokenizer(model_name)
            embed_dim = int(open_clip.get_model_config(model_name)["embed_dim"])
    except Exception as exc:  # open_clip raises RuntimeError, OSError, ValueError, pickle and safetensors errors
        raise ModelLoadError(_describe(spec, exc)) from exc
    model.eval()
    return OpenClipEncoder(model, transform, tokenizer, embed_dim, _revision(spec), ctx.device)


def _check_source(spec: ModelSpec, open_clip: Any) -> None:
    """Fail fast, offline, with suggestions: unknown arch or tag, missing file or directory."""
    args, where = spec.args, f"cannot load model {spec.name!r}"
    arch, source = args["model_name"], args["source"]
    if source in ("tag", "file") and arch not in open_clip.list_models():
        raise ModelLoadError(f"{where}: unknown open_clip architecture {arch!r}{_close(arch, open_clip.list_models())}")
    if source == "tag" and not open_clip.is_pretrained_cfg(arch, args["pretrained"]):
        tags = open_clip.list_pretrained_tags_by_model(arch)
        known = f"; known tags: {', '.join(tags)}" if tags else "; it has no pretrained tags"
        raise ModelLoadError(f"{where}: {args['pretrained']!r} is not a pretrained tag of {arch}"
                             f"{_close(args['pretrained'], tags) or known}")
    if source == "file" and not os.path.isfile(args["pretrained"]):
        raise ModelLoadError(f"{where}: checkpoint file not found: {args['pretrained']}")
    if source == "local-dir":
        path = Path(args["path"])
        if not path.is_dir():
            raise ModelLoadError(f"{where}: directory not found: {path}")
        if not (path / "open_clip_config.json").is_file():
            raise ModelLoadError(f"{where}: {path} has no open_clip_config.json")
        if not any(any(path.glob(pattern)) for pattern in WEIGHT_GLOBS):
            raise ModelLoadError(f"{where}: {path} holds no weights ({', '.join(WEIGHT_GLOBS)})")


def _close(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _describe(spec: ModelSpec, exc: BaseException) -> str:
    """One line: the model, and either 'hub unreachable' or the library's first line."""
    where = f"cannot load model {spec.name!r}"
    if spec.args["source"] in ("tag", "hf-hub") and (message := hub_failure(spec.name, exc)):
        return message
    if type(exc).__name__ == "UnpicklingError":
        return (f"{where}: torch.load(weights_only=True) refused the checkpoint: it is corrupt or pickles "
                "objects other than tensors (save a plain state_dict or safetensors)")
    if first_line(exc).startswith("Error(s) in loading state_dict"):
        arch = spec.args["model_name"]
        return f"{where}: the weights do not fit architecture {arch!r} ({first_line(exc).rstrip(':')})"
    return f"{where}: {type(exc).__name__}: {first_line(exc)}"


def _revision(spec: ModelSpec) -> str | None:
    """The tag for tags; the cached snapshot commit for hub repos; None for local files."""
    if spec.args["source"] == "tag":
        return spec.args["pretrained"]
    if spec.args["source"] == "hf-hub":
        return cached_commit(spec.args["repo"], "open_clip_config.json")
    return None


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """open_clip logs its failures at ERROR on the root logger; our one-line error says it all."""
    previous = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(previous)
