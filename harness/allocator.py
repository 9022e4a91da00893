"""glibc malloc settings for inference: large blocks stay with the process between batches.

By default glibc serves blocks above a (dynamic) threshold with ``mmap`` and returns freed memory
at the top of the heap to the OS; a forward pass allocates and frees the same large activations
every batch, so every batch page-faults them in again and most of a CPU forward pass is spent in
the kernel (MobileNetV2, batch 32, 2 cores: 38-40 images/s by default, 157-168 with the settings
below; ``bench/allocator.py``). :func:`tune` sets, through ``mallopt`` at start-up (before torch
allocates), the equivalent of ``MALLOC_MMAP_THRESHOLD_`` (1 GiB: large blocks come from the heap),
``MALLOC_TRIM_THRESHOLD_`` (2 GiB: freed memory is kept) and ``MALLOC_TOP_PAD_`` (256 MiB).

The cost: memory freed after a peak stays with the process until it exits (the resident size
reported in results is the peak anyway). ``HARNESS_MALLOC_TUNING=0`` turns it off; so does setting
any ``MALLOC_*_`` variable yourself (your settings win). Not glibc (macOS, musl): nothing happens.
The state is recorded in every result (``execution.allocator``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

DISABLE_ENV = "HARNESS_MALLOC_TUNING"
#: mallopt parameter -> value: M_MMAP_THRESHOLD (-3), M_TRIM_THRESHOLD (-1), M_TOP_PAD (-2).
SETTINGS = {-3: 1 << 30, -1: (1 << 31) - 1, -2: 1 << 28}
_USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")
_state = "default"


def tune() -> str:
    """Apply the settings once per process (see the module docstring); returns :func:`state`."""
    global _state
    if _state != "default":
        return _state
    if os.environ.get(DISABLE_ENV, "1") == "0":
        _state = f"default ({DISABLE_ENV}=0)"
    elif any(name in os.environ for name in _USER_VARIABLES):
        _state = "default (MALLOC_* variables set by the user)"
    elif sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            applied = [libc.mallopt(parameter, value) == 1 for parameter, value in SETTINGS.items()]
        except (OSError, AttributeError):  # not glibc
            applied = []
        if applied and all(applied):
            _state = "glibc-tuned"
    return _state


def state() -> str:
    """``"glibc-tuned"``, or ``"default"`` with the reason it was not tuned."""
    return _state
