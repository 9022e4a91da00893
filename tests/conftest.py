"""Test setup: offline hub, isolated caches, the torchvision shim. Runs before any test imports."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# huggingface_hub and datasets read these at import time: set them before anything imports them.
_CACHE = tempfile.mkdtemp(prefix="harness-tests-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    TOKENIZERS_PARALLELISM="false",
    HF_HOME=os.path.join(_CACHE, "hf"),
    HF_DATASETS_CACHE=os.path.join(_CACHE, "datasets"),
    HARNESS_CACHE_DIR=os.path.join(_CACHE, "harness"),
    TORCH_HOME=os.path.join(_CACHE, "torch"),
)

from harness.torchcompat import ensure_torchvision  # noqa: E402

ensure_torchvision()


import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

TINY_OPENCLIP_ARCH = "harness-tiny-clip"
TINY_OPENCLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def save_tiny_openclip(root: Path, arch: str, config: dict, seed: int) -> tuple[object, Path]:
    """Register the open_clip architecture ``arch`` (``config``), build it seeded and save its state
    dict under ``root``: (the model, the checkpoint file)."""
    import open_clip
    import torch

    (root / f"{arch}.json").write_text(json.dumps(config))
    open_clip.add_model_config(root / f"{arch}.json")
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None).eval()
    checkpoint = root / f"{arch}.pt"
    torch.save(model.state_dict(), checkpoint)
    return model, checkpoint


@pytest.fixture(scope="session")
def openclip_saver():  # noqa: ANN201
    """:func:`save_tiny_openclip`, for test modules' own tiny open_clip models."""
    return save_tiny_openclip


@pytest.fixture(scope="session")
def tiny_openclip(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny open_clip architecture (registered with open_clip) and a seeded checkpoint file.

    Returns ``{"arch", "checkpoint", "name"}`` where ``name`` is the harness model name.
    """
    _, checkpoint = save_tiny_openclip(tmp_path_factory.mktemp("tiny-openclip"), TINY_OPENCLIP_ARCH,
                                       TINY_OPENCLIP_CONFIG, seed=0)
    return {"arch": TINY_OPENCLIP_ARCH, "checkpoint": checkpoint, "name": f"openclip:{TINY_OPENCLIP_ARCH}/{checkpoint}"}


def make_image_folder(root: Path, per_class: int = 4, size: int = 40) -> Path:
    """An image-folder dataset (split ``test``) of flat-coloured images in three classes."""
    from PIL import Image

    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    for name, rgb in colours.items():
        folder = root / "test" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shade = tuple(max(0, c - 12 * i) for c in rgb)
            Image.new("RGB", (size, size), shade).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small local image-folder dataset shared by the end-to-end tests."""
    return make_image_folder(tmp_path_factory.mktemp("imagefolder"))
