"""One run: resolve and check everything, load the model once, evaluate each task, write results."""

from __future__ import annotations

import platform
import random
import resource
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import harness

from .dataset import load_dataset, subset_indices
from .encoder import LoadOptions
from .errors import IncompatibleError, ModelLoadError
from .features import Features
from .registry import Registries
from .result import validate_result
from .scoring import score
from .specs import EncoderSpec, TaskKindSpec, load_object
from .taskkind import TaskContext
from .taskspec import TaskSpec, load_task_spec


@dataclass(frozen=True)
class RunConfig:
    """Everything ``harness run`` was asked to do."""

    model: str
    tasks: tuple[str, ...]
    device: str = "auto"
    dtype: str = "fp32"
    batch_size: int = 32
    limit: int | None = None
    seed: int = 0
    output_dir: Path = Path("results")
    writers: tuple[str, ...] = ("json",)
    progress: bool = False


@dataclass(frozen=True)
class Plan:
    """The run after name resolution and compatibility checks, before anything heavy loads."""

    encoder: EncoderSpec
    encoder_plugin: str
    tasks: tuple[tuple[TaskSpec, TaskKindSpec, str], ...]


def resolve_device(device: str) -> str:
    """``auto`` -> cuda if available, else mps, else cpu."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _find_task(name: str, registries: Registries) -> tuple[TaskSpec, str]:
    if name.endswith((".yaml", ".yml")) and name not in registries.tasks:
        return load_task_spec(Path(name), registries), "(file)"
    entry = registries.tasks.entry(name)
    return load_task_spec(entry.item, registries), entry.plugin


def plan(config: RunConfig, registries: Registries) -> Plan:
    """Resolve the model and tasks and check they fit, without importing torch."""
    encoder, plugin = registries.resolve_encoder(config.model)
    tasks = []
    for name in config.tasks:
        spec, task_plugin = _find_task(name, registries)
        kind = registries.task_kinds.get(spec.kind)
        missing = kind.requires - encoder.modalities
        if missing:
            raise IncompatibleError(
                f"model {encoder.name!r} has modalities {sorted(encoder.modalities)} but task {spec.name!r} "
                f"(kind {kind.name!r}) needs {sorted(kind.requires)}"
            )
        tasks.append((spec, kind, task_plugin))
    for writer in config.writers:
        registries.writers.get(writer)
    return Plan(encoder=encoder, encoder_plugin=plugin, tasks=tuple(tasks))


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _load_encoder(spec: EncoderSpec, options: LoadOptions) -> Any:
    factory = load_object(spec.factory)
    try:
        return factory(spec, options)
    except (OSError, ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load model {spec.name!r}: {first}") from None


def run(config: RunConfig, registries: Registries) -> list[Path]:
    """Evaluate ``config.model`` on every task; return the paths written."""
    the_plan = plan(config, registries)
    registries.pm.hook.harness_run_started(run=config)
    device = resolve_device(config.device)
    start = time.perf_counter()
    encoder = _load_encoder(the_plan.encoder, LoadOptions(device=device, dtype=config.dtype, seed=config.seed))
    load_s = time.perf_counter() - start
    written = []
    for spec, kind, task_plugin in the_plan.tasks:
        doc = evaluate_task(config, the_plan, registries, encoder, device, (spec, kind, task_plugin), load_s)
        validate_result(doc, f"result of {spec.name}")
        registries.pm.hook.harness_task_finished(run=config, result=doc)
        for writer in config.writers:
            written.append(load_object(registries.writers.get(writer).factory)(doc, config.output_dir))
    return written


def evaluate_task(
    config: RunConfig, the_plan: Plan, registries: Registries, encoder: Any, device: str,
    task: tuple[TaskSpec, TaskKindSpec, str], load_s: float,
) -> dict[str, Any]:
    """Evaluate one task and return its (not yet validated) result document."""
    spec, kind, task_plugin = task
    _seed_everything(config.seed)
    start = time.perf_counter()
    loaded = load_dataset(spec.dataset, registries, config.progress)
    total = len(loaded.data)
    index = subset_indices(total, config.limit, config.seed)
    data = loaded.data if len(index) == total else loaded.data.select(index)
    data_s = time.perf_counter() - start
    features = Features(encoder, device=device, dtype=config.dtype, batch_size=config.batch_size, progress=config.progress)
    ctx = TaskContext(
        spec=spec, data=data, features=features, seed=config.seed, where=f"task {spec.name}",
        load_split=lambda split: load_dataset(replace(spec.dataset, split=split), registries, config.progress).data,
    )
    outputs = load_object(kind.factory)().evaluate(ctx)
    metric_start = time.perf_counter()
    metrics = score(spec.metrics, registries.metrics, outputs, config.seed)
    end = time.perf_counter()
    import torch

    return {
        "schema_version": 1,
        "harness_version": harness.__version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "plugins": [vars(p) for p in registries.pm.plugins_info()],
        "model": {
            "name": the_plan.encoder.name,
            "plugin": the_plan.encoder_plugin,
            "modalities": sorted(the_plan.encoder.modalities),
            "embed_dim": encoder.embed_dim,
            **encoder.provenance(),
        },
        "task": {"name": spec.name, "version": spec.version, "kind": spec.kind,
                 "spec_sha256": spec.sha256, "plugin": task_plugin},
        "dataset": loaded.identity,
        "n_samples": {"total": total, "evaluated": len(index), "partial": len(index) < total},
        "seed": config.seed,
        "execution": {"device": device, "dtype": config.dtype, "batch_size": config.batch_size,
                      "torch_version": torch.__version__, "python_version": platform.python_version()},
        "metrics": metrics,
        "main_score": {"name": spec.main_score, "value": metrics[spec.main_score]["value"]},
        "cost": {
            "wall_time_s": round(load_s + end - start, 4),
            "images_per_s": round(features.counters.images / features.counters.seconds, 3)
            if features.counters.images and features.counters.seconds else None,
            "phases_s": {"load_model": round(load_s, 4), "load_data": round(data_s, 4),
                         "extract": round(features.counters.seconds, 4), "metrics": round(end - metric_start, 4)},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.startswith("cuda") else None,
        },
    }
