"""The device a run uses and what results record about it: device choice, memory layout,
numerics settings (TF32, cuDNN, attention kernel) and peak memory.

Encoders are reached through the torch modules among their attributes (``vars(encoder)``),
so no encoder has to implement anything for channels_last or for the attention record.
"""

from __future__ import annotations

import os
import re
import resource
import sys
import time
from typing import Any

from .errors import HarnessError

_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


class DeviceError(HarnessError):
    """The requested device does not exist or is not usable here."""


def resolve_device(device: str) -> str:
    """``auto`` -> cuda if available, else mps, else cpu; an unavailable device is an error."""
    if not _DEVICE.fullmatch(device):
        raise DeviceError(f"--device {device!r}: expected auto, cpu, cuda, cuda:N or mps")
    import torch

    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device}: CUDA is not available (torch {torch.__version__})")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible")
    if device == "mps" and not mps_ok:
        raise DeviceError("--device mps: MPS is not available")
    return device


def torch_modules(encoder: Any) -> list[Any]:
    """The ``torch.nn.Module`` attributes of an encoder object."""
    import torch

    return [value for value in vars(encoder).values() if isinstance(value, torch.nn.Module)]


def use_channels_last(encoder: Any, device: str) -> bool:
    """On CUDA, convert convolutional modules to channels_last (faster with cuDNN); True if done."""
    import torch

    if not device.startswith("cuda"):
        return False
    converted = False
    for module in torch_modules(encoder):
        if any(isinstance(m, torch.nn.Conv2d) for m in module.modules()):
            module.to(memory_format=torch.channels_last)
            converted = True
    return converted


def attention_kernel(encoder: Any, device: str) -> str:
    """What computes attention: the transformers implementation, PyTorch SDPA (with the enabled
    CUDA backends), or ``none`` for models without attention layers."""
    import torch

    kinds, custom = set(), None
    for module in torch_modules(encoder):
        impl = getattr(getattr(module, "config", None), "_attn_implementation", None)
        if impl:
            kinds.add(f"transformers:{impl}")
        for sub in module.modules():
            if isinstance(sub, torch.nn.MultiheadAttention):
                kinds.add("torch.nn.MultiheadAttention")
            elif custom is None and type(sub).__name__.lower().endswith("attention"):
                custom = type(sub).__name__
    if not kinds and custom:
        kinds.add(custom)
    if not kinds:
        return "none"
    text = "+".join(sorted(kinds))
    if device.startswith("cuda"):
        cuda = torch.backends.cuda
        enabled = [name for name, on in (("flash", cuda.flash_sdp_enabled()), ("mem_efficient", cuda.mem_efficient_sdp_enabled()),
                                         ("math", cuda.math_sdp_enabled())) if on]
        text += f" (sdpa backends: {','.join(enabled)})"
    return text


def numerics(device: str, dtype: str, channels_last: bool, attention: str) -> dict[str, Any]:
    """The settings that decide the low bits of the features (recorded in results)."""
    import torch

    return {
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "attention": attention,
        "channels_last": channels_last,
        "inference_mode": dtype == "fp32",  # else no_grad (harness.execution.forward_mode)
    }


def reset_peak_memory(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(torch.device(device))


def peak_memory(device: str) -> dict[str, float | None]:
    """Peak resident memory of this process (MiB, since it started) and CUDA max allocated
    (MiB, since :func:`reset_peak_memory`)."""
    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mb = rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux
    cuda = torch.cuda.max_memory_allocated(torch.device(device)) / 2**20 if device.startswith("cuda") else None
    return {"peak_rss_mb": round(rss_mb, 1), "peak_cuda_mb": None if cuda is None else round(cuda, 1)}


def process_seconds() -> float:
    """Wall seconds since this process started: interpreter start-up and imports included.

    On Linux: ``CLOCK_BOOTTIME`` now less the process start time of ``/proc/self/stat`` (field 22,
    in clock ticks since boot on the same clock; 10 ms resolution) -- two small reads, no psutil.
    Elsewhere (or if that fails): seconds since ``harness`` was imported, which misses only the
    interpreter's own start-up and whatever the caller imported before harness."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # the name (field 2) may hold spaces and ')'
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # fields[0] is field 3 (state)
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started
        if age >= 0:
            return age
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    import harness

    return max(0.0, time.perf_counter() - harness._IMPORTED_AT)
