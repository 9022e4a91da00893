"""Pooling token states into one vector per text.

- ``last``: the state at the last position. Batches for decoder LMs are padded on the
  left, so position ``-1`` is every row's last real token (ShareLock's
  ``last_hidden_state[:, -1]``). Right-padded input is handled too, by reading the
  position of each row's last attended token, so the result never depends on padding.
- ``mean``: attention-mask-weighted mean over tokens (sentence-transformers' mean pooling).
- ``cls``: the first token (BERT's ``[CLS]``; with left padding, the first attended token).
"""

from __future__ import annotations

import torch

MODES = ("last", "mean", "cls")


def last_token(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(N, T, D)`` states, ``(N, T)`` mask -> ``(N, D)`` state of each row's last attended token."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), positions, torch.full_like(positions, -1)).max(dim=1).values.clamp(min=0)
    return states[torch.arange(states.shape[0], device=states.device), last]


def first_token(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(N, D)`` state of each row's first attended token (index 0 with right padding)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    big = torch.full_like(positions, mask.shape[1] - 1)
    first = torch.where(mask.bool(), positions, big).min(dim=1).values
    return states[torch.arange(states.shape[0], device=states.device), first]


def mean_tokens(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the attended tokens' states (in float32 for stable sums)."""
    weights = mask.to(torch.float32).unsqueeze(-1)
    total = (states.to(torch.float32) * weights).sum(dim=1)
    return total / weights.sum(dim=1).clamp(min=1e-9)


def pool(states: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Dispatch on ``mode`` (one of :data:`MODES`)."""
    if mode == "last":
        return last_token(states, mask)
    if mode == "mean":
        return mean_tokens(states, mask)
    if mode == "cls":
        return first_token(states, mask)
    raise ValueError(f"unknown pooling {mode!r}; expected one of {', '.join(MODES)}")


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over attended tokens only, so a left-padded row starts at 0 (as unpadded)."""
    return (mask.long().cumsum(dim=1) - 1).clamp(min=0)
