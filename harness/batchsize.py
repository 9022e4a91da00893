"""``--batch-size auto``: the largest batch that fits, found by halving on out-of-memory, remembered.

For fixed-shape encoders (every preprocessed image has one shape), a batch of copies of the
first image is run at ``START`` and halved on ``torch.OutOfMemoryError`` until it fits. The
answer is remembered per (encoder key, input shape, dtype, device model and memory) in
``<cache root>/batchsize.json`` (file-locked, written atomically), so a later run starts at once.
On CPU there is no memory ceiling to probe: ``auto`` means ``DEFAULT_CPU``. Extraction still
splits a batch that runs out of memory later (``Features._forward``). The file is read only if it
is a regular file of at most 16 MiB; a cache this user cannot write keeps the answer in memory
only (one warning).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .atomicfile import file_lock, read_regular, write_text_atomic
from .execution import cache_root, forward_mode, free_accelerator_memory, is_out_of_memory
from .featurestore import canonical_json

if TYPE_CHECKING:
    from .features import Features

DEFAULT_CPU = 32
START = 1024
MAX_MEMO_BYTES = 16 << 20


def find_largest(trial: Callable[[int], None], start: int = START, minimum: int = 1) -> int:
    """The first of ``start, start/2, ...`` for which ``trial(size)`` raises no out-of-memory error."""
    size = start
    while True:
        try:
            trial(size)
            return size
        except Exception as exc:
            if not is_out_of_memory(exc) or size <= minimum:
                raise
            size = max(minimum, size // 2)
            free_accelerator_memory()


class BatchSizeMemo:
    """A small JSON map from a canonical key to the batch size that fitted."""

    def __init__(self, path: Path | None = None, cache_dir: Path | None = None) -> None:
        self.path = Path(path) if path else cache_root(cache_dir) / "batchsize.json"
        self._unsaved: dict[str, int] = {}

    def _read(self) -> dict[str, int]:
        try:
            data = json.loads(read_regular(self.path, MAX_MEMO_BYTES).decode("utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> int | None:
        value = self._unsaved.get(key) or self._read().get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    def put(self, key: str, value: int) -> None:
        """Remember ``value`` (in the file; in memory only, with a warning, if it cannot be written)."""
        import filelock

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with file_lock(str(self.path) + ".lock", timeout=60):
                data = self._read()
                data[key] = int(value)
                write_text_atomic(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")
        except (OSError, filelock.Timeout) as exc:
            self._unsaved[key] = int(value)
            warnings.warn(f"batch size: cannot remember {value} in {self.path} "
                          f"({getattr(exc, 'strerror', None) or exc}); it is probed again next run", stacklevel=2)


def device_name(device: str) -> str:
    """``cpu``, or the CUDA device's model name and memory (what decides whether a batch fits)."""
    import torch

    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        return f"{props.name}/{props.total_memory // 2**20}MiB"
    return device


def resolve_auto(features: Features, sample: Any, encode: Callable[[Any], Any], probe: bool | None = None,
                 memo: BatchSizeMemo | None = None) -> int:
    """The batch size for ``auto``: remembered, else probed (on CUDA, or when ``probe``), else ``DEFAULT_CPU``."""
    import torch

    probe = features.device.startswith("cuda") if probe is None else probe
    if not probe or not isinstance(sample, torch.Tensor):
        return DEFAULT_CPU
    memo = memo or BatchSizeMemo(cache_dir=features.cache_dir)
    key = canonical_json({"encoder": features._encoder_key(), "shape": list(sample.shape),
                          "dtype": features.dtype, "device": device_name(features.device)})
    remembered = memo.get(key)
    if remembered:
        return remembered

    def trial(size: int) -> None:
        pixels = sample.unsqueeze(0).expand(size, *sample.shape).contiguous().to(features.device)
        with forward_mode(features.device, features.dtype):
            encode(pixels)
        if features.device.startswith("cuda"):
            torch.cuda.synchronize()

    size = find_largest(trial)
    memo.put(key, size)
    return size
