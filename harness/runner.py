"""One run: resolve and check everything, load the model once, evaluate each task, write results."""

from __future__ import annotations

import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import harness

from .auxiliary import Auxiliary, encoder_key
from .dataset import Split, load_dataset, subset_indices
from .encoder import LoadOptions, build_encoder
from .errors import IncompatibleError
from .features import DEFAULT_SHARD_SIZE, Features
from .featurestore import FeatureStore
from .hardware import numerics, peak_memory, reset_peak_memory, resolve_device, use_channels_last
from .processgroup import ProcessGroup
from .registry import Registries
from .result import SCHEMA_VERSION, validate_result
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
    batch_size: int | str = 32
    """A positive int or ``"auto"``."""
    limit: int | None = None
    seed: int = 0
    output_dir: Path = Path("results")
    writers: tuple[str, ...] = ("json",)
    progress: bool = False
    cache: bool = True
    """Read and write the feature store (``--no-cache``: neither)."""
    cache_dir: Path | None = None
    """Cache root (features under ``<cache_dir>/features``); default ``$HARNESS_CACHE_DIR`` or ``~/.cache/harness``."""
    num_workers: int | None = None
    shard_size: int = DEFAULT_SHARD_SIZE
    check_determinism: bool = False


@dataclass(frozen=True)
class Plan:
    """The run after name resolution and compatibility checks, before anything heavy loads."""

    encoder: EncoderSpec
    encoder_plugin: str
    tasks: tuple[tuple[TaskSpec, TaskKindSpec, str], ...]


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


@dataclass(frozen=True)
class Engine:
    """What every task of a run shares: the loaded encoder and where and how it runs."""

    encoder: Any
    device: str
    load_s: float
    group: ProcessGroup = ProcessGroup()
    channels_last: bool = False


def run(config: RunConfig, registries: Registries) -> list[Path]:
    """Evaluate ``config.model`` on every task; return the paths written (none on ranks other than 0)."""
    return list(run_models([config], registries))


def run_models(configs: list[RunConfig], registries: Registries) -> Iterator[Path]:
    """:func:`run` for each config in turn (e.g. one per ``--model``), yielding paths as they are
    written; every config is planned and checked before any model loads, and under torchrun the
    process group is joined once for all of them."""
    plans = [plan(config, registries) for config in configs]
    device = resolve_device(configs[0].device)
    group = ProcessGroup.from_env(device)
    try:
        for config, the_plan in zip(configs, plans):
            yield from _run_one(config, the_plan, registries, group.device(device), group)
    finally:
        group.close()


def _run_one(config: RunConfig, the_plan: Plan, registries: Registries, device: str, group: ProcessGroup) -> list[Path]:
    if group.main:
        registries.pm.hook.harness_run_started(run=config)
    start = time.perf_counter()
    encoder = build_encoder(the_plan.encoder, options(config, device, registries))
    load_s = time.perf_counter() - start
    channels_last = use_channels_last(encoder, device)
    written = []
    for spec, kind, task_plugin in the_plan.tasks:
        doc = evaluate_task(config, the_plan, registries, encoder, device, (spec, kind, task_plugin), load_s,
                            group, channels_last)
        if doc is None:
            continue
        validate_result(doc, f"result of {spec.name}")
        registries.pm.hook.harness_task_finished(run=config, result=doc)
        for writer in config.writers:
            written.append(load_object(registries.writers.get(writer).factory)(doc, config.output_dir))
    return written


def options(config: RunConfig, device: str, registries: Registries) -> LoadOptions:
    """How every encoder of the run loads: the run's device, dtype, seed and plugins."""
    return LoadOptions(device=device, dtype=config.dtype, seed=config.seed, registries=registries)


def evaluate_task(
    config: RunConfig, the_plan: Plan, registries: Registries, encoder: Any, device: str,
    task: tuple[TaskSpec, TaskKindSpec, str], load_s: float, group: ProcessGroup = ProcessGroup(),
    channels_last: bool = False,
) -> dict[str, Any] | None:
    """Evaluate one task and return its (not yet validated) result document (None on ranks other than 0)."""
    engine = Engine(encoder, device, load_s, group, channels_last)
    spec, kind, task_plugin = task
    group, device, main = engine.group, engine.device, engine.group.main
    _seed_everything(config.seed)
    reset_peak_memory(device)
    start = time.perf_counter()

    def load_split(split: str) -> Split:
        with group.main_first():
            return load_dataset(replace(spec.dataset, split=split), registries, config.progress and main).split

    whole = load_split(spec.dataset.split)
    total = len(whole)
    index = subset_indices(total, config.limit, config.seed)
    split = whole if len(index) == total else whole.select(index)
    data_s = time.perf_counter() - start
    features = Features(
        engine.encoder, device=device, dtype=config.dtype, batch_size=config.batch_size,
        progress=config.progress and main, num_workers=config.num_workers, shard_size=config.shard_size,
        store=FeatureStore.default(config.cache_dir) if config.cache else None,
        encoder_key=encoder_key(the_plan.encoder.name, the_plan.encoder_plugin, registries, engine.encoder)
        if config.cache else None,
        group=group, check_determinism=config.check_determinism, channels_last=engine.channels_last)
    auxiliary = Auxiliary(registries, options(config, device, registries))
    ctx = TaskContext(spec=spec, data=split.data, split=split, features=features, seed=config.seed,
                      where=f"task {spec.name}", load_split=load_split, auxiliary=auxiliary)
    kind_start = time.perf_counter()
    outputs = load_object(kind.factory)().evaluate(ctx)
    kind_s = time.perf_counter() - kind_start
    counters = group.gather(asdict(features.counters))
    if not main:
        return None
    metric_start = time.perf_counter()
    metrics = score(spec.metrics, registries.metrics, outputs, config.seed)
    end = time.perf_counter()
    times = {"load_model": engine.load_s, "load_data": data_s, "kind": kind_s, "metrics": end - metric_start,
             "total": engine.load_s + end - start}
    doc = _document(config, the_plan, registries, engine, (spec, task_plugin), whole, len(index), features,
                    counters or [], times, metrics)
    return dict(doc, auxiliary_models=auxiliary.used)


def _document(config: RunConfig, the_plan: Plan, registries: Registries, engine: Engine,
              task: tuple[TaskSpec, str], whole: Split, evaluated: int, features: Features,
              counters: list[dict[str, Any]], times: dict[str, float], metrics: dict[str, Any]) -> dict[str, Any]:
    """The result document of one task, less ``auxiliary_models``."""
    import torch

    spec, task_plugin = task
    images, texts = sum(c["images"] for c in counters), sum(c["texts"] for c in counters)
    extract_s = max(c["seconds"] for c in counters)
    diffs = [c["max_abs_diff"] for c in counters if c["max_abs_diff"] is not None]
    check = None
    if config.check_determinism:
        used = features.batch_size_used or 1
        check = {"batch_sizes": [used, max(1, (used + 1) // 2)], "max_abs_diff": max(diffs) if diffs else None}
        print(f"harness: {spec.name}: determinism check: largest per-sample |difference| between batch sizes "
              f"{check['batch_sizes'][0]} and {check['batch_sizes'][1]}: {check['max_abs_diff']}", file=sys.stderr)
    r = lambda x: round(x, 4)  # noqa: E731
    return {
        "schema_version": SCHEMA_VERSION,
        "harness_version": harness.__version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "plugins": [vars(p) for p in registries.pm.plugins_info()],
        "model": {"name": the_plan.encoder.name, "plugin": the_plan.encoder_plugin,
                  "modalities": sorted(the_plan.encoder.modalities), "embed_dim": engine.encoder.embed_dim,
                  **engine.encoder.provenance()},
        "task": {"name": spec.name, "version": spec.version, "kind": spec.kind,
                 "spec_sha256": spec.sha256, "plugin": task_plugin},
        "dataset": whole.identity,
        "n_samples": {"total": len(whole), "evaluated": evaluated, "partial": evaluated < len(whole)},
        "seed": config.seed,
        "execution": {"device": engine.device, "dtype": config.dtype, "batch_size": features.batch_size_used,
                      "batch_size_requested": config.batch_size, "num_workers": config.num_workers,
                      "world_size": engine.group.world_size, "torch_version": torch.__version__,
                      "python_version": platform.python_version(),
                      "determinism": {**numerics(engine.device, engine.channels_last, engine.encoder), "check": check}},
        "cache": {"enabled": config.cache, "image_hits": features.counters.image_hits, "image_misses": images,
                  "text_hits": features.counters.text_hits, "text_misses": texts},
        "metrics": metrics,
        "main_score": {"name": spec.main_score, "value": metrics[spec.main_score]["value"]},
        "cost": {
            "wall_time_s": r(times["total"]),
            "images_per_s": round(images / extract_s, 3) if images and extract_s else None,
            "texts_per_s": round(texts / extract_s, 3) if texts and extract_s else None,
            "phases_s": {"load_model": r(times["load_model"]), "load_data": r(times["load_data"]),
                         "extract": r(extract_s), "task": r(max(0.0, times["kind"] - extract_s)),
                         "metrics": r(times["metrics"])},
            **peak_memory(engine.device),
        },
    }
