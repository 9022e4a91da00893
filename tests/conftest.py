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
