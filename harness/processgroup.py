"""Data-parallel runs under ``torchrun``: which process this is, and the few collectives a run needs.

``torchrun --nproc_per_node N -m harness run ...`` (or ``--nnodes``/``--rdzv-endpoint`` across
machines) starts N copies of the run. Each copy loads the model and the data; feature extraction
splits the missing samples over the ranks (each rank writes its own shards to the feature store),
gathers them on rank 0 and broadcasts the full arrays, so every rank runs the task kind on
identical features; only rank 0 scores and writes the result. The backend is gloo on CPU and
nccl on CUDA (each rank on ``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

#: How long a rank waits for the others at a collective before failing (``HARNESS_DIST_TIMEOUT_S``).
DEFAULT_TIMEOUT_S = 1800


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in a run: rank ``rank`` of ``world_size`` (1 = not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        """True on rank 0, the process that scores, prints and writes results."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str) -> ProcessGroup:
        """Join the torchrun group described by ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` (single process if unset)."""
        world_size = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world_size <= 1:
            return cls()
        import torch.distributed as dist

        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if not dist.is_initialized():
            if backend == "nccl":
                import torch

                torch.cuda.set_device(local_rank)
            timeout = timedelta(seconds=float(os.environ.get("HARNESS_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S)))
            dist.init_process_group(backend=backend, timeout=timeout)
        return cls(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend)

    def device(self, device: str) -> str:
        """The device of this rank: a bare ``cuda`` becomes ``cuda:LOCAL_RANK``."""
        return f"cuda:{self.local_rank}" if device == "cuda" and self.world_size > 1 else device

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if self.world_size == 1:
            return value
        import torch.distributed as dist

        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` (in rank order) on rank 0; None on the other ranks."""
        if self.world_size == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world_size if self.main else None
        dist.gather_object(value, out, dst=0)
        return out

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. fills a dataset cache), then the others."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    def close(self) -> None:
        """Leave the group (only if this process is in one)."""
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
