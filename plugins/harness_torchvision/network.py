"""The torchvision encoder: a classification network split into a feature trunk and its
final linear layer.

``encode_image`` returns the input of the network's last ``nn.Linear`` (for ResNet,
MobileNetV2, EfficientNet, DenseNet, ConvNeXt, ViT, Swin: the globally pooled,
pre-classifier features; for VGG/AlexNet and MobileNetV3: the hidden layer that feeds
the last linear layer). ``classifier(features)`` applies that layer and gives the
ImageNet logits, so predictions can be checked against the original network.

``encode_image_tokens(pixels, layer)`` returns ``(N, T, D)``. ``layer=None``: the feature map
the network pools (the input of its last ``AdaptiveAvgPool2d``; else the output of
``.features``, with the ReLU DenseNet applies to it in place before pooling), its ``H*W``
positions as tokens in row-major order; for ViT, the encoder output after its final LayerNorm,
class token first (``encode_image == tokens[:, 0]``). An int ``layer`` is offered where
stages are a plain list: networks with a ``.features`` Sequential of NCHW maps (MobileNet,
EfficientNet, ConvNeXt, VGG, ...) give the output of ``features[layer]`` (Python indexing,
0 the stem); ViT gives hidden state ``layer`` of ``[embeddings, block 1, ..., block n]``
(negative from the end; before the final LayerNorm). Other networks (ResNet, RegNet, Swin,
...) accept only ``None``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness import (IncompatibleError, LoadContext, ModelLoadError, ModelSpec, ensure_torchvision, first_line,
                     layer_index, load_state_strict, n_parameters, state_fingerprint)

from . import checkpoint

ensure_torchvision()

import torch  # noqa: E402
import torchvision  # noqa: E402
from torchvision import transforms  # noqa: E402

#: ImageNet statistics of the standard eval transform (used when weights carry none).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def standard_transform() -> Any:
    """Resize(256) -> CenterCrop(224) -> float tensor -> ImageNet Normalize (torchvision's preset)."""
    return transforms.Compose([
        transforms.Resize(256, interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def _split_head(network: torch.nn.Module, arch: str) -> torch.nn.Linear:
    """Replace the network's last ``nn.Linear`` (in registration order) by Identity; return it."""
    linears = [(name, m) for name, m in network.named_modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ModelLoadError(f"torchvision {arch}: has no linear classifier layer to take features before")
    name, head = linears[-1]
    parent_name, _, child = name.rpartition(".")
    setattr(network.get_submodule(parent_name) if parent_name else network, child, torch.nn.Identity())
    return head


class TorchvisionEncoder:
    """A frozen torchvision classifier used as an image encoder (eval mode, no gradients):
    ``image_embed`` and ``image_tokens``."""

    def __init__(self, network: torch.nn.Module, arch: str, transform: Any, revision: str | None,
                 categories: Sequence[str] | None, device: str) -> None:
        network.eval().requires_grad_(False)
        self.arch = arch
        self.fingerprint = state_fingerprint(network)  # the whole checkpoint, torchvision key names
        self.n_params = n_parameters(network)
        self.head = _split_head(network, arch)
        self.network = network.to(device)
        self.head.to(device)
        self.device = device
        self.embed_dim: int | None = self.head.in_features
        self.transform = transform
        self.revision = revision
        #: ImageNet class names when the weights define them, else None.
        self.categories = list(categories) if categories else None

    def preprocess(self, image: Any) -> torch.Tensor:
        """PIL RGB image -> ``(C, H, W)`` float tensor with the weights' eval transform."""
        return self.transform(image)

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, D)`` pre-classifier features."""
        return self.network(pixels.to(self.device)).flatten(1)

    @torch.no_grad()
    def encode_image_tokens(self, pixels: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, T, D)`` tokens at ``layer`` (see the module docstring)."""
        pixels = pixels.to(self.device)
        stages = self._stages()
        if layer is not None and stages is not None:  # run the stages up to the chosen one only
            last = layer_index(layer, len(stages), f"torchvision {self.arch} has {len(stages)} stages")
            tokens = stages[:last + 1](pixels)
        else:
            tokens = self._capture(pixels, *self._token_source(layer))
        return tokens.flatten(2).transpose(1, 2) if tokens.ndim == 4 else tokens

    def _stages(self) -> torch.nn.Sequential | None:
        """``.features`` when it is a Sequential of NCHW maps (not Swin's NHWC), else None."""
        features = getattr(self.network, "features", None)
        swin = isinstance(self.network, torchvision.models.SwinTransformer)
        return features if isinstance(features, torch.nn.Sequential) and not swin else None

    def _token_source(self, layer: int | None) -> tuple[torch.nn.Module, bool]:
        """The module holding the tokens, and whether they are its input (else its output)."""
        network = self.network
        if isinstance(network, torchvision.models.VisionTransformer):
            if layer is None:
                return network.encoder, False
            blocks = network.encoder.layers
            index = layer_index(layer, len(blocks) + 1, f"torchvision {self.arch} has {len(blocks) + 1} hidden states")
            return (blocks[0], True) if index == 0 else (blocks[index - 1], False)
        if layer is not None:
            raise IncompatibleError(f"torchvision {self.arch}: chosen layers need a ViT or a network with a "
                                    f".features Sequential; use layer None, got {layer}")
        pools = [m for m in network.modules() if isinstance(m, torch.nn.AdaptiveAvgPool2d)]
        if pools:
            return pools[-1], True
        stages = self._stages()
        if stages is not None:
            return stages, False
        raise IncompatibleError(f"torchvision {self.arch}: no feature map to take image tokens from")

    def _capture(self, pixels: torch.Tensor, module: torch.nn.Module, is_input: bool) -> torch.Tensor:
        """Run the network on ``pixels``; what ``module`` received (or returned) on the way."""
        taken: list[torch.Tensor] = []

        def keep(_module: torch.nn.Module, args: tuple, output: Any = None) -> None:
            taken.append(args[0] if is_input else output)

        hook = module.register_forward_pre_hook(keep) if is_input else module.register_forward_hook(keep)
        try:
            self.network(pixels)
        finally:
            hook.remove()
        return taken[0]

    @torch.no_grad()
    def classifier(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` features -> ``(N, classes)`` logits of the network's own final layer."""
        return self.head(torch.as_tensor(features).to(self.device, torch.float32))

    def provenance(self) -> dict[str, Any]:
        return {"revision": self.revision, "fingerprint": self.fingerprint, "n_parameters": self.n_params}


def _builder(arch: str) -> Any:
    known = torchvision.models.list_models(module=torchvision.models)
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=3)
        hint = (f"; did you mean {', '.join(close)}?" if close
                else f"; {len(known)} known, e.g. resnet50, vit_b_16, mobilenet_v2 (see torchvision.models.list_models())")
        raise ModelLoadError(f"unknown torchvision classification architecture {arch!r}{hint}")
    return torchvision.models.get_model_builder(arch)


def _build(args: Mapping[str, Any], seed: int) -> tuple[torch.nn.Module, Any, str | None, Any]:
    """(network with weights, eval transform, revision, categories) for the spec's ``args``."""
    arch, source = args["arch"], args["source"]
    builder = _builder(arch)
    if source == "torchvision":
        weights = checkpoint.cached_weights(arch, args["weights"])
        network = builder(weights=weights, progress=False)
        return network, weights.transforms(), f"{weights.name}:{Path(weights.url).name}", weights.meta.get("categories")
    if source == "bundled":
        weights = checkpoint.weights_enum(arch, args["weights"])
        network = builder(weights=None)
        path = checkpoint.bundled_path()
        load_state_strict(network, checkpoint.read_state_dict(path), str(path), "the architecture")
        return network, weights.transforms(), f"{weights.name}:{checkpoint.BUNDLED_FILE}", weights.meta.get("categories")
    if source == "file":
        path = Path(args["path"])
        state = checkpoint.read_state_dict(path)
        network = builder(weights=None)
        load_state_strict(network, state, str(path), "the architecture")
        return network, standard_transform(), f"sha256:{checkpoint.file_sha256(path)}", None
    if source == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            network = builder(weights=None)
        return network, standard_transform(), f"random:seed={seed}", None
    raise ModelLoadError(f"torchvision {arch}: unknown weights source {source!r}")


def load(spec: ModelSpec, ctx: LoadContext) -> TorchvisionEncoder:
    """Model factory named by the plugin's specs (``harness_torchvision.network:load``)."""
    arch = spec.args["arch"]
    try:
        network, transform, revision, categories = _build(spec.args, ctx.seed)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load {spec.name!r} ({arch}): {type(exc).__name__}: {first_line(exc)}") from None
    return TorchvisionEncoder(network, arch, transform, revision, categories, ctx.device)
