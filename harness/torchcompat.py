"""Make torchvision importable next to a CPU-only torch.

PyPI's torchvision wheel is a CUDA build: its ``_C.so`` cannot load against CPU
torch, and ``torchvision/_meta_registrations.py`` then crashes on the missing
``torchvision::nms`` schema, which breaks ``import torchvision``, open_clip, timm and
transformers' image processors. Defining the two op schemas first fixes the import;
torchvision's C++ ops (nms, roi_align, io.decode_*) stay unavailable, and harness
decodes images with PIL. Where the real extension loads (a matching GPU install)
this is a no-op. Call :func:`ensure_torchvision` before importing any of those.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys

_library = None


def ensure_torchvision() -> bool:
    """Define the missing op schemas if torchvision's extension cannot load. Idempotent."""
    global _library
    if "torchvision" in sys.modules or _library is not None:
        return False
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    import torch

    shared = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "_C*.so"))
    if shared:
        try:
            torch.ops.load_library(shared[0])
            return False
        except (OSError, ImportError, RuntimeError):
            pass
    _library = torch.library.Library("torchvision", "DEF")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    return True
