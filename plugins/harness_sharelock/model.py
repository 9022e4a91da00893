"""The ShareLock head: two projectors over frozen features, and the symmetric CLIP loss.

``Projection`` (official ``sharelock/models/projection.py``): ``num_layers - 1`` blocks of
``Linear(in, hidden) -> BatchNorm1d -> ReLU -> Dropout``, then ``Linear(hidden, out)``, the
output L2-normalised; ``num_layers == 0`` is the identity (still normalised). Parameter
names match the official checkpoints (``language_projector.projection.0.weight``, ...).

The shared width: the vision feature width when the vision projector is the identity (the
default: a locked image tower), else the language width when that side is the identity,
else ``embedding_space_dim``. Call ``eval()`` before encoding: BatchNorm must use its
running statistics (and a batch of one fails in training mode).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ShareLockConfig


class Projection(nn.Module):
    """An MLP projector (or the identity), L2-normalising its output when ``normalize``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, output_size: int,
                 normalize: bool = True, dropout: float = 0.2) -> None:
        super().__init__()
        self.normalize = normalize
        if num_layers < 1:
            self.projection: nn.Module = nn.Identity()
            return
        layers: list[nn.Module] = []
        for _ in range(num_layers - 1):
            layers += [nn.Linear(input_size, hidden_size), nn.BatchNorm1d(hidden_size), nn.ReLU(), nn.Dropout(dropout)]
            input_size = hidden_size
        layers.append(nn.Linear(input_size, output_size))
        self.projection = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.projection(x)
        if self.normalize:
            out = out / out.norm(dim=1, keepdim=True)
        return out


def shared_width(config: ShareLockConfig, vision_dim: int, language_dim: int) -> int:
    """The joint embedding width (see the module docstring)."""
    if config.vision_num_layers < 1:
        return vision_dim
    if config.language_num_layers < 1:
        return language_dim
    return config.embedding_space_dim


class ShareLock(nn.Module):
    """``vision_projector`` and ``language_projector`` over precomputed frozen features."""

    def __init__(self, config: ShareLockConfig, vision_dim: int, language_dim: int) -> None:
        super().__init__()
        if config.vision_num_layers < 1 and config.language_num_layers < 1 and vision_dim != language_dim:
            raise ValueError(f"both projectors are the identity but the feature widths differ "
                             f"(vision {vision_dim}, language {language_dim})")
        self.config, self.vision_dim, self.language_dim = config, vision_dim, language_dim
        self.embed_dim = shared_width(config, vision_dim, language_dim)
        self.vision_projector = Projection(vision_dim, config.vision_hidden_size, config.vision_num_layers,
                                           self.embed_dim, config.normalize, config.dropout)
        self.language_projector = Projection(language_dim, config.language_hidden_size, config.language_num_layers,
                                             self.embed_dim, config.normalize, config.dropout)

    def forward(self, vision: torch.Tensor, language: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected (and normalised) image and text embeddings."""
        return self.vision_projector(vision), self.language_projector(language)


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """Symmetric InfoNCE over one batch: ``(CE(s, arange) + CE(s.T, arange)) / 2``, ``s = scale * image @ text.T``.

    Equal to the official ``misc.py::loss`` (``transformers``' ``clip_loss`` of the scaled
    similarities, ``image_text_contrastive_loss`` since transformers 5); negatives are the other
    pairs of the same micro-batch.
    """
    logits = logit_scale * image @ text.T
    target = torch.arange(len(logits), device=logits.device)
    return (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)) / 2
