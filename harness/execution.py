"""One execution config for everything that runs: ``harness run``, ``harness train``, model factories,
dataset builders and trainers all see the same device, precision, seed and cache root.

``dtype`` has one meaning across plugins: the precision of the forward pass, applied by the core
with ``torch.autocast`` (weights stay in float32; features come back as float32). Plugins do not
cast weights themselves. Results record it as ``execution.dtype`` with ``dtype_mode: autocast``.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

if TYPE_CHECKING:
    from .processgroup import ProcessGroup

log = logging.getLogger(__name__)

#: ``--dtype`` values and the torch dtype each names.
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
DEFAULT_SHARD_SIZE = 1024
T = TypeVar("T")


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """The harness cache folder: ``cache_dir``, else ``$HARNESS_CACHE_DIR``, else ``~/.cache/harness``."""
    return Path(cache_dir or os.environ.get("HARNESS_CACHE_DIR") or "~/.cache/harness").expanduser()


def torch_dtype(dtype: str) -> Any:
    """The torch dtype of a ``--dtype`` value."""
    import torch

    return getattr(torch, TORCH_DTYPES[dtype])


@contextmanager
def autocast(device: str, dtype: str) -> Iterator[None]:
    """The forward-pass precision of ``--dtype`` (a no-op for fp32)."""
    if dtype == "fp32":
        yield
        return
    import torch

    with torch.autocast(device_type=device.split(":")[0], dtype=torch_dtype(dtype)):
        yield


@contextmanager
def forward_mode(device: str, dtype: str) -> Iterator[None]:
    """How a model's forward pass runs: no autograd, in ``--dtype``'s precision. fp32 runs under
    ``inference_mode``; a lower precision under ``no_grad`` and autocast, because inference mode
    keeps autocast from caching the low-precision copies of weights, so every weight is cast again on
    every call (ViT-B/32 in bf16 on this 2-core CPU: 2.5x slower extraction than CLIP_benchmark's
    ``no_grad`` + autocast, ``bench/versus_clip_benchmark.py --precision bf16``)."""
    import torch

    if dtype == "fp32":
        with torch.inference_mode():
            yield
    else:
        with torch.no_grad(), autocast(device, dtype):
            yield


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA/MPS/CPU allocation failures (``torch.OutOfMemoryError``, or a RuntimeError saying so)."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def free_accelerator_memory() -> None:
    """Return cached blocks to the device after an out-of-memory error."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def split_on_oom(run: Callable[[Any], T], batch: Any, join: Callable[[list[T]], T], what: str = "batch") -> T:
    """``run(batch)``; on out-of-memory, run both halves (recursively) and ``join`` them. A batch of one
    that does not fit re-raises. The one out-of-memory back-off of the harness (extraction, language
    models, trainers)."""
    try:
        return run(batch)
    except Exception as exc:
        if not is_out_of_memory(exc) or len(batch) <= 1:
            raise
    free_accelerator_memory()
    log.info("out of memory on a %s of %d: splitting it", what, len(batch))
    half = len(batch) // 2
    return join([split_on_oom(run, batch[:half], join, what), split_on_oom(run, batch[half:], join, what)])


@dataclass(frozen=True)
class ExecutionConfig:
    """How anything runs: shared by ``harness run`` and ``harness train`` (one parser) and passed to
    model factories (``LoadContext``), dataset builders and trainers."""

    device: str = "auto"
    """Requested: ``auto | cpu | cuda | cuda:N | mps``; :meth:`resolved` gives the real one."""
    dtype: str = "fp32"
    batch_size: int | str = 32
    """A positive int or ``"auto"``."""
    seed: int = 0
    progress: bool = False
    cache: bool = True
    """Read and write the feature store (``--no-cache``: neither)."""
    cache_dir: Path | None = None
    """Cache root; default ``$HARNESS_CACHE_DIR`` or ``~/.cache/harness``. Everything the harness caches
    (features, batch sizes, dataset builders' files) lives under it."""
    num_workers: int | None = None
    shard_size: int = DEFAULT_SHARD_SIZE
    check_determinism: bool = False

    @property
    def root(self) -> Path:
        """The cache root (see :func:`cache_root`)."""
        return cache_root(self.cache_dir)

    def joined(self) -> tuple[ExecutionConfig, ProcessGroup]:
        """This process's view of the config and its process group: the device resolved (``auto`` ->
        cuda, mps or cpu; ``cuda:LOCAL_RANK`` under torchrun, after joining the group) and progress
        bars only on the main process."""
        from dataclasses import replace

        from .hardware import resolve_device
        from .processgroup import ProcessGroup

        device = resolve_device(self.device)
        group = ProcessGroup.from_env(device)
        return replace(self, device=group.device(device), progress=self.progress and group.main), group
